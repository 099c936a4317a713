package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// EmitOption changes one emit.
type EmitOption func(*emitOptions)

type emitOptions struct {
	msgID   string
	receipt bool
}

// WithReceipt asks every recipient to confirm the event: the sender's
// OnReceipt handlers hear of each user who does, and Receipts lists them.
func WithReceipt() EmitOption { return func(o *emitOptions) { o.receipt = true } }

// WithMsgID sets the event's message id (1 to 64 printable ASCII
// characters, no spaces) instead of a random one: an id saved with the
// event lets even another process resend it without publishing it twice,
// within the server's dedup window.
func WithMsgID(id string) EmitOption { return func(o *emitOptions) { o.msgID = id } }

// newMsgID returns a random message id.
func newMsgID() string { return "m-" + rand.Text() }

// Emit sends an event to a named room this client is in (every member gets
// it, this connection included) and waits for the server's ack. data is
// encoded as JSON; a json.RawMessage goes as it is, nil as null. See
// Publish for what happens when the connection drops.
func (c *Client) Emit(ctx context.Context, room, event string, data any, opts ...EmitOption) error {
	_, err := c.Publish(ctx, Target{Room: room}, event, data, opts...)
	return err
}

// EmitTo sends an event to a room, a user or a connection and waits for the
// server's ack, as Publish does. It returns how many connections the event
// was queued for.
func (c *Client) EmitTo(ctx context.Context, to Target, event string, data any, opts ...EmitOption) (delivered int, err error) {
	d, err := c.Publish(ctx, to, event, data, opts...)
	return d.Delivered, err
}

// Publish sends an event and returns the server's ack: the connections it
// was queued for, its place in the room's stream (Seq, for Receipts), and
// whether it waits for an offline user (Queued).
//
// Publishing is exactly once within the server's dedup window (its history
// TTL, 10 minutes by default, unless the server restarts): every event
// carries a message id, random unless WithMsgID gives one, and when the
// connection drops before the ack, Publish waits for the client to
// reconnect and sends the event again with the same id, until the server
// acks it or ctx ends. The server publishes an id only once and answers a
// repeat with the first ack (Duplicate set). It returns an error only when
// ctx ends, the client is done, or the server refuses the event
// (*protocol.Error).
func (c *Client) Publish(ctx context.Context, to Target, event string, data any, opts ...EmitOption) (protocol.Delivered, error) {
	var d protocol.Delivered
	o := emitOptions{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.msgID == "" {
		o.msgID = newMsgID()
	}
	req, err := emitRequest(to, event, data)
	if err != nil {
		return d, err
	}
	req.MsgID, req.Receipt = o.msgID, o.receipt
	if to.ExceptSelf {
		c.ownEvents.add(req.MsgID)
	}
	for {
		ack, err := c.request(ctx, req, nil)
		switch {
		case err == nil:
			if err := json.Unmarshal(ack, &d); err != nil {
				return d, errDecode("emit", err)
			}
			return d, nil
		case errors.Is(err, ErrConnectionLost) && ctx.Err() == nil:
			c.log.Debug("connection lost before the ack; sending the event again", "msg_id", req.MsgID)
			continue // request waits for the reconnection
		}
		return d, err
	}
}

// Send sends an event without waiting for an answer: it returns once the
// event is queued on the connection. A failure the server reports later
// reaches the OnError handlers; an event queued when the connection drops is
// lost (at most once).
func (c *Client) Send(ctx context.Context, to Target, event string, data any) error {
	req, err := emitRequest(to, event, data)
	if err != nil {
		return err
	}
	if to.ExceptSelf {
		req.MsgID = newMsgID()
		c.ownEvents.add(req.MsgID)
	}
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("client: encoding the event: %w", err)
	}
	if err := s.checkSize(b); err != nil {
		return err
	}
	return s.enqueue(ctx, websocket.TextMessage, b)
}

func emitRequest(to Target, event string, data any) (protocol.Request, error) {
	req := protocol.Request{T: protocol.TypeEmit, Room: to.Room, User: to.User, Conn: to.Conn, Event: event, ExceptSelf: to.ExceptSelf}
	if data != nil {
		raw, ok := data.(json.RawMessage)
		if !ok {
			var err error
			if raw, err = json.Marshal(data); err != nil {
				return req, fmt.Errorf("client: encoding the data of event %q: %w", event, err)
			}
		}
		req.Data = raw
	}
	return req, nil
}

// maxOwnEvents bounds the message ids remembered by ownEvents.
const maxOwnEvents = 1024

// ownEvents remembers the message ids of the latest events this client sent
// with ExceptSelf. The server leaves them out for the sending connection
// only: after a reconnection, a catch-up would replay them to this client,
// which must not see them.
type ownEvents struct {
	mu   sync.Mutex
	ids  map[string]struct{}
	ring []string
	next int
}

func (o *ownEvents) add(id string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ids == nil {
		o.ids = make(map[string]struct{}, maxOwnEvents)
		o.ring = make([]string, maxOwnEvents)
	}
	delete(o.ids, o.ring[o.next])
	o.ring[o.next] = id
	o.ids[id] = struct{}{}
	o.next = (o.next + 1) % maxOwnEvents
}

func (o *ownEvents) has(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.ids[id]
	return ok
}
