package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
)

func TestReconnectAfterServerRestart(t *testing.T) {
	ctx := testContext(t)
	// The same key on both servers, as a restarted server reads it back from
	// its data folder: anonymous tokens stay valid.
	cfg := server.Config{AnonKey: []byte("0123456789abcdef0123456789abcdef")}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	first := startServerOn(t, l, cfg)

	fast := withBackoff(Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond})
	alice := dial(t, "http://"+addr, "alice", fast)
	bob := dial(t, "ws://"+addr+"/ws", "bob", fast)
	ra, rb := record(alice), record(bob)
	for _, c := range []*Client{alice, bob} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	next(t, ra.presence)
	user, conn := alice.User(), alice.ID()

	first.Stop()
	for _, r := range []*recorder{ra, rb} {
		l, _ := r.until(t, LifecycleDisconnect)
		if l.Code != protocol.CloseGoingAway || l.Reason != ReasonTransportClose {
			t.Errorf("disconnect %+v, want 1001 and %q", l, ReasonTransportClose)
		}
		// With no server there, attempts fail and the client keeps trying.
		if l, _ := r.until(t, LifecycleConnectError); l.Attempt < 1 || l.Err == nil {
			t.Errorf("connect_error %+v", l)
		}
	}
	if st := alice.State(); st != StateReconnecting {
		t.Errorf("state while the server is down: %v", st)
	}

	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	startServerOn(t, l, cfg)
	for _, r := range []*recorder{ra, rb} {
		rec, skipped := r.until(t, LifecycleReconnect)
		if rec.Attempt < 2 {
			t.Errorf("reconnect after %d attempts; at least one failed first", rec.Attempt)
		}
		if i := slices.Index(names(skipped), LifecycleReconnectAttempt); i < 0 {
			t.Errorf("reconnect without reconnect_attempt: %v", names(skipped))
		}
		if l := next(t, r.lifecycle); l.Name != LifecycleConnect {
			t.Errorf("after reconnect: %+v, want connect", l)
		}
	}
	if alice.State() != StateConnected {
		t.Errorf("state %v", alice.State())
	}
	if alice.User() != user {
		t.Errorf("user id changed across the restart: %s, then %s", user, alice.User())
	}
	if alice.ID() == conn {
		t.Errorf("connection id %s did not change", conn)
	}
	if rooms, err := alice.Rooms(ctx); err != nil || !slices.Equal(rooms, []string{"lobby"}) {
		t.Errorf("rooms on the new server: %v, %v", rooms, err)
	}
	members, err := bob.Members(ctx, "lobby")
	if err != nil || len(members) != 2 {
		t.Errorf("members on the new server: %v, %v", members, err)
	}
	if err := bob.Emit(ctx, "lobby", "chat", "back"); err != nil {
		t.Fatal(err)
	}
	if e := ra.nextEvent(t, "chat"); string(e.Data) != `"back"` || e.From.Conn != bob.ID() {
		t.Errorf("event after the restart: %+v", e)
	}
}

func TestCloseCodes(t *testing.T) {
	tests := []struct {
		code      int
		reconnect bool
	}{
		{protocol.CloseNormal, true},
		{protocol.CloseGoingAway, true},
		{protocol.CloseMessageTooBig, true},
		{protocol.CloseSlow, true},
		{protocol.CloseHeartbeatTimeout, true},
		{4499, true},
		{protocol.CloseUnauthorized, false},
		{protocol.CloseFlood, false},
		{protocol.CloseProtocolViolation, false},
		{4999, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.code), func(t *testing.T) {
			ctx := testContext(t)
			f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
				_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
				if n == 1 {
					// Ack the test's join, then close.
					var req protocol.Request
					if ws.ReadJSON(&req) != nil {
						return
					}
					_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: protocol.RoomMembers{Room: req.Room}})
					msg := websocket.FormatCloseMessage(tt.code, "scripted")
					_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
					drain(ws)
					return
				}
				answer(ws, nil)
			})
			c := dial(t, f.URL, "x", withBackoff(Backoff{Initial: 5 * time.Millisecond}))
			r := record(c)
			if _, err := c.Join(ctx, "lobby"); err != nil {
				t.Fatal(err)
			}
			d, _ := r.until(t, LifecycleDisconnect)
			var ce *CloseError
			if d.Code != tt.code || !errors.As(d.Err, &ce) || ce.Code != tt.code || ce.Text != "scripted" {
				t.Errorf("disconnect %+v, want code %d", d, tt.code)
			}
			if !tt.reconnect {
				if d.Reason != ReasonServerClose {
					t.Errorf("reason %q, want %q", d.Reason, ReasonServerClose)
				}
				next(t, c.Done())
				if !errors.As(c.Err(), &ce) || ce.Code != tt.code {
					t.Errorf("Err = %v", c.Err())
				}
				if _, err := c.Join(ctx, "lobby"); !errors.As(err, &ce) {
					t.Errorf("Join after the final close: %v", err)
				}
				if c.State() != StateClosed {
					t.Errorf("state %v", c.State())
				}
				if rest := names(drainLifecycle(r)); len(rest) != 0 {
					t.Errorf("lifecycle events after the final close: %v", rest)
				}
				if n := f.conns.Load(); n != 1 {
					t.Errorf("%d connections, want 1", n)
				}
				return
			}
			if d.Reason != ReasonTransportClose {
				t.Errorf("reason %q, want %q", d.Reason, ReasonTransportClose)
			}
			if l, _ := r.until(t, LifecycleReconnect); l.Attempt != 1 {
				t.Errorf("reconnect %+v, want attempt 1", l)
			}
			if rooms := c.joined(); !slices.Equal(rooms, []string{"lobby"}) {
				t.Errorf("rooms to rejoin: %v", rooms)
			}
			if _, err := c.Ping(ctx); err != nil {
				t.Errorf("ping after reconnecting: %v", err)
			}
		})
	}
}

// joined returns the rooms the client would join again, sorted.
func (c *Client) joined() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rooms []string
	for r := range c.rooms {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	return rooms
}

func drainLifecycle(r *recorder) []Lifecycle {
	var ls []Lifecycle
	for {
		select {
		case l := <-r.lifecycle:
			ls = append(ls, l)
		default:
			return ls
		}
	}
}

func TestFloodingCloseIsFinal(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{Rate: 1, RateBurst: 1})
	c := dial(t, s.URL, "flooder", withBackoff(Backoff{Initial: time.Millisecond}))
	r := record(c)
	for range 50 {
		if err := c.Send(ctx, Target{User: c.User()}, "spam", nil); err != nil {
			break
		}
	}
	if e := next(t, r.errors); e.Code != protocol.CodeRateLimited {
		t.Errorf("error %v, want rate_limited", e)
	}
	d, _ := r.until(t, LifecycleDisconnect)
	if d.Code != protocol.CloseFlood || d.Reason != ReasonServerClose {
		t.Errorf("disconnect %+v, want %d", d, protocol.CloseFlood)
	}
	next(t, c.Done())
	var ce *CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != protocol.CloseFlood {
		t.Errorf("Err = %v", c.Err())
	}
	for _, l := range drainLifecycle(r) {
		if l.Name != LifecycleDisconnect {
			t.Errorf("lifecycle event after the flood close: %+v", l)
		}
	}
}

func TestBackoffSchedule(t *testing.T) {
	refuse := func(n int) int {
		if n > 1 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	f := newRefusingFake(t, refuse, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		// Once the test's handlers are in place (it pings), returning drops
		// the connection without a close frame.
		_, _, _ = ws.ReadMessage()
	})
	b := Backoff{Initial: 40 * time.Millisecond, Max: 160 * time.Millisecond, Jitter: -1, Attempts: 4}
	c := dial(t, f.URL, "x", withBackoff(b))

	var mu sync.Mutex
	var times []time.Time
	var events []Lifecycle
	for _, name := range lifecycleNames {
		c.OnLifecycle(name, func(l Lifecycle) {
			mu.Lock()
			defer mu.Unlock()
			times = append(times, time.Now())
			events = append(events, l)
		})
	}
	if _, err := c.Ping(testContext(t)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Ping answered by a drop: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatal("the client did not give up")
	}

	mu.Lock()
	defer mu.Unlock()
	want := []string{LifecycleDisconnect}
	for range 4 {
		want = append(want, LifecycleReconnectAttempt, LifecycleConnectError)
	}
	want = append(want, LifecycleReconnectFailed)
	if got := names(events); !slices.Equal(got, want) {
		t.Fatalf("lifecycle %v, want %v", got, want)
	}
	if events[0].Reason != ReasonTransportError {
		t.Errorf("disconnect reason %q, want %q", events[0].Reason, ReasonTransportError)
	}
	delays := []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 160 * time.Millisecond}
	for i, d := range delays {
		a := events[1+2*i]
		if a.Attempt != i+1 || a.Delay != d {
			t.Errorf("attempt %d: %+v, want delay %v", i+1, a, d)
		}
		// Handlers see the events a little after they happen; the gap
		// between two of them can shrink by that little.
		gap := times[1+2*i].Sub(times[2*i])
		if gap < d-5*time.Millisecond || gap > d+300*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous event, want about %v", i+1, gap, d)
		}
		var he *HandshakeError
		if e := events[2+2*i]; e.Attempt != i+1 || !errors.As(e.Err, &he) || he.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("connect_error %+v", e)
		}
	}
	failed := events[len(events)-1]
	var he *HandshakeError
	if failed.Attempt != 4 || !errors.As(failed.Err, &he) {
		t.Errorf("reconnect_failed %+v", failed)
	}
	if err := c.Err(); !errors.Is(err, ErrReconnectFailed) || !errors.As(err, &he) {
		t.Errorf("Err = %v, want ErrReconnectFailed wrapping the last attempt's error", err)
	}
	if n := f.conns.Load(); n != 5 {
		t.Errorf("%d connection attempts, want 5", n)
	}
}

func TestUnauthorizedReconnectionIsFinal(t *testing.T) {
	refuse := func(n int) int {
		if n > 1 {
			return http.StatusUnauthorized
		}
		return 0
	}
	f := newRefusingFake(t, refuse, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		_, _, _ = ws.ReadMessage() // the drop waits for the test's handlers
	})
	c := dial(t, f.URL, "x", withBackoff(Backoff{Initial: time.Millisecond}))
	r := record(c)
	if _, err := c.Ping(testContext(t)); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Ping answered by a drop: %v", err)
	}
	_, skipped := r.until(t, LifecycleReconnectFailed)
	if got := names(skipped); !slices.Equal(got, []string{LifecycleDisconnect, LifecycleReconnectAttempt, LifecycleConnectError}) {
		t.Errorf("lifecycle before reconnect_failed: %v", got)
	}
	next(t, c.Done())
	var he *HandshakeError
	if !errors.As(c.Err(), &he) || he.StatusCode != http.StatusUnauthorized || he.Message != "refused by the test" {
		t.Errorf("Err = %v", c.Err())
	}
}

func TestClientDetectsSilentServer(t *testing.T) {
	// A server that announces a 50ms+50ms heartbeat, then never answers.
	f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 50, 50))
		drain(ws)
	})
	c := dial(t, f.URL, "x", withBackoff(Backoff{Initial: time.Millisecond}))
	start := time.Now()
	r := record(c)
	d, _ := r.until(t, LifecycleDisconnect)
	if d.Reason != ReasonPingTimeout || !errors.Is(d.Err, ErrPingTimeout) {
		t.Errorf("disconnect %+v, want a ping timeout", d)
	}
	if el := time.Since(start); el < 90*time.Millisecond || el > 2*time.Second {
		t.Errorf("gave up on the server after %v, want about 100ms", el)
	}
	r.until(t, LifecycleReconnect)
	if n := f.conns.Load(); n < 2 {
		t.Errorf("%d connections, want a reconnection", n)
	}
}

func TestClientPingsKeepItAlive(t *testing.T) {
	// This server never pings but answers the client's pings: the client
	// must stay connected well past the 50ms+250ms silence limit. (The
	// margin between the two lets the test pass on a loaded machine.)
	f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 50, 250))
		answer(ws, nil)
	})
	c := dial(t, f.URL, "x")
	r := record(c)
	none(t, r.lifecycle, time.Second)
	if c.State() != StateConnected || f.conns.Load() != 1 {
		t.Errorf("state %v after %d connections", c.State(), f.conns.Load())
	}
}

func TestPendingRequestsFailWhenTheConnectionDrops(t *testing.T) {
	ctx := testContext(t)
	auth := make(chan string, 4)
	f := newFake(t, func(n int, r *http.Request, ws *websocket.Conn) {
		auth <- r.Header.Get("Authorization")
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		if n == 1 {
			_, _, _ = ws.ReadMessage() // the join, never answered
			_ = ws.NetConn().Close()
			return
		}
		answer(ws, nil)
	})
	c := dial(t, f.URL, "x", withBackoff(Backoff{Initial: 10 * time.Millisecond}))
	if a := next(t, auth); a != "" {
		t.Errorf("first connection sent Authorization %q", a)
	}
	_, err := c.Join(ctx, "lobby")
	if !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Join on a dropped connection: %v, want ErrConnectionLost", err)
	}
	var perr *protocol.Error
	if errors.As(err, &perr) {
		t.Errorf("a lost connection reported as a protocol error: %v", err)
	}
	// A retry waits for the reconnection and goes through.
	if _, err := c.Join(ctx, "lobby"); err != nil {
		t.Fatalf("retried Join: %v", err)
	}
	if a := next(t, auth); a != "Bearer fake-token" {
		t.Errorf("reconnection sent Authorization %q, want the welcome's token", a)
	}
	if c.Token() != "fake-token" {
		t.Errorf("Token() = %q", c.Token())
	}
}

func TestNoReconnect(t *testing.T) {
	ctx := testContext(t)
	f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		_, _, _ = ws.ReadMessage()
	})
	c := dial(t, f.URL, "x", func(c *Config) { c.NoReconnect = true })
	r := record(c)
	if _, err := c.Join(ctx, "lobby"); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Join: %v, want ErrConnectionLost", err)
	}
	next(t, c.Done())
	if c.State() != StateClosed || c.Err() == nil {
		t.Errorf("state %v, err %v", c.State(), c.Err())
	}
	if _, err := c.Join(ctx, "lobby"); err == nil {
		t.Error("Join succeeded on a finished client")
	}
	if got := names(drainLifecycle(r)); !slices.Equal(got, []string{LifecycleDisconnect}) {
		t.Errorf("lifecycle %v, want only a disconnect", got)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestHeartbeatTimeoutDropsSilentPeer(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{PingInterval: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond})
	alice := dial(t, s.URL, "alice")
	ra := record(alice)
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}

	// A peer that stops answering the server's pings.
	start := time.Now()
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+s.URL[len("http"):]+"/ws?name=mute", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var w protocol.Welcome
	if err := ws.ReadJSON(&w); err != nil {
		t.Fatal(err)
	}
	ws.SetPingHandler(func(string) error { return nil })
	if err := ws.WriteJSON(protocol.Request{T: protocol.TypeJoin, ID: 1, Room: "lobby"}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	var closedAt time.Time
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				closedAt = time.Now()
				closed <- err
				return
			}
		}
	}()
	if p := next(t, ra.presence); p.Action != "join" || p.Conn != w.Conn {
		t.Fatalf("presence %+v, want mute joining", p)
	}
	p := next(t, ra.presence)
	if p.Action != "leave" || p.Conn != w.Conn || p.Connections != 0 {
		t.Errorf("presence %+v, want mute leaving", p)
	}
	var ce *websocket.CloseError
	if err := next(t, closed); !errors.As(err, &ce) || ce.Code != protocol.CloseHeartbeatTimeout {
		t.Errorf("mute's connection ended with %v, want close %d", err, protocol.CloseHeartbeatTimeout)
	}
	// Its last frame was the join, right after connecting.
	if el := closedAt.Sub(start); el < 480*time.Millisecond {
		t.Errorf("mute dropped %v after connecting, before its 500ms of allowed silence", el)
	}
	// Alice, who answers pings, is still there.
	if alice.State() != StateConnected {
		t.Errorf("alice is %v", alice.State())
	}
	none(t, ra.lifecycle, 300*time.Millisecond)
	if members, err := alice.Members(ctx, "lobby"); err != nil || len(members) != 1 {
		t.Errorf("members %v, %v; want alice alone", members, err)
	}
}

func TestDialErrors(t *testing.T) {
	authed := startServer(t, server.Config{AuthSecret: []byte("secret")})
	fake := func(first func(ws *websocket.Conn)) string {
		return newFake(t, func(_ int, _ *http.Request, ws *websocket.Conn) {
			first(ws)
			drain(ws)
		}).URL
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()

	tests := []struct {
		name  string
		url   string
		check func(error) bool
	}{
		{"no URL", "", func(err error) bool { return err != nil }},
		{"bad scheme", "ftp://127.0.0.1/", func(err error) bool { return err != nil }},
		{"connection refused", refused, func(err error) bool {
			var he *HandshakeError
			return err != nil && !errors.As(err, &he)
		}},
		{"no token", authed.URL, func(err error) bool {
			var he *HandshakeError
			return errors.As(err, &he) && he.StatusCode == http.StatusUnauthorized && permanent(err)
		}},
		{"other protocol version", fake(func(ws *websocket.Conn) {
			w := welcomeFrame(1, 1000, 1000)
			w.V = 2
			_ = ws.WriteJSON(w)
		}), func(err error) bool { var v errVersion; return errors.As(err, &v) && int(v) == 2 }},
		{"no welcome", fake(func(ws *websocket.Conn) {
			_ = ws.WriteJSON(map[string]string{"t": "event"})
		}), func(err error) bool { return err != nil }},
		{"closed at once", fake(func(ws *websocket.Conn) {
			msg := websocket.FormatCloseMessage(protocol.CloseUnauthorized, "expired")
			_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		}), func(err error) bool {
			var ce *CloseError
			return errors.As(err, &ce) && ce.Code == protocol.CloseUnauthorized && ce.Text == "expired"
		}},
		{"silent", fake(func(*websocket.Conn) {}), func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			c, err := Dial(ctx, Config{URL: tt.url, Log: testLog(t)})
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded")
			}
			if !tt.check(err) {
				t.Errorf("unexpected error %v (%T)", err, err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("Dial took %v", el)
			}
		})
	}
}

func TestRejoin(t *testing.T) {
	tests := []struct {
		name string
		// refuse is the error code the second connection answers joins of
		// "b" with; "" acks them.
		refuse string
		// want is the rooms the client keeps; conns is how many connections
		// it takes to get there.
		want  []string
		conns int
	}{
		{"all accepted", "", []string{"a", "b"}, 2},
		{"refused for good", protocol.CodeInvalidRoom, []string{"a"}, 2},
		{"refused for now", protocol.CodeRateLimited, []string{"a", "b"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			joins := make(chan string, 16)
			f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
				_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
				for {
					var req protocol.Request
					if ws.ReadJSON(&req) != nil {
						return
					}
					switch {
					case req.T == protocol.TypeEmit && req.Event == "drop":
						return
					case req.T == protocol.TypePing:
						_ = ws.WriteJSON(protocol.Pong{T: protocol.TypePong, TS: req.TS})
						continue
					case req.T == protocol.TypeJoin && n > 1:
						joins <- strconv.Itoa(n) + ":" + req.Room
						if req.Room == "b" && n == 2 && tt.refuse != "" {
							_ = ws.WriteJSON(protocol.ErrorFrame{T: protocol.TypeError, ID: req.ID, Code: tt.refuse, Message: "scripted"})
							continue
						}
					}
					_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: protocol.RoomMembers{Room: req.Room}})
				}
			})
			c := dial(t, f.URL, "x", withBackoff(Backoff{Initial: time.Millisecond}))
			r := record(c)
			for _, room := range []string{"a", "b", "c"} {
				if _, err := c.Join(ctx, room); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Leave(ctx, "c"); err != nil {
				t.Fatal(err)
			}
			if err := c.Send(ctx, Target{Room: "a"}, "drop", nil); err != nil {
				t.Fatal(err)
			}
			r.until(t, LifecycleReconnect)
			if got := c.joined(); !slices.Equal(got, tt.want) {
				t.Errorf("rooms %v, want %v", got, tt.want)
			}
			if n := int(f.conns.Load()); n != tt.conns {
				t.Errorf("%d connections, want %d", n, tt.conns)
			}
			var got []string
			for len(joins) > 0 {
				got = append(got, <-joins)
			}
			slices.Sort(got)
			want := []string{"2:a", "2:b"}
			if tt.conns == 3 {
				// The re-joins go out together: the refusal of b may end the
				// second connection before the fake server reads the join of a.
				got = slices.DeleteFunc(got, func(s string) bool { return s == "2:a" })
				want = []string{"2:b", "3:a", "3:b"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("joins after the drop %v, want %v", got, want)
			}
		})
	}
}
