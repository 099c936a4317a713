package main

import (
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

var listening = regexp.MustCompile(`listening on https?://([0-9.:]+)/`)

// startServe runs "ferry serve" in-process on a free port and returns its
// address and a function that stops it (as SIGINT would) and returns run's
// error.
func startServe(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr safeBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"serve", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, args...), io.Discard, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			stopped := false
			stop := func() error {
				if stopped {
					return nil
				}
				stopped = true
				cancel()
				return <-errc
			}
			t.Cleanup(func() { _ = stop() })
			return m[1], stop
		}
		select {
		case err := <-errc:
			cancel()
			t.Fatalf("serve ended: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServe(t *testing.T) {
	addr, stop := startServe(t, "--ping-interval", "2s")
	for path, want := range map[string]string{"/": "<!doctype html>", "/healthz": "ok", "/metrics": "ferry_connections 0"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, b)
		}
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?name=ann", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var w protocol.Welcome
	if err := ws.ReadJSON(&w); err != nil || w.Name != "ann" || w.PingIntervalMS != 2000 || w.Limits.MaxChunk != 1<<20 {
		t.Fatalf("welcome %+v %v", w, err)
	}
	// Stopping the server (SIGINT) tells clients to come back later.
	got := make(chan int, 1)
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				ce, _ := err.(*websocket.CloseError)
				if ce == nil {
					got <- -1
				} else {
					got <- ce.Code
				}
				return
			}
		}
	}()
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if code := <-got; code != protocol.CloseGoingAway || !protocol.Reconnectable(code) {
		t.Fatalf("close code %d", code)
	}
}

func TestServeFlagsFromEnvironment(t *testing.T) {
	t.Setenv("FERRY_MAX_FRAME", "4096")
	t.Setenv("FERRY_AUTH_SECRET", "s3cret")
	addr, _ := startServe(t)
	// The secret is required now: no token, no connection.
	if _, resp, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("connected without a token: %v", err)
	}
	var out safeBuffer
	if err := run(context.Background(), []string{"token", "--user", "alice", "--name", "Alice"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out.String())
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var w protocol.Welcome
	if err := ws.ReadJSON(&w); err != nil || w.User != "alice" || w.Name != "Alice" || w.Limits.MaxFrame != 4096 {
		t.Fatalf("welcome %+v %v", w, err)
	}
}

// Help, asked for, goes to stdout and succeeds; a mistake is told in one
// line on the error, naming the flag as it is written.
func TestHelpAndMistakes(t *testing.T) {
	for _, cmd := range [][]string{{"serve", "--help"}, {"send", "-h"}, {"listen", "--help"}, {"token", "--help"}, {"bench", "idle", "--help"}} {
		var stdout, stderr safeBuffer
		if err := run(context.Background(), cmd, &stdout, &stderr); err != nil {
			t.Errorf("%v: %v", cmd, err)
		}
		if !strings.Contains(stdout.String(), "usage: ferry "+cmd[0]) || stderr.String() != "" {
			t.Errorf("%v: stdout %.60q, stderr %.60q; want the usage on stdout alone", cmd, stdout.String(), stderr.String())
		}
	}
	var stdout safeBuffer
	_ = run(context.Background(), []string{"serve", "--help"}, &stdout, io.Discard)
	for _, want := range []string{"--addr (env FERRY_ADDR)", "--s3-endpoint (env FERRY_S3_ENDPOINT)", "--ping-interval (env FERRY_PING_INTERVAL)", "--max-frame (env FERRY_MAX_FRAME)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Fatalf("help lacks %q:\n%s", want, stdout.String())
		}
	}
	var stderr safeBuffer
	err := run(context.Background(), []string{"serve", "--bogus"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "unknown flag --bogus") || stderr.String() != "" {
		t.Errorf("unknown flag: %v; stderr %.80q (want one line, no usage)", err, stderr.String())
	}
	if err := run(context.Background(), []string{"serve", "--max-frame", "abc"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--max-frame") {
		t.Errorf("bad value: %v", err)
	}
	stdout = safeBuffer{}
	if err := run(context.Background(), []string{"--version"}, &stdout, io.Discard); err != nil || !strings.HasPrefix(stdout.String(), "ferry ") {
		t.Errorf("--version: %v %q", err, stdout.String())
	}
	if err := run(context.Background(), []string{"nonsense"}, io.Discard, io.Discard); err == nil {
		t.Fatal("unknown command accepted")
	}
	if err := run(context.Background(), []string{"token"}, io.Discard, io.Discard); err == nil {
		t.Fatal("token without --user accepted")
	}
}

// serve's help lists every flag once, under the heading of its group, the
// essentials first: a flag added to register and not to serveGroups fails
// here, so that no flag is forgotten in the help.
func TestServeHelpGroupsEveryFlag(t *testing.T) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	new(serveFlags).register(fs)
	groupOf := make(map[string]string)
	var titles []string
	for _, g := range serveGroups {
		titles = append(titles, g.title)
		for _, name := range g.flags {
			if fs.Lookup(name) == nil {
				t.Errorf("group %q lists --%s, which serve does not define", g.title, name)
			}
			if prev, ok := groupOf[name]; ok {
				t.Errorf("--%s is in two groups, %q and %q", name, prev, g.title)
			}
			groupOf[name] = g.title
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := groupOf[f.Name]; !ok {
			t.Errorf("--%s is in no group: add it to the group of its subject in serveGroups", f.Name)
		}
	})

	var stdout, stderr safeBuffer
	if err := run(context.Background(), []string{"serve", "--help"}, &stdout, &stderr); err != nil || stderr.String() != "" {
		t.Fatalf("serve --help: %v; stderr %q", err, stderr.String())
	}
	var headings []string
	listedUnder := make(map[string]string)
	for _, line := range strings.Split(stdout.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "  --"):
			name := strings.TrimPrefix(strings.Fields(line)[0], "--")
			if _, twice := listedUnder[name]; twice {
				t.Errorf("--%s listed twice", name)
			}
			if len(headings) == 0 {
				t.Fatalf("--%s listed before any heading:\n%s", name, stdout.String())
			}
			listedUnder[name] = headings[len(headings)-1]
		case line != "" && !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":"):
			headings = append(headings, strings.TrimSuffix(line, ":"))
		}
	}
	if !slices.Equal(headings, titles) || titles[0] != "Essentials" {
		t.Errorf("headings %q, want %q, Essentials first", headings, titles)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if got := listedUnder[f.Name]; got != groupOf[f.Name] {
			t.Errorf("--%s listed under %q, want %q", f.Name, got, groupOf[f.Name])
		}
	})
	for _, want := range []string{
		"\nEssentials:\n  --addr (env FERRY_ADDR) default 127.0.0.1:8080\n      address to listen on\n",
		"  --max-file-size (env FERRY_MAX_FILE_SIZE) default 2GiB\n",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// A server listening on every interface is announced by addresses a
// person can open.
func TestOpenableURLs(t *testing.T) {
	urls := openableURLs("http", &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080})
	if urls[0] != "http://127.0.0.1:8080/" || slices.ContainsFunc(urls, func(u string) bool { return strings.Contains(u, "[::]") }) {
		t.Fatalf("urls %q", urls)
	}
	if u := openableURLs("https", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}); len(u) != 1 || u[0] != "https://127.0.0.1:9/" {
		t.Fatalf("a fixed address: %q", u)
	}
}
