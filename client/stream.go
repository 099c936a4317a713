package client

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// streams is where the client stands in each room's stream: the position of
// the last event it accepted (handed to the handler queue), and the
// position whose events the handlers have all seen. The reader goroutine
// moves the first, the handler goroutine the second.
type streams struct {
	mu sync.Mutex
	m  map[string]*stream
}

type stream struct {
	pos   protocol.Position
	known bool // pos is set: from an event, a join ack, a gap or JoinFrom

	handled      protocol.Position
	handledKnown bool
}

type verdict int

const (
	untracked verdict = iota // no position to check against
	accepted
	duplicate
)

func newStreams() *streams { return &streams{m: make(map[string]*stream)} }

// trackedLazily reports whether room is tracked without being joined: the
// user room, where direct messages come with increasing seqs.
func trackedLazily(room string) bool { return strings.HasPrefix(room, "user:") }

// begin prepares room for a join. With since, the room's position becomes
// since, unless the client is further along that stream already. It
// returns the position to send as since, nil for none.
func (ss *streams) begin(room string, since *protocol.Position) *protocol.Position {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[room]
	if st == nil {
		st = &stream{}
		ss.m[room] = st
	}
	if since != nil && !(st.known && st.pos.Epoch == since.Epoch && st.pos.Seq > since.Seq) {
		st.pos, st.known = *since, true
	}
	if !st.known {
		return nil
	}
	p := st.pos
	return &p
}

// accept checks an event's place in its room's stream: an event whose seq
// is not above the last one accepted in the same epoch was seen before.
// Accepted events move the position; prev is the one before, for rollback.
func (ss *streams) accept(room, epoch string, seq uint64) (v verdict, prev stream) {
	if seq == 0 || epoch == "" {
		return untracked, stream{}
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[room]
	if st == nil {
		if !trackedLazily(room) {
			return untracked, stream{} // not a room this client joined
		}
		st = &stream{}
		ss.m[room] = st
	}
	prev = *st
	if st.known && st.pos.Epoch == epoch && seq <= st.pos.Seq {
		return duplicate, prev
	}
	st.pos, st.known = protocol.Position{Epoch: epoch, Seq: seq}, true
	return accepted, prev
}

// rollback undoes accept when the event could not be queued for the
// handlers.
func (ss *streams) rollback(room string, prev stream) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st := ss.m[room]; st != nil {
		st.pos, st.known = prev.pos, prev.known
	}
}

// gap moves room past what the server says is gone and returns the new
// position.
func (ss *streams) gap(g protocol.Gap) (protocol.Position, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[g.Room]
	if st == nil {
		return protocol.Position{}, false
	}
	if g.Reason == "history" {
		st.pos = protocol.Position{Epoch: g.Epoch, Seq: g.To}
	} else {
		st.pos = protocol.Position{Epoch: g.Epoch}
	}
	st.known = true
	return st.pos, true
}

// joined takes in a join's ack and returns the room's position.
func (ss *streams) joined(room string, j protocol.Joined) protocol.Position {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[room]
	if st == nil {
		st = &stream{}
		ss.m[room] = st
	}
	if !st.known || st.pos.Epoch != j.Epoch {
		// Nothing of this stream seen yet: it starts here for us. (Events
		// that came before the ack are newer than the join, so a position
		// they set is kept.)
		st.pos, st.known = protocol.Position{Epoch: j.Epoch, Seq: j.Seq}, true
	}
	return st.pos
}

func (ss *streams) forget(room string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, room)
}

// handle records that the handlers have seen everything up to pos.
func (ss *streams) handle(room string, pos protocol.Position) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st := ss.m[room]; st != nil {
		st.handled, st.handledKnown = pos, true
	}
}

func (ss *streams) handledPos(room string) (protocol.Position, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := ss.m[room]
	if st == nil || !st.handledKnown {
		return protocol.Position{}, false
	}
	return st.handled, true
}

// Position returns where the client stands in room's stream: the epoch and
// the seq of the last event whose handlers have returned (or of the join,
// when no event came since). Saved, it is what JoinFrom takes to resume
// later, in this process or another, without missing or repeating an
// event. ok is false for a room the client has no position in (not joined,
// or left).
func (c *Client) Position(room string) (pos protocol.Position, ok bool) {
	return c.streams.handledPos(room)
}

// JoinFrom joins room and catches up from a saved position (see Position
// and Event.Position): before any newer event, the handlers get exactly the
// events published after pos, or, for those the server no longer has, a gap
// (OnGap) followed by what it still keeps. The returned Joined says how it
// went (Recovery, Replayed) and where the room's stream is now. In a room
// the client is in already, a position older than the client's own changes
// nothing: the handlers never get an event twice (Leave first to replay).
func (c *Client) JoinFrom(ctx context.Context, room string, pos protocol.Position) (protocol.Joined, error) {
	return c.join(ctx, room, &pos, "")
}

// JoinWith joins a room that takes a token: an invite to a private room
// (see Invite), or a room token from the application's backend on a server
// with an auth secret. The pass the server returns is kept for the joins
// after a reconnection.
func (c *Client) JoinWith(ctx context.Context, room, token string) (protocol.Joined, error) {
	return c.join(ctx, room, nil, token)
}

// join sends a join, with since when the client has a position in room.
func (c *Client) join(ctx context.Context, room string, from *protocol.Position, token string) (protocol.Joined, error) {
	s, err := c.session(ctx)
	if err != nil {
		return protocol.Joined{}, err
	}
	if token == "" {
		c.mu.Lock()
		token = c.rooms[room]
		c.mu.Unlock()
	}
	since := c.streams.begin(room, from)
	data, err := s.request(ctx, protocol.Request{T: protocol.TypeJoin, Room: room, Since: since, Token: token}, c.joinResult(room))
	if err != nil {
		return protocol.Joined{}, err
	}
	var j protocol.Joined
	if err := json.Unmarshal(data, &j); err != nil {
		return j, errDecode("join", err)
	}
	return j, nil
}

// joinResult takes in the answer to a join of room, on the reader
// goroutine, before any later frame: the room becomes one to join again
// after a reconnection, its position is set, and the OnJoined handlers are
// queued with the answer.
func (c *Client) joinResult(room string) func(json.RawMessage, error) {
	return func(data json.RawMessage, err error) {
		var j protocol.Joined
		if err == nil && json.Unmarshal(data, &j) != nil {
			return
		}
		c.mu.Lock()
		_, member := c.rooms[room]
		if err == nil {
			c.rooms[room] = j.Pass
		}
		c.mu.Unlock()
		if err != nil {
			if !member {
				c.streams.forget(room)
			}
			return
		}
		tracked := j.Epoch != "" // a server that numbers events
		var pos protocol.Position
		if tracked {
			pos = c.streams.joined(room, j)
		}
		c.dispatch(func() {
			if tracked {
				c.streams.handle(room, pos)
			}
			c.handlers.joins.call("", j)
		}, false)
	}
}

// receiveEvent takes an event frame from s's reader: repeats are dropped,
// the rest goes to the handlers.
func (c *Client) receiveEvent(s *session, e protocol.Event, raw []byte) {
	if s.isBehind() {
		// The handlers fell behind (see below): the next connection
		// catches up from the last event accepted.
		return
	}
	if len(e.Data) == 0 {
		e.Data = json.RawMessage("null")
	}
	v, prev := c.streams.accept(e.Room, e.Epoch, e.Seq)
	if v == duplicate {
		s.log.Debug("dropping an event seen before", "room", e.Room, "seq", e.Seq)
		return
	}
	ev := Event{Room: e.Room, Name: e.Event, Data: e.Data, From: e.From, Time: time.UnixMilli(e.TS),
		Seq: e.Seq, Epoch: e.Epoch, MsgID: e.MsgID, Receipt: e.Receipt, Raw: raw}
	if e.MsgID != "" && e.From.User == s.welcome.User && c.ownEvents.has(e.MsgID) {
		// Sent with ExceptSelf by this client, replayed by a catch-up.
		if v == accepted {
			c.dispatch(func() { c.streams.handle(ev.Room, ev.Position()) }, true)
		}
		return
	}
	queued := c.disp.push(func() {
		c.handlers.events.call(anyEvent, ev)
		c.handlers.events.call(ev.Name, ev)
		if v == accepted {
			c.streams.handle(ev.Room, ev.Position())
		}
		if ev.Receipt && ev.From.User != c.User() {
			c.confirm(ev.Room, ev.Seq)
		}
	}, true, int64(len(raw)+len(ev.Data)))
	switch {
	case queued:
	case v == accepted && !trackedLazily(e.Room):
		// Rather than lose a room's event, drop the connection, as the
		// server drops a client too slow to read: the next one catches up
		// from the last event accepted, once the handlers have caught up.
		c.streams.rollback(e.Room, prev)
		s.log.Warn("handlers too slow: reconnecting to fetch the events again", "room", e.Room, "seq", e.Seq)
		s.fallBehind()
	default:
		s.log.Warn("handlers too slow: event dropped", "room", ev.Room, "event", ev.Name)
	}
}

// receiveGap takes a gap frame from s's reader.
func (c *Client) receiveGap(s *session, g protocol.Gap) {
	pos, ok := c.streams.gap(g)
	s.log.Info("events lost for good", "room", g.Room, "reason", g.Reason, "from", g.From, "to", g.To)
	c.dispatch(func() {
		if ok {
			c.streams.handle(g.Room, pos)
		}
		c.handlers.gaps.call("", g)
	}, false)
}

// handlersPoll is how often a reconnection checks whether the handlers have
// worked through their queue.
const handlersPoll = 5 * time.Millisecond

// waitHandlers waits until the handlers' queue is at most half full, so that
// the events a reconnection replays fit in. It stops waiting when something
// waits for the connection: that may be a handler making a request, which
// cannot work through the queue before the client reconnects.
func (c *Client) waitHandlers() error {
	for c.disp.backlog() > c.cfg.QueueSize/2 && c.waiting.Load() == 0 {
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case <-time.After(handlersPoll):
		}
	}
	return nil
}

// maxUnconfirmed bounds the receipts kept while the client reconnects.
const maxUnconfirmed = 1024

// confirm tells the server that the handlers have seen event seq of room.
// It runs on the handler goroutine. While the client reconnects it keeps
// the receipt for the next connection (see flushConfirmations).
func (c *Client) confirm(room string, seq uint64) {
	b, err := json.Marshal(protocol.Request{T: protocol.TypeReceived, Room: room, Seq: seq})
	if err != nil {
		return
	}
	// A session that fails the write has been withdrawn already (see
	// session.stop): the next look finds the client reconnecting, or the
	// next session.
	for range 3 {
		c.mu.Lock()
		s := c.sess
		if s == nil {
			if len(c.unconfirmed) < maxUnconfirmed {
				c.unconfirmed = append(c.unconfirmed, b)
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.WriteTimeout)
		err := s.enqueue(ctx, websocket.TextMessage, b)
		cancel()
		if err == nil || c.ctx.Err() != nil {
			return
		}
	}
	c.log.Warn("could not confirm an event", "room", room, "seq", seq)
}

// flushConfirmations sends, on s, the receipts kept while the client had no
// connection. It runs once s is the client's session, so that a receipt
// kept meanwhile is either in the list it takes or sent on s directly.
func (c *Client) flushConfirmations(s *session) {
	c.mu.Lock()
	pending := c.unconfirmed
	c.unconfirmed = nil
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.WriteTimeout)
	defer cancel()
	for _, b := range pending {
		if err := s.enqueue(ctx, websocket.TextMessage, b); err != nil {
			return // the connection went: these are lost with it
		}
	}
}

// Receipts asks who confirmed event seq of room: a named room the client
// is in, or "user:<id>" for a direct message its user sent there.
func (c *Client) Receipts(ctx context.Context, room string, seq uint64) (protocol.Receipts, error) {
	var r protocol.Receipts
	data, err := c.request(ctx, protocol.Request{T: protocol.TypeReceipts, Room: room, Seq: seq}, nil)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, errDecode("receipts", err)
	}
	return r, nil
}
