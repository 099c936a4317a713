package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
)

// waitOutput polls b until it contains s.
func waitOutput(t *testing.T, b *safeBuffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", s, b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slowDownloads stands between clients and the ferry at serverURL,
// passing WebSocket connections through as they are and file downloads at
// perSecond bytes a second, as a slow link would. It returns its URL.
func slowDownloads(t *testing.T, serverURL string, perSecond int) string {
	t.Helper()
	target, err := url.Parse(serverURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	tr := &http.Transport{}
	rp.Transport = tr
	rp.ModifyResponse = func(r *http.Response) error {
		if strings.HasPrefix(r.Request.URL.Path, "/files/") {
			r.Body = throttled{r.Body, perSecond}
		}
		return nil
	}
	hs := httptest.NewServer(rp)
	t.Cleanup(func() {
		hs.Close()
		tr.CloseIdleConnections()
	})
	return hs.URL
}

// throttled reads at perSecond bytes a second at most.
type throttled struct {
	io.ReadCloser
	perSecond int
}

func (r throttled) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p[:min(len(p), 16<<10)])
	time.Sleep(time.Duration(n) * time.Second / time.Duration(r.perSecond))
	return n, err
}

// Off a terminal, listen --out tells each file once, when it is saved,
// however long its download takes (here over two seconds, when send would
// have told its progress).
func TestListenOneLinePerFile(t *testing.T) {
	s := startFileFerry(t, diskStore(t))
	dir := t.TempDir()
	photo, photoData := writeJPEG(t, dir, "photo.jpg", 7)
	bigData := randomData(3 << 20)
	big := writeFile(t, dir, "big.bin", bigData)
	out := filepath.Join(dir, "inbox")
	l := startListen(t, "--server", slowDownloads(t, s.URL, 1<<20), "--room", "share", "--out", out)
	if _, stderr, err := send(t, "--server", s.URL, "--room", "share", photo, big); err != nil {
		t.Fatalf("send: %v\nstderr: %s", err, stderr)
	}
	waitFile(t, filepath.Join(out, "photo.jpg"), photoData)
	waitFile(t, filepath.Join(out, "big.bin"), bigData)
	waitOutput(t, &l.stderr, "saved "+filepath.Join(out, "big.bin"))
	l.stop(t)
	for _, name := range []string{"photo.jpg", "big.bin"} {
		var told []string
		for _, line := range strings.Split(l.stderr.String(), "\n") {
			if strings.Contains(line, name) {
				told = append(told, line)
			}
		}
		want := regexp.MustCompile(`^ferry: saved ` + regexp.QuoteMeta(filepath.Join(out, name)) + ` \(\d+\.\d [KM]iB from guest-\w+\) in \d`)
		if len(told) != 1 || !want.MatchString(told[0]) {
			t.Errorf("%s told in %d lines, want one matching %s:\n%s", name, len(told), want, l.stderr.String())
		}
	}
}

func TestListen(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	first := startFerry(t, l, server.Config{})
	url := "ws://" + addr
	alice, _, presence := member(t, url, "lobby", "alice")
	other, _, _ := member(t, url, "elsewhere", "other")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr safeBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"listen", "--server", url, "--room", "lobby", "--name", "ears"}, &stdout, &stderr)
	}()
	p := receive(t, presence)
	if p.Name != "ears" || p.Action != "join" {
		t.Fatalf("presence %+v, want ears joining", p)
	}
	waitOutput(t, &stderr, "listening")

	ctx5, cancel5 := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel5()
	if err := alice.Emit(ctx5, "lobby", "chat", map[string]any{"text": "one", "lines": "a\nb"}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.EmitTo(ctx5, client.Target{Room: "elsewhere"}, "chat", "not for ears"); err != nil {
		t.Fatal(err)
	}
	bob, _, _ := member(t, url, "lobby", "bob")
	waitOutput(t, &stdout, `"action":"join"`)

	// The server restarts; listen comes back to the room by itself.
	first.Stop()
	waitOutput(t, &stderr, "disconnected")
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	startFerry(t, l, server.Config{})
	waitOutput(t, &stderr, "reconnected")
	// bob is back in the room too (his client rejoins); his event reaches
	// ears only if ears rejoined as well.
	ctx10, cancel10 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel10()
	if err := bob.Emit(ctx10, "lobby", "chat", map[string]string{"text": "two"}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &stdout, `"two"`)

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("listen ended with %v\nstderr: %s", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("listen did not stop with its context")
	}

	fs := frames(t, stdout.String())
	var kinds []string
	for _, f := range fs {
		if f["room"] != "lobby" {
			t.Errorf("a frame of another room: %v", f)
		}
		kind := f["t"].(string)
		switch kind {
		case "event":
			data, _ := f["data"].(map[string]any)
			kind += ":" + data["text"].(string)
		case "gap":
			kind += ":" + f["reason"].(string)
		default:
			kind += ":" + f["action"].(string) + ":" + f["name"].(string)
		}
		kinds = append(kinds, kind)
	}
	// After the restart, presence frames depend on who rejoined first; the
	// frames before it, the lost history reported, and the last event are
	// fixed.
	if len(kinds) < 4 || kinds[0] != "event:one" || kinds[1] != "presence:join:bob" || !slices.Contains(kinds, "gap:epoch") || kinds[len(kinds)-1] != "event:two" {
		t.Errorf("frames %v, want event:one, presence:join:bob, ..., gap:epoch, ..., event:two", kinds)
	}
	if d := fs[0]["data"].(map[string]any); d["lines"] != "a\nb" {
		t.Errorf("data %v", d)
	}
}

func TestListenFails(t *testing.T) {
	authed := startFerry(t, nil, server.Config{AuthSecret: []byte("secret")})
	s := startFerry(t, nil, server.Config{})
	corrupt := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(corrupt, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no room", []string{"--server", s.URL}, "--room is required"},
		{"arguments", []string{"--server", s.URL, "--room", "lobby", "extra"}, "unexpected arguments"},
		{"bad room", []string{"--server", s.URL, "--room", "conn:x"}, `cannot join room "conn:x": ` + protocol.Sentence(protocol.CodeInvalidRoom) + " [invalid_room]"},
		{"no token", []string{"--server", authed.URL, "--room", "lobby"}, "401"},
		{"corrupt state", []string{"--server", s.URL, "--room", "lobby", "--state", corrupt}, "--state: " + corrupt},
		{"out is a file", []string{"--server", s.URL, "--room", "lobby", "--out", notDir}, "--out: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), append([]string{"listen"}, tt.args...), &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// A server that closes with a "do not reconnect" code ends listen with an
// error. No real server does that on cue, so a scripted one plays it.
func TestListenStopsOnFinalClose(t *testing.T) {
	handled := make(chan struct{}, 8)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { handled <- struct{}{} }()
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteJSON(protocol.Welcome{T: protocol.TypeWelcome, V: protocol.Version, Conn: "c_1", User: "u_1", Name: "ears"})
		var join protocol.Request
		if ws.ReadJSON(&join) != nil {
			return
		}
		_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: join.ID, Data: protocol.RoomMembers{Room: join.Room}})
		msg := websocket.FormatCloseMessage(protocol.CloseProtocolViolation, "scripted")
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_, _, _ = ws.ReadMessage()
	}))
	var stdout, stderr safeBuffer
	err := run(t.Context(), []string{"listen", "--server", hs.URL, "--room", "lobby"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "4503") {
		t.Errorf("listen ended with %v, want the 4503 close", err)
	}
	if strings.Contains(stderr.String(), "reconnected") {
		t.Errorf("listen reconnected after 4503:\n%s", stderr.String())
	}
	<-handled
	hs.Close()
	if n := len(handled); n != 0 {
		t.Errorf("%d more connections after the 4503 close", n)
	}
}
