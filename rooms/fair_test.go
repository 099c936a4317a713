package rooms_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/ferryhq/ferry/rooms"
)

// One user filling the message-id table cannot make another user's resend
// publish twice: a flooder makes room with its own oldest ids.
func TestDedupFairness(t *testing.T) {
	h := rooms.New(rooms.Config{Dedup: 100, DedupPerUser: 60})
	alice, flooder := &member{id: "a"}, &member{id: "f"}
	for _, m := range []*member{alice, flooder} {
		h.Register(m)
		if _, err := h.Join(m, "r", nil); err != nil {
			t.Fatal(err)
		}
	}
	emit := func(m *member, id string) bool {
		d, err := h.Emit(m, rooms.Target{Room: "r"}, "e", json.RawMessage(`1`), rooms.EmitOptions{MsgID: id})
		if err != nil {
			t.Fatal(err)
		}
		return d.Duplicate
	}
	emit(alice, "alice-1")
	for i := range 1000 {
		emit(flooder, fmt.Sprint("flood-", i))
	}
	if !emit(alice, "alice-1") {
		t.Fatal("after a flood of message ids, alice's resend was published again")
	}
	if emit(alice, "alice-2") || !emit(alice, "alice-2") {
		t.Fatal("after a flood of message ids, alice's new id was not remembered")
	}
	// The flooder keeps its most recent ids, within its share.
	if !emit(flooder, "flood-999") || emit(flooder, "flood-0") {
		t.Fatal("the flooder's recent id forgotten, or its oldest remembered")
	}
	// A full table: alice, at her share, makes room with her own.
	for i := range 200 {
		emit(alice, fmt.Sprint("alice-more-", i))
	}
	if !emit(flooder, "flood-998") {
		t.Fatal("alice's ids pushed out the flooder's")
	}
}

// One user's events cannot push others' out of the receipt table.
func TestReceiptTableFairness(t *testing.T) {
	h := rooms.New(rooms.Config{Tracked: 50, TrackedPerUser: 30})
	alice, bob, flooder := &member{id: "a"}, &member{id: "b"}, &member{id: "f"}
	for _, m := range []*member{alice, bob, flooder} {
		h.Register(m)
		if _, err := h.Join(m, "r", nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 500 {
		if _, err := h.Emit(flooder, rooms.Target{Room: "r"}, "e", json.RawMessage(`1`), rooms.EmitOptions{Receipt: true}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := h.Emit(alice, rooms.Target{Room: "r"}, "e", json.RawMessage(`1`), rooms.EmitOptions{Receipt: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Received(bob, "r", d.Seq); err != nil {
		t.Fatal(err)
	}
	r, err := h.Receipts(alice, "r", d.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(r); !json.Valid(b) || len(r.Users) != 1 {
		t.Fatalf("alice's event lost its receipts to the flood: %s", b)
	}
}
