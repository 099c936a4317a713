package jetstream

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// receipts returns the receipt frames m got.
func (m *member) receipts() []protocol.Receipt {
	return framesOf[protocol.Receipt](m, protocol.TypeReceipt)
}

// waitReceipts waits until m has n receipt frames.
func waitReceipts(t testing.TB, m *member, n int) []protocol.Receipt {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(m.receipts()) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := m.receipts()
	if len(got) != n {
		t.Fatalf("%s got receipts %+v, want %d", m.user, got, n)
	}
	return got
}

func newReceipts(t testing.TB, nc *nats.Conn) *Receipts {
	t.Helper()
	r, err := NewReceipts(context.Background(), nc, ReceiptsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func receiptUsers(t testing.TB, h *rooms.Hub, m *member, room string, seq uint64) []string {
	t.Helper()
	rs, err := h.Receipts(m, room, seq)
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, u := range rs.Users {
		users = append(users, u.User)
	}
	if rs.Count != len(users) {
		t.Fatalf("receipts count %d for users %v", rs.Count, users)
	}
	return users
}

// Receipts survive a restart, even a crash: after it, a member's received
// for an event from before still reaches its sender, counted with the
// confirmations from before, a repeat of one of those is not counted
// again, and receipts lists them all.
func TestReceiptsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	emb, err := StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(context.Background(), emb.Conn(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := rooms.New(rooms.Config{Journal: j, Receipts: newReceipts(t, emb.Conn())})
	alice, bob := &member{conn: "a1", user: "alice"}, &member{conn: "b1", user: "bob"}
	join(t, h, alice, "r", nil)
	join(t, h, bob, "r", nil)
	d, err := h.Emit(alice, rooms.Target{Room: "r"}, "chat", json.RawMessage(`{}`), rooms.EmitOptions{Receipt: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Received(bob, "r", d.Seq); err != nil {
		t.Fatal(err)
	}
	if got := waitReceipts(t, alice, 1); got[0].User != "bob" || got[0].Count != 1 || got[0].Conn != "b1" {
		t.Fatalf("alice's receipt: %+v", got[0])
	}
	shutdown(t, emb)

	emb, err = StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	if j, err = New(context.Background(), emb.Conn(), Config{}); err != nil {
		t.Fatal(err)
	}
	h = rooms.New(rooms.Config{Journal: j, Receipts: newReceipts(t, emb.Conn())})
	alice2, carol, bob2 := &member{conn: "a2", user: "alice"}, &member{conn: "c2", user: "carol"}, &member{conn: "b2", user: "bob"}
	join(t, h, alice2, "r", nil)
	join(t, h, carol, "r", nil)
	join(t, h, bob2, "r", nil)
	if users := receiptUsers(t, h, carol, "r", d.Seq); len(users) != 1 || users[0] != "bob" {
		t.Fatalf("receipts after the restart: %v, want bob's", users)
	}
	if err := h.Received(bob2, "r", d.Seq); err != nil {
		t.Fatal(err)
	}
	if err := h.Received(carol, "r", d.Seq); err != nil {
		t.Fatal(err)
	}
	if got := waitReceipts(t, alice2, 1); got[0].User != "carol" || got[0].Count != 2 {
		t.Fatalf("alice's receipt after the restart: %+v, want carol's, the second", got[0])
	}
	if users := receiptUsers(t, h, alice2, "r", d.Seq); len(users) != 2 {
		t.Fatalf("receipts: %v, want bob and carol", users)
	}
}

// Receipts cross nodes: a member of another hub confirms an event and its
// sender, on the first hub, gets the receipt; either hub lists it.
func TestReceiptsAcrossHubs(t *testing.T) {
	n := start(t, t.TempDir(), Config{}, rooms.Config{})
	nc := n.emb.Conn()
	hubA := rooms.New(rooms.Config{Journal: n.j, Receipts: newReceipts(t, nc)})
	follow(t, n.j, hubA)
	nc2, err := nats.Connect("", nats.InProcessServer(n.emb.srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc2.Close)
	j2, err := New(context.Background(), nc2, Config{})
	if err != nil {
		t.Fatal(err)
	}
	rb := newReceipts(t, nc2)
	hubB := rooms.New(rooms.Config{Journal: j2, Receipts: rb})
	follow(t, j2, hubB)
	for h, r := range map[*rooms.Hub]*Receipts{hubA: newReceipts(t, nc), hubB: rb} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Follow(ctx, h.ApplyReceipt) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	alice, bob := &member{conn: "a", user: "alice"}, &member{conn: "b", user: "bob"}
	join(t, hubA, alice, "r", nil)
	join(t, hubB, bob, "r", nil)
	// The feeds start with what comes next: wait until both have started.
	waitConsumers(t, rb.stream, 2)
	waitConsumers(t, n.j.stream, 2)
	d, err := hubA.Emit(alice, rooms.Target{Room: "r"}, "chat", json.RawMessage(`{}`), rooms.EmitOptions{Receipt: true})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(bob.got(t)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := hubB.Received(bob, "r", d.Seq); err != nil {
		t.Fatal(err)
	}
	if got := waitReceipts(t, alice, 1); got[0].User != "bob" || got[0].Count != 1 || got[0].Conn != "b" {
		t.Fatalf("alice's receipt from the other hub: %+v", got[0])
	}
	for name, h := range map[string]*rooms.Hub{"A": hubA, "B": hubB} {
		m := alice
		if name == "B" {
			m = bob
		}
		if users := receiptUsers(t, h, m, "r", d.Seq); len(users) != 1 || users[0] != "bob" {
			t.Fatalf("receipts on hub %s: %v", name, users)
		}
	}
	if len(bob.receipts()) != 0 {
		t.Fatalf("bob got receipts of alice's event: %+v", bob.receipts())
	}
}

// waitConsumers waits until stream has n consumers.
func waitConsumers(t testing.TB, stream jetstream.Stream, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s has %d consumers, want %d", info.Config.Name, info.State.Consumers, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
