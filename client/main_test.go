package client

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitFor bounds every wait in these tests.
const waitFor = 5 * time.Second

func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testContext(t testing.TB) context.Context {
	// A bound on a test that hangs, not a speed requirement: a loaded
	// machine (CI beside other work) takes several times longer.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// startServer starts a ferry server; it is shut down when the test ends.
func startServer(t testing.TB, cfg server.Config) *ferrytest.Ferry {
	t.Helper()
	return ferrytest.Serve(t, nil, cfg)
}

// startServerOn starts a ferry server on l (a fresh port when l is nil).
func startServerOn(t testing.TB, l net.Listener, cfg server.Config) *ferrytest.Ferry {
	t.Helper()
	return ferrytest.Serve(t, l, cfg)
}

// dial connects a client that is closed when the test ends.
func dial(t testing.TB, url, name string, opts ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{URL: url, Name: name, Log: testLog(t).With("client", name)}
	for _, o := range opts {
		o(&cfg)
	}
	c, err := Dial(testContext(t), cfg)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", url, name, err)
	}
	t.Cleanup(func() { closeAndWait(t, c) })
	return c
}

// closeAndWait closes c and waits for its last handler to return.
func closeAndWait(t testing.TB, c *Client) {
	t.Helper()
	_ = c.Close()
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Error("handlers still running after Close")
	}
}

func withBackoff(b Backoff) func(*Config) { return func(c *Config) { c.Reconnect = b } }

// recorder collects everything the client's handlers see.
type recorder struct {
	events    chan Event
	presence  chan Presence
	lifecycle chan Lifecycle
	errors    chan *protocol.Error
}

func record(c *Client) *recorder {
	r := &recorder{
		events:    make(chan Event, 256),
		presence:  make(chan Presence, 256),
		lifecycle: make(chan Lifecycle, 256),
		errors:    make(chan *protocol.Error, 256),
	}
	c.OnAny(func(e Event) { r.events <- e })
	c.OnPresence(func(p Presence) { r.presence <- p })
	c.OnError(func(e *protocol.Error) { r.errors <- e })
	for _, name := range lifecycleNames {
		c.OnLifecycle(name, func(l Lifecycle) { r.lifecycle <- l })
	}
	return r
}

// next returns the next value from ch, failing the test after waitFor.
func next[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitFor):
		var zero T
		t.Fatalf("timed out waiting for a %T", zero)
		return zero
	}
}

// none fails the test if ch yields a value within d.
func none[T any](t testing.TB, ch <-chan T, d time.Duration) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected %T: %+v", v, v)
	case <-time.After(d):
	}
}

// until returns the next lifecycle event called name, and the ones skipped.
func (r *recorder) until(t testing.TB, name string) (Lifecycle, []Lifecycle) {
	t.Helper()
	var skipped []Lifecycle
	for {
		l := next(t, r.lifecycle)
		if l.Name == name {
			return l, skipped
		}
		skipped = append(skipped, l)
	}
}

// nextEvent returns the next event, failing if it is not named name.
func (r *recorder) nextEvent(t testing.TB, name string) Event {
	t.Helper()
	e := next(t, r.events)
	if e.Name != name {
		t.Fatalf("got event %q (%s), want %q", e.Name, e.Raw, name)
	}
	return e
}

func names(ls []Lifecycle) []string {
	var s []string
	for _, l := range ls {
		s = append(s, l.Name)
	}
	return s
}
