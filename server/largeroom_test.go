package server_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/server"
)

// Filling one room with many connections costs a bounded number of frames
// per join, not one to every member (n² in all): past PresenceLimit users
// the room sends counts, once per PresenceInterval, and a join's answer
// lists one page of members. The count is exact, and the pages list
// everyone. FERRY_FILL_CONNS sets how many connections (1,000 by default;
// the figure in docs/benchmarks.md is of 15,000).
func TestFillLargeRoom(t *testing.T) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("FERRY_FILL_CONNS")); err == nil && v > 0 {
		n = v
	}
	_, url := startServer(t, server.Config{
		MaxConns: n + 10, MaxConnsPerIP: n + 10,
		History: rooms.Config{PresenceInterval: time.Second},
	})
	base := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/ws")
	before := ferrytest.Metric(t, base, "ferry_messages_out_total")
	start := time.Now()
	var last *peer
	for i := range n {
		p := dial(t, url)
		ack := p.mustAck(frame{"t": "join", "room": "big"})
		data := ack["data"].(map[string]any)
		if got := int(data["count"].(float64)); got != i+1 {
			t.Fatalf("join %d: count %d", i+1, got)
		}
		if m := data["members"].([]any); len(m) > 100 {
			t.Fatalf("join %d answered %d members", i+1, len(m))
		}
		last = p
	}
	took := time.Since(start)
	frames := ferrytest.Metric(t, base, "ferry_messages_out_total") - before
	// A welcome and an ack per connection, the one-by-one presence of the
	// first hundred (about 100²/2), and a count to the members at most
	// once a second while they join.
	bound := int64(2*n + 100*100/2 + n*(int(took/time.Second)+2))
	t.Logf("%d connections in %v: %d frames, %.1f per join (announcing every join: %d)", n, took.Round(time.Millisecond), frames, float64(frames)/float64(n), n*(n-1)/2)
	if frames > bound {
		t.Fatalf("%d frames to fill a room of %d, want at most %d", frames, n, bound)
	}
	seen := map[string]bool{}
	after := ""
	for {
		ack := last.mustAck(frame{"t": "members", "room": "big", "after": after, "limit": 1000})
		data := ack["data"].(map[string]any)
		if int(data["count"].(float64)) != n || int(data["connections"].(float64)) != n {
			t.Fatalf("members page: %v users, %v connections, want %d", data["count"], data["connections"], n)
		}
		for _, m := range data["members"].([]any) {
			seen[m.(map[string]any)["user"].(string)] = true
		}
		next, _ := data["next"].(string)
		if next == "" {
			break
		}
		after = next
	}
	if len(seen) != n {
		t.Fatalf("the pages listed %d users, want %d", len(seen), n)
	}
}
