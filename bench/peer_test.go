package bench_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/internal/testenv"
)

// startCentrifugo runs a real Centrifugo on a free loopback port, set up as
// docs/benchmarks.md describes, and returns its target.
func startCentrifugo(t *testing.T) bench.Target {
	t.Helper()
	bin := testenv.Centrifugo(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "centrifugo.json")
	err = os.WriteFile(config, fmt.Appendf(nil, `{
  "http_server": {"address": "127.0.0.1", "port": %d},
  "client": {"insecure": true},
  "prometheus": {"enabled": true},
  "log": {"level": "error"}
}`, port), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", config)
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "centrifugo.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	target, err := bench.ParseTarget(fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", port), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(target.MetricsURL())
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return target
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "centrifugo.log"))
			t.Fatalf("centrifugo exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("centrifugo not ready on port %d: %v", port, err)
		}
	}
}

// The fan-out bench runs the same load against Centrifugo: its members
// subscribe, its publisher publishes, and every event is counted.
func TestFanoutCentrifugo(t *testing.T) {
	target := startCentrifugo(t)
	res := fanout(t, bench.FanoutConfig{
		Target:     target,
		Peer:       bench.PeerCentrifugo,
		Members:    20,
		Publishers: 2,
		Rate:       200,
		Warmup:     200 * time.Millisecond,
		Duration:   time.Second,
	})
	if res.PublishedTotal != 240 || res.ReceivedTotal != 240*20 || res.Lost != 0 {
		t.Errorf("published %d, received %d of %d, lost %d", res.PublishedTotal, res.ReceivedTotal, res.ExpectedTotal, res.Lost)
	}
	if res.LatencyP50MS <= 0 || res.LatencyP99MS > res.LatencyMaxMS {
		t.Errorf("latency p50 %v p99 %v max %v", res.LatencyP50MS, res.LatencyP99MS, res.LatencyMaxMS)
	}
	if res.ServerCPUSeconds <= 0 {
		t.Errorf("server CPU %v s: the peer's process was not measured", res.ServerCPUSeconds)
	}
}

// Centrifugo refuses a subscription it does not allow; the bench says so
// instead of waiting for events.
func TestFanoutCentrifugoRefusal(t *testing.T) {
	target := startCentrifugo(t)
	_, err := bench.Fanout(context.Background(), bench.FanoutConfig{
		Target:  target,
		Peer:    bench.PeerCentrifugo,
		Members: 2,
		// Channels with a namespace that does not exist are refused.
		Room:     "nowhere:bench",
		Duration: time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "centrifugo error 102") {
		t.Fatalf("fan-out into a channel of no namespace: %v, want Centrifugo's error 102 (unknown channel)", err)
	}
}

func TestUnknownPeer(t *testing.T) {
	_, err := bench.Fanout(context.Background(), bench.FanoutConfig{Peer: "socketio"})
	if err == nil || !strings.Contains(err.Error(), `unknown peer "socketio"`) {
		t.Fatalf("peer socketio: %v, want unknown peer", err)
	}
}
