package jetstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/rooms"
)

// BenchmarkDMAcrossNodes measures, on two nodes sharing one embedded NATS
// server, a direct message's emit to ack: to a connected user on a hub
// without a router (the baseline), to a user on the sender's node (which
// also publishes a copy for the user's connections on other nodes, if
// any), to a user on the other node only (one core NATS
// request: the other node numbers, delivers and answers), and to a user
// connected nowhere (the request finds no responders, then the letter is
// stored). Each iteration sends one of each, so the ratios come from one
// run under one load.
//
//	go test -run '^$' -bench BenchmarkDMAcrossNodes -benchtime 2000x -count 3 ./rooms/jetstream
func BenchmarkDMAcrossNodes(b *testing.B) {
	emb, err := StartEmbedded(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { shutdown(b, emb) })
	a, other := startDMHub(b, emb, "a", rooms.Config{}), startDMHub(b, emb, "b", rooms.Config{})
	sender := &counter{id: "sender"}
	a.hub.Register(sender)
	near, far := &counter{id: "near"}, &counter{id: "far"}
	a.hub.Register(near)
	other.hub.Register(far)
	if err := other.nc.Flush(); err != nil {
		b.Fatal(err)
	}
	alone := rooms.New(rooms.Config{})
	alone.Register(sender)
	alone.Register(near)
	send := func(h *rooms.Hub, to string) time.Duration {
		start := time.Now()
		if _, err := h.Emit(sender, rooms.Target{User: to}, "dm", benchData, rooms.EmitOptions{}); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var base, local, remote, away time.Duration
	b.ResetTimer()
	for i := range b.N {
		base += send(alone, near.UserID())
		local += send(a.hub, near.UserID())
		remote += send(a.hub, far.UserID())
		// Spread over users, within each mailbox's bounds.
		away += send(a.hub, fmt.Sprintf("away%d", i%1000))
	}
	b.StopTimer()
	if got := far.got.Load(); got != int64(b.N) {
		b.Fatalf("the user on the other node got %d messages, want %d", got, b.N)
	}
	n := float64(b.N)
	b.ReportMetric(float64(base.Nanoseconds())/n/1e3, "no-router-µs")
	b.ReportMetric(float64(local.Microseconds())/n, "same-node-µs")
	b.ReportMetric(float64(local)/float64(base), "same/no-router")
	b.ReportMetric(float64(remote.Microseconds())/n, "other-node-µs")
	b.ReportMetric(float64(away.Microseconds())/n, "nowhere-µs")
	b.ReportMetric(float64(remote)/float64(local), "other/same")
	b.ReportMetric(float64(away)/float64(local), "nowhere/same")
}
