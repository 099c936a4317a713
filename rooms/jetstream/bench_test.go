package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// counter stands for a connection whose queue takes everything at no cost,
// as in rooms' BenchmarkHistoryOverhead: what is measured is the hub and
// the journal, not sockets.
type counter struct {
	id  string
	got atomic.Int64
}

func (c *counter) ConnID() string                { return c.id }
func (c *counter) UserID() string                { return "u" + c.id }
func (c *counter) UserName() string              { return c.id }
func (c *counter) Deliver(*rooms.Message) bool   { c.got.Add(1); return true }
func (c *counter) CatchUp(m *rooms.Message) bool { return c.Deliver(m) }

var benchData = json.RawMessage(`{"text":"the quick brown fox jumps over the lazy dog, again and again and again"}`)

// benchHub returns a hub (with a journal on an embedded server in a fresh
// folder, or not) and a member of room "bench" among members.
func benchHub(b *testing.B, journal, syncAlways bool, members int, room string) (*rooms.Hub, *counter) {
	b.Helper()
	cfg := rooms.Config{HistorySize: 1000}
	if journal {
		emb, err := StartEmbeddedConfig(EmbeddedConfig{Dir: b.TempDir(), SyncAlways: syncAlways})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { shutdown(b, emb) })
		j, err := New(context.Background(), emb.Conn(), Config{})
		if err != nil {
			b.Fatal(err)
		}
		cfg.Journal = j
	}
	h := rooms.New(cfg)
	var first *counter
	for i := range members {
		m := &counter{id: fmt.Sprintf("c%d", i)}
		h.Register(m)
		if _, err := h.Join(m, room, nil); err != nil {
			b.Fatal(err)
		}
		if first == nil {
			first = m
		}
	}
	return h, first
}

// BenchmarkEmit is the cost of one ~100-byte event in a room, from Emit to
// every member's queue, without a journal and with the journal on an
// embedded server (its append synchronous, before the fan-out).
func BenchmarkEmit(b *testing.B) {
	for _, members := range []int{1, 1000} {
		for _, tc := range []struct {
			name                string
			journal, syncAlways bool
		}{
			{"memory", false, false},
			{"journal", true, false},
			{"journal-sync-always", true, true},
		} {
			b.Run(fmt.Sprintf("members=%d/%s", members, tc.name), func(b *testing.B) {
				h, m := benchHub(b, tc.journal, tc.syncAlways, members, "bench")
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := h.Emit(m, rooms.Target{Room: "bench"}, "chat", benchData, rooms.EmitOptions{}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkEmitRooms emits from many goroutines, each into its own room of
// one member: rooms append to the journal concurrently over one
// connection, so the round trip bounds one room's rate, not the server's.
func BenchmarkEmitRooms(b *testing.B) {
	for _, journal := range []bool{false, true} {
		name := map[bool]string{false: "memory", true: "journal"}[journal]
		b.Run(name, func(b *testing.B) {
			h, _ := benchHub(b, journal, false, 0, "")
			var next atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := next.Add(1)
				m := &counter{id: fmt.Sprintf("p%d", i)}
				room := fmt.Sprintf("room-%d", i)
				h.Register(m)
				if _, err := h.Join(m, room, nil); err != nil {
					b.Error(err)
					return
				}
				for pb.Next() {
					if _, err := h.Emit(m, rooms.Target{Room: room}, "chat", benchData, rooms.EmitOptions{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPublish compares the journal's synchronous append (one round
// trip per event, what the hub does) with JetStream's asynchronous publish
// with up to 256 acks outstanding (what pipelining the appends of a room
// could reach).
func BenchmarkPublish(b *testing.B) {
	msg := []byte(`{"t":"event","room":"bench","event":"chat","data":` + string(benchData) +
		`,"from":{"conn":"c_9f2k3m1x0qpz","user":"u_7hx2m0a9c3","name":"alice"},"ts":1764091200123,"seq":42,"epoch":"k3m1x0qpz7hx2"}`)
	setup := func(b *testing.B) (*Embedded, *Journal) {
		emb, err := StartEmbedded(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { shutdown(b, emb) })
		j, err := New(context.Background(), emb.Conn(), Config{})
		if err != nil {
			b.Fatal(err)
		}
		return emb, j
	}
	b.Run("sync-append", func(b *testing.B) {
		_, j := setup(b)
		var seq uint64
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			seq++
			rec := rooms.Record{Epoch: "k3m1x0qpz7hx2", Seq: seq, At: time.Now(), User: "u_7hx2m0a9c3", Conn: "c_9f2k3m1x0qpz", JSON: msg}
			if err := j.Append(context.Background(), "bench", rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("async-publish", func(b *testing.B) {
		_, j := setup(b)
		var seq uint64
		b.SetBytes(int64(len(msg)))
		wait := func() {
			select {
			case <-j.js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("acks missing")
			}
		}
		for b.Loop() {
			seq++
			if seq%256 == 0 {
				wait()
			}
			h := nats.Header{hdrEpoch: {"k3m1x0qpz7hx2"}, hdrSeq: {fmt.Sprint(seq)}, hdrAt: {"1764091200123000000"},
				hdrUser: {"u_7hx2m0a9c3"}, hdrConn: {"c_9f2k3m1x0qpz"}}
			if _, err := j.js.PublishMsgAsync(&nats.Msg{Subject: j.subject("bench"), Header: h, Data: msg}); err != nil {
				b.Fatal(err)
			}
		}
		wait()
	})
}

// BenchmarkLoad is the cost of bringing a room back after a restart: a join
// that loads 1000 kept events from the journal (and a join of a room the
// journal has nothing of, the common case of a new room).
func BenchmarkLoad(b *testing.B) {
	emb, err := StartEmbedded(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shutdown(b, emb) })
	j, err := New(context.Background(), emb.Conn(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	h := rooms.New(rooms.Config{Journal: j})
	m := &counter{id: "filler"}
	h.Register(m)
	if _, err := h.Join(m, "full", nil); err != nil {
		b.Fatal(err)
	}
	for range 1000 {
		if _, err := h.Emit(m, rooms.Target{Room: "full"}, "chat", benchData, rooms.EmitOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	h.Unregister(m)
	for _, tc := range []struct {
		name, room string
		events     int
	}{
		{"1000-events", "full", 1000},
		{"new-room", "", 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				room := tc.room
				if room == "" {
					room = fmt.Sprintf("new-%d", i)
				}
				// A new hub on the same journal: a restart, without the
				// server's own restart.
				h := rooms.New(rooms.Config{Journal: j})
				c := &counter{id: "c"}
				h.Register(c)
				jn, err := h.Join(c, room, &protocol.Position{Epoch: "other", Seq: 0})
				if err != nil {
					b.Fatal(err)
				}
				if jn.Replayed != tc.events {
					b.Fatalf("replayed %d, want %d", jn.Replayed, tc.events)
				}
			}
		})
	}
}
