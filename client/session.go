package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// Heartbeat defaults, used when a welcome frame leaves them out.
const (
	defaultPingInterval = 25 * time.Second
	defaultPingTimeout  = 20 * time.Second
)

// closeGrace is how long Close waits for the server to answer its close frame.
const closeGrace = time.Second

// outQueue is how many frames may wait for the writer, and outQueueBytes
// how many bytes: callers block (with their context) beyond either, so
// memory stays bounded. Whatever waits there when a link drops is lost
// with it: an upload sends it again, so the byte bound keeps a drop cheap
// (near the socket's own buffers) while the writer never runs dry. The
// last frame let in may pass the byte bound.
const (
	outQueue      = 16
	outQueueBytes = 2 << 20
)

// session is one WebSocket connection: a reader goroutine, a writer goroutine
// (which also sends the heartbeat pings) and the requests waiting for an
// answer on it. A reconnection makes a new session.
type session struct {
	c       *Client
	ws      *websocket.Conn
	welcome protocol.Welcome
	log     *slog.Logger

	// interval is how often the writer pings. silence is how long the reader
	// waits for any frame before declaring the link dead; the server answers
	// a ping within its ping timeout, so interval < silence always holds.
	interval time.Duration
	silence  time.Duration

	out chan outFrame
	// outBytes counts the bytes in out and being written; outDrained
	// wakes an enqueue waiting for it to fall.
	outBytes   atomic.Int64
	outDrained chan struct{}
	done       chan struct{} // closed by stop
	readerDone chan struct{}
	wg         sync.WaitGroup
	stopOnce   sync.Once
	reason     error // why the session ended; written once, before done closes

	lastTS atomic.Int64

	mu      sync.Mutex
	pending map[uint64]*pending      // nil once stopped
	pings   map[string]chan struct{} // by the ts sent; nil once stopped
	// behind is set when the handlers could not take an event: the session
	// takes no more events and ends with ErrSlowHandlers, so that the next
	// one catches up, as soon as no request waits for it (see dropSlow).
	behind bool
}

type outFrame struct {
	typ  int
	data []byte
	// raw: data is a whole frame, masked (see maskFrame), written to the
	// socket as it is.
	raw bool
	// written, if set, is called once data is written and no longer
	// needed, so that its buffer can be used again.
	written func()
}

// pending is a request waiting for its ack or error. onResult, if set, runs
// on the reader goroutine when the answer arrives (or on the stopping
// goroutine when the connection drops), before the caller is woken, so that
// client state it updates is current before anything else happens.
type pending struct {
	ch       chan result // buffered: the answer never waits for the caller
	onResult func(json.RawMessage, error)
}

type result struct {
	data json.RawMessage
	err  error
}

func (p *pending) resolve(data json.RawMessage, err error) {
	if p.onResult != nil {
		p.onResult(data, err)
	}
	p.ch <- result{data, err}
}

func newSession(c *Client, ws *websocket.Conn, w protocol.Welcome) *session {
	interval := time.Duration(w.PingIntervalMS) * time.Millisecond
	if interval <= 0 {
		interval = defaultPingInterval
	}
	timeout := time.Duration(w.PingTimeoutMS) * time.Millisecond
	if timeout <= 0 {
		timeout = defaultPingTimeout
	}
	s := &session{
		c:          c,
		ws:         ws,
		welcome:    w,
		log:        c.log.With("conn", w.Conn),
		interval:   interval,
		silence:    interval + timeout,
		out:        make(chan outFrame, outQueue),
		outDrained: make(chan struct{}, 1),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
		pending:    make(map[uint64]*pending),
		pings:      make(map[string]chan struct{}),
	}
	ws.SetPingHandler(func(data string) error {
		// The server's pings prove the link is alive as much as any frame.
		_ = ws.SetReadDeadline(time.Now().Add(s.silence))
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.cfg.WriteTimeout))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil // the reader finds out about a broken connection by itself
		}
		return err
	})
	return s
}

func (s *session) start() {
	s.wg.Add(2)
	go s.readLoop()
	go s.writeLoop()
}

// stop ends the session for reason: requests waiting on it fail, the writer
// closes the socket. It is safe to call from any goroutine, any number of times.
func (s *session) stop(reason error) {
	s.stopOnce.Do(func() {
		s.reason = reason
		// Withdrawn first: whoever finds the session stopped finds the
		// client reconnecting, not this session again.
		s.c.sessionEnded(s)
		s.mu.Lock()
		pend := s.pending
		s.pending, s.pings = nil, nil
		s.mu.Unlock()
		close(s.done)
		err := lost(reason)
		for _, p := range pend {
			p.resolve(nil, err)
		}
	})
}

// wait stops the session and waits for its goroutines.
func (s *session) wait(reason error) {
	s.stop(reason)
	s.wg.Wait()
}

func (s *session) readLoop() {
	defer s.wg.Done()
	defer close(s.readerDone)
	for {
		_ = s.ws.SetReadDeadline(time.Now().Add(s.silence))
		typ, data, err := s.ws.ReadMessage()
		if err != nil {
			s.stop(readError(err, s.silence))
			return
		}
		if typ != websocket.TextMessage {
			s.log.Debug("ignoring a binary frame", "bytes", len(data))
			continue
		}
		s.handle(data)
	}
}

// readError classifies the error that ended the reader.
func readError(err error, silence time.Duration) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code == websocket.CloseAbnormalClosure {
			// Not a code the server sent: the connection ended without a close frame.
			return fmt.Errorf("client: connection broken: %s", ce.Text)
		}
		return &CloseError{Code: ce.Code, Text: ce.Text}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: nothing received for %v", ErrPingTimeout, silence)
	}
	return err
}

// frame holds the fields the reader needs to route a frame.
type frame struct {
	T    string          `json:"t"`
	ID   uint64          `json:"id"`
	Data json.RawMessage `json:"data"`
	TS   json.RawMessage `json:"ts"`
}

func (s *session) handle(data []byte) {
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		s.log.Warn("ignoring a frame that is not a JSON object", "err", err)
		return
	}
	switch f.T {
	case protocol.TypeAck:
		s.answer(f.ID, f.Data, nil)
	case protocol.TypeError:
		var ef protocol.ErrorFrame
		if err := json.Unmarshal(data, &ef); err != nil {
			s.log.Warn("ignoring a malformed error frame", "err", err)
			return
		}
		perr := errorOf(ef)
		switch {
		case ef.ID != 0:
			s.answer(ef.ID, nil, perr)
		case ef.Upload != "" && s.c.handlers.frames.has(protocol.TypeError):
			s.c.handlers.frames.call(protocol.TypeError, data)
		default:
			s.log.Debug("error frame", "code", ef.Code, "message", ef.Message)
			s.c.dispatch(func() { s.c.handlers.errors.call("", perr) }, true)
		}
	case protocol.TypeEvent:
		var e protocol.Event
		if err := json.Unmarshal(data, &e); err != nil {
			s.log.Warn("ignoring a malformed event frame", "err", err)
			return
		}
		s.c.receiveEvent(s, e, data)
	case protocol.TypeGap:
		var g protocol.Gap
		if err := json.Unmarshal(data, &g); err != nil {
			s.log.Warn("ignoring a malformed gap frame", "err", err)
			return
		}
		s.c.receiveGap(s, g)
	case protocol.TypeReceipt:
		var r protocol.Receipt
		if err := json.Unmarshal(data, &r); err != nil {
			s.log.Warn("ignoring a malformed receipt frame", "err", err)
			return
		}
		if !s.c.dispatch(func() { s.c.handlers.receipts.call("", r) }, true) {
			s.log.Warn("handlers too slow: receipt dropped", "room", r.Room, "seq", r.Seq)
		}
	case protocol.TypePresence:
		var p protocol.Presence
		if err := json.Unmarshal(data, &p); err != nil {
			s.log.Warn("ignoring a malformed presence frame", "err", err)
			return
		}
		pr := Presence{Room: p.Room, Action: p.Action, User: p.User, Name: p.Name, Conn: p.Conn, Connections: p.Connections, Raw: data}
		if !s.c.dispatch(func() { s.c.handlers.presence.call("", pr) }, true) {
			s.log.Warn("handlers too slow: presence dropped", "room", pr.Room)
		}
	case protocol.TypePong:
		key := string(f.TS)
		s.mu.Lock()
		ch := s.pings[key]
		delete(s.pings, key)
		s.mu.Unlock()
		if ch != nil {
			close(ch)
		}
	case protocol.TypeWelcome:
		s.log.Warn("ignoring a second welcome frame")
	default:
		if s.c.handlers.frames.has(f.T) {
			s.c.handlers.frames.call(f.T, data)
			return
		}
		s.log.Debug("ignoring a frame", "t", f.T)
	}
}

// answer resolves request id.
func (s *session) answer(id uint64, data json.RawMessage, err error) {
	s.mu.Lock()
	p := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	if p == nil {
		s.log.Warn("answer to an unknown request", "id", id)
		return
	}
	p.resolve(data, err)
	s.dropSlow()
}

// isBehind reports whether the session takes no more events.
func (s *session) isBehind() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behind
}

// fallBehind stops the session's events and ends it once nothing waits for
// it: a handler blocked on a request (or on the connection) holds the
// handlers' queue, and ending the session under it would leave that
// handler and the reconnection waiting for each other.
func (s *session) fallBehind() {
	s.mu.Lock()
	first := !s.behind
	s.behind = true
	s.mu.Unlock()
	if first {
		// Whatever happens, the events come again within behindGrace.
		time.AfterFunc(behindGrace, func() { s.stop(ErrSlowHandlers) })
	}
	s.dropSlow()
}

// behindGrace bounds how long a session that fell behind lives on for the
// requests that wait for it.
const behindGrace = 10 * time.Second

// dropSlow ends a session that fell behind once no request waits for it.
func (s *session) dropSlow() {
	s.mu.Lock()
	idle := s.behind && len(s.pending) == 0 && s.c.waiting.Load() == 0
	s.mu.Unlock()
	if idle {
		s.stop(ErrSlowHandlers)
	}
}

func (s *session) writeLoop() {
	defer s.wg.Done()
	defer s.closeSocket()
	ticker := time.NewTicker(s.interval)
	defer ticker.Stop()
	for {
		var f outFrame
		queued := false // counted in outBytes
		select {
		case f = <-s.out:
			queued = true
		case <-ticker.C:
			f = outFrame{typ: websocket.TextMessage, data: pingFrame(s.nextTS())}
		case <-s.done:
			return
		}
		err := s.write(f)
		if f.written != nil {
			f.written()
		}
		if queued {
			s.outBytes.Add(-int64(len(f.data)))
			select {
			case s.outDrained <- struct{}{}:
			default:
			}
		}
		if err != nil {
			if errors.Is(err, websocket.ErrCloseSent) {
				// The reader got the server's close frame and answered it;
				// it is about to report the close code.
				<-s.readerDone
			}
			s.stop(fmt.Errorf("client: write: %w", err))
			return
		}
	}
}

// closeSocket ends the connection once the session is stopped. When the
// client closes, it says goodbye with a close frame and gives the server a
// moment to answer, so that the server sees a clean close.
func (s *session) closeSocket() {
	<-s.done
	if errors.Is(s.reason, ErrClosed) {
		msg := websocket.FormatCloseMessage(protocol.CloseNormal, "")
		if s.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace)) == nil {
			t := time.NewTimer(closeGrace)
			select {
			case <-s.readerDone:
			case <-t.C:
			}
			t.Stop()
		}
	}
	_ = s.ws.Close()
}

// nextTS returns a ping timestamp (Unix milliseconds) unique within the
// session, so that a pong can be matched to its ping.
func (s *session) nextTS() int64 {
	for {
		last := s.lastTS.Load()
		ts := max(time.Now().UnixMilli(), last+1)
		if s.lastTS.CompareAndSwap(last, ts) {
			return ts
		}
	}
}

func pingFrame(ts int64) []byte {
	return []byte(`{"t":"ping","ts":` + strconv.FormatInt(ts, 10) + `}`)
}

// enqueue hands a frame to the writer.
func (s *session) enqueue(ctx context.Context, typ int, data []byte) error {
	return s.enqueueFrame(ctx, outFrame{typ: typ, data: data})
}

// enqueueFrame is enqueue for a frame whose buffer goes back to its owner
// once written (f.written). When it returns an error, the frame was not
// queued and the owner has its buffer back.
func (s *session) enqueueFrame(ctx context.Context, f outFrame) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.done:
		return lost(s.reason)
	default:
	}
	n := int64(len(f.data))
	for s.outBytes.Load() >= outQueueBytes {
		select {
		case <-s.outDrained:
		case <-s.done:
			return lost(s.reason)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.outBytes.Add(n)
	select {
	case s.out <- f:
		return nil
	case <-s.done:
		s.outBytes.Add(-n)
		return lost(s.reason)
	case <-ctx.Done():
		s.outBytes.Add(-n)
		return ctx.Err()
	}
}

// send sends req with a fresh id and returns its pending answer; see request.
func (s *session) send(ctx context.Context, req protocol.Request, onResult func(json.RawMessage, error)) (*pending, error) {
	req.ID = s.c.nextID.Add(1)
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: encoding %s request: %w", req.T, err)
	}
	if err := s.checkSize(data); err != nil {
		return nil, err
	}
	p := &pending{ch: make(chan result, 1), onResult: onResult}
	s.mu.Lock()
	if s.pending == nil {
		s.mu.Unlock()
		return nil, lost(s.reason)
	}
	s.pending[req.ID] = p
	s.mu.Unlock()
	if err := s.enqueue(ctx, websocket.TextMessage, data); err != nil {
		s.mu.Lock()
		if s.pending != nil {
			delete(s.pending, req.ID)
		}
		s.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// request sends req and waits for its answer: the ack's data, or a
// *protocol.Error. When ctx ends first the answer is still processed when it
// comes (onResult runs), only nobody waits for it.
func (s *session) request(ctx context.Context, req protocol.Request, onResult func(json.RawMessage, error)) (json.RawMessage, error) {
	p, err := s.send(ctx, req, onResult)
	if err != nil {
		return nil, err
	}
	return p.wait(ctx)
}

func (p *pending) wait(ctx context.Context) (json.RawMessage, error) {
	select {
	case r := <-p.ch:
		return r.data, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// checkSize refuses a text frame over the server's limit here: the server
// would discard it unread and could not tell which request it was.
func (s *session) checkSize(data []byte) error {
	if limit := s.welcome.Limits.MaxFrame; limit > 0 && len(data) > limit {
		return protocol.Errorf(protocol.CodeFrameTooLarge, "the frame would be %d bytes; the server accepts at most %d", len(data), limit)
	}
	return nil
}

// ping sends an application-level ping and waits for its pong.
func (s *session) ping(ctx context.Context) (time.Duration, error) {
	ts := s.nextTS()
	key := strconv.FormatInt(ts, 10)
	ch := make(chan struct{})
	s.mu.Lock()
	if s.pings == nil {
		s.mu.Unlock()
		return 0, lost(s.reason)
	}
	s.pings[key] = ch
	s.mu.Unlock()
	forget := func() {
		s.mu.Lock()
		if s.pings != nil {
			delete(s.pings, key)
		}
		s.mu.Unlock()
	}
	start := time.Now()
	if err := s.enqueue(ctx, websocket.TextMessage, pingFrame(ts)); err != nil {
		forget()
		return 0, err
	}
	select {
	case <-ch:
		return time.Since(start), nil
	case <-s.done:
		return 0, lost(s.reason)
	case <-ctx.Done():
		forget()
		return 0, ctx.Err()
	}
}
