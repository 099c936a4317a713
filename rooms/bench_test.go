package rooms_test

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// member counts what it is given; it stands for a connection whose queue
// accepts everything.
type member struct {
	id  string
	got atomic.Int64
}

func (m *member) ConnID() string   { return m.id }
func (m *member) UserID() string   { return "u" + m.id }
func (m *member) UserName() string { return m.id }
func (m *member) Deliver(msg *rooms.Message) bool {
	m.got.Add(1)
	return true
}
func (m *member) CatchUp(msg *rooms.Message) bool { return m.Deliver(msg) }

func room(b testing.TB, history int, n int) (*rooms.Hub, *member) {
	h := rooms.New(rooms.Config{HistorySize: history})
	var first *member
	for i := 0; i < n; i++ {
		m := &member{id: fmt.Sprintf("c%d", i)}
		h.Register(m)
		if _, err := h.Join(m, "bench", nil); err != nil {
			b.Fatal(err)
		}
		if first == nil {
			first = m
		}
	}
	return h, first
}

// BenchmarkHistoryOverhead publishes ~100-byte events to a room of 1000
// members with history off and on, in the same run, and reports the ratio
// of their costs (history_cost_ratio; the requirement is at most 1.20).
// Members here cost nothing to deliver to, so the ratio overstates what
// history adds to a real fan-out, where every delivery is a socket write.
func BenchmarkHistoryOverhead(b *testing.B) {
	data := json.RawMessage(`{"text":"the quick brown fox jumps over the lazy dog, again and again and again"}`)
	measure := func(history int) time.Duration {
		h, m := room(b, history, 1000)
		start := time.Now()
		for i := 0; i < b.N; i++ {
			if _, err := h.Emit(m, rooms.Target{Room: "bench"}, "chat", data, rooms.EmitOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	b.ResetTimer()
	off := measure(-1)
	on := measure(1000)
	b.ReportMetric(float64(off.Nanoseconds())/float64(b.N), "ns/event-without-history")
	b.ReportMetric(float64(on.Nanoseconds())/float64(b.N), "ns/event-with-history")
	b.ReportMetric(float64(on)/float64(off), "history_cost_ratio")
}

// BenchmarkDirect is a ~100-byte direct message, in memory: to a connected
// user, and to users who are not (rotating over 1000, so that no mailbox
// fills and nothing is pushed out).
func BenchmarkDirect(b *testing.B) {
	data := json.RawMessage(`{"text":"the quick brown fox jumps over the lazy dog, again and again and again"}`)
	b.Run("online", func(b *testing.B) {
		h := rooms.New(rooms.Config{})
		from, to := &member{id: "from"}, &member{id: "to"}
		h.Register(from)
		h.Register(to)
		for b.Loop() {
			if _, err := h.Emit(from, rooms.Target{User: to.UserID()}, "dm", data, rooms.EmitOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("queued", func(b *testing.B) {
		h := rooms.New(rooms.Config{OfflineTotalBytes: 1 << 30, OfflineSenderBytes: 1 << 30})
		from := &member{id: "from"}
		h.Register(from)
		users := make([]string, 1000)
		for i := range users {
			users[i] = fmt.Sprintf("away%d", i)
		}
		i := 0
		for b.Loop() {
			i++
			if _, err := h.Emit(from, rooms.Target{User: users[i%len(users)]}, "dm", data, rooms.EmitOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestStreamReplayAndGaps(t *testing.T) {
	h, sender := room(t, 5, 1)
	for i := 0; i < 8; i++ {
		if _, err := h.Emit(sender, rooms.Target{Room: "bench"}, "n", json.RawMessage(fmt.Sprint(i)), rooms.EmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		since          uint64
		recovery       string
		replayed, gets int64
	}{
		{8, "ok", 0, 0},
		{6, "ok", 2, 2},
		{3, "ok", 5, 5},
		{1, "history", 5, 6}, // the gap frame, then seq 4 to 8
	} {
		m := &member{id: fmt.Sprintf("late%d", tc.since)}
		h.Register(m)
		j, err := h.Join(m, "bench", nil)
		if err != nil {
			t.Fatal(err)
		}
		m2 := &member{id: m.id + "b"}
		h.Register(m2)
		j2, err := h.Join(m2, "bench", protocolPosition{j.Epoch, tc.since}.p())
		if err != nil {
			t.Fatal(err)
		}
		if j2.Recovery != tc.recovery || int64(j2.Replayed) != tc.replayed || m2.got.Load() != tc.gets {
			t.Errorf("since %d: recovery %q replayed %d got %d, want %q %d %d", tc.since, j2.Recovery, j2.Replayed, m2.got.Load(), tc.recovery, tc.replayed, tc.gets)
		}
	}
}

type protocolPosition struct {
	epoch string
	seq   uint64
}

func (p protocolPosition) p() *protocol.Position {
	return &protocol.Position{Epoch: p.epoch, Seq: p.seq}
}
