package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferryhq/ferry/protocol"
)

// closeGrace is how long a closing connection waits for the client's close
// frame before the TCP connection is cut.
const closeGrace = time.Second

// transport owns a connection's socket: the frames queued for it, the writes
// that empty the queue (the flushers, and a writer goroutine while the client
// is slow, see flush.go), the read side's deadlines, and the close. The
// session above it (conn: rooms, requests, uploads) queues frames, reads
// through it and asks it to close; it never sees a descriptor. The transport
// reports to the session through transportEvents, and to nothing else.
//
// A socket takes one of two paths (see socket.go): the fast path, a plain
// TCP socket on Linux written with non-blocking sendmsg on its descriptor,
// and the portable path, any other net.Conn (TLS, other systems), written by
// a writer goroutine through the net.Conn.
type transport struct {
	env *transportEnv
	ev  transportEvents
	fl  *flusher

	nc     net.Conn
	closer interface{ Close() error } // what closes nc (see attach)
	raw    syscall.RawConn            // nc's descriptor on the fast path
	// fd is nc's descriptor on the fast path, for the flushers' writes,
	// and -1 on the portable path. It stays open until the transport is
	// cut, and while a flusher writes (writeFlushing) until that write is
	// over.
	fd int

	mu    sync.Mutex
	state sockState
	queue [][]byte // framed, waiting to be written
	// queued counts the bytes in queue; catchUp, of which catch-up frames,
	// at most (see send).
	queued, catchUp int
	wstate          uint8 // writeIdle, writeFlushing or writeBlocking
	inNormal        bool  // on the flusher's list of room traffic
	inUrgent        bool  // on the flusher's list of urgent frames
	// overQueue is set when the queue went over MaxQueue while a flusher
	// was writing; the flusher decides once its write is over.
	overQueue bool
	// queuedAt is when the queue started filling, for one queue in
	// waitSample (see stampLocked); waitN counts them.
	queuedAt time.Time
	waitN    uint8
}

// sockState is where a transport is in its life. It only moves forward,
// through to: each step is taken once, by whoever takes it under t.mu.
//
//	open ──close──▶ closing ──session over──▶ draining
//	  │                │                          │
//	  └────────────────┴──cut (kill)──────────────┴──▶ cut ──▶ closed
//
// A session that ends while open cuts the socket at once; while closing, the
// close frame still goes out first (draining), cut at the latest closeGrace
// after it was queued.
type sockState uint8

const (
	// sockOpen: frames of every kind are queued.
	sockOpen sockState = iota
	// sockClosing: a close frame is queued; only control frames follow.
	sockClosing
	// sockDraining: closing, and the session is over: the socket is cut
	// as soon as the queue is written.
	sockDraining
	// sockCut: nothing more is queued or written. The descriptor closes
	// now, or once the flusher writing to it is done.
	sockCut
	// sockClosed: the descriptor is closed.
	sockClosed
)

// toLocked moves the transport to next and reports whether it did: false
// means the transport is there or past it already. t.mu is held.
func (t *transport) toLocked(next sockState) bool {
	if t.state >= next {
		return false
	}
	t.state = next
	return true
}

// transportEvents is how a transport tells its session about the socket.
type transportEvents interface {
	// socketCut: the socket is cut; the session must end, as a reader
	// would notice if one ran.
	socketCut()
	// socketClosed: the descriptor is closed (after socketCut).
	socketClosed()
	logger() *slog.Logger
}

// transportEnv is what every transport of a server shares.
type transportEnv struct {
	maxQueue     int
	writeTimeout time.Duration
	closeGrace   time.Duration // closeGrace, but in tests
	m            *metrics
	queueWait    prometheus.Observer
}

// attach gives t its socket and picks its path.
func (t *transport) attach(nc net.Conn, env *transportEnv, ev transportEvents) error {
	t.env, t.ev = env, ev
	t.nc, t.closer, t.fd = nc, nc, -1
	if c, ok := nc.(*tls.Conn); ok {
		// Closing a TLS connection first sends close_notify, which waits
		// (up to 5 s) for a client that does not read; the WebSocket close
		// frame has already said goodbye, so the TCP connection under it
		// is closed instead.
		t.closer = c.NetConn()
	}
	if !fastPath {
		return nil
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	t.raw = raw
	return raw.Control(func(fd uintptr) { t.fd = int(fd) })
}

// portable reports whether t takes the portable path.
func (t *transport) portable() bool { return t.fd < 0 }

// read reads the socket, blocking.
func (t *transport) read(p []byte) (int, error) { return t.nc.Read(p) }

// readBy bounds the read in progress and the next ones.
func (t *transport) readBy(deadline time.Time) { _ = t.nc.SetReadDeadline(deadline) }

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

// send queues a framed message for the flusher. The caller is never
// blocked; false means the frame was not queued (closing, cut, or the
// client dropped as slow).
func (t *transport) send(frame []byte, kind frameKind) bool {
	t.mu.Lock()
	if t.state >= sockCut || (t.state >= sockClosing && kind != kindControl) {
		t.mu.Unlock()
		return false
	}
	if kind == kindPong && t.queued+len(frame) > t.env.maxQueue/2 {
		t.mu.Unlock()
		t.env.m.pongsDropped.Add(1)
		return false
	}
	// Catch-up bytes do not count against MaxQueue. Written bytes are
	// taken from them first, which may let a little live traffic go
	// uncounted meanwhile, never more than the catch-up itself.
	if (kind == kindRoom || kind == kindReply) && t.queued-t.catchUp+len(frame) > t.env.maxQueue {
		if t.wstate != writeFlushing {
			t.dropSlowLocked()
			return false
		}
		// A flusher is writing part of the queue right now, and the client
		// may be reading it as it goes: whether it is slow is known once
		// that write is over (see flush).
		t.overQueue = true
	}
	if len(t.queue) == 0 {
		t.stampLocked()
	}
	t.queue = append(t.queue, frame)
	t.queued += len(frame)
	if kind == kindCatchUp {
		t.catchUp += len(frame)
	}
	if t.wstate != writeBlocking {
		urgent := kind == kindReply || kind == kindControl || kind == kindPong
		switch {
		case urgent && !t.inUrgent:
			t.inUrgent = true
			t.fl.schedule(t, true)
		case !t.inNormal && !t.inUrgent:
			t.inNormal = true
			t.fl.schedule(t, false)
		}
	}
	t.mu.Unlock()
	return true
}

// stampLocked notes, for one queue in waitSample that starts filling,
// when it did: the write that empties it observes the wait
// (ferry_delivery_wait_seconds). Sampled, so that a delivery to a room of
// thousands does not read the clock for each member. t.mu is held.
func (t *transport) stampLocked() {
	t.waitN++
	if t.waitN%waitSample == 0 {
		t.queuedAt = time.Now()
	}
}

// waitSample is one queue in how many whose wait is timed.
const waitSample = 16

// observeWaitLocked records the wait of a timed queue once a write took
// its first frames; untimed queues cost no clock read. t.mu is held.
func (t *transport) observeWaitLocked() {
	if !t.queuedAt.IsZero() {
		t.env.queueWait.Observe(time.Since(t.queuedAt).Seconds())
		t.queuedAt = time.Time{}
	}
}

// queueFirst puts the connection's first frame in its queue without
// scheduling a write: kick does, once the session is ready.
func (t *transport) queueFirst(frame []byte) {
	t.mu.Lock()
	t.queue = append(t.queue, frame)
	t.queued += len(frame)
	t.mu.Unlock()
}

// kick schedules a write of what is queued, unless one is.
func (t *transport) kick() {
	t.mu.Lock()
	if len(t.queue) > 0 && !t.inUrgent && t.wstate != writeBlocking {
		t.inUrgent = true
		t.fl.schedule(t, true)
	}
	t.mu.Unlock()
}

// flushedLocked reports whether everything queued has been written. The
// caller holds t.mu.
func (t *transport) flushedLocked() bool {
	return len(t.queue) == 0 && t.wstate == writeIdle
}

// dropSlowLocked closes a client whose queue outgrew MaxQueue. The caller
// holds t.mu, which it releases: the decision is taken under the lock, so
// that a client is counted once however many frames find it over the limit.
func (t *transport) dropSlowLocked() {
	start, queued := t.toLocked(sockClosing), t.queued
	if start {
		t.env.m.slow.Add(1) // counted before anyone can see closing
	}
	t.mu.Unlock()
	if !start {
		return
	}
	t.ev.logger().Info("dropping slow client", "queued", queued)
	t.sendClose(protocol.CloseSlow, "too slow: send queue full")
}

// close queues a close frame and cuts the connection if the client has not
// closed its side within closeGrace. It never blocks.
func (t *transport) close(code int, reason string) {
	t.mu.Lock()
	start := t.toLocked(sockClosing)
	t.mu.Unlock()
	if start {
		t.sendClose(code, reason)
	}
}

// sendClose queues the close frame of a transport that just moved to
// closing, and cuts it after closeGrace.
func (t *transport) sendClose(code int, reason string) {
	t.send(closeFrame(code, reason), kindControl)
	time.AfterFunc(t.env.closeGrace, t.cut)
}

// release tells the transport that its session is over: the socket is cut
// now, or, while a close frame is still queued, once it is written (the
// close's timer cuts it at the latest), so that a Shutdown that saw every
// session end leaves no socket open behind it.
func (t *transport) release() {
	t.mu.Lock()
	now := t.state == sockOpen || (t.state == sockClosing && t.flushedLocked())
	if !now {
		t.toLocked(sockDraining)
	}
	t.mu.Unlock()
	if now {
		t.cut()
	}
}

// cut ends the TCP connection: nothing more is queued or written, and the
// session is told (socketCut).
func (t *transport) cut() {
	t.mu.Lock()
	if !t.toLocked(sockCut) {
		t.mu.Unlock()
		return
	}
	t.queue = nil
	t.queued, t.catchUp = 0, 0
	// A flusher writing to the descriptor closes it once it is done.
	flushing := t.wstate == writeFlushing
	t.mu.Unlock()
	if !flushing {
		t.closeSocket()
	}
	t.ev.socketCut()
}

// closeSocket closes the descriptor of a cut transport, once: either cut
// does, or the flusher whose write it waited for.
func (t *transport) closeSocket() {
	_ = t.closer.Close()
	t.mu.Lock()
	t.toLocked(sockClosed)
	t.mu.Unlock()
	t.ev.socketClosed()
}

// abandon closes the socket of a transport whose session never started,
// telling nobody: a heartbeat that already fired must not write to the
// descriptor once it is closed.
func (t *transport) abandon() {
	t.mu.Lock()
	t.toLocked(sockClosed)
	t.mu.Unlock()
	_ = t.closer.Close()
}
