// Package bench is ferry's load generator: it opens many WebSocket
// connections to a ferry server, drives them through the wire protocol and
// reports what the server costs for it (memory per idle connection, CPU per
// delivered event, delivery latency).
//
// The server is measured from outside: its memory and CPU come from
// /proc/<pid>, its view of the world from /metrics. For clean figures the
// server runs in its own process (see StartServer); the generator never shares
// a process with it.
package bench

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Target is the server under measurement.
type Target struct {
	// URL is the server's WebSocket endpoint, e.g. ws://127.0.0.1:8080/ws.
	URL string
	// PID is the server's process id. Memory and CPU figures are read from
	// /proc/<PID>; with PID 0 they are left out.
	PID int
}

// ParseTarget accepts ws://host:port, ws://host:port/ws or http://host:port
// and returns the WebSocket endpoint. The host must be a loopback address:
// the generator opens tens of thousands of connections and is only meant to
// point at a server on the same machine.
func ParseTarget(raw string, pid int) (Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Target{}, fmt.Errorf("server %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws", "http":
		u.Scheme = "ws"
	case "wss", "https":
		// TLS, trusting the system's roots (SSL_CERT_FILE names a
		// self-signed certificate's file).
		u.Scheme = "wss"
	default:
		return Target{}, fmt.Errorf("server %q: scheme must be ws, wss, http or https", raw)
	}
	if err := checkLoopback(u.Hostname()); err != nil {
		return Target{}, fmt.Errorf("server %q: %w", raw, err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	u.RawQuery = ""
	return Target{URL: u.String(), PID: pid}, nil
}

var errNotLoopback = errors.New("only loopback servers (127.0.0.0/8, ::1, localhost) can be measured")

func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errNotLoopback
	}
	return nil
}

// httpBase returns the http:// origin of the target, for /metrics and /healthz.
func (t Target) httpBase() string {
	u, err := url.Parse(t.URL)
	if err != nil {
		return ""
	}
	u.Scheme = "http"
	if t.TLS() {
		u.Scheme = "https"
	}
	u.Path = ""
	u.RawQuery = ""
	return strings.TrimSuffix(u.String(), "/")
}

// TLS reports whether the target speaks wss://.
func (t Target) TLS() bool { return strings.HasPrefix(t.URL, "wss:") }

// MetricsURL is the target's Prometheus endpoint.
func (t Target) MetricsURL() string { return t.httpBase() + "/metrics" }

// HealthURL is the target's health endpoint.
func (t Target) HealthURL() string { return t.httpBase() + "/healthz" }
