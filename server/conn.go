package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// conn is one WebSocket connection. A reader goroutine exists only while the
// socket has bytes to read, and frames are written by the server's flushers
// (see flush.go), so an idle connection costs no goroutine at all.
type conn struct {
	s    *Server
	tr   transport
	id   string
	user string
	name string
	// place is the connection's place within the caps (see admit).
	place admission
	// rooms are the room patterns the user's token grants; nil: any.
	rooms []string
	// expiry closes the connection when its token expires (nil without).
	expiry *time.Timer

	pinger   *time.Timer
	pingSent time.Time // owned by the timer's callbacks, which never overlap
	lastSeen atomic.Int64

	// reading is held by whoever reads the socket: one goroutine at a time.
	reading atomic.Bool
	// ended is set once, by the cleanup that ends the session.
	ended atomic.Bool
	// holds counts what keeps the connection on the server's books: its
	// session and its socket. The last of the two to end takes it off
	// (leave).
	holds atomic.Int32

	// Owned by the reader.
	rd        wsReader
	limiter   limiter
	receipts  *limiter // received frames (see handle), made at the first
	badFrames int
	hdr       [2 + protocol.MaxUploadIDLen + 8]byte

	// uploaded is set once the connection opens an upload, so that its end
	// pauses them.
	uploaded atomic.Bool
	// interrupted is set when an upload moved elsewhere in mid-chunk.
	interrupted atomic.Bool
	// storageReqs counts the connection's upload requests running off the
	// reader (see offReader).
	storageReqs atomic.Int32
}

var (
	_ rooms.Member    = (*conn)(nil)
	_ transportEvents = (*conn)(nil)
)

// logger returns a logger naming the connection, made when something is
// logged rather than kept: a logger with attributes is a few hundred bytes,
// which 15,000 idle connections would hold for nothing.
func (c *conn) logger() *slog.Logger { return c.s.cfg.Log.With("conn", c.id, "user", c.user) }

func (c *conn) ConnID() string   { return c.id }
func (c *conn) UserID() string   { return c.user }
func (c *conn) UserName() string { return c.name }

// Deliver queues a hub message.
func (c *conn) Deliver(m *rooms.Message) bool {
	return c.tr.send(m.Framed(textFrame), kindRoom)
}

// CatchUp queues a hub message the connection missed.
func (c *conn) CatchUp(m *rooms.Message) bool {
	return c.tr.send(m.Framed(textFrame), kindCatchUp)
}

// send encodes v and queues it.
func (c *conn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.logger().Error("encode frame", "err", err)
		return
	}
	c.tr.send(textFrame(b), kindReply)
}

// sendError reports err to the client, as an error frame for request id.
func (c *conn) sendError(id uint64, err error) {
	c.s.metrics.errors.Add(1)
	f := errorFrame(id, err)
	c.s.hist.errors.WithLabelValues(f.Code).Inc() // codes are the server's own
	if f.Code == protocol.CodeInternal {
		c.logger().Error("request failed", "err", err)
	}
	c.send(f)
}

// heartbeat runs on the connection's timer. It alternates between sending a
// ping and, PingTimeout later, checking that something arrived since.
func (c *conn) heartbeat() {
	now := time.Now()
	if c.pingSent.IsZero() {
		c.pingSent = now
		if c.tr.send(pingFrame, kindControl) {
			c.pinger.Reset(c.s.cfg.PingTimeout)
		}
		return
	}
	if c.lastSeen.Load() < c.pingSent.UnixNano() {
		c.s.metrics.timeouts.Add(1)
		c.logger().Info("heartbeat timeout")
		c.closeWith(protocol.CloseHeartbeatTimeout, "no pong")
		return
	}
	c.pingSent = time.Time{}
	c.pinger.Reset(max(c.s.cfg.PingInterval-c.s.cfg.PingTimeout, time.Millisecond))
}

// seen records that the client sent something: it is alive.
func (c *conn) seen() { c.lastSeen.Store(time.Now().UnixNano()) }

// serveReads reads and handles messages while the socket has bytes. On the
// fast path it returns once the socket is drained, handing the connection
// back to the poller, so an idle connection has no goroutine at all; on the
// portable path it keeps reading until the connection ends (see socket.go).
func (c *conn) serveReads() {
	c.borrowBuf()
	for {
		if c.rd.buffered() == 0 {
			switch c.s.poller.tryRead(c) {
			case readIdle:
				// The buffer goes back before the socket is re-armed: the
				// next reader may start at once.
				c.returnBuf()
				if c.s.poller.rearm(c) {
					return
				}
				c.borrowBuf() // the connection was closed meanwhile: read the error
				continue
			case readEnd:
				c.returnBuf()
				c.finish(io.EOF)
				return
			}
		}
		// Something is there: read whole messages, blocking within one.
		c.tr.readBy(time.Now().Add(c.s.cfg.PingInterval + c.s.cfg.PingTimeout))
		if err := c.readMessage(); err != nil {
			c.returnBuf()
			c.finish(err)
			return
		}
	}
}

func (c *conn) borrowBuf() {
	bp := readBufs.Get().(*[]byte)
	c.rd = wsReader{c: c, buf: *bp, pooled: bp}
}

func (c *conn) returnBuf() {
	bp := c.rd.pooled
	c.rd = wsReader{}
	readBufs.Put(bp)
}

// readMessage reads one frame and, for data frames, the message it starts.
func (c *conn) readMessage() error {
	m, err := c.rd.next(c.s.readLimit)
	if m == nil {
		return err
	}
	c.s.metrics.messagesIn.Add(1)
	if m.op == opText {
		c.readText(m)
	} else {
		c.readBinary(m)
	}
	_, err = m.discard()
	return err
}

// finish ends the connection after the reader stopped with err.
func (c *conn) finish(err error) {
	var pe *protocolError
	var ne net.Error
	switch {
	case errors.Is(err, errClientClosed), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &pe):
		c.logger().Info("protocol error", "err", err)
		c.closeWith(pe.Code, pe.Reason)
	case errors.As(err, &ne) && ne.Timeout() && c.interrupted.Load():
		c.closeWith(protocol.CloseGoingAway, "an upload moved to another connection")
	case errors.As(err, &ne) && ne.Timeout():
		c.s.metrics.timeouts.Add(1)
		c.closeWith(protocol.CloseHeartbeatTimeout, "frame not finished in time")
	default:
		c.logger().Debug("read failed", "err", err)
	}
	c.cleanup()
}

// closeWith queues a close frame and cuts the connection if the client has
// not closed its side within closeGrace. It never blocks.
func (c *conn) closeWith(code int, reason string) { c.tr.close(code, reason) }

// kill cuts the connection; the session then ends.
func (c *conn) kill() { c.tr.cut() }

// socketCut implements transportEvents. With no reader running (an idle
// connection) nobody would notice the cut: take the reader's place and end
// the session.
func (c *conn) socketCut() {
	if c.reading.CompareAndSwap(false, true) {
		go c.cleanup()
	}
}

// socketClosed implements transportEvents.
func (c *conn) socketClosed() { c.drop() }

// cleanup ends the session, once: leave every room, pause uploads, stop the
// heartbeat, and release the socket to its transport.
func (c *conn) cleanup() {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	c.pinger.Stop()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.s.poller.remove(c)
	c.s.hub.Unregister(c)
	// ended is set before the uploads are paused: an upload request
	// running off the reader that attaches one after this pause sees it,
	// and pauses the upload itself (see offReader).
	c.detachUploads()
	c.tr.release()
	c.drop()
}

// drop lets go of one of the connection's holds; the last takes it off the
// server's books, so that Shutdown, which waits for every connection to
// leave, leaves no socket open behind it.
func (c *conn) drop() {
	if c.holds.Add(-1) == 0 {
		c.s.unadmit(c.place)
		c.s.metrics.connections.Add(-1)
		c.s.remove(c)
	}
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
