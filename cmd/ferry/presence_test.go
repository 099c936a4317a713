package main

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/rooms/jetstream"
)

// Three ferry nodes on one NATS server, one room filled with connections
// spread over them: the first members are told of each other's arrival
// across nodes; each join's answer lists one page of members at most,
// the frames it costs in all are bounded (counts once a second past the
// presence limit, not one frame to every member on every node), and once
// the nodes have told each other (within a second), every node's count is
// exact and its members pages list every user. A node killed with SIGKILL
// leaves the others' count once its heartbeat is overdue.
// FERRY_FILL_CONNS sets how many connections (1,500 by default; the
// figure in docs/benchmarks.md is of 15,000).
func TestPresenceAcrossNodes(t *testing.T) {
	n := 1500
	if v, err := strconv.Atoi(os.Getenv("FERRY_FILL_CONNS")); err == nil && v > 0 {
		n = v
	}
	port := freePort(t)
	emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	const nodes = 3
	addrs := make([]string, nodes)
	procs := make([]*ferryProcess, nodes)
	for i := range addrs {
		addrs[i] = freePort(t)
		limit := strconv.Itoa(n/nodes + 100)
		procs[i] = startFerryProcess(t, nil, "serve", "--addr", addrs[i], "--data", t.TempDir(), "--nats", "nats://"+port,
			"--rate", "1000000", "--rate-burst", "1000000", "--max-conns", limit, "--max-conns-per-ip", limit)
		waitOutput(t, &procs[i].stderr, "listening")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, p := range procs {
				t.Logf("node %d's log:\n%s", i, p.stderr.String())
			}
		}
	})
	frames := func(upTo int) int64 {
		var sum int64
		for i := range upTo {
			sum += ferrytest.Metric(t, "http://"+addrs[i], "ferry_messages_out_total")
		}
		return sum
	}
	before := frames(nodes)
	start := time.Now()
	wires := make([]*wire, n)
	for i := range n {
		w := dialWire(t, addrs[i%nodes], "")
		_, ack := w.request(map[string]any{"t": "join", "room": "big"})
		// The other nodes' joins may not be in yet: at most everyone.
		if c := int(ack["count"].(float64)); c < 1 || c > i+1 {
			t.Fatalf("join %d: count %d", i+1, c)
		}
		if m := ack["members"].([]any); len(m) > 100 {
			t.Fatalf("join %d answered %d members", i+1, len(m))
		}
		wires[i] = w
		if i == 1 {
			// The room is small: the first member, on node 0, is told of
			// the second's arrival on node 1.
			for {
				f := wires[0].next()
				if f["t"] == "presence" && f["action"] == "join" && f["user"] == w.user {
					break
				}
			}
		}
	}
	took := time.Since(start)
	sent := frames(nodes) - before
	// As TestFillLargeRoom on one node: a welcome and an ack per
	// connection, the one-by-one presence of the first hundred users
	// (about 100²/2, with room for the nodes' view of the room's size to
	// lag by a few joins), and a count to the members at most once a
	// second while they join.
	bound := int64(2*n + 100*100 + n*(int(took/time.Second)+2))
	t.Logf("%d connections over %d nodes in %v: %d frames, %.1f per join (announcing every join: %d)",
		n, nodes, took.Round(time.Millisecond), sent, float64(sent)/float64(n), n*(n-1)/2)
	if sent > bound {
		t.Fatalf("%d frames to fill a room of %d over %d nodes, want at most %d", sent, n, nodes, bound)
	}

	// members pages all of a node's view; exact once settled.
	// settle waits until node lists want users, within of since.
	settle := func(node, want int, since time.Time, within time.Duration) time.Duration {
		t.Helper()
		for {
			users, count, conns := listMembers(wires[node], "big", 1000)
			if count == want && conns == want && len(users) == want {
				return time.Since(since)
			}
			if time.Since(since) > within {
				t.Fatalf("node %d: %d users listed, count %d, connections %d after %v; want %d", node, len(users), count, conns, within, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	filled := time.Now()
	for i := range nodes {
		d := settle(i, n, filled, 10*time.Second)
		t.Logf("node %d lists all %d users (%v after the last join's ack)", i, n, d)
	}

	// Node 2 dies: its users leave the others' count once its heartbeat
	// (every 2 s) is 6 s overdue.
	killed := time.Now()
	if err := procs[2].cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-procs[2].done
	left := n - (n+nodes-1-2)/nodes // the connections of node 2 (i%3 == 2)
	for i := range 2 {
		d := settle(i, left, killed, 15*time.Second)
		t.Logf("node 2's users left node %d's count %v after its SIGKILL", i, d.Round(time.Millisecond))
	}
}
