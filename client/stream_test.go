package client

import (
	"testing"

	"github.com/ferryhq/ferry/protocol"
)

func TestStreamsAccept(t *testing.T) {
	type step struct {
		room  string
		epoch string
		seq   uint64
		want  verdict
	}
	tests := []struct {
		name  string
		since *protocol.Position // JoinFrom's position for room "r"
		steps []step
		end   protocol.Position
	}{
		{"first event sets the position", nil, []step{
			{"r", "e", 7, accepted}, {"r", "e", 8, accepted}, {"r", "e", 10, accepted},
		}, protocol.Position{Epoch: "e", Seq: 10}},
		{"repeats are dropped", &protocol.Position{Epoch: "e", Seq: 5}, []step{
			{"r", "e", 4, duplicate}, {"r", "e", 5, duplicate}, {"r", "e", 6, accepted}, {"r", "e", 6, duplicate},
		}, protocol.Position{Epoch: "e", Seq: 6}},
		{"a new epoch starts over", &protocol.Position{Epoch: "old", Seq: 50}, []step{
			{"r", "new", 3, accepted}, {"r", "new", 2, duplicate}, {"r", "new", 4, accepted},
		}, protocol.Position{Epoch: "new", Seq: 4}},
		{"rooms apart", &protocol.Position{Epoch: "e", Seq: 5}, []step{
			{"other", "e", 1, untracked}, {"conn:c_1", "e", 1, untracked}, {"r", "", 0, untracked},
			{"user:u_1", "d", 9, accepted}, {"user:u_1", "d", 9, duplicate}, {"user:u_1", "d", 30, accepted},
		}, protocol.Position{Epoch: "e", Seq: 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ss := newStreams()
			ss.begin("r", tt.since)
			for i, st := range tt.steps {
				if v, _ := ss.accept(st.room, st.epoch, st.seq); v != st.want {
					t.Fatalf("step %d %+v: verdict %d, want %d", i, st, v, st.want)
				}
			}
			if st := ss.m["r"]; st.pos != tt.end {
				t.Errorf("position %+v, want %+v", st.pos, tt.end)
			}
		})
	}
}

func TestStreamsGapAndAck(t *testing.T) {
	ss := newStreams()
	if since := ss.begin("r", nil); since != nil {
		t.Fatalf("since %+v before any position", since)
	}
	if pos := ss.joined("r", protocol.Joined{Epoch: "e", Seq: 12}); pos.Seq != 12 {
		t.Fatalf("after the ack: %+v", pos)
	}
	if since := ss.begin("r", nil); since == nil || *since != (protocol.Position{Epoch: "e", Seq: 12}) {
		t.Fatalf("since for a rejoin: %+v", since)
	}
	v, prev := ss.accept("r", "e", 13)
	if v != accepted {
		t.Fatal(v)
	}
	ss.rollback("r", prev)
	if v, _ := ss.accept("r", "e", 13); v != accepted {
		t.Fatalf("after a rollback the event is new again: %d", v)
	}
	// Events before an ack are newer than the join: the ack keeps them.
	if pos := ss.joined("r", protocol.Joined{Epoch: "e", Seq: 12}); pos.Seq != 13 {
		t.Fatalf("ack moved the position back: %+v", pos)
	}
	// An older saved position does not take the client back.
	if since := ss.begin("r", &protocol.Position{Epoch: "e", Seq: 2}); since.Seq != 13 {
		t.Fatalf("since %+v, want the client's own, 13", since)
	}
	if since := ss.begin("r", &protocol.Position{Epoch: "other", Seq: 2}); since.Seq != 2 || since.Epoch != "other" {
		t.Fatalf("since %+v, want the one given for another epoch", since)
	}
	ss.joined("r", protocol.Joined{Epoch: "e", Seq: 13})
	if pos, _ := ss.gap(protocol.Gap{Room: "r", Epoch: "e", Reason: "history", From: 14, To: 40}); pos.Seq != 40 {
		t.Fatalf("after a history gap: %+v", pos)
	}
	if v, _ := ss.accept("r", "e", 40); v != duplicate {
		t.Fatalf("event inside the gap: %d", v)
	}
	if pos, _ := ss.gap(protocol.Gap{Room: "r", Epoch: "f", Reason: "epoch"}); pos != (protocol.Position{Epoch: "f"}) {
		t.Fatalf("after an epoch gap: %+v", pos)
	}
	if v, _ := ss.accept("r", "f", 9); v != accepted {
		t.Fatalf("first event kept of the new epoch: %d", v)
	}
	if _, ok := ss.gap(protocol.Gap{Room: "unknown", Epoch: "e", Reason: "history"}); ok {
		t.Error("gap for a room not joined")
	}
	ss.forget("r")
	if _, ok := ss.handledPos("r"); ok {
		t.Error("position of a forgotten room")
	}
}
