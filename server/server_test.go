package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.Shared(m))
}

// peer is a raw protocol client used to see exactly what the server sends.
type peer struct {
	t       testing.TB
	backlog []frame // frames read while waiting for an answer
	ws      *websocket.Conn
	welcome protocol.Welcome
	nextID  uint64
	// storageErrors counts storage_unavailable errors seen while uploading.
	storageErrors int
}

type frame map[string]any

func startServer(t testing.TB, cfg server.Config) (*server.Server, string) {
	t.Helper()
	return serve(t, cfg, false)
}

// startTLSServer is startServer over TLS: it returns a "wss://" URL that
// dial and dialRaw trust.
func startTLSServer(t testing.TB, cfg server.Config) (*server.Server, string) {
	t.Helper()
	return serve(t, cfg, true)
}

func serve(t testing.TB, cfg server.Config, overTLS bool) (*server.Server, string) {
	t.Helper()
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	if overTLS {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	if overTLS {
		trustTLS(url, hs.Client().Transport.(*http.Transport).TLSClientConfig)
	}
	return srv, url
}

// onBothPaths runs test against a server on each of its socket paths
// (see socket.go): plain TCP, and TLS, which takes the portable path.
func onBothPaths(t *testing.T, cfg server.Config, test func(t *testing.T, srv *server.Server, url string)) {
	for _, p := range []struct {
		name  string
		start func(testing.TB, server.Config) (*server.Server, string)
	}{{"tcp", startServer}, {"tls", startTLSServer}} {
		t.Run(p.name, func(t *testing.T) {
			srv, url := p.start(t, cfg)
			test(t, srv, url)
		})
	}
}

// tlsConfigs holds, for each wss:// URL of a test server, a TLS
// configuration that trusts its certificate.
var tlsConfigs sync.Map

func trustTLS(url string, c *tls.Config) { tlsConfigs.Store(url, c) }

func tlsConfigFor(url string) *tls.Config {
	u, _, _ := strings.Cut(url, "?")
	if c, ok := tlsConfigs.Load(u); ok {
		return c.(*tls.Config)
	}
	return nil
}

func dial(t testing.TB, url string) *peer {
	t.Helper()
	d := *websocket.DefaultDialer
	d.TLSClientConfig = tlsConfigFor(url)
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	p := &peer{t: t, ws: ws}
	t.Cleanup(func() { ws.Close() })
	f := p.read()
	if f["t"] != "welcome" {
		t.Fatalf("first frame %v, want welcome", f)
	}
	b, _ := json.Marshal(f)
	_ = json.Unmarshal(b, &p.welcome)
	return p
}

func (p *peer) send(f frame) {
	p.t.Helper()
	if err := p.ws.WriteJSON(f); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *peer) sendRaw(mt int, b []byte) {
	p.t.Helper()
	if err := p.ws.WriteMessage(mt, b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *peer) read() frame {
	p.t.Helper()
	if len(p.backlog) > 0 {
		f := p.backlog[0]
		p.backlog = p.backlog[1:]
		return f
	}
	return p.readWire()
}

func (p *peer) readWire() frame {
	p.t.Helper()
	_ = p.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f frame
	if err := p.ws.ReadJSON(&f); err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return f
}

// readType reads until a frame of type typ, skipping presence frames.
func (p *peer) readType(typ string) frame {
	p.t.Helper()
	for {
		f := p.read()
		if f["t"] == typ {
			return f
		}
		if f["t"] != "presence" {
			p.t.Fatalf("got %v while waiting for %s", f, typ)
		}
	}
}

// request sends f with a fresh id and returns the ack or error answering it.
func (p *peer) request(f frame) frame {
	p.t.Helper()
	p.nextID++
	f["id"] = p.nextID
	p.send(f)
	for {
		r := p.readWire()
		if (r["t"] == "ack" || r["t"] == "error") && r["id"] == float64(p.nextID) {
			return r
		}
		p.backlog = append(p.backlog, r)
	}
}

func (p *peer) mustAck(f frame) frame {
	p.t.Helper()
	r := p.request(f)
	if r["t"] != "ack" {
		p.t.Fatalf("%v: got %v, want ack", f, r)
	}
	return r
}

func (p *peer) mustError(f frame, code string) frame {
	p.t.Helper()
	r := p.request(f)
	if r["t"] != "error" || r["code"] != code {
		p.t.Fatalf("%v: got %v, want error %s", f, r, code)
	}
	if msg, _ := r["message"].(string); msg == "" {
		p.t.Fatalf("error without message: %v", r)
	}
	return r
}

func TestWelcome(t *testing.T) {
	_, url := startServer(t, server.Config{PingInterval: 3 * time.Second, PingTimeout: 2 * time.Second})
	p := dial(t, url+"?name=alice")
	w := p.welcome
	if w.V != protocol.Version || !strings.HasPrefix(w.Conn, "c_") || !strings.HasPrefix(w.User, "u_") || w.Name != "alice" {
		t.Fatalf("welcome %+v", w)
	}
	if w.PingIntervalMS != 3000 || w.PingTimeoutMS != 2000 || w.Limits.MaxFrame != 1<<20 || w.Token == "" {
		t.Fatalf("welcome settings %+v", w)
	}
	// The token brings the same user back.
	q := dial(t, url+"?token="+w.Token)
	if q.welcome.User != w.User || q.welcome.Name != "alice" || q.welcome.Conn == w.Conn {
		t.Fatalf("second connection %+v, first %+v", q.welcome, w)
	}
}

func TestRoomsAndEvents(t *testing.T) {
	onBothPaths(t, server.Config{}, testRoomsAndEvents)
}

func testRoomsAndEvents(t *testing.T, _ *server.Server, url string) {
	a := dial(t, url+"?name=alice")
	b := dial(t, url+"?name=bob")
	c := dial(t, url+"?name=carol")

	a.mustAck(frame{"t": "join", "room": "lobby"})
	ack := b.mustAck(frame{"t": "join", "room": "lobby"})
	members := ack["data"].(map[string]any)["members"].([]any)
	if len(members) != 2 {
		t.Fatalf("members after join: %v", members)
	}
	pres := a.readType("presence")
	if pres["action"] != "join" || pres["user"] != b.welcome.User || pres["room"] != "lobby" || pres["connections"] != float64(1) {
		t.Fatalf("presence %v", pres)
	}

	r := a.mustAck(frame{"t": "emit", "room": "lobby", "event": "chat", "data": frame{"text": "hi"}})
	if r["data"].(map[string]any)["delivered"] != float64(2) {
		t.Fatalf("emit ack %v", r)
	}
	for _, p := range []*peer{a, b} {
		ev := p.readType("event")
		if ev["event"] != "chat" || ev["room"] != "lobby" || ev["data"].(map[string]any)["text"] != "hi" {
			t.Fatalf("event %v", ev)
		}
		if from := ev["from"].(map[string]any); from["user"] != a.welcome.User || from["name"] != "alice" {
			t.Fatalf("from %v", from)
		}
	}
	// except_self: only bob.
	r = a.mustAck(frame{"t": "emit", "room": "lobby", "event": "typing", "data": true, "except_self": true})
	if r["data"].(map[string]any)["delivered"] != float64(1) {
		t.Fatalf("except_self ack %v", r)
	}
	if ev := b.readType("event"); ev["event"] != "typing" || ev["data"] != true {
		t.Fatalf("typing %v", ev)
	}

	// carol is not in the room.
	c.mustError(frame{"t": "emit", "room": "lobby", "event": "chat"}, "not_member")
	c.mustError(frame{"t": "members", "room": "lobby"}, "not_member")
	c.mustError(frame{"t": "emit", "room": "nowhere", "event": "chat"}, "not_member") // the same as for a room that exists
	c.mustError(frame{"t": "leave", "room": "lobby"}, "not_member")

	// Direct messages to a user and to a connection.
	c.mustAck(frame{"t": "emit", "user": b.welcome.User, "event": "dm", "data": "psst"})
	if ev := b.readType("event"); ev["room"] != "user:"+b.welcome.User || ev["data"] != "psst" {
		t.Fatalf("dm %v", ev)
	}
	c.mustAck(frame{"t": "emit", "room": "conn:" + a.welcome.Conn, "event": "sig"})
	if ev := a.readType("event"); ev["event"] != "sig" || ev["data"] != nil {
		t.Fatalf("conn dm %v", ev)
	}
	c.mustError(frame{"t": "emit", "conn": "c_nobody", "event": "dm"}, "unknown_target")

	// rooms and leave.
	if r := a.mustAck(frame{"t": "rooms"}); len(r["data"].(map[string]any)["rooms"].([]any)) != 1 {
		t.Fatalf("rooms %v", r)
	}
	b.mustAck(frame{"t": "leave", "room": "lobby"})
	if pres := a.readType("presence"); pres["action"] != "leave" || pres["connections"] != float64(0) {
		t.Fatalf("leave presence %v", pres)
	}
}

func TestBadInput(t *testing.T) {
	_, url := startServer(t, server.Config{MaxFrame: 1024})
	p := dial(t, url)
	for _, tc := range []struct {
		name string
		raw  string
		code string
	}{
		{"not json", `{"t":`, "bad_frame"},
		{"not an object", `[1,2]`, "bad_frame"},
		{"no type", `{"room":"x"}`, "unknown_type"},
		{"unknown type", `{"t":"explode"}`, "unknown_type"},
		{"wrong field type", `{"t":"join","room":7}`, "bad_frame"},
		{"too large", `{"t":"emit","data":"` + strings.Repeat("x", 2000) + `"}`, "frame_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.sendRaw(websocket.TextMessage, []byte(tc.raw))
			f := p.read()
			if f["t"] != "error" || f["code"] != tc.code {
				t.Fatalf("got %v, want %s", f, tc.code)
			}
		})
	}
	for _, tc := range []struct {
		f    frame
		code string
	}{
		{frame{"t": "join", "room": ""}, "invalid_room"},
		{frame{"t": "join", "room": "a/b"}, "invalid_room"},
		{frame{"t": "join", "room": strings.Repeat("r", 65)}, "invalid_room"},
		{frame{"t": "join", "room": "user:someone"}, "invalid_room"},
		{frame{"t": "emit", "room": "lobby", "event": ""}, "invalid_event"},
		{frame{"t": "emit", "room": "lobby", "event": "file"}, "invalid_event"},
		{frame{"t": "emit", "room": "lobby", "user": "u_x", "event": "e"}, "invalid_target"},
		{frame{"t": "emit", "event": "e"}, "invalid_target"},
	} {
		p.mustError(tc.f, tc.code)
	}
	// The connection still works.
	p.mustAck(frame{"t": "join", "room": "ok"})
}

func TestRateLimit(t *testing.T) {
	_, url := startServer(t, server.Config{Rate: 1, RateBurst: 5})
	p := dial(t, url)
	for i := 0; i < 5; i++ {
		p.mustAck(frame{"t": "rooms"})
	}
	p.mustError(frame{"t": "rooms"}, "rate_limited")
	// Pings are not limited.
	p.send(frame{"t": "ping", "ts": 42})
	if f := p.readType("pong"); f["ts"] != float64(42) || f["server_ts"] == nil {
		t.Fatalf("pong %v", f)
	}
}

func TestFloodCloses(t *testing.T) {
	_, url := startServer(t, server.Config{Rate: 1, RateBurst: 2})
	p := dial(t, url)
	for i := 0; i < 20; i++ {
		p.send(frame{"t": "rooms"})
	}
	code := readUntilClose(t, p)
	if code != protocol.CloseFlood {
		t.Fatalf("close code %d, want %d", code, protocol.CloseFlood)
	}
}

func readUntilClose(t *testing.T, p *peer) int {
	t.Helper()
	for {
		_ = p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err := p.ws.ReadMessage()
		if err == nil {
			continue
		}
		if ce, ok := err.(*websocket.CloseError); ok {
			return ce.Code
		}
		t.Fatalf("read ended without a close frame: %v", err)
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	_, url := startServer(t, server.Config{PingInterval: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond})
	alive := dial(t, url)
	alive.mustAck(frame{"t": "join", "room": "r"})
	dead := dial(t, url)
	dead.mustAck(frame{"t": "join", "room": "r"})
	alive.readType("presence")

	// dead stops answering pings (and reading); alive keeps reading, and its
	// client library answers the pings.
	dead.ws.SetPingHandler(func(string) error { return nil })
	start := time.Now()
	f := alive.readType("presence")
	if f["action"] != "leave" || f["user"] != dead.welcome.User {
		t.Fatalf("presence %v", f)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("dropped after %v, before ping interval + timeout", d)
	}
	// The live one is still there after several ping rounds.
	alive.mustAck(frame{"t": "members", "room": "r"})
}

func TestOriginCheck(t *testing.T) {
	_, url := startServer(t, server.Config{AllowedOrigins: []string{"https://chat.example.com"}})
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"https://evil.example.com", false},
		{"https://chat.example.com", true},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		ws, resp, err := websocket.DefaultDialer.Dial(url, h)
		if tc.ok != (err == nil) {
			t.Fatalf("origin %q: err %v", tc.origin, err)
		}
		if err == nil {
			ws.Close()
		} else if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("origin %q: status %d", tc.origin, resp.StatusCode)
		}
	}
}

func TestAuthSecret(t *testing.T) {
	secret := []byte("s3cret")
	_, url := startServer(t, server.Config{AuthSecret: secret})
	if _, resp, err := websocket.DefaultDialer.Dial(url, nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %v", err)
	}
	bad, _ := server.SignToken([]byte("other"), "alice", "Alice", time.Hour)
	if _, resp, err := websocket.DefaultDialer.Dial(url+"?token="+bad, nil); err == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %v", err)
	}
	expired, _ := server.SignToken(secret, "alice", "Alice", -time.Minute)
	if _, _, err := websocket.DefaultDialer.Dial(url+"?token="+expired, nil); err == nil {
		t.Fatal("expired token accepted")
	}
	good, _ := server.SignToken(secret, "alice", "Alice", time.Hour)
	h := http.Header{"Authorization": {"Bearer " + good}}
	ws, _, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var w protocol.Welcome
	if err := ws.ReadJSON(&w); err != nil || w.User != "alice" || w.Name != "Alice" || w.Token != "" {
		t.Fatalf("welcome %+v %v", w, err)
	}
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	onBothPaths(t, server.Config{}, testShutdownClosesWithGoingAway)
}

func testShutdownClosesWithGoingAway(t *testing.T, srv *server.Server, url string) {
	p := dial(t, url)
	done := make(chan int, 1)
	go func() {
		for {
			_, _, err := p.ws.ReadMessage()
			if err != nil {
				ce, _ := err.(*websocket.CloseError)
				if ce != nil {
					done <- ce.Code
				} else {
					done <- -1
				}
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != protocol.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	// Shutdown returned once the connection ended: its socket is closed
	// too, not left for the close frame's grace period.
	nc := p.ws.UnderlyingConn()
	_ = nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := nc.Read(make([]byte, 16)); err != io.EOF {
		t.Fatalf("after shutdown the socket read %d bytes, %v; want EOF", n, err)
	}
}

func TestSlowClientDropped(t *testing.T) {
	onBothPaths(t, server.Config{MaxQueue: 256 << 10, Rate: 1e6, RateBurst: 1e6, WriteTimeout: 2 * time.Second}, testSlowClientDropped)
}

func testSlowClientDropped(t *testing.T, srv *server.Server, url string) {
	fast := dial(t, url)
	slow := dial(t, url)
	fast.mustAck(frame{"t": "join", "room": "r"})
	slow.mustAck(frame{"t": "join", "room": "r"})
	fast.readType("presence")
	// slow stops reading; fast publishes far more than kernel buffers and
	// the queue hold, and keeps receiving everything. fast keeps at most
	// three events (180 KiB) in flight to itself, so that it never has more
	// than the queue holds waiting, whatever its reading and writing speeds.
	big := strings.Repeat("x", 60<<10)
	const events = 300
	credits := make(chan struct{}, 3)
	for range cap(credits) {
		credits <- struct{}{}
	}
	go func() {
		for i := 0; i < events; i++ {
			<-credits
			if err := fast.ws.WriteJSON(frame{"t": "emit", "room": "r", "event": "blob", "data": fmt.Sprint(i, big)}); err != nil {
				return
			}
		}
	}()
	got := 0
	sawLeave := false
	for got < events {
		f := fast.readWire()
		switch f["t"] {
		case "event":
			if want := fmt.Sprint(got, big); f["data"] != want {
				d, _ := f["data"].(string)
				t.Fatalf("event %d: got %.10q…, want %.10q…", got, d, want)
			}
			got++
			credits <- struct{}{}
		case "presence":
			sawLeave = sawLeave || (f["action"] == "leave" && f["user"] == slow.welcome.User)
		}
	}
	if !sawLeave {
		// The leave may come after the last event.
		f := fast.readType("presence")
		sawLeave = f["action"] == "leave"
	}
	if !sawLeave {
		t.Fatal("slow client was not dropped")
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "ferry_slow_clients_dropped_total 1\n") {
		t.Fatalf("metrics:\n%s", rec.Body.String())
	}
}

// Frames the request rate does not pace by themselves are bounded too:
// refused chunks (for an unknown upload) cost a request each, and received
// frames have a budget of ten times the rate. A client that keeps sending
// past them is closed with 4502; until then it gets at most a burst of
// answers.
func TestUnpacedFramesLimited(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{Rate: 10, RateBurst: 20})
	for _, tc := range []struct {
		name string
		send func(p *peer) error
	}{
		{"chunks for an unknown upload", func(p *peer) error {
			return p.ws.WriteMessage(websocket.BinaryMessage, protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: "u_nothing"}))
		}},
		{"base64 chunks for an unknown upload", func(p *peer) error {
			return p.ws.WriteJSON(frame{"t": "upload.chunk", "upload": "u_nothing", "offset": 0, "data": "eA=="})
		}},
		{"received frames", func(p *peer) error { return p.ws.WriteJSON(frame{"t": "received", "room": "r", "seq": 1}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dial(t, e.WS)
			p.mustAck(frame{"t": "join", "room": "r"})
			done := make(chan struct{})
			answers, code := 0, 0
			go func() {
				defer close(done)
				_ = p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
				for {
					_, b, err := p.ws.ReadMessage()
					if ce, ok := err.(*websocket.CloseError); ok {
						code = ce.Code
						return
					}
					if err != nil {
						return
					}
					if strings.Contains(string(b), `"error"`) {
						answers++
					}
				}
			}()
			for range 3000 {
				if tc.send(p) != nil {
					break // closed
				}
			}
			<-done
			if code != protocol.CloseFlood {
				t.Errorf("close code %d after 3000 frames, want 4502", code)
			}
			if answers > 40 {
				t.Errorf("%d error frames answered, want at most a burst and what the rate refilled", answers)
			}
		})
	}
}
