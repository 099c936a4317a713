package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms/jetstream"
)

// wire is a client written from docs/protocol.md alone, so that the Go
// client's own catching up cannot hide what the server sends.
type wire struct {
	t     *testing.T
	ws    *websocket.Conn
	id    uint64
	token string // the welcome's, to come back as the same user
	user  string // the welcome's
}

// dialWire connects to the server at addr, as the user token names (a
// new anonymous one without).
func dialWire(t *testing.T, addr, token string) *wire {
	t.Helper()
	u := "ws://" + addr + "/ws"
	if token != "" {
		u += "?token=" + url.QueryEscape(token)
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	w := &wire{t: t, ws: ws}
	f := w.next()
	if f["t"] != protocol.TypeWelcome {
		t.Fatalf("first frame %v, want the welcome", f)
	}
	w.token, _ = f["token"].(string)
	w.user, _ = f["user"].(string)
	return w
}

// next reads one frame.
func (w *wire) next() map[string]any {
	w.t.Helper()
	_ = w.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, b, err := w.ws.ReadMessage()
	if err != nil {
		w.t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		w.t.Fatal(err)
	}
	return f
}

// request sends req with a fresh id and returns the frames that came
// before its answer, and the answer's data.
func (w *wire) request(req map[string]any) (before []map[string]any, data map[string]any) {
	w.t.Helper()
	w.id++
	req["id"] = w.id
	if err := w.ws.WriteJSON(req); err != nil {
		w.t.Fatal(err)
	}
	for {
		f := w.next()
		if id, _ := f["id"].(float64); uint64(id) == w.id {
			if f["t"] == protocol.TypeError {
				w.t.Fatalf("%v answered %v", req, f)
			}
			d, _ := f["data"].(map[string]any)
			return before, d
		}
		before = append(before, f)
	}
}

// A server killed with SIGKILL keeps its rooms' history (the default,
// --state jetstream, in an embedded NATS server under --data): a client
// that saw events up to 400 gets exactly the rest after the restart, in
// the same epoch, and the files shared before it, which the room also
// lists (files) with fresh links. It keeps the direct
// messages waiting for a user who is away too: the user, back with its
// token after the restart, gets the message once.
//
// With --nats, the history lives in that NATS server, here one started by
// the test that outlives the killed ferry.
func TestRestartKeepsHistory(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { testRestartKeepsHistory(t, nil) })
	t.Run("nats", func(t *testing.T) {
		port := freePort(t)
		emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: port})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
		testRestartKeepsHistory(t, []string{"--nats", "nats://" + port})
	})
}

func testRestartKeepsHistory(t *testing.T, extra []string) {
	data := t.TempDir()
	addr := freePort(t)
	serve := func() *ferryProcess {
		args := append([]string{"serve", "--addr", addr, "--data", data, "--rate", "100000", "--rate-burst", "100000"}, extra...)
		p := startFerryProcess(t, nil, args...)
		waitOutput(t, &p.stderr, "listening")
		return p
	}
	first := serve()

	w := dialWire(t, addr, "")
	_, joined := w.request(map[string]any{"t": "join", "room": "lobby"})
	epoch, _ := joined["epoch"].(string)

	// bob comes by the lobby and leaves, then alice writes to him.
	bob := dialWire(t, addr, "")
	bob.request(map[string]any{"t": "join", "room": "lobby"})
	bob.ws.Close()
	for f := w.next(); f["t"] != protocol.TypePresence || f["action"] != "leave" || f["user"] != bob.user; f = w.next() {
	}
	_, dm := w.request(map[string]any{"t": "emit", "user": bob.user, "event": "dm",
		"data": map[string]any{"text": "while you were away"}, "msg_id": "dm-1"})
	if dm["queued"] != true {
		t.Fatalf("the direct message to bob, away, acked %v, want queued", dm)
	}
	const events = 1000
	for i := 1; i <= events; i++ {
		_, ack := w.request(map[string]any{"t": "emit", "room": "lobby", "event": "chat",
			"data": map[string]any{"n": i}, "msg_id": fmt.Sprintf("m%d", i)})
		if ack["epoch"] != epoch || ack["seq"] != float64(i) {
			t.Fatalf("emit %d acked %v, want seq %d in epoch %s", i, ack, i, epoch)
		}
	}
	// Five files, as a user shares them: each is announced in the room.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	var files []client.File
	for i := range 5 {
		body := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
		f, err := c.Upload(ctx, "lobby", bytes.NewReader(body), int64(len(body)), client.UploadOptions{Name: fmt.Sprintf("note%d.txt", i)})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	c.Close()

	// Killed: no shutdown, no flush.
	if err := first.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-first.done
	serve()

	r := dialWire(t, addr, w.token) // the same user, as a client coming back
	before, ack := r.request(map[string]any{"t": "join", "room": "lobby",
		"since": map[string]any{"epoch": epoch, "seq": 400}})
	if ack["recovery"] != "ok" || ack["epoch"] != epoch {
		t.Fatalf("join after the restart: %v, want recovery ok in epoch %s", ack, epoch)
	}
	var chat, shared []map[string]any
	next := uint64(401)
	for _, f := range before {
		if f["t"] != protocol.TypeEvent {
			continue
		}
		if seq := uint64(f["seq"].(float64)); seq != next || f["epoch"] != epoch {
			t.Fatalf("replayed seq %v of epoch %v, want %d of %s", f["seq"], f["epoch"], next, epoch)
		}
		next++
		switch f["event"] {
		case "chat":
			chat = append(chat, f)
		case "file":
			shared = append(shared, f)
		}
	}
	if len(chat) != events-400 || len(shared) != len(files) {
		t.Fatalf("replayed %d chat events and %d files, want %d and %d", len(chat), len(shared), events-400, len(files))
	}
	for i, f := range shared {
		d := f["data"].(map[string]any)
		if d["id"] != files[i].ID {
			t.Errorf("file %d replayed as %v, want %s", i, d["id"], files[i].ID)
		}
	}
	// The room lists its files, newest first, with links signed anew.
	_, listed := r.request(map[string]any{"t": "files", "room": "lobby", "limit": 3})
	_, rest := r.request(map[string]any{"t": "files", "room": "lobby", "before": listed["next"]})
	all := append(listed["files"].([]any), rest["files"].([]any)...)
	if len(all) != len(files) || rest["next"] != nil {
		t.Fatalf("files after the restart: %v then %v, want %d files in two pages", listed, rest, len(files))
	}
	for i, v := range all {
		f, want := v.(map[string]any), files[len(files)-1-i]
		if f["id"] != want.ID || f["name"] != want.Name {
			t.Errorf("listed file %d is %v %v, want %s %s", i, f["id"], f["name"], want.ID, want.Name)
		}
		if body := get(t, "http://"+addr+f["url"].(string)); len(body) != int(want.Size) {
			t.Errorf("%s by its listed link: %d bytes, want %d", want.Name, len(body), want.Size)
		}
	}
	// A resend of an emit from before the restart is still a duplicate.
	_, dup := r.request(map[string]any{"t": "emit", "room": "lobby", "event": "chat",
		"data": map[string]any{"n": 7}, "msg_id": "m7"})
	if dup["duplicate"] != true || dup["seq"] != float64(7) {
		t.Errorf("resent emit after the restart acked %v, want the first ack marked duplicate", dup)
	}
	// The direct message's resend is still a duplicate; bob, back with his
	// token, gets it right after his welcome, once, as it was numbered.
	_, dup = r.request(map[string]any{"t": "emit", "user": bob.user, "event": "dm",
		"data": map[string]any{"text": "while you were away"}, "msg_id": "dm-1"})
	if dup["duplicate"] != true || dup["seq"] != dm["seq"] || dup["epoch"] != dm["epoch"] {
		t.Errorf("resent direct message after the restart acked %v, want the first ack %v marked duplicate", dup, dm)
	}
	back := dialWire(t, addr, bob.token)
	if back.user != bob.user {
		t.Fatalf("bob came back as %s, not %s", back.user, bob.user)
	}
	got := back.next()
	if got["t"] != protocol.TypeEvent || got["event"] != "dm" || got["seq"] != dm["seq"] || got["epoch"] != dm["epoch"] ||
		got["data"].(map[string]any)["text"] != "while you were away" {
		t.Fatalf("bob's first frame after the restart: %v, want the direct message as acked %v", got, dm)
	}
	// Nothing else waited: what comes before a request's answer is no
	// repeat.
	before, _ = back.request(map[string]any{"t": "join", "room": "lobby"})
	for _, f := range before {
		if f["t"] == protocol.TypeEvent {
			t.Errorf("bob got %v after the direct message", f)
		}
	}
	_, err = os.Stat(filepath.Join(data, ".ferry", "nats"))
	if embedded := extra == nil; embedded != (err == nil) {
		t.Errorf("NATS folder under --data: %v, want one only for the embedded server", err)
	}
}
