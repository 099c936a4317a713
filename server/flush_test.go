package server_test

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/server"
)

// counters reads the server's /metrics counters.
func counters(t *testing.T, srv *server.Server) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	m := map[string]float64{}
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", sc.Text(), err)
		}
		m[name] = v
	}
	return m
}

// Under load, room traffic waits for the write delay and goes out several
// frames per write, while answers to the sender's own requests do not wait.
func TestRoomTrafficIsBatched(t *testing.T) {
	srv, url := startServer(t, server.Config{WriteDelay: time.Second, Rate: 1e6, RateBurst: 1e6})
	pub := dial(t, url)
	sub := dial(t, url)
	sub.mustAck(frame{"t": "join", "room": "r"})
	pub.mustAck(frame{"t": "join", "room": "r"})
	sub.readType("presence") // a pass of room traffic: the next waits a second

	before := counters(t, srv)
	const events = 20
	start := time.Now()
	for i := range events {
		// Each ack comes back at once; the events wait.
		pub.mustAck(frame{"t": "emit", "room": "r", "event": "n", "data": i, "except_self": true})
	}
	acked := time.Since(start)
	for i := range events {
		ev := sub.readType("event")
		if ev["data"] != float64(i) {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	// A pass adds to the counters once it is over, maybe just after the
	// client read what it wrote.
	var frames, writes float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		after := counters(t, srv)
		frames = after["ferry_messages_out_total"] - before["ferry_messages_out_total"]
		writes = after["ferry_writes_total"] - before["ferry_writes_total"]
		if frames >= 2*events {
			break
		}
	}
	// The presence frame's pass may also be counted only now.
	if frames != 2*events && frames != 2*events+1 {
		t.Fatalf("%v frames out, want %d events and %d acks", frames, events, events)
	}
	// One write per ack, one or two for all the events (and the presence).
	if writes > events+3 {
		t.Errorf("%v writes for %v frames: room traffic was not batched", writes, frames)
	}
	if acked > 500*time.Millisecond {
		t.Errorf("%d acks took %v: they waited for the write delay", events, acked)
	}
}

// A client that stops reading fills its socket: writes then go out in
// pieces, and every frame still arrives whole and in order once it reads
// again, while the sender goes on.
func TestStalledClientGetsEverythingInOrder(t *testing.T) {
	_, url := startServer(t, server.Config{WriteDelay: -1, MaxQueue: 64 << 20, Rate: 1e6, RateBurst: 1e6})
	pub := dial(t, url)
	sub := dial(t, url)
	sub.mustAck(frame{"t": "join", "room": "r"})
	pub.mustAck(frame{"t": "join", "room": "r"})
	sub.readType("presence")

	const events = 500 // 500 × 30 KiB: more than loopback buffers hold
	pad := strings.Repeat("x", 30<<10)
	for i := range events {
		// Acks keep coming while sub's socket is full.
		pub.mustAck(frame{"t": "emit", "room": "r", "event": "n", "data": fmt.Sprintf("%d:%s", i, pad), "except_self": true})
	}
	for i := range events {
		ev := sub.readType("event")
		want := fmt.Sprintf("%d:%s", i, pad)
		if ev["data"] != want {
			got, _ := ev["data"].(string)
			t.Fatalf("event %d: got %.20q… (%d bytes), want %.20q…", i, got, len(got), want)
		}
	}
}

// Flushers write without holding a connection's lock, so rooms queue frames
// behind a write in progress and a client can die in the middle of one.
// Under many writers at once, every frame still arrives once and in order,
// and the dead connections are cleaned up.
func TestFramesQueuedDuringWritesKeepOrder(t *testing.T) {
	srv, url := startServer(t, server.Config{WriteDelay: -1, Rate: 1e6, RateBurst: 1e6})
	const (
		publishers = 4
		events     = 500
		readers    = 4
		quitters   = 3
	)
	var subs, gone []*peer
	for i := range readers + quitters {
		p := dial(t, url)
		p.mustAck(frame{"t": "join", "room": "r"})
		if i < readers {
			subs = append(subs, p)
		} else {
			gone = append(gone, p)
		}
	}
	var pubs []*peer
	for range publishers {
		p := dial(t, url)
		p.mustAck(frame{"t": "join", "room": "r"})
		pubs = append(pubs, p)
	}

	errs := make(chan error, publishers)
	for i, p := range pubs {
		go func() {
			for n := range events {
				if n == events/2 && i == 0 {
					// Cut the quitters mid-stream, while frames are being
					// written to them.
					for _, q := range gone {
						_ = q.ws.UnderlyingConn().Close()
					}
				}
				err := p.ws.WriteJSON(frame{"t": "emit", "room": "r", "event": "n", "data": []int{i, n}, "except_self": true})
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range publishers {
		if err := <-errs; err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	for si, s := range subs {
		next := make([]int, publishers)
		for range publishers * events {
			ev := s.readType("event")
			d, _ := ev["data"].([]any)
			if len(d) != 2 {
				t.Fatalf("subscriber %d: event %v", si, ev)
			}
			pub, n := int(d[0].(float64)), int(d[1].(float64))
			if n != next[pub] {
				t.Fatalf("subscriber %d: publisher %d's event %d arrived when %d was due", si, pub, n, next[pub])
			}
			next[pub]++
		}
	}
	want := float64(readers + publishers)
	var got float64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = counters(t, srv)["ferry_connections"]; got == want {
			return
		}
	}
	t.Fatalf("%v connections open, want %v once the quitters are gone", got, want)
}
