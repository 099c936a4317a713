package client

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Event is an event frame received from a room, a user room (a direct
// message to this client's user) or a connection room.
type Event struct {
	// Room is where the event was sent: a named room, "user:<id>" or "conn:<id>".
	Room string
	// Name is the event name chosen by the sender.
	Name string
	// Data is the sender's payload, untouched ("null" when it sent none).
	Data json.RawMessage
	// From is the sending connection.
	From protocol.From
	// Time is when the server accepted the event.
	Time time.Time
	// Seq and Epoch place the event in its room's stream (zero for events
	// of a server that does not number them). Direct messages carry an
	// increasing Seq too, with holes.
	Seq   uint64
	Epoch string
	// MsgID is the sender's id for the event, if it gave one.
	MsgID string
	// Receipt tells that the sender asked for receipts; the client confirms
	// the event by itself once its handlers have returned.
	Receipt bool
	// Raw is the whole frame as received.
	Raw json.RawMessage
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// Position is the event's place in its room's stream: saved once the event
// is processed, it is where JoinFrom resumes.
func (e Event) Position() protocol.Position {
	return protocol.Position{Epoch: e.Epoch, Seq: e.Seq}
}

// Presence reports that a connection joined or left a named room this client
// is in.
type Presence struct {
	Room string
	// Action is "join" or "leave".
	Action string
	User   string
	Name   string
	Conn   string
	// Connections is how many connections User now has in Room; 0 after a
	// leave means the user is gone from the room.
	Connections int
	// Raw is the whole frame as received.
	Raw json.RawMessage
}

// Lifecycle event names, the ones Socket.IO clients use.
const (
	// LifecycleConnect: a connection is up (and, after a reconnection, its
	// rooms are joined again). Dial returns connected, so the first one is
	// not delivered; every later one is.
	LifecycleConnect = "connect"
	// LifecycleConnectError: a connection attempt failed (Err says why;
	// Attempt is the reconnection attempt).
	LifecycleConnectError = "connect_error"
	// LifecycleDisconnect: the connection ended (Reason, Code and Err say why).
	LifecycleDisconnect = "disconnect"
	// LifecycleReconnectAttempt: a reconnection attempt starts, after waiting Delay.
	LifecycleReconnectAttempt = "reconnect_attempt"
	// LifecycleReconnect: a reconnection attempt succeeded and the rooms are
	// joined again. It comes just before the matching connect.
	LifecycleReconnect = "reconnect"
	// LifecycleReconnectFailed: reconnection gave up, because
	// Backoff.Attempts ran out or an attempt was refused for good (HTTP 401
	// or 403, a close code from 4500 to 4999); the client is now closed. A
	// connection closed by the server with such a code is not retried at
	// all: its disconnect event (ReasonServerClose) is the last one.
	LifecycleReconnectFailed = "reconnect_failed"
)

// Disconnect reasons (Lifecycle.Reason), as Socket.IO names them.
const (
	// ReasonClientClose: Close was called.
	ReasonClientClose = "io client disconnect"
	// ReasonServerClose: the server closed with a code from 4500 to 4999,
	// meaning "do not reconnect".
	ReasonServerClose = "io server disconnect"
	// ReasonPingTimeout: the server went silent (see ErrPingTimeout).
	ReasonPingTimeout = "ping timeout"
	// ReasonTransportClose: the server closed with any other code (going
	// away, slow client, heartbeat timeout...).
	ReasonTransportClose = "transport close"
	// ReasonTransportError: the connection broke without a close frame.
	ReasonTransportError = "transport error"
)

// Lifecycle describes a change in the client's connection.
type Lifecycle struct {
	// Name is one of the Lifecycle* constants.
	Name string
	// Attempt numbers reconnection attempts from 1 (reconnect_attempt,
	// reconnect, connect_error, reconnect_failed); 0 otherwise.
	Attempt int
	// Delay is the wait that preceded a reconnect_attempt.
	Delay time.Duration
	// Reason is one of the Reason* constants (disconnect only).
	Reason string
	// Code is the close code the server sent, if any (disconnect only).
	Code int
	// Err is the cause (connect_error, disconnect, reconnect_failed).
	Err error
}

var lifecycleNames = []string{
	LifecycleConnect, LifecycleConnectError, LifecycleDisconnect,
	LifecycleReconnectAttempt, LifecycleReconnect, LifecycleReconnectFailed,
}

// registry holds handlers by key. Lists are copied on write, so that a
// dispatch can walk the list it got without holding the lock.
type registry[T any] struct {
	mu sync.Mutex
	m  map[string][]*func(T)
}

func (r *registry[T]) add(key string, fn func(T)) (remove func()) {
	if fn == nil {
		panic("client: nil handler")
	}
	h := &fn
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[string][]*func(T))
	}
	r.m[key] = append(slices.Clip(r.m[key]), h)
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.m[key] = slices.DeleteFunc(slices.Clone(r.m[key]), func(x *func(T)) bool { return x == h })
			if len(r.m[key]) == 0 {
				delete(r.m, key)
			}
		})
	}
}

func (r *registry[T]) call(key string, v T) {
	r.mu.Lock()
	list := r.m[key]
	r.mu.Unlock()
	for _, h := range list {
		(*h)(v)
	}
}

func (r *registry[T]) has(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m[key]) > 0
}

type handlers struct {
	events    registry[Event]
	presence  registry[Presence]
	lifecycle registry[Lifecycle]
	errors    registry[*protocol.Error]
	gaps      registry[protocol.Gap]
	receipts  registry[protocol.Receipt]
	joins     registry[protocol.Joined]
	// frames are internal hooks for frame types the client does not handle
	// itself (uploads). They run on the reader goroutine.
	frames registry[json.RawMessage]
}

// anyEvent is the events registry key of OnAny handlers; event names cannot
// be empty, so it never clashes.
const anyEvent = ""

// On registers fn for events named event, from any room. It returns a
// function that unregisters fn. Handlers run one at a time, in the order the
// frames arrived, on a goroutine of the client; they should return quickly
// (see Config.QueueSize). A handler may call any method of the client,
// Close included, but must not wait for Done.
func (c *Client) On(event string, fn func(Event)) (off func()) {
	if event == anyEvent {
		panic("client: On with an empty event name; use OnAny")
	}
	return c.handlers.events.add(event, fn)
}

// OnAny registers fn for every event, whatever its name; fn runs before the
// handlers registered with On for that name.
func (c *Client) OnAny(fn func(Event)) (off func()) {
	return c.handlers.events.add(anyEvent, fn)
}

// OnPresence registers fn for joins and leaves in the named rooms this
// client is in.
func (c *Client) OnPresence(fn func(Presence)) (off func()) {
	return c.handlers.presence.add("", fn)
}

// OnError registers fn for error frames that answer no request: failures of
// Send, and frames the server could not read (frame_too_large, rate_limited).
func (c *Client) OnError(fn func(*protocol.Error)) (off func()) {
	return c.handlers.errors.add("", fn)
}

// OnGap registers fn for the gaps the server reports when the client
// catches up on a room (after a reconnection, or with JoinFrom): events
// that are gone for good. Gap.Reason is "history" (events From to To were
// older than what the room keeps) or "epoch" (the room's stream started
// again, as after a server restart: whatever was missed is unknown). The
// events still kept follow the gap; they reach the event handlers after fn.
func (c *Client) OnGap(fn func(protocol.Gap)) (off func()) {
	return c.handlers.gaps.add("", fn)
}

// OnReceipt registers fn for the receipts of events this client's user sent
// with WithReceipt: one per user who confirmed an event, with the count so
// far.
func (c *Client) OnReceipt(fn func(protocol.Receipt)) (off func()) {
	return c.handlers.receipts.add("", fn)
}

// OnJoined registers fn for the answer to every join the server accepts:
// Join, JoinFrom, and the automatic joins after a reconnection (which come
// before the reconnect lifecycle event). It runs in order with the events:
// after the handlers of the events that came before the answer, such as
// the ones a catch-up replayed. Joined.Recovery says how a catch-up went:
// "ok" (every missed event was replayed: Replayed of them), "history" or
// "epoch" (some are gone; an OnGap handler heard which), or "" for a join
// from no position. Joined.Epoch and Seq are where the room's stream stood.
func (c *Client) OnJoined(fn func(protocol.Joined)) (off func()) {
	return c.handlers.joins.add("", fn)
}

// OnLifecycle registers fn for one of the lifecycle events (the Lifecycle*
// constants: connect, connect_error, disconnect, reconnect_attempt,
// reconnect, reconnect_failed). It panics on any other name.
func (c *Client) OnLifecycle(name string, fn func(Lifecycle)) (off func()) {
	if !slices.Contains(lifecycleNames, name) {
		panic(fmt.Sprintf("client: unknown lifecycle event %q", name))
	}
	return c.handlers.lifecycle.add(name, fn)
}

// hookFrames registers fn for frames of type t that the client does not
// handle itself (upload.* frames, file.link), and for t == "error", for error
// frames without a request id that name an upload. fn runs on the reader
// goroutine: it must not block.
func (c *Client) hookFrames(t string, fn func(json.RawMessage)) (off func()) {
	return c.handlers.frames.add(t, fn)
}

// dispatcher runs handlers one at a time on its own goroutine. Events wait in
// a queue bounded by limit, and by byteLimit bytes; lifecycle items are
// rarer and matter more, so they get room beyond it (up to twice the limit).
type dispatcher struct {
	limit     int
	byteLimit int64
	wake      chan struct{}
	done      chan struct{}

	mu     sync.Mutex
	queue  []queued
	events int
	bytes  int64 // of the events queued
	closed bool
}

type queued struct {
	fn        func()
	droppable bool
	size      int64
}

// backlog returns how many events wait for the handlers.
func (d *dispatcher) backlog() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.events
}

func newDispatcher(limit int, byteLimit int64) *dispatcher {
	return &dispatcher{limit: limit, byteLimit: byteLimit, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push queues fn, an event of size bytes when droppable. It never blocks;
// it reports false when fn was dropped. An event larger than the byte
// limit still goes into an empty queue.
func (d *dispatcher) push(fn func(), droppable bool, size int64) bool {
	d.mu.Lock()
	full := droppable && (d.events >= d.limit || d.events > 0 && d.bytes+size > d.byteLimit)
	if d.closed || len(d.queue) >= 2*d.limit || full {
		d.mu.Unlock()
		return false
	}
	d.queue = append(d.queue, queued{fn: fn, droppable: droppable, size: size})
	if droppable {
		d.events++
		d.bytes += size
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return true
}

// run calls queued functions until close, then runs what is left and returns.
func (d *dispatcher) run() {
	defer close(d.done)
	for {
		d.mu.Lock()
		for len(d.queue) == 0 {
			if d.closed {
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			<-d.wake
			d.mu.Lock()
		}
		q := d.queue[0]
		d.queue[0] = queued{}
		d.queue = d.queue[1:]
		if q.droppable {
			d.events--
			d.bytes -= q.size
		}
		d.mu.Unlock()
		q.fn()
	}
}

// close makes run return once the queue is empty.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}
