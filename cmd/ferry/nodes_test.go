package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms/jetstream"
)

// Two ferry nodes on one NATS server serve one room: an event sent on
// either reaches the members on both, at one position; a resend through the
// other node is a duplicate; a node killed with SIGKILL and restarted gives
// its returning member exactly what it missed, sent through the other node
// meanwhile. Clients are the wire client, written from docs/protocol.md.
func TestTwoNodesShareRooms(t *testing.T) {
	port := freePort(t)
	emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	type ferryNode struct {
		addr, data string
		p          *ferryProcess
	}
	start := func(n *ferryNode) {
		n.p = startFerryProcess(t, nil, "serve", "--addr", n.addr, "--data", n.data, "--nats", "nats://"+port,
			"--rate", "100000", "--rate-burst", "100000")
		waitOutput(t, &n.p.stderr, "listening")
	}
	a := &ferryNode{addr: freePort(t), data: t.TempDir()}
	b := &ferryNode{addr: freePort(t), data: t.TempDir()}
	start(a)
	// The same anonymous identities on both nodes (the key is the NATS
	// server's, shared): alice's token from A names her on B too.
	start(b)

	alice := dialWire(t, a.addr, "")
	_, joined := alice.request(map[string]any{"t": "join", "room": "lobby"})
	epoch, _ := joined["epoch"].(string)
	bob := dialWire(t, b.addr, "")
	bob.request(map[string]any{"t": "join", "room": "lobby"})
	// Node A learns of bob's join in its own time: presence across nodes
	// is not this test's subject.

	// stash keeps the frames that came before a request's answer.
	stash := make(map[*wire][]map[string]any)
	// events reads w's frames until it has n events, and returns their
	// seqs and msg texts.
	events := func(w *wire, n int) (seqs []uint64, texts []string) {
		for len(seqs) < n {
			var f map[string]any
			if len(stash[w]) > 0 {
				f, stash[w] = stash[w][0], stash[w][1:]
			} else {
				f = w.next()
			}
			if f["t"] != protocol.TypeEvent {
				continue
			}
			if f["epoch"] != epoch {
				t.Fatalf("event %v in epoch %v, want %s", f["seq"], f["epoch"], epoch)
			}
			seqs = append(seqs, uint64(f["seq"].(float64)))
			data, _ := f["data"].(map[string]any)
			text, _ := data["text"].(string)
			texts = append(texts, text)
		}
		return seqs, texts
	}
	emit := func(w *wire, text string) map[string]any {
		before, ack := w.request(map[string]any{"t": "emit", "room": "lobby", "event": "chat",
			"data": map[string]any{"text": text}, "msg_id": text})
		stash[w] = append(stash[w], before...)
		return ack
	}

	// Alternating nodes: every event numbered once, in one order.
	const rounds = 20
	var acked []uint64
	for i := range rounds {
		acked = append(acked, uint64(emit(alice, fmt.Sprintf("a%d", i))["seq"].(float64)))
		acked = append(acked, uint64(emit(bob, fmt.Sprintf("b%d", i))["seq"].(float64)))
	}
	for i, s := range acked {
		if s != uint64(i+1) {
			t.Fatalf("acks %v, want 1..%d", acked, len(acked))
		}
	}
	// Each sees the other's events (emit's default excepts nobody, so
	// its own too), in the order of the acks.
	for _, w := range []*wire{alice, bob} {
		seqs, texts := events(w, 2*rounds)
		for i := range seqs {
			want := fmt.Sprintf("a%d", i/2)
			if i%2 == 1 {
				want = fmt.Sprintf("b%d", i/2)
			}
			if seqs[i] != uint64(i+1) || texts[i] != want {
				t.Fatalf("event %d: seq %d %q, want %d %q", i, seqs[i], texts[i], i+1, want)
			}
		}
	}
	// A receipt crosses nodes: bob, on B, confirms an event alice sent
	// through A asking for receipts, and alice gets the receipt on A.
	before, rack := alice.request(map[string]any{"t": "emit", "room": "lobby", "event": "chat",
		"data": map[string]any{"text": "r0"}, "msg_id": "r0", "receipt": true})
	stash[alice] = append(stash[alice], before...)
	rseq := rack["seq"].(float64)
	events(bob, 1)
	if err := bob.ws.WriteJSON(map[string]any{"t": "received", "room": "lobby", "seq": rseq}); err != nil {
		t.Fatal(err)
	}
	var other []map[string]any
	for {
		var f map[string]any
		if len(stash[alice]) > 0 {
			f, stash[alice] = stash[alice][0], stash[alice][1:]
		} else {
			f = alice.next()
		}
		if f["t"] != protocol.TypeReceipt {
			other = append(other, f)
			continue
		}
		if f["seq"] != rseq || f["user"] != bob.user || f["count"] != float64(1) {
			t.Fatalf("alice's receipt: %v, want bob's for seq %v", f, rseq)
		}
		break
	}
	stash[alice] = append(other, stash[alice]...)
	events(alice, 1) // her own r0
	// ... and receipts lists it on either node.
	for _, w := range []*wire{alice, bob} {
		before, rs := w.request(map[string]any{"t": "receipts", "room": "lobby", "seq": rseq})
		stash[w] = append(stash[w], before...)
		if rs["count"] != float64(1) {
			t.Fatalf("receipts on %s's node: %v", w.user, rs)
		}
	}

	// alice's resend of a0 through node B is the same event.
	alice2 := dialWire(t, b.addr, alice.token)
	alice2.request(map[string]any{"t": "join", "room": "lobby"})
	if ack := emit(alice2, "a0"); ack["duplicate"] != true || ack["seq"] != float64(1) {
		t.Fatalf("resend of a0 through node B acked %v, want duplicate of seq 1", ack)
	}

	// Node B dies; alice goes on through A; bob comes back to B.
	if err := b.p.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-b.p.done
	for i := range 10 {
		emit(alice, fmt.Sprintf("c%d", i))
	}
	start(b)
	back := dialWire(t, b.addr, bob.token)
	before, ack := back.request(map[string]any{"t": "join", "room": "lobby",
		"since": map[string]any{"epoch": epoch, "seq": 2*rounds + 1}})
	if ack["recovery"] != "ok" || ack["seq"] != float64(2*rounds+11) {
		t.Fatalf("bob back on node B: %v, want recovery ok at seq %d", ack, 2*rounds+11)
	}
	var replayed []uint64
	for _, f := range before {
		if f["t"] == protocol.TypeEvent {
			replayed = append(replayed, uint64(f["seq"].(float64)))
		}
	}
	if fmt.Sprint(replayed) != fmt.Sprint(seqRange(2*rounds+2, 2*rounds+11)) {
		t.Fatalf("bob replayed %v, want %d..%d", replayed, 2*rounds+2, 2*rounds+11)
	}
	// And live again: alice's next event reaches bob on B.
	emit(alice, "d0")
	if seqs, texts := events(back, 1); seqs[0] != 2*rounds+12 || texts[0] != "d0" {
		t.Fatalf("bob got %v %v after coming back, want d0 at %d", seqs, texts, 2*rounds+12)
	}
	// The restarted B still knows bob's receipt.
	if _, rs := back.request(map[string]any{"t": "receipts", "room": "lobby", "seq": rseq}); rs["count"] != float64(1) {
		t.Fatalf("receipts on the restarted node: %v", rs)
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}
