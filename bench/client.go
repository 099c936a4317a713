package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

const (
	// handshakeTimeout bounds one WebSocket handshake plus its welcome frame.
	handshakeTimeout = 15 * time.Second
	// controlWriteWait bounds writing a pong or a close frame.
	controlWriteWait = 5 * time.Second
)

// newDialer returns a dialer with small buffers: the generator holds many
// connections and must stay light next to the server it measures.
func newDialer(readBuf, writeBuf int) *websocket.Dialer {
	return &websocket.Dialer{
		HandshakeTimeout: handshakeTimeout,
		ReadBufferSize:   readBuf,
		WriteBufferSize:  writeBuf,
		WriteBufferPool:  &sync.Pool{},
		NetDialContext:   (&net.Dialer{Timeout: handshakeTimeout}).DialContext,
	}
}

// dial opens a connection and reads its welcome frame.
func dial(ctx context.Context, d *websocket.Dialer, target, name string) (*websocket.Conn, protocol.Welcome, error) {
	u := target + "?name=" + url.QueryEscape(name)
	c, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		if resp != nil {
			return nil, protocol.Welcome{}, fmt.Errorf("dial %s: %w (HTTP %s)", target, err, resp.Status)
		}
		return nil, protocol.Welcome{}, fmt.Errorf("dial %s: %w", target, err)
	}
	var w protocol.Welcome
	if err := readJSON(c, time.Now().Add(handshakeTimeout), &w); err != nil {
		c.Close()
		return nil, protocol.Welcome{}, fmt.Errorf("welcome: %w", err)
	}
	if w.T != protocol.TypeWelcome {
		c.Close()
		return nil, protocol.Welcome{}, fmt.Errorf("first frame is %q, want %q", w.T, protocol.TypeWelcome)
	}
	return c, w, nil
}

// readJSON reads one text frame into v, with a deadline.
func readJSON(c *websocket.Conn, deadline time.Time, v any) error {
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	defer c.SetReadDeadline(time.Time{})
	_, b, err := c.ReadMessage()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// reply is what request waits for: an ack or an error with its id.
type reply struct {
	T       string          `json:"t"`
	ID      uint64          `json:"id"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data"`
}

// request sends a frame with id and waits for the matching ack, skipping the
// frames that arrive meanwhile (presence, events). An error frame becomes a
// *protocol.Error.
func request(c *websocket.Conn, id uint64, frame any, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := c.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if err := c.WriteJSON(frame); err != nil {
		return err
	}
	return awaitReply(id, func(r *reply) error { return readJSON(c, deadline, r) })
}

// awaitReply reads frames with read until the ack or error frame answering
// request id, skipping the others (presence, events). An error frame
// becomes a *protocol.Error.
func awaitReply(id uint64, read func(*reply) error) error {
	for {
		var r reply
		if err := read(&r); err != nil {
			return err
		}
		if r.ID != id {
			continue
		}
		switch r.T {
		case protocol.TypeAck:
			return nil
		case protocol.TypeError:
			return &protocol.Error{Code: r.Code, Message: r.Message}
		}
	}
}

// join makes c a member of room.
func join(c *websocket.Conn, room string) error {
	err := request(c, 1, protocol.Request{T: protocol.TypeJoin, ID: 1, Room: room}, handshakeTimeout)
	if err != nil {
		return fmt.Errorf("join %q: %w", room, err)
	}
	return nil
}

// countingPongs installs a ping handler that answers like gorilla's default
// one and calls onPing for every ping.
func countingPongs(c *websocket.Conn, onPing func()) {
	c.SetPingHandler(func(data string) error {
		onPing()
		err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(controlWriteWait))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil
		}
		return err
	})
}

// readFrame reads the next message into buf, without allocating, and returns
// how much of it fit. The rest of a longer message is discarded by the next
// call to NextReader.
func readFrame(c *websocket.Conn, buf []byte) (int, error) {
	_, r, err := c.NextReader()
	if err != nil {
		return 0, err
	}
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// closeAll closes conns in parallel; a close frame is not worth waiting for
// when the measurement is over.
func closeAll(conns []*websocket.Conn) {
	var wg sync.WaitGroup
	const workers = 16
	per := (len(conns) + workers - 1) / workers
	for i := 0; i < len(conns); i += per {
		part := conns[i:min(i+per, len(conns))]
		wg.Go(func() {
			for _, c := range part {
				if c != nil {
					c.Close()
				}
			}
		})
	}
	wg.Wait()
}

// httpClient is used for /metrics scrapes.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// parallel runs fn(ctx, i) for i in [0, n) on at most workers goroutines and
// returns the first error, after which the remaining calls are skipped.
func parallel(ctx context.Context, n, workers int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu   sync.Mutex
		next int
		wg   sync.WaitGroup
	)
	for range min(workers, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}
