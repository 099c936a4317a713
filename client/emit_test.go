package client

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
)

// An emit whose ack is lost with the connection is sent again, with the
// same message id, on the next connection; the server's answer there is
// what Publish returns.
func TestPublishResendsAfterReconnecting(t *testing.T) {
	ctx := testContext(t)
	emits := make(chan protocol.Request, 8)
	f := newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		for {
			var req protocol.Request
			if ws.ReadJSON(&req) != nil {
				return
			}
			switch req.T {
			case protocol.TypeEmit:
				emits <- req
				if n == 1 {
					return // the ack is lost with the connection
				}
				_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: protocol.Delivered{Delivered: 2, Seq: 7, Epoch: "e", Duplicate: true}})
			case protocol.TypePing:
				_ = ws.WriteJSON(protocol.Pong{T: protocol.TypePong, TS: req.TS})
			default:
				_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: protocol.Joined{Room: req.Room, Epoch: "e"}})
			}
		}
	})
	c := dial(t, f.URL, "x", withBackoff(Backoff{Initial: 5 * time.Millisecond}))
	d, err := c.Publish(ctx, Target{User: "u_1"}, "dm", "hi", WithReceipt())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Duplicate || d.Seq != 7 || d.Delivered != 2 {
		t.Errorf("Publish = %+v, want the second connection's ack", d)
	}
	first, second := next(t, emits), next(t, emits)
	if first.MsgID == "" || first.MsgID != second.MsgID {
		t.Errorf("msg_id %q, then %q; want one id, sent twice", first.MsgID, second.MsgID)
	}
	if !first.Receipt || !second.Receipt || string(second.Data) != `"hi"` {
		t.Errorf("resent emit %+v", second)
	}
	// Every call has its own id, unless the caller gives one.
	if _, err := c.Publish(ctx, Target{User: "u_1"}, "dm", nil); err != nil {
		t.Fatal(err)
	}
	if third := next(t, emits); third.MsgID == first.MsgID || third.Receipt {
		t.Errorf("another emit: %+v", third)
	}
	if _, err := c.Publish(ctx, Target{User: "u_1"}, "dm", nil, WithMsgID("mine-1")); err != nil {
		t.Fatal(err)
	}
	if fourth := next(t, emits); fourth.MsgID != "mine-1" {
		t.Errorf("WithMsgID: %q", fourth.MsgID)
	}
}

// The server publishes a resent id once: a real resend comes back marked
// as a duplicate, and the room sees one event.
func TestPublishDedupByServer(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	a := dial(t, s.URL, "a")
	b := dial(t, s.URL, "b")
	rb := record(b)
	for _, c := range []*Client{a, b} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	first, err := a.Publish(ctx, Target{Room: "lobby"}, "n", 1, WithMsgID("same"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.Publish(ctx, Target{Room: "lobby"}, "n", 1, WithMsgID("same"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Seq != first.Seq {
		t.Errorf("first %+v, again %+v", first, again)
	}
	if e := rb.nextEvent(t, "n"); e.MsgID != "same" || e.Seq != first.Seq {
		t.Errorf("event %+v", e)
	}
	none(t, rb.events, 50*time.Millisecond)
}

// Room events sent WithReceipt are confirmed by every member's client; the
// sender hears of each and can list them.
func TestRoomReceipts(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	sender := dial(t, s.URL, "sender")
	receipts := make(chan protocol.Receipt, 8)
	sender.OnReceipt(func(r protocol.Receipt) { receipts <- r })
	var readers []*Client
	for _, name := range []string{"r1", "r2"} {
		c := dial(t, s.URL, name)
		readers = append(readers, c)
	}
	handled := make(chan string, 4)
	for _, c := range append([]*Client{sender}, readers...) {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range readers {
		c.On("photo", func(e Event) {
			if !e.Receipt {
				t.Errorf("event without receipt: %s", e.Raw)
			}
			handled <- c.Name()
		})
	}
	d, err := sender.Publish(ctx, Target{Room: "lobby"}, "photo", "x", WithReceipt())
	if err != nil {
		t.Fatal(err)
	}
	next(t, handled)
	next(t, handled)
	// The two confirmations race each other to the server: the counts
	// come in either order.
	users, counts := map[string]bool{}, map[int]bool{}
	for range 2 {
		r := next(t, receipts)
		if r.Room != "lobby" || r.Seq != d.Seq {
			t.Errorf("receipt %+v", r)
		}
		users[r.Name], counts[r.Count] = true, true
	}
	if !users["r1"] || !users["r2"] || !counts[1] || !counts[2] {
		t.Errorf("receipts from %v with counts %v", users, counts)
	}
	none(t, receipts, 50*time.Millisecond) // the sender's own client does not confirm
	rs, err := sender.Receipts(ctx, "lobby", d.Seq)
	if err != nil || rs.Count != 2 {
		t.Errorf("Receipts = %+v, %v", rs, err)
	}
	if _, err := sender.Receipts(ctx, "lobby", d.Seq+100); !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownTarget}) {
		t.Errorf("receipts of an untracked event: %v", err)
	}
}

// Handlers slower than the room: the client drops the connection rather
// than an event, and catches up once the handlers have caught up; they
// see every event once, in order.
func TestSlowHandlersLoseNothing(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{Rate: 1e6, RateBurst: 1e6})
	slow := dial(t, s.URL, "slow", func(c *Config) {
		c.QueueSize = 4
		c.Reconnect = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	})
	tx := dial(t, s.URL, "tx")
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var mu sync.Mutex
	var got []int
	slow.On("n", func(e Event) {
		<-release
		var n int
		_ = json.Unmarshal(e.Data, &n)
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})
	r := record(slow)
	for _, c := range []*Client{slow, tx} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	const total = 40
	for i := range total {
		if err := tx.Emit(ctx, "lobby", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	// The handlers are stuck: the client lets the connection go, and waits
	// for them before it reconnects.
	deadline := time.Now().Add(waitFor)
	for slow.State() != StateReconnecting {
		if time.Now().After(deadline) {
			t.Fatalf("state %v with stuck handlers", slow.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
	unblock()
	l, _ := r.until(t, LifecycleDisconnect)
	if !errors.Is(l.Err, ErrSlowHandlers) {
		t.Errorf("disconnect %+v, want ErrSlowHandlers", l)
	}
	r.until(t, LifecycleReconnect)
	deadline = time.Now().Add(waitFor)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events handled, want %d", n, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for i, n := range got {
		if n != i {
			t.Fatalf("events handled %v, want 0 to %d once each, in order", got, total-1)
		}
	}
	if len(got) != total {
		t.Errorf("%d events handled, want %d", len(got), total)
	}
}

// An event sent with ExceptSelf never reaches its sender, not even when a
// catch-up after a reconnection replays the room's history.
func TestExceptSelfSurvivesCatchUp(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{})
	p := newProxy(t, s.URL)
	a := dial(t, p.URL(), "a", withBackoff(Backoff{Initial: 5 * time.Millisecond}))
	b := dial(t, s.URL, "b")
	ra, rb := record(a), record(b)
	for _, c := range []*Client{a, b} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.EmitTo(ctx, Target{Room: "lobby", ExceptSelf: true}, "typing", 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctx, Target{Room: "lobby", ExceptSelf: true}, "typing", 2); err != nil {
		t.Fatal(err)
	}
	rb.nextEvent(t, "typing")
	rb.nextEvent(t, "typing")
	p.cut()
	ra.until(t, LifecycleReconnect)
	if err := b.Emit(ctx, "lobby", "chat", "after"); err != nil {
		t.Fatal(err)
	}
	if e := ra.nextEvent(t, "chat"); e.Seq != 3 {
		t.Errorf("event %s, want seq 3", e.Raw)
	}
	if pos, ok := a.Position("lobby"); !ok || pos.Seq != 3 {
		t.Errorf("position %+v", pos)
	}
}

// A handler that makes a request while the client waits for the handlers
// to catch up before reconnecting: the reconnection goes ahead, or each
// would wait for the other for good.
func TestHandlerRequestDuringSlowReconnect(t *testing.T) {
	ctx := testContext(t)
	s := startServer(t, server.Config{Rate: 1e6, RateBurst: 1e6})
	slow := dial(t, s.URL, "slow", func(c *Config) {
		c.QueueSize = 4
		c.Reconnect = Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	})
	tx := dial(t, s.URL, "tx")
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	var mu sync.Mutex
	var got []int
	slow.On("n", func(e Event) {
		<-release
		// A request from a handler: it needs the connection.
		if err := slow.Emit(ctx, "lobby", "seen", json.RawMessage(e.Data)); err != nil {
			t.Errorf("emit from a handler: %v", err)
		}
		var n int
		_ = json.Unmarshal(e.Data, &n)
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	})
	for _, c := range []*Client{slow, tx} {
		if _, err := c.Join(ctx, "lobby"); err != nil {
			t.Fatal(err)
		}
	}
	const total = 40
	for i := range total {
		if err := tx.Emit(ctx, "lobby", "n", i); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(waitFor)
	for slow.State() != StateReconnecting {
		if time.Now().After(deadline) {
			t.Fatalf("state %v with stuck handlers", slow.State())
		}
		time.Sleep(5 * time.Millisecond)
	}
	unblock()
	deadline = time.Now().Add(waitFor)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events handled, want %d: the handlers and the reconnection wait for each other", n, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, n := range got {
		if n != i {
			t.Fatalf("events handled %v, want 0 to %d once each, in order", got, total-1)
		}
	}
}
