package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// closeGrace is how long a closing connection waits for the client's close
// frame before the TCP connection is cut.
const closeGrace = time.Second

// conn is one WebSocket connection. Its reader goroutine (readLoop) owns the
// connection's life; a writer goroutine exists only while frames are queued,
// so an idle connection costs one parked goroutine.
//
// Every write to the socket is one whole frame or a batch of whole frames in
// a single (vectored) write, made by the writer goroutine; gorilla is used to
// read, and its own writes are redirected to the queue.
type conn struct {
	s    *Server
	ws   *websocket.Conn
	nc   net.Conn
	id   string
	user string
	name string
	log  *slog.Logger

	mu      sync.Mutex
	queue   [][]byte // framed, waiting for the writer
	queued  int      // bytes in queue
	writing bool     // a writer goroutine is running
	closing bool     // a close frame is queued: no more data frames
	dead    bool     // the TCP connection is closed

	pinger *time.Timer

	// Owned by the reader goroutine.
	limiter   limiter
	badFrames int
	lastTouch time.Time
	hdr       [2 + protocol.MaxUploadIDLen + 8]byte

	uploads uploadSet
}

var _ rooms.Member = (*conn)(nil)

func (c *conn) ConnID() string   { return c.id }
func (c *conn) UserID() string   { return c.user }
func (c *conn) UserName() string { return c.name }

// Deliver queues a hub message.
func (c *conn) Deliver(m *rooms.Message) bool {
	return c.enqueue(m.Framed(textFrame), false)
}

// send encodes v and queues it.
func (c *conn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode frame", "err", err)
		return
	}
	c.enqueue(textFrame(b), false)
}

// sendError reports err to the client, as an error frame for request id.
func (c *conn) sendError(id uint64, err error) {
	c.s.metrics.errors.Add(1)
	c.send(errorFrame(id, err))
}

// enqueue queues a framed message. Control frames (pings, pongs, close) are
// never refused for size. A client whose queue would grow past MaxQueue is
// dropped as slow; the caller is never blocked.
func (c *conn) enqueue(frame []byte, control bool) bool {
	c.mu.Lock()
	if c.dead || (c.closing && !control) {
		c.mu.Unlock()
		return false
	}
	if !control && c.queued+len(frame) > c.s.cfg.MaxQueue {
		c.mu.Unlock()
		c.s.metrics.slow.Add(1)
		c.log.Info("dropping slow client", "queued", c.queued)
		c.closeWith(protocol.CloseSlow, "too slow: send queue full")
		return false
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
	c.mu.Unlock()
	return true
}

// writeLoop writes queued frames in batches until the queue is empty.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.queued = 0
		if len(batch) == 0 || c.dead {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		frames := len(batch)
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
		bufs := net.Buffers(batch)
		n, err := bufs.WriteTo(c.nc)
		c.s.metrics.messagesOut.Add(uint64(frames))
		c.s.metrics.bytesOut.Add(uint64(n))
		if err != nil {
			c.log.Debug("write failed", "err", err)
			c.kill()
		}
	}
}

// closeWith queues a close frame and cuts the connection if the client has
// not closed its side within closeGrace. It never blocks.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closing || c.dead {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.mu.Unlock()
	c.enqueue(closeFrame(code, reason), true)
	time.AfterFunc(closeGrace, c.kill)
}

// kill closes the TCP connection; the reader then cleans up.
func (c *conn) kill() {
	c.mu.Lock()
	if c.dead {
		c.mu.Unlock()
		return
	}
	c.dead = true
	c.queue = nil
	c.queued = 0
	c.mu.Unlock()
	_ = c.nc.Close()
}

// ping sends a WebSocket ping and schedules the next one.
func (c *conn) ping() {
	if c.enqueue(pingFrame, true) {
		c.pinger.Reset(c.s.cfg.PingInterval)
	}
}

// touch pushes the read deadline forward: the client is alive. It is called
// for every frame, so it moves the deadline at most every few hundred
// milliseconds (an eighth of the allowed silence, at most a second).
func (c *conn) touch(now time.Time) {
	if now.Sub(c.lastTouch) < min(time.Second, (c.s.cfg.PingInterval+c.s.cfg.PingTimeout)/8) {
		return
	}
	c.lastTouch = now
	_ = c.nc.SetReadDeadline(now.Add(c.s.cfg.PingInterval + c.s.cfg.PingTimeout))
}

// readLoop reads frames until the connection ends, then releases everything
// the connection held.
func (c *conn) readLoop() {
	defer c.cleanup()
	c.ws.SetPingHandler(func(data string) error {
		c.enqueue(controlFrame(websocket.PongMessage, []byte(data)), true)
		return nil
	})
	c.ws.SetPongHandler(func(string) error {
		c.touch(time.Now())
		return nil
	})
	c.ws.SetCloseHandler(func(code int, text string) error {
		c.closeWith(code, "")
		return nil
	})
	// Text frames are limited to MaxFrame and binary ones to a chunk; this
	// hard limit only stops a client that keeps sending far past them (the
	// excess of smaller ones is read and discarded, and reported).
	c.ws.SetReadLimit(int64(16 * max(c.s.cfg.MaxFrame, c.maxBinary())))
	c.touch(time.Now())
	for {
		mt, r, err := c.ws.NextReader()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.touch(time.Now())
		c.s.metrics.messagesIn.Add(1)
		switch mt {
		case websocket.TextMessage:
			c.readText(r)
		case websocket.BinaryMessage:
			c.readBinary(r)
		}
	}
}

func (c *conn) readFailed(err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		c.log.Debug("client closed", "code", ce.Code, "text", ce.Text)
	case errors.Is(err, websocket.ErrReadLimit):
		c.closeWith(protocol.CloseMessageTooBig, "frame far over the limit")
	case errors.As(err, &ne) && ne.Timeout():
		c.s.metrics.timeouts.Add(1)
		c.log.Info("heartbeat timeout")
		c.closeWith(protocol.CloseHeartbeatTimeout, "no pong")
	default:
		c.log.Debug("read failed", "err", err)
	}
}

// cleanup runs once the reader is done: leave every room, pause uploads,
// stop the pinger and close the socket.
func (c *conn) cleanup() {
	c.pinger.Stop()
	c.s.hub.Unregister(c)
	c.detachUploads()
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if !closing {
		c.kill()
	} else {
		// Give the queued close frame its grace period; closeWith's timer cuts it.
		time.AfterFunc(closeGrace, c.kill)
	}
	c.s.metrics.connections.Add(-1)
	c.s.remove(c)
}

// badFrame reports a malformed frame; a client that sends nothing but
// malformed frames is cut off.
func (c *conn) badFrame(id uint64, err error) {
	c.badFrames++
	c.sendError(id, err)
	if c.badFrames >= maxBadFrames {
		c.closeWith(protocol.CloseProtocolViolation, "too many malformed frames")
	}
}

// maxBadFrames is how many malformed frames in a row end a connection.
const maxBadFrames = 50
