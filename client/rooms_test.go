package client

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/server"
)

func TestRoomEvents(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	alice := dial(t, s.URL, "alice")
	bob := dial(t, s.URL, "bob")
	carol := dial(t, s.URL, "carol")
	ra, rb, rc := record(alice), record(bob), record(carol)

	if _, err := alice.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	joined, err := bob.Join(ctx, "lobby")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range joined.Members {
		got = append(got, m.Name+"/"+m.User)
	}
	slices.Sort(got)
	if want := []string{"alice/" + alice.User(), "bob/" + bob.User()}; !slices.Equal(got, want) {
		t.Errorf("members after bob joined: %v, want %v", got, want)
	}
	list, err := bob.Rooms(ctx)
	if err != nil || !slices.Equal(list, []string{"lobby"}) {
		t.Errorf("Rooms = %v, %v; want [lobby]", list, err)
	}

	before := time.Now().Add(-time.Second)
	if err := alice.Emit(ctx, "lobby", "chat", map[string]string{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{ra, rb} {
		e := r.nextEvent(t, "chat")
		var data struct{ Text string }
		if err := e.Decode(&data); err != nil || data.Text != "hi" {
			t.Errorf("data %s: %+v, %v", e.Data, data, err)
		}
		if e.Room != "lobby" || e.From.User != alice.User() || e.From.Conn != alice.ID() || e.From.Name != "alice" {
			t.Errorf("event %+v: wrong room or sender", e)
		}
		if e.Time.Before(before) || e.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("event time %v is not now", e.Time)
		}
		var raw map[string]any
		if err := json.Unmarshal(e.Raw, &raw); err != nil || raw["t"] != "event" || raw["event"] != "chat" {
			t.Errorf("raw frame %s", e.Raw)
		}
	}

	// except_self: bob's event reaches alice only; the next event bob sees
	// is the one after it.
	n, err := bob.EmitTo(ctx, Target{Room: "lobby", ExceptSelf: true}, "typing", true)
	if err != nil || n != 1 {
		t.Fatalf("EmitTo except_self = %d, %v; want 1", n, err)
	}
	if e := ra.nextEvent(t, "typing"); string(e.Data) != "true" {
		t.Errorf("typing data %s", e.Data)
	}
	if n, err := bob.EmitTo(ctx, Target{Room: "lobby"}, "chat", nil); err != nil || n != 2 {
		t.Fatalf("EmitTo = %d, %v; want 2", n, err)
	}
	if e := rb.nextEvent(t, "chat"); string(e.Data) != "null" {
		t.Errorf("data of an event without data: %s, want null", e.Data)
	}
	ra.nextEvent(t, "chat")

	// A json.RawMessage goes through untouched, with On handlers by name.
	dice := make(chan Event, 1)
	off := alice.On("dice", func(e Event) { dice <- e })
	if err := bob.Emit(ctx, "lobby", "dice", json.RawMessage(`[4, 2]`)); err != nil {
		t.Fatal(err)
	}
	if e := next(t, dice); string(e.Data) != "[4,2]" && string(e.Data) != "[4, 2]" {
		t.Errorf("raw data came back as %s", e.Data)
	}
	ra.nextEvent(t, "dice")
	off()
	if err := bob.Emit(ctx, "lobby", "dice", 6); err != nil {
		t.Fatal(err)
	}
	ra.nextEvent(t, "dice")
	none(t, dice, 50*time.Millisecond)

	// carol, who is in no room, got nothing: the first event she sees is the
	// direct one sent now.
	if _, err := alice.EmitTo(ctx, Target{Conn: carol.ID()}, "hello", nil); err != nil {
		t.Fatal(err)
	}
	if e := rc.nextEvent(t, "hello"); e.Room != "conn:"+carol.ID() {
		t.Errorf("direct event room %q", e.Room)
	}

	if err := bob.Leave(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if list, err := bob.Rooms(ctx); err != nil || len(list) != 0 {
		t.Errorf("Rooms after Leave = %v, %v", list, err)
	}
	if rtt, err := alice.Ping(ctx); err != nil || rtt <= 0 || rtt > time.Second {
		t.Errorf("Ping = %v, %v", rtt, err)
	}
}

func TestErrorFrames(t *testing.T) {
	ctx := testContext(t)
	// Direct messages to a user who is away are refused, not kept for later.
	s := startServer(t, server.Config{MaxFrame: 4096, History: rooms.Config{OfflineSize: -1}})
	alice := dial(t, s.URL, "alice")
	bob := dial(t, s.URL, "bob")
	if _, err := bob.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"emit to a room not joined", func() error { return alice.Emit(ctx, "lobby", "chat", "x") }, protocol.CodeNotMember},
		{"emit to a room nobody is in", func() error { return alice.Emit(ctx, "nowhere", "chat", "x") }, protocol.CodeNotMember},
		{"leave a room not joined", func() error { return alice.Leave(ctx, "lobby") }, protocol.CodeNotMember},
		{"members of a room not joined", func() error { _, err := alice.Members(ctx, "lobby"); return err }, protocol.CodeNotMember},
		{"join a bad name", func() error { _, err := alice.Join(ctx, "no spaces"); return err }, protocol.CodeInvalidRoom},
		{"join an empty name", func() error { _, err := alice.Join(ctx, ""); return err }, protocol.CodeInvalidRoom},
		{"join a too long name", func() error { _, err := alice.Join(ctx, strings.Repeat("a", 65)); return err }, protocol.CodeInvalidRoom},
		{"join a connection room", func() error { _, err := alice.Join(ctx, "conn:"+alice.ID()); return err }, protocol.CodeInvalidRoom},
		{"join a user room", func() error { _, err := alice.Join(ctx, "user:"+bob.User()); return err }, protocol.CodeInvalidRoom},
		{"emit an empty event", func() error { return bob.Emit(ctx, "lobby", "", nil) }, protocol.CodeInvalidEvent},
		{"emit an event with a newline", func() error { return bob.Emit(ctx, "lobby", "a\nb", nil) }, protocol.CodeInvalidEvent},
		{"emit to no target", func() error { _, err := alice.EmitTo(ctx, Target{}, "chat", nil); return err }, protocol.CodeInvalidTarget},
		{"emit to two targets", func() error {
			_, err := alice.EmitTo(ctx, Target{Room: "lobby", User: bob.User()}, "chat", nil)
			return err
		}, protocol.CodeInvalidTarget},
		{"emit to a user not connected", func() error { _, err := alice.EmitTo(ctx, Target{User: "u_nobody"}, "dm", nil); return err }, protocol.CodeUnknownTarget},
		{"emit to a connection not connected", func() error { _, err := alice.EmitTo(ctx, Target{Conn: "c_nobody"}, "dm", nil); return err }, protocol.CodeUnknownTarget},
		{"emit more than the frame limit", func() error { return bob.Emit(ctx, "lobby", "big", strings.Repeat("x", 5000)) }, protocol.CodeFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var perr *protocol.Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %v (%T), want a *protocol.Error", err, err)
			}
			if perr.Code != tt.code || perr.Message == "" {
				t.Errorf("got %q %q, want code %q and a message", perr.Code, perr.Message, tt.code)
			}
			if !errors.Is(err, &protocol.Error{Code: tt.code}) {
				t.Errorf("errors.Is does not match code %q", tt.code)
			}
		})
	}

	// The connection goes on after all those errors.
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		t.Fatalf("join after errors: %v", err)
	}
	if alice.State() != StateConnected {
		t.Errorf("state %v after errors", alice.State())
	}
}

func TestSendReportsErrorsToOnError(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	alice := dial(t, s.URL, "alice")
	bob := dial(t, s.URL, "bob")
	ra, rb := record(alice), record(bob)
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Send(ctx, Target{Room: "elsewhere"}, "chat", "lost"); err != nil {
		t.Fatal(err)
	}
	if e := next(t, ra.errors); e.Code != protocol.CodeNotMember {
		t.Errorf("OnError got %v, want not_member", e)
	}
	if err := alice.Send(ctx, Target{Room: "lobby", ExceptSelf: true}, "chat", "fire and forget"); err != nil {
		t.Fatal(err)
	}
	if e := rb.nextEvent(t, "chat"); string(e.Data) != `"fire and forget"` {
		t.Errorf("data %s", e.Data)
	}
	none(t, ra.events, 50*time.Millisecond)
}

func TestPresence(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	alice := dial(t, s.URL, "alice")
	ra := record(alice)
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	bob := dial(t, s.URL, "bob")
	bob2 := dial(t, s.URL, "bob", func(c *Config) { c.Token = bob.Token() })
	if bob2.User() != bob.User() {
		t.Fatalf("the same token gave users %s and %s", bob.User(), bob2.User())
	}

	steps := []struct {
		do          func() error
		action      string
		conn        string
		connections int
	}{
		{func() error { _, err := bob.Join(ctx, "lobby"); return err }, "join", bob.ID(), 1},
		{func() error { _, err := bob2.Join(ctx, "lobby"); return err }, "join", bob2.ID(), 2},
		{func() error { return bob.Leave(ctx, "lobby") }, "leave", bob.ID(), 1},
		{bob2.Close, "leave", bob2.ID(), 0},
	}
	for i, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		p := next(t, ra.presence)
		if p.Room != "lobby" || p.Action != st.action || p.Conn != st.conn || p.User != bob.User() || p.Name != "bob" || p.Connections != st.connections {
			t.Errorf("step %d: presence %+v, want %s of %s with %d connections", i, p, st.action, st.conn, st.connections)
		}
		if !strings.Contains(string(p.Raw), `"t":"presence"`) {
			t.Errorf("raw presence %s", p.Raw)
		}
	}
	none(t, ra.presence, 50*time.Millisecond)
}

func TestDirectMessages(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	alice := dial(t, s.URL, "alice")
	phone := dial(t, s.URL, "bob")
	laptop := dial(t, s.URL, "bob", func(c *Config) { c.Token = phone.Token() })
	rp, rl := record(phone), record(laptop)

	// To the user: every connection of bob gets it, in his user room.
	for _, to := range []Target{{User: phone.User()}, {Room: "user:" + phone.User()}} {
		n, err := alice.EmitTo(ctx, to, "dm", "psst")
		if err != nil || n != 2 {
			t.Fatalf("EmitTo %+v = %d, %v; want 2", to, n, err)
		}
		for _, r := range []*recorder{rp, rl} {
			if e := r.nextEvent(t, "dm"); e.Room != "user:"+phone.User() || e.From.Conn != alice.ID() {
				t.Errorf("dm %+v", e)
			}
		}
	}

	// To one connection: only the laptop.
	n, err := alice.EmitTo(ctx, Target{Conn: laptop.ID()}, "signal", map[string]int{"n": 1})
	if err != nil || n != 1 {
		t.Fatalf("EmitTo conn = %d, %v; want 1", n, err)
	}
	if e := rl.nextEvent(t, "signal"); e.Room != "conn:"+laptop.ID() {
		t.Errorf("signal %+v", e)
	}
	none(t, rp.events, 50*time.Millisecond)

	// A user writing to himself, except this connection.
	if n, err := phone.EmitTo(ctx, Target{User: phone.User(), ExceptSelf: true}, "sync", nil); err != nil || n != 1 {
		t.Fatalf("EmitTo own user except self = %d, %v; want 1", n, err)
	}
	rl.nextEvent(t, "sync")
	none(t, rp.events, 50*time.Millisecond)
}

func TestClose(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	alice := dial(t, s.URL, "alice")
	bob := dial(t, s.URL, "bob")
	ra, rb := record(alice), record(bob)
	for _, c := range []*Client{alice, bob} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	next(t, ra.presence)

	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	if bob.State() != StateClosed {
		t.Errorf("state %v when Close returned", bob.State())
	}
	next(t, bob.Done())
	// Done waited for the handlers: the disconnect is there, and last.
	if ls := drainLifecycle(rb); len(ls) != 1 || ls[0].Name != LifecycleDisconnect || ls[0].Reason != ReasonClientClose || !errors.Is(ls[0].Err, ErrClosed) {
		t.Errorf("lifecycle after Close: %+v, want one disconnect", ls)
	}
	if bob.State() != StateClosed || !errors.Is(bob.Err(), ErrClosed) {
		t.Errorf("after Close: state %v, err %v", bob.State(), bob.Err())
	}
	if err := bob.Emit(ctx, "lobby", "chat", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Emit after Close: %v, want ErrClosed", err)
	}
	if _, err := bob.Ping(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close: %v, want ErrClosed", err)
	}
	if err := bob.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if p := next(t, ra.presence); p.Action != "leave" || p.Conn != bob.ID() {
		t.Errorf("presence after bob closed: %+v", p)
	}
}

func TestCloseFromHandler(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	alice := dial(t, s.URL, "alice")
	closed := make(chan struct{})
	alice.On("bye", func(Event) {
		_ = alice.Close()
		close(closed)
	})
	if _, err := alice.Join(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	// Send, not Emit: the event comes back before the ack, and the handler
	// closes the connection the ack would come on.
	if err := alice.Send(ctx, Target{Room: "lobby"}, "bye", nil); err != nil {
		t.Fatal(err)
	}
	next(t, closed)
	next(t, alice.Done())
	if !errors.Is(alice.Err(), ErrClosed) {
		t.Errorf("Err = %v", alice.Err())
	}
}

// An invited client joins a private room, and joins it again by itself
// after its connection drops: the pass the server gave it goes with the
// rejoin.
func TestPrivateRoomSurvivesReconnect(t *testing.T) {
	srv := startServer(t, server.Config{})
	px := newProxy(t, srv.URL)
	ctx := testContext(t)
	alice := dial(t, srv.WS, "alice")
	inv, err := alice.Invite(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Join(ctx, inv.Room); !errors.Is(err, &protocol.Error{Code: protocol.CodeForbidden}) {
		t.Fatalf("join without the invite: %v", err)
	}
	if _, err := alice.JoinWith(ctx, inv.Room, inv.Invite); err != nil {
		t.Fatal(err)
	}
	bob := dial(t, px.URL(), "bob", withBackoff(Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond}))
	rb := record(bob)
	if _, err := bob.JoinWith(ctx, inv.Room, inv.Invite); err != nil {
		t.Fatal(err)
	}
	px.cut()
	rb.until(t, "reconnect")
	if err := alice.Emit(ctx, inv.Room, "chat", "after the drop"); err != nil {
		t.Fatal(err)
	}
	if e := rb.nextEvent(t, "chat"); string(e.Raw) == "" || e.Room != inv.Room {
		t.Fatalf("bob got %+v", e)
	}
}
