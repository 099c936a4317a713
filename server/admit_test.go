package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/server"
)

// capServer runs srv behind its own capped listener, as ferry serve does,
// and returns its http base URL.
func capServer(t *testing.T, cfg server.Config) string {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(srv.Listen(ln)) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = hs.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

// dialFrom opens a WebSocket from the loopback address from (Linux routes
// all of 127.0.0.0/8 to the loopback interface, so each is another client
// address) and returns it, or the handshake's status.
func dialFrom(t *testing.T, base, from string, h http.Header) (*websocket.Conn, int) {
	t.Helper()
	d := websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}
	ws, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"/ws", h)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("refusal %d without Retry-After", resp.StatusCode)
		}
		return nil, resp.StatusCode
	}
	t.Cleanup(func() { ws.Close() })
	return ws, http.StatusSwitchingProtocols
}

func TestConnectionCaps(t *testing.T) {
	const perIP = 8
	base := capServer(t, server.Config{MaxConns: 40, MaxConnsPerIP: perIP, MaxConnsPerUser: 3})

	// One address gets perIP connections, then 429; another address is
	// not affected.
	for i := range perIP {
		if _, st := dialFrom(t, base, "127.0.0.2", nil); st != http.StatusSwitchingProtocols {
			t.Fatalf("connection %d from 127.0.0.2: %d", i, st)
		}
	}
	if _, st := dialFrom(t, base, "127.0.0.2", nil); st != http.StatusTooManyRequests {
		t.Fatalf("connection %d from one address: %d, want 429", perIP+1, st)
	}
	first, st := dialFrom(t, base, "127.0.0.1", nil)
	if st != http.StatusSwitchingProtocols {
		t.Fatalf("another address: %d", st)
	}

	// One user (the anonymous token of a welcome) gets three.
	var w struct{ Token string }
	if err := first.ReadJSON(&w); err != nil || w.Token == "" {
		t.Fatalf("welcome: %v %+v", err, w)
	}
	h := http.Header{"Authorization": {"Bearer " + w.Token}}
	for range 2 {
		if _, st := dialFrom(t, base, "127.0.0.1", h); st != http.StatusSwitchingProtocols {
			t.Fatalf("same user: %d", st)
		}
	}
	if _, st := dialFrom(t, base, "127.0.0.1", h); st != http.StatusTooManyRequests {
		t.Fatalf("fourth connection of one user: %d, want 429", st)
	}
	// A place given back is taken again.
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, st := dialFrom(t, base, "127.0.0.1", h); st == http.StatusSwitchingProtocols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed connection's place was not given back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := ferrytest.Metric(t, base, "ferry_connections_refused_address_total"); n != 1 {
		t.Errorf("refused by address: %d, want 1", n)
	}
	if n := ferrytest.Metric(t, base, "ferry_connections_refused_user_total"); n < 1 {
		t.Errorf("refused by user: %d", n)
	}
}

// Sockets opened and never used are closed as they are accepted beyond
// the listener's caps, so that the server keeps its descriptors and
// answers everyone else.
func TestListenerCaps(t *testing.T) {
	const perIP, total = 8, 100 // the listener: 72 per address, 125 in all
	base := capServer(t, server.Config{MaxConns: total, MaxConnsPerIP: perIP})
	addr := strings.TrimPrefix(base, "http://")
	// open opens n sockets from the address from and returns those the
	// server kept; it closes the others as it accepts them, which their
	// reads see at once (EOF or a reset).
	open := func(from string, n int) []net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		var all, kept []net.Conn
		for range n {
			c, err := d.Dial("tcp", addr)
			if errors.Is(err, syscall.ECONNRESET) {
				continue // closed before the dial returned
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			all = append(all, c)
		}
		// A read with a deadline past returns at once whatever the socket
		// holds: every socket waits on its own.
		timedOut := make([]bool, len(all))
		var wg sync.WaitGroup
		for i, c := range all {
			wg.Go(func() {
				_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				_, err := c.Read(make([]byte, 1))
				ne, ok := err.(net.Error)
				timedOut[i] = ok && ne.Timeout()
			})
		}
		wg.Wait()
		for i, c := range all {
			if timedOut[i] {
				kept = append(kept, c)
			}
		}
		return kept
	}
	if kept := len(open("127.0.0.3", perIP+64+10)); kept != perIP+64 {
		t.Fatalf("one address kept %d idle sockets, want %d", kept, perIP+64)
	}
	healthz := func() int {
		c := http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	if st := healthz(); st != http.StatusOK {
		t.Fatalf("healthz while one address holds its sockets: %d", st)
	}
	// Several addresses together reach the total: beyond it, sockets are
	// closed whoever opens them.
	var more []net.Conn
	for _, from := range []string{"127.0.0.4", "127.0.0.5"} {
		more = append(more, open(from, 40)...)
	}
	// The healthz client's socket may still be open on the server's side.
	if all, want := perIP+64+len(more), total+total/4; all != want && all != want-1 {
		t.Fatalf("%d sockets kept in all, want %d", all, want)
	}
	if st := healthz(); st != 0 {
		t.Fatalf("healthz at the total: %d, want the socket closed", st)
	}
	for _, c := range more {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for healthz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("closed sockets did not give their places back")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := ferrytest.Metric(t, base, "ferry_sockets_refused_total"); n < 10 {
		t.Errorf("sockets refused: %d", n)
	}
}

// Behind a trusted proxy the client's address comes from X-Forwarded-For
// (its last entry that is not a trusted proxy); from anyone else the
// header is ignored.
func TestTrustedProxies(t *testing.T) {
	base := capServer(t, server.Config{MaxConnsPerIP: 2, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	for range 2 {
		if _, st := dialFrom(t, base, "127.0.0.1", xff("203.0.113.7")); st != http.StatusSwitchingProtocols {
			t.Fatalf("through the proxy: %d", st)
		}
	}
	if _, st := dialFrom(t, base, "127.0.0.1", xff("203.0.113.7")); st != http.StatusTooManyRequests {
		t.Fatalf("third for one forwarded address: %d, want 429", st)
	}
	// A client that writes its own X-Forwarded-For does not escape: the
	// proxy appends the address it saw, which is the one counted.
	if _, st := dialFrom(t, base, "127.0.0.1", xff("198.51.100.1, 203.0.113.7")); st != http.StatusTooManyRequests {
		t.Fatalf("a forged entry left of the real one: %d, want 429", st)
	}
	if _, st := dialFrom(t, base, "127.0.0.1", xff("203.0.113.8")); st != http.StatusSwitchingProtocols {
		t.Fatalf("another forwarded address: %d", st)
	}
	// Not a trusted proxy: its header means nothing, it is counted itself.
	for i, v := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		_, st := dialFrom(t, base, "127.0.0.2", xff(v))
		if want := map[bool]int{true: http.StatusSwitchingProtocols, false: http.StatusTooManyRequests}[i < 2]; st != want {
			t.Fatalf("untrusted peer, connection %d: %d, want %d", i+1, st, want)
		}
	}
}

// Display names cannot pass for someone else's: look-alike forms are
// folded, invisible characters dropped, and a name that reads like one a
// connected user shows gets the end of the newcomer's user id.
func TestDisplayNames(t *testing.T) {
	_, url := startServer(t, server.Config{})
	q := func(name string) string { return url + "?name=" + neturl.QueryEscape(name) }
	alice := dial(t, q("alice"))
	if alice.welcome.Name != "alice" {
		t.Fatalf("first alice shown as %q", alice.welcome.Name)
	}
	tag := func(p *peer) string { return " #" + p.welcome.User[len(p.welcome.User)-4:] }
	for _, try := range []struct{ asked, base string }{
		{"alice", "alice"},
		{"Alice", "Alice"},
		{"\u202ealice", "alice"},
		{"al\u200bice", "alice"},
		{"ＡＬＩＣＥ", "ALICE"},
		{" alice\t", "alice"},
	} {
		p := dial(t, q(try.asked))
		if want := try.base + tag(p); p.welcome.Name != want {
			t.Errorf("%q shown as %q, want %q", try.asked, p.welcome.Name, want)
		}
	}
	// alice's own second device keeps the name.
	again := dial(t, q("alice")+"&token="+alice.welcome.Token)
	if again.welcome.Name != "alice" {
		t.Errorf("alice's second connection shown as %q", again.welcome.Name)
	}
	// Once alice is gone, the name is free.
	alice.ws.Close()
	again.ws.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := dial(t, q("alice"))
		if p.welcome.Name == "alice" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after alice left, a new alice is shown as %q", p.welcome.Name)
		}
		p.ws.Close()
		time.Sleep(50 * time.Millisecond)
	}
}
