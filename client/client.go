package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// State is where a Client stands.
type State int

const (
	// StateIdle: New returned the client and Connect has not succeeded yet.
	StateIdle State = iota
	// StateConnected: the connection is up and the rooms are joined.
	StateConnected
	// StateReconnecting: the connection dropped; the client is waiting out a
	// backoff delay or trying to connect again. Requests wait for it.
	StateReconnecting
	// StateClosed: the client is done (Close was called, or it will not
	// reconnect); see Client.Err.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Client is a connection to a ferry server that survives network trouble:
// it reconnects with backoff, joins its rooms again and keeps its user id.
// Its methods are safe for concurrent use.
type Client struct {
	cfg       Config
	url       *url.URL
	log       *slog.Logger
	handlers  handlers
	disp      *dispatcher
	nextID    atomic.Uint64
	streams   *streams
	ownEvents ownEvents
	http      *http.Client // downloads

	// ctx ends when Close is called; it bounds every connection attempt.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the supervisor
	closeOnce sync.Once

	mu    sync.Mutex
	sess  *session      // the connected session; nil while reconnecting
	ready chan struct{} // closed when sess is set or the client is done
	// waiting counts the calls blocked in session() until the client
	// reconnects.
	waiting atomic.Int32
	state   State
	welcome protocol.Welcome
	token   string
	// rooms are the named rooms to join again after a reconnection, each
	// with the pass its join returned ("" for none).
	rooms   map[string]string
	err     error // why the client is done
	started bool  // Connect succeeded, or is trying
	// unconfirmed holds receipts ("received" frames) that could not be sent
	// while the client reconnected.
	unconfirmed [][]byte
}

// Dial connects to a ferry server and returns once the server's welcome
// frame has arrived. It makes one attempt; reconnection (unless
// Config.NoReconnect) applies to connections that drop later. ctx bounds the
// attempt only. Close the client to release it.
//
// Events may arrive right after the welcome (direct messages that waited
// for the user): to see those, register handlers between New and Connect
// instead.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		_ = c.Close()
		<-c.Done()
		return nil, err
	}
	return c, nil
}

// New returns a client that is not connected yet (StateIdle), so that
// handlers can be registered before the first frame arrives; Connect
// connects it. Requests made meanwhile wait for the connection. Close the
// client to release it, connected or not.
func New(cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	u, err := endpoint(cfg.URL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		url:     u,
		log:     cfg.Log,
		disp:    newDispatcher(cfg.QueueSize, cfg.QueueBytes),
		streams: newStreams(),
		http:    &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: cfg.TLS}},
		ready:   make(chan struct{}),
		token:   cfg.Token,
		rooms:   make(map[string]string),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.disp.run()
	return c, nil
}

// Connect makes the client's first connection, as Dial does: one attempt,
// bounded by ctx; after a failure it may be called again. Once it has
// succeeded, the client reconnects by itself and Connect must not be called
// again.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.err != nil:
		c.mu.Unlock()
		return c.err
	case c.started:
		c.mu.Unlock()
		return errors.New("client: Connect called twice")
	}
	c.started = true
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.ctx, cancel) // Close ends the attempt
	defer stop()
	defer cancel()
	s, err := c.connect(ctx)
	if err != nil {
		c.mu.Lock()
		c.started = false
		c.mu.Unlock()
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return err
	}
	c.mu.Lock()
	if c.ctx.Err() != nil { // closed meanwhile
		c.mu.Unlock()
		s.wait(ErrClosed)
		return ErrClosed
	}
	c.sess = s
	c.state = StateConnected
	close(c.ready)
	c.wg.Add(1) // under mu: Close waits for it (see Close)
	c.mu.Unlock()
	go c.supervise(s)
	c.flushConfirmations(s)
	return nil
}

// connect dials, reads the welcome frame and starts a session.
func (c *Client) connect(ctx context.Context) (*session, error) {
	u := *c.url
	q := u.Query()
	if c.cfg.Name != "" {
		q.Set("name", c.cfg.Name)
	}
	u.RawQuery = q.Encode()
	h := c.cfg.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	c.mu.Lock()
	token := c.token
	c.mu.Unlock()
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}

	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	d := websocket.Dialer{Proxy: http.ProxyFromEnvironment, HandshakeTimeout: c.cfg.HandshakeTimeout,
		TLSClientConfig: c.cfg.TLS, WriteBufferSize: writeBufferSize, WriteBufferPool: &writeBuffers}
	ws, resp, err := d.DialContext(ctx, u.String(), h)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			_ = resp.Body.Close()
			return nil, &HandshakeError{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(body))}
		}
		return nil, fmt.Errorf("client: connecting to %s: %w", c.url, err)
	}
	ws.SetReadLimit(c.cfg.ReadLimit)

	// The welcome read obeys ctx (which carries HandshakeTimeout): ending
	// it cuts the connection.
	unwatch := context.AfterFunc(ctx, func() { _ = ws.NetConn().Close() })
	w, err := readWelcome(ws)
	if !unwatch() || err != nil {
		_ = ws.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("client: waiting for the welcome frame: %w", context.Cause(ctx))
		}
		return nil, err
	}

	c.mu.Lock()
	c.welcome = w
	if w.Token != "" {
		c.token = w.Token
	}
	c.mu.Unlock()
	s := newSession(c, ws, w)
	s.log.Debug("connected", "user", w.User, "name", w.Name)
	s.start()
	return s, nil
}

func readWelcome(ws *websocket.Conn) (protocol.Welcome, error) {
	var w protocol.Welcome
	typ, data, err := ws.ReadMessage()
	if err != nil {
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return w, &CloseError{Code: ce.Code, Text: ce.Text}
		}
		return w, fmt.Errorf("client: waiting for the welcome frame: %w", err)
	}
	if typ != websocket.TextMessage {
		return w, errors.New("client: the server's first frame is binary, not a welcome frame")
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return w, fmt.Errorf("client: reading the welcome frame: %w", err)
	}
	if w.T != protocol.TypeWelcome {
		return w, fmt.Errorf("client: the server's first frame is %q, not a welcome frame", w.T)
	}
	if w.V != protocol.Version {
		return w, errVersion(w.V)
	}
	return w, nil
}

// setConnected publishes s: requests waiting for a connection go ahead.
func (c *Client) setConnected(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sess = s
	c.state = StateConnected
	close(c.ready)
}

// sessionEnded is called once by every session when it stops.
func (c *Client) sessionEnded(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != s {
		return // it never got published (a reconnection attempt failed)
	}
	c.sess = nil
	c.ready = make(chan struct{})
	if c.shouldReconnect(s.reason) {
		c.state = StateReconnecting
	} else {
		c.state = StateClosed
	}
}

func (c *Client) shouldReconnect(reason error) bool {
	return !c.cfg.NoReconnect && !errors.Is(reason, ErrClosed) && !permanent(reason)
}

// finish marks the client done for err; the first call wins. The handler
// goroutine runs what is queued (the final lifecycle events are) and ends.
func (c *Client) finish(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	c.state = StateClosed
	if c.sess == nil {
		close(c.ready) // wake the waiters: they get err
	}
	c.disp.close()
}

// session returns the connected session, waiting while the client
// reconnects.
func (c *Client) session(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, err, ready := c.sess, c.err, c.ready
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if s != nil {
			return s, nil
		}
		c.waiting.Add(1)
		select {
		case <-ready:
		case <-ctx.Done():
		}
		c.waiting.Add(-1)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// dispatch queues fn for the handler goroutine.
func (c *Client) dispatch(fn func(), droppable bool) bool {
	return c.disp.push(fn, droppable, 0)
}

func (c *Client) emitLifecycle(l Lifecycle) {
	if !c.dispatch(func() { c.handlers.lifecycle.call(l.Name, l) }, false) {
		c.log.Warn("handlers too slow: lifecycle event dropped", "event", l.Name)
	}
}

// supervise owns the connection: it waits for the session to end, reports
// it, and reconnects when it should.
func (c *Client) supervise(s *session) {
	defer c.wg.Done()
	for s != nil {
		select {
		case <-s.done:
		case <-c.ctx.Done():
		}
		s.wait(ErrClosed)
		// The session may have died before it was published, in which case
		// its own report found nothing to withdraw.
		c.sessionEnded(s)
		reason := s.reason
		c.log.Info("disconnected", "conn", s.welcome.Conn, "reason", reason)
		c.emitLifecycle(disconnectEvent(reason))
		if !c.shouldReconnect(reason) {
			c.finish(reason)
			return
		}
		s = c.reconnect()
	}
}

func disconnectEvent(reason error) Lifecycle {
	l := Lifecycle{Name: LifecycleDisconnect, Err: reason}
	var ce *CloseError
	switch {
	case errors.Is(reason, ErrClosed):
		l.Reason = ReasonClientClose
	case errors.As(reason, &ce):
		l.Code = ce.Code
		l.Reason = ReasonTransportClose
		if !protocol.Reconnectable(ce.Code) {
			l.Reason = ReasonServerClose
		}
	case errors.Is(reason, ErrPingTimeout):
		l.Reason = ReasonPingTimeout
	default:
		l.Reason = ReasonTransportError
	}
	return l
}

// reconnect tries to connect again, with backoff, until it succeeds, runs
// out of attempts, meets a permanent refusal or the client closes. It
// returns the new session, or nil when the client is done.
func (c *Client) reconnect() *session {
	b := c.cfg.Reconnect
	var last error
	for attempt := 1; ; attempt++ {
		if b.Attempts > 0 && attempt > b.Attempts {
			c.emitLifecycle(Lifecycle{Name: LifecycleReconnectFailed, Attempt: attempt - 1, Err: last})
			c.finish(fmt.Errorf("%w after %d attempts: %w", ErrReconnectFailed, attempt-1, last))
			return nil
		}
		delay := b.delay(attempt, rand.Float64())
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			c.finish(ErrClosed)
			return nil
		}
		if c.waitHandlers() != nil {
			c.finish(ErrClosed)
			return nil
		}
		c.emitLifecycle(Lifecycle{Name: LifecycleReconnectAttempt, Attempt: attempt, Delay: delay})
		s, err := c.connect(c.ctx)
		if err == nil {
			err = c.rejoin(s)
		}
		if c.ctx.Err() != nil {
			if s != nil {
				s.wait(ErrClosed)
			}
			c.finish(ErrClosed)
			return nil
		}
		if err != nil {
			if s != nil {
				s.wait(err)
			}
			last = err
			c.log.Info("reconnection attempt failed", "attempt", attempt, "err", err)
			c.emitLifecycle(Lifecycle{Name: LifecycleConnectError, Attempt: attempt, Err: err})
			if permanent(err) {
				c.emitLifecycle(Lifecycle{Name: LifecycleReconnectFailed, Attempt: attempt, Err: err})
				c.finish(err)
				return nil
			}
			continue
		}
		c.setConnected(s)
		c.flushConfirmations(s)
		c.log.Info("reconnected", "conn", s.welcome.Conn, "attempt", attempt)
		c.emitLifecycle(Lifecycle{Name: LifecycleReconnect, Attempt: attempt})
		c.emitLifecycle(Lifecycle{Name: LifecycleConnect})
		return s
	}
}

// rejoin joins the client's rooms on a new session, all requests at once,
// each from the client's position in the room so that the server replays
// what was missed. A room the server now refuses is forgotten (and logged);
// a connection lost meanwhile fails the attempt.
func (c *Client) rejoin(s *session) error {
	c.mu.Lock()
	names := make([]string, 0, len(c.rooms))
	passes := make([]string, 0, len(c.rooms))
	for r, pass := range c.rooms {
		names = append(names, r)
		passes = append(passes, pass)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.HandshakeTimeout)
	defer cancel()
	waits := make([]*pending, 0, len(names))
	for i, room := range names {
		since := c.streams.begin(room, nil)
		p, err := s.send(ctx, protocol.Request{T: protocol.TypeJoin, Room: room, Since: since, Token: passes[i]}, c.joinResult(room))
		if err != nil {
			return fmt.Errorf("client: joining %q again: %w", room, err)
		}
		waits = append(waits, p)
	}
	for i, p := range waits {
		_, err := p.wait(ctx)
		var perr *protocol.Error
		switch {
		case err == nil:
		case !errors.As(err, &perr) || perr.Code == protocol.CodeRateLimited || perr.Code == protocol.CodeInternal:
			// Worth another attempt.
			return fmt.Errorf("client: joining %q again: %w", names[i], err)
		default:
			s.log.Warn("could not join a room again; forgetting it", "room", names[i], "err", err)
			c.mu.Lock()
			delete(c.rooms, names[i])
			c.mu.Unlock()
			c.streams.forget(names[i])
		}
	}
	return nil
}

// Close closes the connection (with a normal close frame), stops
// reconnecting and fails requests still waiting with ErrClosed (wrapped in
// ErrConnectionLost). It returns once the connection and the goroutines
// serving it are gone. Handlers still queued then run, the last one being
// the disconnect event, and the handler goroutine ends: Done is closed.
// Handlers may call Close. Close always returns nil; calling it again does
// nothing.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		// Taking mu orders this after any Connect that got in first, which
		// has counted its supervisor by then; a later one sees ctx ended.
		c.mu.Lock()
		c.mu.Unlock() //nolint:staticcheck // an empty critical section on purpose

		c.wg.Wait()
		c.finish(ErrClosed)
		c.http.CloseIdleConnections()
	})
	return nil
}

// Done is closed once the client is done and its handlers have all run. The
// client is done when Close was called, the server closed with a code meaning
// "do not reconnect", reconnection gave up, or the connection dropped under
// Config.NoReconnect. A handler must not wait for Done: Done waits for it.
func (c *Client) Done() <-chan struct{} { return c.disp.done }

// Err reports why the client is done (ErrClosed after Close, a *CloseError,
// an error wrapping ErrReconnectFailed...), or nil while it is not.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// State reports whether the client is connected, reconnecting or closed.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ID returns the id of the current (or last) connection. It changes with
// every reconnection.
func (c *Client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.Conn
}

// User returns the user id. Reconnections keep it.
func (c *Client) User() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.User
}

// Name returns the display name the server gave this client.
func (c *Client) Name() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.Name
}

// Token returns the token the client presents when it connects: Config.Token,
// or the anonymous token the server handed out. Saving it and passing it as
// Config.Token later keeps the same user id across runs.
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Limits returns the limits the server announced in its latest welcome.
func (c *Client) Limits() protocol.Limits {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.welcome.Limits
}

// writeBufferSize is gorilla's write buffer: a message larger than it goes
// out as several frames, one per buffer, each its own system call and for
// the server its own header. It holds a large message whole, so that it is
// one frame (upload chunks do not use it: see maskFrame). The buffers are
// shared through writeBuffers, held only while a message is written.
const writeBufferSize = 1<<20 + 4<<10

var writeBuffers sync.Pool
