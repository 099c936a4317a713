package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// fastPath: plain TCP sockets take the fast path (see socket.go).
const fastPath = true

// poller watches idle connections with one epoll instance, so that a
// connection needs a goroutine only while it has bytes to read. Each socket is
// registered level-triggered and one-shot: one readiness event starts one
// reader, which re-arms the socket when it has drained it.
type poller struct {
	log *slog.Logger

	once  sync.Once
	err   error
	epfd  int
	epf   *os.File // epfd, watched by Go's own poller while the loop waits
	wake  int      // eventfd that stops the loop
	done  chan struct{}
	mu    sync.Mutex
	conns map[int]*conn
	stop  sync.Once
}

func newPoller(log *slog.Logger) *poller {
	return &poller{log: log, conns: make(map[int]*conn), done: make(chan struct{})}
}

// start creates the epoll instance and its loop on first use, so a Server
// that never accepts a connection owns no goroutine.
func (p *poller) start() error {
	p.once.Do(func() {
		p.epfd, p.err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if p.err != nil {
			return
		}
		p.wake, p.err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if p.err != nil {
			_ = unix.Close(p.epfd)
			return
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.wake)}
		if p.err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, p.wake, &ev); p.err != nil {
			_ = unix.Close(p.wake)
			_ = unix.Close(p.epfd)
			return
		}
		// An epoll instance is itself readable when it has events. Non-
		// blocking, it goes into Go's poller, so the loop parks like any
		// goroutine waiting for a socket instead of holding a thread in
		// epoll_wait, which the runtime would keep replacing under load.
		if p.err = unix.SetNonblock(p.epfd, true); p.err != nil {
			_ = unix.Close(p.wake)
			_ = unix.Close(p.epfd)
			return
		}
		p.epf = os.NewFile(uintptr(p.epfd), "epoll")
		rc, err := p.epf.SyscallConn()
		if err != nil {
			p.err = err
			_ = unix.Close(p.wake)
			_ = p.epf.Close()
			return
		}
		go p.loop(rc)
	})
	return p.err
}

func (p *poller) loop(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		var n int
		var err error
		if rerr := rc.Read(func(fd uintptr) bool {
			n, err = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (err != nil && !errors.Is(err, unix.EINTR))
		}); rerr != nil {
			err = rerr
		}
		if err != nil {
			p.log.Error("epoll_wait", "err", err)
			return
		}
		for _, ev := range events[:n] {
			if int(ev.Fd) == p.wake {
				return
			}
			p.mu.Lock()
			c := p.conns[int(ev.Fd)]
			p.mu.Unlock()
			if c != nil && c.reading.CompareAndSwap(false, true) {
				go c.serveReads()
			}
		}
	}
}

// add registers a new connection; its first bytes start a reader.
func (p *poller) add(c *conn) error {
	if c.tr.portable() {
		c.readForever()
		return nil
	}
	if err := p.start(); err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	p.mu.Lock()
	p.conns[c.tr.fd] = c
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.tr.fd)}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, c.tr.fd, &ev)
}

// remove forgets a connection that is over.
func (p *poller) remove(c *conn) {
	if c.tr.portable() {
		return
	}
	p.mu.Lock()
	if p.conns[c.tr.fd] == c {
		delete(p.conns, c.tr.fd)
		_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.tr.fd, nil)
	}
	p.mu.Unlock()
}

// tryRead reads what the socket has without waiting.
func (p *poller) tryRead(c *conn) readResult {
	if c.tr.portable() {
		return c.waitRead()
	}
	rd := &c.rd
	if rd.r > 0 {
		rd.w = copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.r = 0
	}
	var n int
	var rerr error
	if err := c.tr.raw.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), rd.buf[rd.w:])
		return true
	}); err != nil {
		return readEnd
	}
	switch {
	case n > 0:
		rd.w += n
		c.seen()
		return readData
	case errors.Is(rerr, unix.EAGAIN):
		return readIdle
	}
	return readEnd
}

// rearm gives the drained connection back to epoll. It returns false when
// the caller must keep reading (the connection was closed meanwhile and the
// caller still holds the reader's place).
func (p *poller) rearm(c *conn) bool {
	if c.tr.portable() {
		return false
	}
	c.reading.Store(false)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(c.tr.fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.tr.fd, &ev); err == nil {
		return true
	}
	// The socket is gone. Whoever takes the reader's place cleans up: if
	// kill() already did, there is nothing left to do.
	return !c.reading.CompareAndSwap(false, true)
}

// close stops the loop. Connections are closed by the server itself.
func (p *poller) close() {
	p.stop.Do(func() {
		started := true
		p.once.Do(func() { started, p.err = false, errors.New("server shut down") })
		if !started || p.err != nil {
			return
		}
		_, _ = unix.Write(p.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-p.done
		_ = unix.Close(p.wake)
		_ = p.epf.Close()
	})
}
