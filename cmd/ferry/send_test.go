package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// startFerry starts a ferry server on l (a fresh port when l is nil); it is
// shut down when the test ends.
func startFerry(t *testing.T, l net.Listener, cfg server.Config) *ferrytest.Ferry {
	t.Helper()
	return ferrytest.Serve(t, l, cfg)
}

// member joins room as name and returns the client and its events.
func member(t *testing.T, url, room, name string) (*client.Client, <-chan client.Event, <-chan client.Presence) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: url, Name: name, Reconnect: client.Backoff{Initial: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	events := make(chan client.Event, 64)
	presence := make(chan client.Presence, 64)
	c.OnAny(func(e client.Event) { events <- e })
	c.OnPresence(func(p client.Presence) { presence <- p })
	if _, err := c.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	return c, events, presence
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		var zero T
		t.Fatalf("timed out waiting for a %T", zero)
		return zero
	}
}

// safeBuffer is a bytes.Buffer that a command and a test may share.
type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *safeBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *safeBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestSend(t *testing.T) {
	s := startFerry(t, nil, server.Config{})
	_, events, _ := member(t, s.URL, "lobby", "alice")

	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		wantEvent string
		wantName  string
	}{
		{"text", []string{"--server", s.URL, "--room", "lobby", "--text", "hello", "--name", "bob"}, nil, "chat", "bob"},
		{"event name", []string{"--server", s.URL, "--room", "lobby", "--text", "hello", "--event", "note"}, nil, "note", ""},
		{"from the environment", []string{"--text", "hello"}, map[string]string{"FERRY_SERVER": s.URL, "FERRY_ROOM": "lobby", "FERRY_NAME": "carol"}, "chat", "carol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), append([]string{"send"}, tt.args...), &stdout, &stderr); err != nil {
				t.Fatalf("send: %v\nstderr: %s", err, stderr.String())
			}
			e := receive(t, events)
			var data map[string]string
			if err := e.Decode(&data); err != nil || len(data) != 1 || data["text"] != "hello" {
				t.Errorf("data %s, want {\"text\":\"hello\"}", e.Data)
			}
			if e.Name != tt.wantEvent || e.Room != "lobby" {
				t.Errorf("event %q in %q, want %q in lobby", e.Name, e.Room, tt.wantEvent)
			}
			if tt.wantName != "" && e.From.Name != tt.wantName {
				t.Errorf("sender %q, want %q", e.From.Name, tt.wantName)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

func TestSendFails(t *testing.T) {
	s := startFerry(t, nil, server.Config{})
	authed := startFerry(t, nil, server.Config{AuthSecret: []byte("secret")})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := "ws://" + l.Addr().String()
	l.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no room", []string{"--server", s.URL, "--text", "x"}, "--room is required"},
		{"nothing to send", []string{"--server", s.URL, "--room", "lobby"}, "nothing to send"},
		{"bad room", []string{"--server", s.URL, "--room", "no spaces", "--text", "x"}, `cannot join room "no spaces": Room names use letters`},
		{"missing file", []string{"--server", s.URL, "--room", "lobby", "photo.jpg"}, "photo.jpg: open photo.jpg: no such file"},
		{"folder", []string{"--server", s.URL, "--room", "lobby", t.TempDir()}, "is a folder"},
		{"uploads off", []string{"--server", s.URL, "--room", "lobby", "send_test.go"}, "send_test.go: The server cannot do this yet. [not_implemented]"},
		{"no token", []string{"--server", authed.URL, "--room", "lobby", "--text", "x"}, "401"},
		{"no server", []string{"--server", nobody, "--room", "lobby", "--text", "x", "--timeout", "5s"}, "connect"},
		{"unknown flag", []string{"--bogus"}, "unknown flag --bogus"},
		{"bad server URL", []string{"--server", "htp://" + strings.TrimPrefix(s.URL, "http://"), "--room", "lobby", "--text", "x"}, "scheme must be ws, wss, http or https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), append([]string{"send"}, tt.args...), &stdout, &stderr)
			if err == nil {
				t.Fatal("send succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
			// What cannot work is not tried again.
			if tt.name == "bad server URL" && strings.Contains(stderr.String(), "trying again") {
				t.Errorf("a bad server URL was tried again: %s", stderr.String())
			}
		})
	}
}

// What the server refuses is told in the plain sentence protocol.Sentence
// has for the code (with the limit the server announced, where the code
// is about one), then the code in brackets, not in the server's words for
// developers; errors.As still finds the code.
func TestSendTellsServerErrorsPlainly(t *testing.T) {
	s := ferrytest.Start(t, ferrytest.DiskStore(t), transfer.Config{MaxFileSize: 64 << 10}, server.Config{})
	dir := t.TempDir()
	elf := writeFile(t, dir, "x.jpg", append([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, randomData(5000)...))
	big := writeFile(t, dir, "big.bin", randomData(100<<10))
	tests := []struct {
		name string
		args []string
		code string
		want string
	}{
		{"event name", []string{"--text", "x", "--event", strings.Repeat("e", 65)}, protocol.CodeInvalidEvent,
			"The app sent a kind of message the server does not accept. [invalid_event]"},
		{"room name", []string{"--text", "x", "--room", "no spaces"}, protocol.CodeInvalidRoom,
			`cannot join room "no spaces": Room names use letters, digits and . _ - : @ only, up to 64 characters. [invalid_room]`},
		{"lying type", []string{elf}, protocol.CodeTypeMismatch,
			elf + ": This file's contents don't match its name. [type_mismatch]"},
		{"too large", []string{big}, protocol.CodeTooLarge,
			big + ": This file is larger than the server accepts (limit 64.0 KiB). [too_large]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := send(t, append([]string{"--server", s.URL, "--room", "lobby"}, tt.args...)...)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error\n %v\nwant\n %s\nstderr: %s", err, tt.want, stderr)
			}
			if !errors.Is(err, &protocol.Error{Code: tt.code}) {
				t.Errorf("errors.Is(%v, %s) is false", err, tt.code)
			}
		})
	}
}

func TestSendRetriesOnce(t *testing.T) {
	// The server is down at first and comes up during the one retry.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	errc := make(chan error, 1)
	var stderr safeBuffer
	go func() {
		var stdout bytes.Buffer
		errc <- run(t.Context(), []string{"send", "--server", "http://" + addr, "--room", "lobby", "--text", "late"}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "trying again") {
		if time.Now().After(deadline) {
			t.Fatalf("no retry announced; stderr: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	startFerry(t, l, server.Config{})
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("send: %v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("send did not finish")
	}
}

// frames decodes JSON lines.
func frames(t *testing.T, out string) []map[string]any {
	t.Helper()
	var fs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var f map[string]any
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", line, err)
		}
		fs = append(fs, f)
	}
	return fs
}
