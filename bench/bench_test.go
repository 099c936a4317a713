package bench_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/server"
)

// childEnv makes the test binary act as "ferry serve" when StartServer runs it.
const childEnv = "BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := serveChild(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// serveChild is a stand-in for "ferry serve" with the flags StartServer and
// the benches pass.
func serveChild(args []string) error {
	if len(args) == 0 || args[0] != "serve" {
		return fmt.Errorf("want serve, got %q", args)
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "", "")
	fs.String("data", "", "")
	ping := fs.Duration("ping-interval", 0, "")
	pingTimeout := fs.Duration("ping-timeout", 0, "")
	maxConns := fs.Int("max-conns", 0, "")
	maxConnsPerIP := fs.Int("max-conns-per-ip", 0, "")
	maxConnsPerUser := fs.Int("max-conns-per-user", 0, "")
	fs.Int("history-per-user", 0, "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	srv, err := server.New(server.Config{PingInterval: *ping, PingTimeout: *pingTimeout,
		MaxConns: *maxConns, MaxConnsPerIP: *maxConnsPerIP, MaxConnsPerUser: *maxConnsPerUser})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(srv.Shutdown(sctx), hs.Shutdown(sctx))
}

// startServer runs a server in this process and returns its target.
func startServer(t *testing.T, cfg server.Config) bench.Target {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	target, err := bench.ParseTarget(hs.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// fanout runs a fan-out that must pass its checks.
func fanout(t *testing.T, cfg bench.FanoutConfig) bench.FanoutResult {
	t.Helper()
	res, err := bench.Fanout(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %q", res.Problems)
	}
	return res
}

// A server whose metrics cannot be read ends the run with that reason, not
// with what the publishers saw when the run stopped them.
func TestFanoutTellsWhyItStopped(t *testing.T) {
	srv, err := server.New(server.Config{Rate: 1e6, RateBurst: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", srv)
	mux.HandleFunc("/metrics", http.NotFound)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		hs.Close()
	})
	target, err := bench.ParseTarget(hs.URL, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bench.Fanout(context.Background(), bench.FanoutConfig{Target: target, Members: 3, Rate: 100,
		Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "metrics") || strings.Contains(err.Error(), "context canceled") {
		t.Fatalf("fanout against a server without /metrics: %v; want the scrape's error", err)
	}
}

func TestIdle(t *testing.T) {
	target := startServer(t, server.Config{PingInterval: 200 * time.Millisecond, PingTimeout: 200 * time.Millisecond})
	target.PID = os.Getpid() // exercises /proc; the figure itself means nothing here
	res, err := bench.Idle(context.Background(), bench.IdleConfig{
		Target: target,
		Conns:  50,
		Settle: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %q", res.Problems)
	}
	if res.ServerConnections != 50 || res.Pinged != 50 || res.Dropped != 0 {
		t.Errorf("server counts %d, %d pinged, %d dropped; want 50, 50, 0", res.ServerConnections, res.Pinged, res.Dropped)
	}
	if res.PingIntervalMS != 200 {
		t.Errorf("ping interval %dms, want 200ms from the welcome frame", res.PingIntervalMS)
	}
	if res.Pings < 50 {
		t.Errorf("%d pings answered, want at least one per connection", res.Pings)
	}
	if res.RSSIdle <= 0 || res.RSSLoaded <= 0 || res.RSSPeak < res.RSSLoaded {
		t.Errorf("memory figures idle %d, loaded %d, peak %d", res.RSSIdle, res.RSSLoaded, res.RSSPeak)
	}
}

func TestIdleReportsMissingPings(t *testing.T) {
	target := startServer(t, server.Config{PingInterval: time.Hour})
	res, err := bench.Idle(context.Background(), bench.IdleConfig{
		Target:   target,
		Conns:    5,
		Settle:   10 * time.Millisecond,
		PingWait: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Pinged != 0 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "pinged") {
		t.Fatalf("pinged %d, problems %q; want one problem about pings", res.Pinged, res.Problems)
	}
}

func TestFanout(t *testing.T) {
	for _, burst := range []int{1, 4} {
		t.Run(fmt.Sprintf("burst%d", burst), func(t *testing.T) {
			target := startServer(t, server.Config{Rate: 1e6, RateBurst: 1e6})
			res := fanout(t, bench.FanoutConfig{
				Target:     target,
				Members:    20,
				Publishers: 2,
				Size:       100,
				Rate:       200,
				Burst:      burst,
				Warmup:     200 * time.Millisecond,
				Duration:   time.Second,
			})
			// 200 events/s for 1.2s, on a fixed schedule; about 200 are sent
			// in the 1s window, fewer if the publisher runs late.
			if res.PublishedTotal != 240 || res.Published <= 0 || res.Published > 240 {
				t.Errorf("published %d in all and %d in the window, want 240 and about 200", res.PublishedTotal, res.Published)
			}
			if res.ExpectedTotal != 240*20 || res.ReceivedTotal != res.ExpectedTotal || res.Lost != 0 {
				t.Errorf("received %d of %d, lost %d", res.ReceivedTotal, res.ExpectedTotal, res.Lost)
			}
			if res.Delivered <= 0 || res.DeliveriesPerSec <= 0 {
				t.Errorf("delivered %d in the window (%f/s)", res.Delivered, res.DeliveriesPerSec)
			}
			if res.LatencyP50MS <= 0 || res.LatencyP50MS > res.LatencyP99MS || res.LatencyP99MS > res.LatencyMaxMS {
				t.Errorf("latency p50 %v p99 %v max %v: want 0 < p50 <= p99 <= max", res.LatencyP50MS, res.LatencyP99MS, res.LatencyMaxMS)
			}
			if res.ServerMessagesOut <= 0 || res.ServerWrites <= 0 || res.ServerWrites > res.ServerMessagesOut {
				t.Errorf("server wrote %d frames in %d writes; want some frames, in at most as many writes",
					res.ServerMessagesOut, res.ServerWrites)
			}
		})
	}
}

func TestFanoutReportsRefusedEmits(t *testing.T) {
	// The default per-connection rate limit (100/s, burst 200) refuses part
	// of 400 events/s from one publisher.
	target := startServer(t, server.Config{})
	res, err := bench.Fanout(context.Background(), bench.FanoutConfig{
		Target:   target,
		Members:  3,
		Rate:     400,
		Warmup:   100 * time.Millisecond,
		Duration: time.Second,
		Drain:    300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ErrorFrames == 0 || res.Lost == 0 || len(res.Problems) == 0 {
		t.Fatalf("error frames %d, lost %d, problems %q; want refused emits reported", res.ErrorFrames, res.Lost, res.Problems)
	}
}

func TestStartServer(t *testing.T) {
	t.Setenv(childEnv, "1")
	srv, err := bench.StartServer(context.Background(), bench.ServerConfig{
		Path: os.Args[0],
		Args: []string{"--ping-interval", "200ms", "--ping-timeout", "200ms"},
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := bench.Idle(context.Background(), bench.IdleConfig{Target: srv.Target, Conns: 20, Settle: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) > 0 {
		t.Fatalf("problems: %q", res.Problems)
	}
	if res.RSSLoaded <= 0 {
		t.Errorf("child RSS not read")
	}
	if _, err := bench.ReadCPU(srv.PID); err != nil {
		t.Errorf("child CPU: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-srv.Exited():
	default:
		t.Fatal("server still running after Close")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
