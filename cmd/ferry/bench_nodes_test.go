package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/bench"
)

// "bench fanout --nodes 2" starts a NATS server and two ferry nodes on it
// (this test binary run as ferry), spreads the members over them, and
// reports each node, the total and the ratios against one node measured
// first. Every member of both nodes gets every event once.
func TestBenchFanoutAcrossNodes(t *testing.T) {
	benchChildEnv = []string{runMainEnv + "=1"}
	t.Cleanup(func() { benchChildEnv = nil })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"bench", "fanout", "--nodes", "2", "--members", "11", "--rate", "50",
		"--warmup", "300ms", "--duration", "1s", "--drain", "3s", "--json"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	var out struct {
		Nats     string             `json:"nats"`
		NatsPID  int                `json:"nats_pid"`
		Across   bench.FanoutResult `json:"across_nodes"`
		One      bench.FanoutResult `json:"one_node"`
		CPURatio float64            `json:"cpu_per_delivery_ratio"`
		P99Ratio float64            `json:"p99_ratio"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("output: %v\n%s", err, stdout.String())
	}
	r := out.Across
	if !strings.HasPrefix(out.Nats, "nats://127.0.0.1:") || out.NatsPID == 0 {
		t.Errorf("NATS server %q, pid %d", out.Nats, out.NatsPID)
	}
	// 50 events/s from 0.1s to the window's end at 1.4s.
	if r.PublishedTotal < 60 || r.ExpectedTotal != r.PublishedTotal*11 || r.ReceivedTotal != r.ExpectedTotal || r.Lost != 0 || r.Duplicates != 0 {
		t.Errorf("published %d, received %d of %d, lost %d, duplicates %d", r.PublishedTotal, r.ReceivedTotal, r.ExpectedTotal, r.Lost, r.Duplicates)
	}
	if len(r.Nodes) != 2 {
		t.Fatalf("%d nodes in the figures, want 2", len(r.Nodes))
	}
	for i, n := range r.Nodes {
		want := []int{6, 5}[i]
		if n.Members != want || n.PID == 0 || n.PID == out.NatsPID || n.ReceivedTotal != r.PublishedTotal*int64(want) || n.Delivered <= 0 {
			t.Errorf("node %d: %+v; want %d members receiving all %d events", i+1, n, want, r.PublishedTotal)
		}
	}
	if r.Nodes[0].PID == r.Nodes[1].PID || r.Nodes[0].URL == r.Nodes[1].URL {
		t.Errorf("both nodes are %s (pid %d)", r.Nodes[0].URL, r.Nodes[0].PID)
	}
	if r.ServerCPUSeconds <= 0 || r.SharedCPUSeconds > r.ServerCPUSeconds || r.LatencyP99MS <= 0 {
		t.Errorf("server CPU %v (NATS %v), p99 %v", r.ServerCPUSeconds, r.SharedCPUSeconds, r.LatencyP99MS)
	}
	if out.One.Members != 11 || out.One.Rate != 50 || out.One.Lost != 0 || len(out.One.Nodes) != 0 {
		t.Errorf("one node: %d members at %d events/s, lost %d, %d nodes", out.One.Members, out.One.Rate, out.One.Lost, len(out.One.Nodes))
	}
	if out.CPURatio <= 0 || out.P99Ratio <= 0 {
		t.Errorf("ratios CPU %v, p99 %v", out.CPURatio, out.P99Ratio)
	}
}

func TestNodeArgs(t *testing.T) {
	for _, tc := range []struct {
		args string
		n    int
		want string
	}{
		{"--cpuprofile /tmp/node{node}.pprof", 2, "--cpuprofile /tmp/node2.pprof"},
		{"--cpuprofile /tmp/node{node}.pprof", 0, "--cpuprofile /tmp/node0.pprof"},
		{"--write-delay 5ms", 1, "--write-delay 5ms"},
	} {
		if got := nodeArgs(tc.args, tc.n); got != tc.want {
			t.Errorf("nodeArgs(%q, %d) = %q, want %q", tc.args, tc.n, got, tc.want)
		}
	}
}
