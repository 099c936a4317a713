package rooms_test

import (
	"sync"
	"testing"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// Resends of one message id racing the first emit are published once and
// all get the first emit's position.
func TestConcurrentResendsPublishOnce(t *testing.T) {
	h := rooms.New(rooms.Config{})
	listener := &member{id: "l"}
	h.Register(listener)
	if _, err := h.Join(listener, "r", nil); err != nil {
		t.Fatal(err)
	}
	const senders = 16
	conns := make([]*userRecorder, senders) // connections of one user
	for i := range conns {
		conns[i] = &userRecorder{recorder: &recorder{member: member{id: string(rune('a' + i))}}, user: "alice"}
		h.Register(conns[i])
		if _, err := h.Join(conns[i], "r", nil); err != nil {
			t.Fatal(err)
		}
	}
	before := listener.got.Load()
	acks := make([]protocol.Delivered, senders)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			d, err := h.Emit(c, rooms.Target{Room: "r"}, "e", nil, rooms.EmitOptions{MsgID: "m-1"})
			if err != nil {
				t.Error(err)
			}
			acks[i] = d
		})
	}
	wg.Wait()
	firsts := 0
	for _, d := range acks {
		if !d.Duplicate {
			firsts++
		}
		if d.Seq != acks[0].Seq || d.Epoch != acks[0].Epoch || d.Seq == 0 {
			t.Fatalf("acks differ: %+v", acks)
		}
	}
	if firsts != 1 {
		t.Errorf("%d emits were not duplicates, want 1", firsts)
	}
	if got := listener.got.Load() - before; got != 1 {
		t.Errorf("the listener got %d events, want 1", got)
	}
}
