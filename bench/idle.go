package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// IdleConfig configures Idle.
type IdleConfig struct {
	Target
	// Conns is how many connections to hold. Zero means 1000.
	Conns int
	// DialWorkers is how many connections are opened at once. Zero means 64.
	DialWorkers int
	// Settle is how long to wait after the ping round before sampling the
	// server's memory. Zero means 2s.
	Settle time.Duration
	// PingWait bounds the wait for every connection to be pinged once after
	// all are open. Zero means twice the ping interval plus the ping timeout
	// (as the welcome frame announces them), plus 5s.
	PingWait time.Duration
	// Progress receives a line now and then while the bench runs; nil is silent.
	Progress io.Writer
}

// IdleResult is what Idle measured.
type IdleResult struct {
	Conns int `json:"conns"`
	// ServerConnections is the server's ferry_connections gauge while all
	// connections were open, less its value before the bench (-1 if the
	// server does not export it).
	ServerConnections int     `json:"server_connections"`
	DialSeconds       float64 `json:"dial_seconds"`
	PingIntervalMS    int64   `json:"ping_interval_ms"`
	PingTimeoutMS     int64   `json:"ping_timeout_ms"`
	// Pinged is how many connections received (and answered) a ping after
	// all connections were open.
	Pinged int `json:"pinged"`
	// Pings is the number of pings answered in all.
	Pings int64 `json:"pings"`
	// Dropped is how many connections the server closed during the bench.
	Dropped int `json:"dropped"`
	// The server's resident memory before dialing, with every connection
	// open, and at its peak; zero without a PID.
	RSSIdle   int64 `json:"rss_idle_bytes"`
	RSSLoaded int64 `json:"rss_loaded_bytes"`
	RSSPeak   int64 `json:"rss_peak_bytes"`
	// RSSPerConn is (RSSLoaded - RSSIdle) / Conns.
	RSSPerConn float64 `json:"rss_per_conn_bytes"`
	// Problems lists the checks that failed; empty means every connection
	// stayed open, was counted by the server and answered a ping.
	Problems []string `json:"problems"`
}

type idleConn struct {
	c     *websocket.Conn
	pings atomic.Int32
}

// Idle opens cfg.Conns connections that do nothing but answer the server's
// pings, waits until each one has been pinged, checks that the server counts
// them all, and reports the server's resident memory per connection.
func Idle(ctx context.Context, cfg IdleConfig) (IdleResult, error) {
	if cfg.Conns <= 0 {
		cfg.Conns = 1000
	}
	if cfg.DialWorkers <= 0 {
		cfg.DialWorkers = 64
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Second
	}
	progress := progressFunc(cfg.Progress)
	res := IdleResult{Conns: cfg.Conns, ServerConnections: -1}

	gauge0, hasGauge, err := steadyGauge(ctx, cfg.Target)
	if err != nil {
		return res, err
	}
	if cfg.PID != 0 {
		m, err := ReadMemory(cfg.PID)
		if err != nil {
			return res, err
		}
		res.RSSIdle = m.RSS
	}

	conns := make([]idleConn, cfg.Conns)
	var (
		readers   sync.WaitGroup
		closing   atomic.Bool
		dropped   atomic.Int64
		pings     atomic.Int64
		interval  atomic.Int64
		timeout   atomic.Int64
		dialed    atomic.Int64
		dropCause atomic.Value
	)
	defer func() {
		closing.Store(true)
		raw := make([]*websocket.Conn, len(conns))
		for i := range conns {
			raw[i] = conns[i].c
		}
		closeAll(raw)
		readers.Wait()
	}()

	d := newDialer(512, 256)
	start := time.Now()
	stopTicker := ticker(ctx, time.Second, func() {
		progress("idle: %d/%d connections open", dialed.Load(), cfg.Conns)
	})
	err = parallel(ctx, cfg.Conns, cfg.DialWorkers, func(ctx context.Context, i int) error {
		c, w, err := dial(ctx, d, cfg.URL, "idle-"+strconv.Itoa(i))
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		interval.CompareAndSwap(0, w.PingIntervalMS)
		timeout.CompareAndSwap(0, w.PingTimeoutMS)
		ic := &conns[i]
		ic.c = c
		countingPongs(c, func() {
			ic.pings.Add(1)
			pings.Add(1)
		})
		readers.Go(func() {
			for {
				if _, _, err := c.NextReader(); err != nil {
					if !closing.Load() {
						dropped.Add(1)
						dropCause.CompareAndSwap(nil, err.Error())
					}
					return
				}
			}
		})
		dialed.Add(1)
		return nil
	})
	stopTicker()
	if err != nil {
		return res, fmt.Errorf("after %d connections: %w", dialed.Load(), err)
	}
	res.DialSeconds = time.Since(start).Seconds()
	res.PingIntervalMS = interval.Load()
	res.PingTimeoutMS = timeout.Load()
	progress("idle: %d connections open in %.1fs", cfg.Conns, res.DialSeconds)

	// Wait for a full ping round that starts after the last connection opened,
	// so that every connection has paid for its heartbeat at least once.
	before := make([]int32, len(conns))
	for i := range conns {
		before[i] = conns[i].pings.Load()
	}
	pingWait := cfg.PingWait
	if pingWait <= 0 {
		pingWait = time.Duration(2*res.PingIntervalMS+res.PingTimeoutMS)*time.Millisecond + 5*time.Second
	}
	deadline := time.Now().Add(pingWait)
	lastReport := time.Now()
	for {
		res.Pinged = 0
		for i := range conns {
			if conns[i].pings.Load() > before[i] {
				res.Pinged++
			}
		}
		if res.Pinged == len(conns) || time.Now().After(deadline) {
			break
		}
		if time.Since(lastReport) >= 2*time.Second {
			progress("idle: %d/%d connections pinged", res.Pinged, len(conns))
			lastReport = time.Now()
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	progress("idle: %d/%d connections pinged", res.Pinged, len(conns))
	if err := sleep(ctx, cfg.Settle); err != nil {
		return res, err
	}

	if cfg.PID != 0 {
		m, err := ReadMemory(cfg.PID)
		if err != nil {
			return res, err
		}
		res.RSSLoaded, res.RSSPeak = m.RSS, m.HWM
		res.RSSPerConn = float64(res.RSSLoaded-res.RSSIdle) / float64(cfg.Conns)
	}
	gauge1, _, err := connectionsGauge(ctx, cfg.Target)
	if err != nil {
		return res, err
	}
	if hasGauge {
		res.ServerConnections = int(gauge1 - gauge0)
	}
	res.Pings = pings.Load()
	res.Dropped = int(dropped.Load())

	if res.Dropped > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d connections dropped (first: %v)", res.Dropped, dropCause.Load()))
	}
	if res.Pinged < cfg.Conns {
		res.Problems = append(res.Problems, fmt.Sprintf("only %d of %d connections were pinged within %s", res.Pinged, cfg.Conns, pingWait))
	}
	switch {
	case !hasGauge:
		res.Problems = append(res.Problems, "the server exports no ferry_connections gauge")
	case res.ServerConnections != cfg.Conns:
		res.Problems = append(res.Problems, fmt.Sprintf("the server counts %d connections, want %d", res.ServerConnections, cfg.Conns))
	}
	return res, nil
}

func connectionsGauge(ctx context.Context, t Target) (float64, bool, error) {
	m, err := ScrapeMetrics(ctx, httpClient, t.MetricsURL())
	if err != nil {
		return 0, false, fmt.Errorf("metrics: %w", err)
	}
	v, ok := m.Get("ferry_connections")
	return v, ok, nil
}

// steadyGauge returns ferry_connections once it holds still, so that
// connections of an earlier run still being closed do not skew the
// baseline. It gives up waiting after 10s and returns the last value.
func steadyGauge(ctx context.Context, t Target) (float64, bool, error) {
	v, ok, err := connectionsGauge(ctx, t)
	for deadline := time.Now().Add(10 * time.Second); err == nil && ok && time.Now().Before(deadline); {
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return 0, false, err
		}
		var next float64
		next, ok, err = connectionsGauge(ctx, t)
		if next == v {
			break
		}
		v = next
	}
	return v, ok, err
}

func progressFunc(w io.Writer) func(format string, args ...any) {
	if w == nil {
		return func(string, ...any) {}
	}
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// ticker calls fn every d until the returned stop is called or ctx ends.
func ticker(ctx context.Context, d time.Duration, fn func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
