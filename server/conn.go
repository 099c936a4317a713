package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// closeGrace is how long a closing connection waits for the client's close
// frame before the TCP connection is cut.
const closeGrace = time.Second

// conn is one WebSocket connection. A reader goroutine exists only while the
// socket has bytes to read, and frames are written by the server's flushers
// (see flush.go), so an idle connection costs no goroutine at all.
type conn struct {
	s      *Server
	nc     net.Conn
	closer io.Closer       // what closes nc (see attach)
	raw    syscall.RawConn // nc's descriptor on the fast path (see socket.go)
	fl     *flusher
	id     string
	user   string
	name   string
	// place is the connection's place within the caps (see admit).
	place admission
	// rooms are the room patterns the user's token grants; nil: any.
	rooms []string
	// expiry closes the connection when its token expires (nil without).
	expiry *time.Timer

	mu       sync.Mutex
	queue    [][]byte // framed, waiting to be written
	queued   int      // bytes in queue
	catchUp  int      // of which catch-up frames, at most (see enqueue)
	wstate   uint8    // writeIdle, writeFlushing or writeBlocking
	inNormal bool     // on the flusher's list of room traffic
	inUrgent bool     // on the flusher's list of urgent frames
	over     bool     // cleaned up: close the socket once the queue is written
	// sockClosed: nc is closed; with over, the connection leaves (leave).
	sockClosed bool
	// overQueue is set when the queue went over MaxQueue while a flusher
	// was writing; the flusher decides once its write is over.
	overQueue bool
	closing   bool // a close frame is queued: no more data frames
	dead      bool // the TCP connection is closed

	// queuedAt is when the queue started filling, for one queue in
	// waitSample (see stampLocked); waitN counts them.
	queuedAt time.Time
	waitN    uint8

	pinger   *time.Timer
	pingSent time.Time // owned by the timer's callbacks, which never overlap
	lastSeen atomic.Int64

	// reading is held by whoever reads the socket: one goroutine at a time.
	reading atomic.Bool
	// fd is nc's descriptor on the fast path, for the flushers' writes,
	// and -1 on the portable path (see socket.go). It stays open until
	// kill marks the connection dead, and while a flusher writes
	// (writeFlushing) until that write is over.
	fd        int
	cleanOnce sync.Once
	leaveOnce sync.Once

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
	// control counts the connection's upload requests running off the
	// reader (see offReader).
	storageReqs atomic.Int32
}

var _ rooms.Member = (*conn)(nil)

// logger returns a logger naming the connection, made when something is
// logged rather than kept: a logger with attributes is a few hundred bytes,
// which 15,000 idle connections would hold for nothing.
func (c *conn) logger() *slog.Logger { return c.s.cfg.Log.With("conn", c.id, "user", c.user) }

func (c *conn) ConnID() string   { return c.id }
func (c *conn) UserID() string   { return c.user }
func (c *conn) UserName() string { return c.name }

// Deliver queues a hub message.
func (c *conn) Deliver(m *rooms.Message) bool {
	return c.enqueue(m.Framed(textFrame), kindRoom)
}

// CatchUp queues a hub message the connection missed.
func (c *conn) CatchUp(m *rooms.Message) bool {
	return c.enqueue(m.Framed(textFrame), kindCatchUp)
}

// send encodes v and queues it.
func (c *conn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.logger().Error("encode frame", "err", err)
		return
	}
	c.enqueue(textFrame(b), kindReply)
}

// sendError reports err to the client, as an error frame for request id.
func (c *conn) sendError(id uint64, err error) {
	c.s.metrics.errors.Add(1)
	f := errorFrame(id, err)
	c.s.hist.errors.WithLabelValues(f.Code).Inc() // codes are the server's own
	c.send(f)
}

// frameKind says how a queued frame is written.
type frameKind uint8

const (
	// kindRoom is room traffic: it may wait up to WriteDelay to share a
	// system call, and a client whose queue would grow past MaxQueue with
	// it is dropped as slow.
	kindRoom frameKind = iota
	// kindCatchUp is room traffic the client missed (see rooms.Member):
	// it may wait like kindRoom but is never refused for size.
	kindCatchUp
	// kindReply answers the client's own request: written at once.
	kindReply
	// kindControl frames (the server's pings, close) are written at once,
	// never refused for size, and still queued once a close frame is.
	kindControl
	// kindPong answers a client's WebSocket ping: written at once, and
	// dropped while the queue is over half of MaxQueue, as RFC 6455
	// (5.5.3) allows (a pong for the latest ping is enough): a client that
	// floods pings and does not read cannot grow the server's memory, nor
	// fill its queue to where the answer to its next request would drop
	// it as slow.
	kindPong
)

// enqueue queues a framed message for the flusher. The caller is never
// blocked.
func (c *conn) enqueue(frame []byte, kind frameKind) bool {
	c.mu.Lock()
	if c.dead || (c.closing && kind != kindControl) {
		c.mu.Unlock()
		return false
	}
	if kind == kindPong && c.queued+len(frame) > c.s.cfg.MaxQueue/2 {
		c.mu.Unlock()
		c.s.metrics.pongsDropped.Add(1)
		return false
	}
	// Catch-up bytes do not count against MaxQueue. Written bytes are
	// taken from them first, which may let a little live traffic go
	// uncounted meanwhile, never more than the catch-up itself.
	if (kind == kindRoom || kind == kindReply) && c.queued-c.catchUp+len(frame) > c.s.cfg.MaxQueue {
		if c.wstate != writeFlushing {
			c.dropSlowLocked()
			return false
		}
		// A flusher is writing part of the queue right now, and the client
		// may be reading it as it goes: whether it is slow is known once
		// that write is over (see flush).
		c.overQueue = true
	}
	if len(c.queue) == 0 {
		c.stampLocked()
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	if kind == kindCatchUp {
		c.catchUp += len(frame)
	}
	if c.wstate != writeBlocking {
		urgent := kind == kindReply || kind == kindControl || kind == kindPong
		switch {
		case urgent && !c.inUrgent:
			c.inUrgent = true
			c.fl.schedule(c, true)
		case !c.inNormal && !c.inUrgent:
			c.inNormal = true
			c.fl.schedule(c, false)
		}
	}
	c.mu.Unlock()
	return true
}

// stampLocked notes, for one queue in waitSample that starts filling,
// when it did: the write that empties it observes the wait
// (ferry_delivery_wait_seconds). Sampled, so that a delivery to a room of
// thousands does not read the clock for each member. c.mu is held.
func (c *conn) stampLocked() {
	c.waitN++
	if c.waitN%waitSample == 0 {
		c.queuedAt = time.Now()
	}
}

// waitSample is one queue in how many whose wait is timed.
const waitSample = 16

// observeWaitLocked records the wait of a timed queue once a write took
// its first frames; untimed queues cost no clock read. c.mu is held.
func (c *conn) observeWaitLocked() {
	if !c.queuedAt.IsZero() {
		c.s.hist.queueWait.Observe(time.Since(c.queuedAt).Seconds())
		c.queuedAt = time.Time{}
	}
}

// queueFirst puts the connection's first frame in its queue without
// scheduling a write: kick does, once the connection is registered.
func (c *conn) queueFirst(frame []byte) {
	c.mu.Lock()
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.mu.Unlock()
}

// kick schedules a write of what is queued, unless one is.
func (c *conn) kick() {
	c.mu.Lock()
	if len(c.queue) > 0 && !c.inUrgent && c.wstate != writeBlocking {
		c.inUrgent = true
		c.fl.schedule(c, true)
	}
	c.mu.Unlock()
}

// flushedLocked reports whether everything queued has been written. The
// caller holds c.mu.
func (c *conn) flushedLocked() bool {
	return len(c.queue) == 0 && c.wstate == writeIdle
}

// dropSlowLocked closes a client whose queue outgrew MaxQueue. The caller
// holds c.mu, which it releases: the decision is taken under the lock, so
// that a client is counted once however many frames find it over the limit.
func (c *conn) dropSlowLocked() {
	start, queued := c.startCloseLocked(), c.queued
	if start {
		c.s.metrics.slow.Add(1) // counted before anyone can see closing
	}
	c.mu.Unlock()
	if !start {
		return
	}
	c.logger().Info("dropping slow client", "queued", queued)
	c.sendClose(protocol.CloseSlow, "too slow: send queue full")
}

// closeWith queues a close frame and cuts the connection if the client has
// not closed its side within closeGrace. It never blocks.
func (c *conn) closeWith(code int, reason string) {
	c.mu.Lock()
	start := c.startCloseLocked()
	c.mu.Unlock()
	if start {
		c.sendClose(code, reason)
	}
}

// startCloseLocked marks the connection closing; false means it already
// was, or is dead. The caller holds c.mu.
func (c *conn) startCloseLocked() bool {
	if c.closing || c.dead {
		return false
	}
	c.closing = true
	return true
}

// sendClose queues the close frame of a connection startCloseLocked marked,
// and cuts it after closeGrace.
func (c *conn) sendClose(code int, reason string) {
	c.enqueue(closeFrame(code, reason), kindControl)
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
	c.queued, c.catchUp = 0, 0
	// A flusher writing to the descriptor closes it once it is done.
	flushing := c.wstate == writeFlushing
	c.mu.Unlock()
	if !flushing {
		c.closeSocket()
	}
	// With no reader running (an idle connection) nobody would notice the
	// close: take the reader's place and clean up.
	if c.reading.CompareAndSwap(false, true) {
		go c.cleanup()
	}
}

// heartbeat runs on the connection's timer. It alternates between sending a
// ping and, PingTimeout later, checking that something arrived since.
func (c *conn) heartbeat() {
	now := time.Now()
	if c.pingSent.IsZero() {
		c.pingSent = now
		if c.enqueue(pingFrame, kindControl) {
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
		_ = c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.PingInterval + c.s.cfg.PingTimeout))
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

// cleanup runs once, when the connection is over: leave every room, pause
// uploads, stop the heartbeat, and close the socket (after the close frame's
// grace period if one is queued).
func (c *conn) cleanup() {
	c.cleanOnce.Do(func() {
		c.pinger.Stop()
		if c.expiry != nil {
			c.expiry.Stop()
		}
		c.s.poller.remove(c)
		c.s.hub.Unregister(c)
		c.detachUploads()
		// The socket closes now, or, while a close frame is still queued,
		// once it is written (closeWith's timer cuts it at the latest), so
		// that a Shutdown that saw every connection end leaves no socket
		// open behind it.
		c.mu.Lock()
		c.over = true
		now := !c.closing || c.flushedLocked()
		closed := c.sockClosed
		c.mu.Unlock()
		if now {
			c.kill()
		}
		if closed {
			c.leave()
		}
	})
}

// closeSocket closes the TCP connection. A connection cleaned up before
// its socket closed leaves the server only now: Shutdown, which waits for
// every connection to leave, then leaves no socket open behind it.
func (c *conn) closeSocket() {
	_ = c.closer.Close()
	c.mu.Lock()
	c.sockClosed = true
	over := c.over
	c.mu.Unlock()
	if over {
		c.leave()
	}
}

// leave takes a cleaned-up connection whose socket is closed off the
// server's books, once.
func (c *conn) leave() {
	c.leaveOnce.Do(func() {
		c.s.unadmit(c.place)
		c.s.metrics.connections.Add(-1)
		c.s.remove(c)
	})
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
