package bench_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/server"
)

// Members spread over two servers of one rooms hub (two nodes of one room,
// without the NATS between them) all receive every event once, and each
// node's figures are its own members'.
func TestFanoutOverNodes(t *testing.T) {
	cfg := server.Config{Rate: 1e6, RateBurst: 1e6}
	hub := server.NewHub(cfg)
	ctx, stop := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() {
		defer close(hubDone)
		_ = hub.Run(ctx)
	}()
	t.Cleanup(func() { stop(); <-hubDone })
	cfg.Hub = hub
	var nodes []bench.Target
	for range 2 {
		target := startServer(t, cfg)
		// Both "nodes" are this process: the CPU figures mean nothing,
		// but they are read from /proc as for real ones.
		target.PID = os.Getpid()
		nodes = append(nodes, target)
	}
	res := fanout(t, bench.FanoutConfig{
		Nodes:      nodes,
		SharedPIDs: []int{os.Getpid()},
		Members:    21,
		Rate:       100,
		Warmup:     200 * time.Millisecond,
		Duration:   time.Second,
	})
	if res.PublishedTotal != 120 || res.ReceivedTotal != 120*21 || res.Lost != 0 || res.Duplicates != 0 {
		t.Errorf("published %d, received %d, lost %d, duplicates %d; want 120, %d, 0, 0",
			res.PublishedTotal, res.ReceivedTotal, res.Lost, res.Duplicates, 120*21)
	}
	if len(res.Nodes) != 2 {
		t.Fatalf("%d node figures, want 2", len(res.Nodes))
	}
	var delivered int64
	var cpu float64
	for i, n := range res.Nodes {
		want := []int{11, 10}[i] // member i joins node i mod 2
		if n.URL != nodes[i].URL || n.Members != want {
			t.Errorf("node %d: %s with %d members, want %s with %d", i, n.URL, n.Members, nodes[i].URL, want)
		}
		if n.ExpectedTotal != 120*int64(want) || n.ReceivedTotal != n.ExpectedTotal || n.Lost != 0 || n.Duplicates != 0 {
			t.Errorf("node %d: received %d of %d, lost %d, duplicates %d", i, n.ReceivedTotal, n.ExpectedTotal, n.Lost, n.Duplicates)
		}
		if n.Delivered <= 0 || n.LatencyP50MS <= 0 || n.LatencyP99MS > n.LatencyMaxMS {
			t.Errorf("node %d: delivered %d, p50 %v, p99 %v, max %v", i, n.Delivered, n.LatencyP50MS, n.LatencyP99MS, n.LatencyMaxMS)
		}
		// Frames written just before a sample are received just after it:
		// the two counts are close, not equal.
		if n.ServerMessagesOut < n.Delivered*8/10 || n.ServerWrites <= 0 {
			t.Errorf("node %d: wrote %d frames in %d writes for %d deliveries", i, n.ServerMessagesOut, n.ServerWrites, n.Delivered)
		}
		delivered += n.Delivered
		cpu += n.ServerCPUSeconds
	}
	if delivered != res.Delivered {
		t.Errorf("nodes delivered %d in the window, the total says %d", delivered, res.Delivered)
	}
	// The same process three times over: the total is the nodes' CPU plus
	// the shared process's.
	if res.ServerCPUSeconds <= 0 || res.SharedCPUSeconds <= 0 || !near(res.ServerCPUSeconds, cpu+res.SharedCPUSeconds) {
		t.Errorf("server CPU %v, shared %v, nodes %v: want the sum of the nodes and the shared", res.ServerCPUSeconds, res.SharedCPUSeconds, cpu)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
