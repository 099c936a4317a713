package rooms_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/rooms"
)

// deliveries counts what a member is given, live or caught up.
type deliveries struct {
	userRecorder
	live []string
}

func (d *deliveries) Deliver(msg *rooms.Message) bool {
	d.live = append(d.live, string(msg.JSON))
	return true
}

func newDeliveries(conn, user string) *deliveries {
	return &deliveries{userRecorder: userRecorder{recorder: &recorder{member: member{id: conn}}, user: user}}
}

func (d *deliveries) receipts() int {
	n := 0
	for _, m := range d.live {
		if strings.Contains(m, `"t":"receipt"`) {
			n++
		}
	}
	return n
}

// A direct message that waits for its user keeps its receipt tracking as
// long as it waits, not only as long as room history lives.
func TestReceiptOfWaitingMessage(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	h := rooms.New(rooms.Config{Now: func() time.Time { return now }, HistoryTTL: time.Minute, OfflineTTL: time.Hour})
	alice := newDeliveries("a", "alice")
	h.Register(alice)
	d, err := h.Emit(alice, rooms.Target{User: "bob"}, "dm", nil, rooms.EmitOptions{Receipt: true})
	if err != nil || !d.Queued {
		t.Fatalf("emit: %+v, %v", d, err)
	}
	now = now.Add(10 * time.Minute) // past the history TTL, within the offline TTL
	h.Sweep()
	bob := newDeliveries("b", "bob")
	h.Register(bob)
	if err := h.Received(bob, "user:bob", d.Seq); err != nil {
		t.Fatal(err)
	}
	if alice.receipts() != 1 {
		t.Fatalf("alice got %d receipts, want 1", alice.receipts())
	}
}

// A room that ends and starts again numbers its events from 1 in a new
// epoch: a receipt for the new seq 1 is not counted for the old one.
func TestReceiptsDoNotCrossEpochs(t *testing.T) {
	h := rooms.New(rooms.Config{HistorySize: -1})
	alice, bob := newDeliveries("a", "alice"), newDeliveries("b", "bob")
	h.Register(alice)
	h.Register(bob)
	join := func(m rooms.Member) {
		if _, err := h.Join(m, "r", nil); err != nil {
			t.Fatal(err)
		}
	}
	join(alice)
	old, err := h.Emit(alice, rooms.Target{Room: "r"}, "e", nil, rooms.EmitOptions{Receipt: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Leave(alice, "r"); err != nil { // the room, without history, ends
		t.Fatal(err)
	}
	join(bob)
	join(alice)
	d, err := h.Emit(bob, rooms.Target{Room: "r"}, "e", nil, rooms.EmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Seq != old.Seq || d.Epoch == old.Epoch {
		t.Fatalf("new life %+v, old %+v: want the same seq in another epoch", d, old)
	}
	if err := h.Received(bob, "r", d.Seq); err != nil {
		t.Fatal(err)
	}
	if alice.receipts() != 0 {
		t.Fatalf("alice got a receipt for an event of the room's earlier life")
	}
}
