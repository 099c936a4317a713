package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config configures a Client. Every zero value means the default documented
// next to the field.
type Config struct {
	// URL is the server: "ws://host:port", "wss://host", "http://host:port" or
	// "https://host/prefix" (http is taken as ws, https as wss; "host:port"
	// alone as ws). The path "/ws" is appended unless the path already ends
	// with it. Required.
	URL string
	// Name is the display name asked for (1-64 printable characters). It is
	// ignored by the server when Token names the user. Default: none, the
	// server picks one.
	Name string
	// Token is a signed token (see "ferry token") sent as a Bearer
	// authorization. Default: none; the client then keeps the anonymous token
	// of the first welcome frame and presents it on every reconnection, so
	// that the user id survives them.
	Token string
	// Header is added to the WebSocket handshake request.
	Header http.Header
	// TLS configures wss:// connections and https:// downloads, e.g. to
	// trust a private certificate authority. Default: the system's roots.
	TLS *tls.Config

	// Reconnect shapes the delays between reconnection attempts.
	Reconnect Backoff
	// NoReconnect turns automatic reconnection off: once the connection
	// drops, the client is done (see Client.Done).
	NoReconnect bool

	// HandshakeTimeout bounds one connection attempt, from the TCP dial to
	// the welcome frame. Default 10s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds every write to the socket. Default 10s.
	WriteTimeout time.Duration
	// ReadLimit is the largest frame the client accepts; a larger one ends
	// the connection. Default 4 MiB (the server's default text frame limit is
	// 1 MiB, and events carry an envelope around the sender's data).
	ReadLimit int64
	// QueueSize is how many events may wait for the handlers. When handlers
	// fall that far behind, the connection is not stalled: an event of a
	// joined room makes the client reconnect (ErrSlowHandlers) and catch up
	// from the last event it took once the handlers have worked through
	// half the queue; other events (direct messages, presence, receipts)
	// are dropped and logged. Default 1024.
	QueueSize int
	// QueueBytes bounds the same queue in bytes of events, with the same
	// effect when it is reached. Default 64 MiB.
	QueueBytes int64

	// Log receives diagnostics. Default: discard.
	Log *slog.Logger
}

// Backoff is the reconnection schedule, the one Socket.IO clients use:
// attempt n waits Initial × Factor^(n-1), randomized by ±Jitter of itself,
// and at most Max.
type Backoff struct {
	// Initial is the base delay before the first attempt. Default 1s.
	Initial time.Duration
	// Max caps every delay. Default 5s.
	Max time.Duration
	// Factor multiplies the base delay after each attempt. Values below 1
	// mean the default, 2.
	Factor float64
	// Jitter is the randomization factor: a delay d becomes a uniform pick in
	// [d×(1-Jitter), d×(1+Jitter)], then capped at Max. Default 0.5; a
	// negative value turns randomization off. Values above 1 are taken as 1.
	Jitter float64
	// Attempts is how many attempts are made after a connection drops before
	// giving up (reconnect_failed). Zero or less: unlimited.
	Attempts int
}

// Default values.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultReadLimit        = 4 << 20
	DefaultQueueSize        = 1024
	DefaultQueueBytes       = 64 << 20
)

// Default reconnection schedule.
const (
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 5 * time.Second
	DefaultBackoffFactor  = 2
	DefaultBackoffJitter  = 0.5
)

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Factor < 1 {
		b.Factor = DefaultBackoffFactor
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoffJitter
	case b.Jitter < 0:
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Delay returns a randomized wait before reconnection attempt n (counted
// from 1), with the defaults applied.
func (b Backoff) Delay(n int) time.Duration {
	return b.withDefaults().delay(n, rand.Float64())
}

// delay computes the wait before attempt n from a uniform r in [0, 1). b has
// its defaults applied.
func (b Backoff) delay(n int, r float64) time.Duration {
	d := float64(b.Initial) * math.Pow(b.Factor, float64(max(n, 1)-1))
	d += d * b.Jitter * (2*r - 1)
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		return b.Max
	}
	return time.Duration(d)
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("client: Config.URL is required")
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = DefaultReadLimit
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	c.Reconnect = c.Reconnect.withDefaults()
	return c, nil
}

// ErrBadURL is the error of a Config.URL that names no server: dialing it
// again cannot help.
var ErrBadURL = errors.New("client: bad server URL")

// endpoint turns Config.URL into the WebSocket URL of the /ws endpoint.
func endpoint(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "ws://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("%w %q: scheme must be ws, wss, http or https", ErrBadURL, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%w %q: no host", ErrBadURL, raw)
	}
	if !strings.HasSuffix(u.Path, "/ws") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/ws"
		u.RawPath = ""
	}
	u.Fragment = ""
	return u, nil
}
