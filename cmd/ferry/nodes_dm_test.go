package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms/jetstream"
	"github.com/ferryhq/ferry/server"
)

// Two ferry nodes on one NATS server, started at once, carry direct
// messages to each other's users: alice on node A reaches bob on node B
// (acked delivered, numbered in B's user-room epoch, increasing), her
// resend through B is a duplicate, and bob on both nodes gets a message on
// both; a message to carol, connected nowhere, waits on A and reaches her
// when she connects to B, once; node A killed with SIGKILL and restarted
// keeps its epoch and the message waiting with it for dave, which dave
// gets when he connects to B. Clients are the wire client, written from
// docs/protocol.md.
func TestTwoNodesDirectMessages(t *testing.T) {
	port := freePort(t)
	emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	const secret = "a secret of the two nodes, long enough for HS256"
	type ferryNode struct {
		addr, data string
		p          *ferryProcess
	}
	start := func(n *ferryNode) {
		n.p = startFerryProcess(t, nil, "serve", "--addr", n.addr, "--data", n.data, "--nats", "nats://"+port,
			"--auth-secret", secret, "--rate", "100000", "--rate-burst", "100000")
	}
	a := &ferryNode{addr: freePort(t), data: t.TempDir()}
	b := &ferryNode{addr: freePort(t), data: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node A said:\n%s\nnode B said:\n%s", a.p.stderr.String(), b.p.stderr.String())
		}
	})
	// At once: each keeps its own direct-message position.
	start(a)
	start(b)
	waitOutput(t, &a.p.stderr, "listening")
	waitOutput(t, &b.p.stderr, "listening")

	// stash keeps the frames that came before a request's answer.
	stash := make(map[*wire][]map[string]any)
	dial := func(n *ferryNode, user string) *wire {
		tok, err := server.SignToken([]byte(secret), user, user, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		w := dialWire(t, n.addr, tok)
		// A round trip: the node has registered the connection. What
		// came before its answer (messages that waited) is read later.
		stash[w], _ = w.request(map[string]any{"t": "rooms"})
		return w
	}
	// dms reads w's frames until it has n direct messages.
	dms := func(w *wire, n int) []map[string]any {
		t.Helper()
		t.Logf("%s waits for %d direct messages", w.user, n)
		var out []map[string]any
		for len(out) < n {
			var f map[string]any
			if len(stash[w]) > 0 {
				f, stash[w] = stash[w][0], stash[w][1:]
			} else {
				f = w.next()
			}
			if f["t"] == protocol.TypeEvent && f["event"] == "dm" {
				out = append(out, f)
			}
		}
		return out
	}
	send := func(w *wire, to, text string) map[string]any {
		before, ack := w.request(map[string]any{"t": "emit", "user": to, "event": "dm",
			"data": map[string]any{"text": text}, "msg_id": text})
		stash[w] = append(stash[w], before...)
		return ack
	}
	text := func(f map[string]any) string {
		d, _ := f["data"].(map[string]any)
		s, _ := d["text"].(string)
		return s
	}

	alice := dial(a, "alice")
	bob := dial(b, "bob")
	var epochB string
	var last float64
	for i := range 3 {
		ack := send(alice, "bob", fmt.Sprintf("hi-%d", i))
		if ack["queued"] == true || ack["delivered"] != float64(1) {
			t.Fatalf("alice on A to bob on B: %v, want delivered", ack)
		}
		seq, _ := ack["seq"].(float64)
		if epochB == "" {
			epochB, _ = ack["epoch"].(string)
		}
		if ack["epoch"] != epochB || seq <= last {
			t.Fatalf("ack %v after seq %v in %s", ack, last, epochB)
		}
		last = seq
	}
	for i, f := range dms(bob, 3) {
		if text(f) != fmt.Sprintf("hi-%d", i) || f["epoch"] != epochB {
			t.Fatalf("bob's message %d: %v", i, f)
		}
	}

	// A resend through B is recognised there, by the node that delivered
	// it.
	aliceB := dial(b, "alice")
	if ack := send(aliceB, "bob", "hi-2"); ack["duplicate"] != true || ack["seq"] != last || ack["epoch"] != epochB {
		t.Fatalf("resend of hi-2 through B: %v, want the duplicate of seq %v", ack, last)
	}
	// bob on both nodes gets it on both, each numbered by its node.
	bobA := dial(a, "bob")
	if ack := send(alice, "bob", "both"); ack["delivered"] != float64(1) || ack["queued"] == true {
		t.Fatalf("to bob on both nodes: %v", ack)
	}
	if f := dms(bob, 1)[0]; text(f) != "both" || f["epoch"] != epochB || f["seq"].(float64) <= last {
		t.Fatalf("bob on B got %v", f)
	}
	fA := dms(bobA, 1)[0]
	if text(fA) != "both" || fA["epoch"] == epochB {
		t.Fatalf("bob on A got %v", fA)
	}

	// carol is connected nowhere: it waits on A, and reaches her on B.
	ack := send(alice, "carol", "waiting")
	if ack["queued"] != true {
		t.Fatalf("to carol, connected nowhere: %v, want queued", ack)
	}
	epochA, _ := ack["epoch"].(string)
	if epochA == "" || epochA == epochB || epochA != fA["epoch"] {
		t.Fatalf("A's epoch %q, B's %q", epochA, epochB)
	}
	carol := dial(b, "carol")
	if f := dms(carol, 1)[0]; text(f) != "waiting" || f["epoch"] != epochB {
		t.Fatalf("carol got %v", f)
	}

	// A waits for dave, and dies.
	if ack := send(alice, "dave", "kept"); ack["queued"] != true {
		t.Fatalf("to dave: %v", ack)
	}
	if err := a.p.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-a.p.done
	start(a)
	waitOutput(t, &a.p.stderr, "listening")
	alice = dial(a, "alice")
	if ack := send(alice, "erin", "later"); ack["queued"] != true || ack["epoch"] != epochA {
		t.Fatalf("A after its restart: %v, want queued in its epoch %s", ack, epochA)
	}
	dave := dial(b, "dave")
	if f := dms(dave, 1)[0]; text(f) != "kept" || f["epoch"] != epochB {
		t.Fatalf("dave got %v", f)
	}
	// Each got its message once: a request's answer comes after anything
	// else that was on its way.
	time.Sleep(200 * time.Millisecond)
	for _, w := range []*wire{carol, dave} {
		before, _ := w.request(map[string]any{"t": "rooms"})
		for _, f := range append(stash[w], before...) {
			if f["t"] == protocol.TypeEvent {
				t.Errorf("%s got %v again", w.user, f)
			}
		}
	}
}
