package server

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"
)

// Writing to clients.
//
// A few flushers (one per CPU) write for every connection: a connection with
// queued frames is put on its flusher's list, and the flusher writes all of
// its frames with one non-blocking vectored write. A socket that cannot take
// everything at once gets a writer goroutine of its own for the rest, which
// waits (up to WriteTimeout) for the client to read; the flusher never waits
// for a client.
//
// Frames answering the client's own requests (acks, pongs, upload progress,
// control frames) are urgent: their flusher writes them at once. Frames that
// fan out from rooms are not: when a flusher's previous pass over them started
// less than WriteDelay ago, it waits for the rest of that delay, so that under
// load every client gets several frames per system call instead of one. A
// quiet server writes them at once as well.

// errWouldBlock reports that a non-blocking write could not take everything.
var errWouldBlock = errors.New("write would block")

// Write states of a connection.
const (
	writeIdle     = iota // nothing queued, or queued and on a flusher's list
	writeFlushing        // a flusher is writing, without t.mu
	writeBlocking        // a writer goroutine owns the socket
)

type flusher struct {
	delay time.Duration
	m     *metrics

	mu       sync.Mutex
	urgent   []*transport
	normal   []*transport
	idle     bool // the loop waits for work
	sleeping bool // the loop waits for delay to pass: only urgent work wakes it
	wake     chan struct{}
	quit     chan struct{}
	done     chan struct{}

	// Owned by the loop.
	lastPass time.Time
	bufs     [][]byte // the frames of the write in progress
	iov      iovecs
}

// flushers is the server's set of flushers, started with the first
// connection.
type flushers struct {
	mu      sync.Mutex
	list    []*flusher
	stopped bool
	next    int
}

// assign starts the flushers if needed and returns the one for a new
// connection, or nil once they have stopped.
func (fs *flushers) assign(s *Server) *flusher {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.stopped {
		return nil
	}
	if fs.list == nil {
		for range runtime.GOMAXPROCS(0) {
			f := &flusher{
				delay: max(s.cfg.WriteDelay, 0),
				m:     &s.metrics,
				wake:  make(chan struct{}, 1),
				quit:  make(chan struct{}),
				done:  make(chan struct{}),
			}
			go f.run()
			fs.list = append(fs.list, f)
		}
	}
	fs.next++
	return fs.list[fs.next%len(fs.list)]
}

// stop ends the flushers; frames still queued then are dropped.
func (fs *flushers) stop() {
	fs.mu.Lock()
	list := fs.list
	fs.list, fs.stopped = nil, true
	fs.mu.Unlock()
	for _, f := range list {
		close(f.quit)
		<-f.done
	}
}

// schedule puts t on the flusher's list. The caller holds t.mu.
func (f *flusher) schedule(t *transport, urgent bool) {
	f.mu.Lock()
	wake := f.idle
	if urgent {
		f.urgent = append(f.urgent, t)
		wake = wake || f.sleeping
	} else {
		f.normal = append(f.normal, t)
	}
	if wake {
		f.idle, f.sleeping = false, false
	}
	f.mu.Unlock()
	if wake {
		select {
		case f.wake <- struct{}{}:
		default:
		}
	}
}

func (f *flusher) run() {
	defer close(f.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var batch []*transport
	for {
		f.mu.Lock()
		if len(f.urgent) > 0 {
			batch, f.urgent = f.urgent, batch[:0]
			f.mu.Unlock()
			f.pass(batch, true)
			continue
		}
		if len(f.normal) == 0 {
			f.idle = true
			f.mu.Unlock()
			select {
			case <-f.wake:
				continue
			case <-f.quit:
				return
			}
		}
		now := time.Now()
		if due := f.lastPass.Add(f.delay); now.Before(due) {
			f.sleeping = true
			f.mu.Unlock()
			timer.Reset(due.Sub(now))
			select {
			case <-f.wake:
				timer.Stop()
			case <-timer.C:
				f.mu.Lock()
				f.sleeping = false
				f.mu.Unlock()
			case <-f.quit:
				return
			}
			continue
		}
		batch, f.normal = f.normal, batch[:0]
		f.mu.Unlock()
		f.lastPass = now
		f.pass(batch, false)
	}
}

// pass writes what the transports in batch have queued.
func (f *flusher) pass(batch []*transport, urgent bool) {
	var frames, bytes, writes uint64
	for i, t := range batch {
		batch[i] = nil
		nf, nb, wrote := f.flush(t, urgent)
		frames += uint64(nf)
		bytes += uint64(nb)
		if wrote {
			writes++
		}
	}
	if writes > 0 {
		f.m.messagesOut.Add(frames)
		f.m.bytesOut.Add(bytes)
		f.m.writes.Add(writes)
	}
}

// flush writes t's queue without waiting, and hands what the socket could
// not take to a writer goroutine. The system call runs without t.mu, so
// that a room delivering to t meanwhile never waits for it: new frames are
// appended behind the ones being written.
func (f *flusher) flush(t *transport, urgent bool) (frames, n int, wrote bool) {
	t.mu.Lock()
	if urgent {
		t.inUrgent = false
	} else {
		t.inNormal = false
	}
	if t.wstate != writeIdle || t.state >= sockCut || len(t.queue) == 0 {
		t.mu.Unlock()
		return 0, 0, false
	}
	t.wstate = writeFlushing
	f.bufs = append(f.bufs[:0], t.queue...)
	t.mu.Unlock()
	total := 0
	for _, b := range f.bufs {
		total += len(b)
	}

	n, err := f.iov.write(t, f.bufs)
	clear(f.bufs)

	t.mu.Lock()
	if t.state >= sockCut {
		// cut left the descriptor open for this write; close it now.
		t.mu.Unlock()
		t.closeSocket()
		return 0, n, true
	}
	frames = t.consume(n)
	if frames > 0 {
		t.observeWaitLocked()
	}
	slow := t.overQueue && t.queued-t.catchUp > t.env.maxQueue
	t.overQueue = false
	switch {
	case err == nil && n == total:
		// Frames queued during the write have put t on a list again.
		t.wstate = writeIdle
	case err == nil || errors.Is(err, errWouldBlock):
		t.wstate = writeBlocking
		go t.writeLoop()
	default:
		t.wstate = writeIdle
		t.mu.Unlock()
		t.ev.logger().Debug("write failed", "err", err)
		t.cut()
		return frames, n, true
	}
	if slow {
		t.dropSlowLocked()
		return frames, n, true
	}
	done := t.state == sockDraining && t.flushedLocked()
	t.mu.Unlock()
	if done {
		t.cut()
	}
	return frames, n, true
}

// consume drops the first n written bytes from the queue and returns how
// many frames were written whole. The caller holds t.mu.
func (t *transport) consume(n int) int {
	t.queued -= n
	t.catchUp = min(t.catchUp, t.queued)
	done := 0
	for done < len(t.queue) && n >= len(t.queue[done]) {
		n -= len(t.queue[done])
		done++
	}
	if done < len(t.queue) && n > 0 {
		// Frames can be shared between connections: slice, never modify.
		t.queue[done] = t.queue[done][n:]
	}
	rest := copy(t.queue, t.queue[done:])
	clear(t.queue[rest:])
	t.queue = t.queue[:rest]
	return done
}

// writeGroup bounds one write of a writer goroutine: what the client has
// read stops counting against MaxQueue group by group, not only once the
// whole backlog taken from the queue is written.
const writeGroup = 64 << 10

// writeLoop writes, waiting for the client as long as WriteTimeout allows,
// until the queue is empty; it then hands the transport back to its
// flusher.
func (t *transport) writeLoop() {
	var batch [][]byte
	for {
		t.mu.Lock()
		if len(t.queue) == 0 || t.state >= sockCut {
			t.wstate = writeIdle
			done := t.state == sockDraining
			t.mu.Unlock()
			if done {
				t.cut()
			}
			return
		}
		batch = append(batch[:0], t.queue...)
		clear(t.queue)
		t.queue = t.queue[:0]
		t.mu.Unlock()

		for rest := batch; len(rest) > 0; {
			k, size := 1, len(rest[0])
			for k < len(rest) && size+len(rest[k]) <= writeGroup {
				size += len(rest[k])
				k++
			}
			_ = t.nc.SetWriteDeadline(time.Now().Add(t.env.writeTimeout))
			bufs := net.Buffers(rest[:k])
			n, err := bufs.WriteTo(t.nc)
			rest = rest[k:]
			// A group counts in queued until it is written, so that a
			// client that does not read is dropped at MaxQueue, not twice
			// that.
			t.mu.Lock()
			if t.state < sockCut {
				t.queued -= int(n)
				t.catchUp = min(t.catchUp, t.queued)
				t.observeWaitLocked()
			}
			t.mu.Unlock()
			t.env.m.messagesOut.Add(uint64(k))
			t.env.m.bytesOut.Add(uint64(n))
			t.env.m.writes.Add(1)
			if err != nil {
				clear(batch)
				t.ev.logger().Debug("write failed", "err", err)
				t.cut()
				break
			}
		}
		clear(batch)
	}
}
