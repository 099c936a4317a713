package bench

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// memberSet holds a fan-out's members and reads them from a few epoll loops,
// each owning a share of the sockets: no goroutine per member, one read per
// wake-up, frames parsed in place. This keeps the generator light next to
// the server on a small machine.
type memberSet struct {
	f     *fanoutRun
	nodes int
	loops []*epollLoop
	next  atomic.Uint32
	wg    sync.WaitGroup
	stop  atomic.Bool

	mu  sync.Mutex
	all []*rawConn // every member, closed by close
}

type epollLoop struct {
	set  *memberSet
	epfd int

	mu      sync.Mutex
	pending []*rawConn // added, not yet seen by the loop

	// Owned by the loop goroutine until it ends.
	conns map[int32]*rawConn
	// nodes are the receipts of the loop's members, by the node they joined.
	nodes []loopNode
}

// loopNode is what one loop's members on one node received.
type loopNode struct {
	// received counts first receipts: duplicates apart.
	received atomic.Int64
	// Owned by the loop goroutine until it ends.
	duplicates int64
	inWindow   int64
	hist       histogram
}

// epollWaitMS bounds each wait so that a loop notices stop.
const epollWaitMS = 50

// newMemberSet starts loops read loops for members spread over nodes
// servers.
func newMemberSet(f *fanoutRun, loops, nodes int) (*memberSet, error) {
	s := &memberSet{f: f, nodes: nodes}
	for range loops {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("epoll: %w", err)
		}
		l := &epollLoop{set: s, epfd: epfd, conns: make(map[int32]*rawConn), nodes: make([]loopNode, nodes)}
		s.loops = append(s.loops, l)
		s.wg.Go(l.run)
	}
	return s, nil
}

// join connects one member to the node-th server, joins the room and
// hands the socket to a loop.
func (s *memberSet) join(name string, node int) error {
	c, err := rawDial(s.f.cfg.targets()[node].URL, name, handshakeTimeout)
	if err != nil {
		return err
	}
	c.node = node
	s.mu.Lock()
	s.all = append(s.all, c)
	s.mu.Unlock()
	if err := s.f.dialect.joinRaw(c, s.f.cfg.Room); err != nil {
		return err
	}
	if err := c.detach(); err != nil {
		return err
	}
	l := s.loops[int(s.next.Add(1))%len(s.loops)]
	l.mu.Lock()
	l.pending = append(l.pending, c)
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

// received is how many events all members have received so far, each
// counted once per member.
func (s *memberSet) received() int64 {
	var n int64
	for _, l := range s.loops {
		for i := range l.nodes {
			n += l.nodes[i].received.Load()
		}
	}
	return n
}

// receivedOn is received for the members of one node.
func (s *memberSet) receivedOn(node int) int64 {
	var n int64
	for _, l := range s.loops {
		n += l.nodes[node].received.Load()
	}
	return n
}

// close stops the loops and closes every socket. It returns, for each node,
// what its members received: the events published in the window with
// their latencies, and the duplicates.
func (s *memberSet) close() []nodeTally {
	s.stop.Store(true)
	s.wg.Wait()
	tallies := make([]nodeTally, s.nodes)
	for _, l := range s.loops {
		syscall.Close(l.epfd)
		for i := range l.nodes {
			n, t := &l.nodes[i], &tallies[i]
			t.received += n.received.Load()
			t.duplicates += n.duplicates
			t.inWindow += n.inWindow
			t.hist.merge(&n.hist)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.all {
		c.close()
	}
	return tallies
}

func (l *epollLoop) run() {
	events := make([]syscall.EpollEvent, 256)
	for !l.set.stop.Load() {
		n, err := syscall.EpollWait(l.epfd, events, epollWaitMS)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			l.set.f.connEnded(fmt.Errorf("epoll wait: %w", err))
			return
		}
		for _, ev := range events[:n] {
			c := l.conns[ev.Fd]
			if c == nil {
				if c = l.adopt(ev.Fd); c == nil {
					continue
				}
			}
			l.read(c)
		}
	}
}

// adopt takes the sockets added since the last call and returns the one
// with descriptor fd. Frames that arrived with the join's ack are handled
// first.
func (l *epollLoop) adopt(fd int32) *rawConn {
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, c := range pending {
		l.conns[int32(c.fd)] = c
		l.parse(c)
	}
	return l.conns[fd]
}

// read takes what the socket has and handles every complete frame.
func (l *epollLoop) read(c *rawConn) {
	if err := c.fill(); err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			return
		}
		l.end(c, err)
		return
	}
	l.parse(c)
}

func (l *epollLoop) parse(c *rawConn) {
	f := l.set.f
	for {
		op, payload, ok, err := c.next()
		if err != nil {
			l.end(c, err)
			return
		}
		if !ok {
			return
		}
		switch op {
		case opText:
			l.events(c, payload)
			if a := f.dialect.answer(payload); a != nil {
				_ = c.writeFrame(opText, a)
			}
		case opPing:
			c.pong(payload)
		case opClose:
			l.end(c, closeError(payload))
			return
		}
	}
}

// events records every event in a text frame received by c: one for
// ferry, possibly several for a server that packs messages into one frame.
func (l *epollLoop) events(c *rawConn, payload []byte) {
	f := l.set.f
	n := &l.nodes[c.node]
	var now time.Duration
	for {
		i := bytes.Index(payload, tsKey)
		if i < 0 {
			return
		}
		payload = payload[i+len(tsKey):]
		sent, seq, ok := parseStamp(payload)
		if !ok {
			continue
		}
		if c.seen.add(seq, f.seqLimit.Load()) {
			n.duplicates++
			continue
		}
		if now == 0 {
			now = f.now()
		}
		n.received.Add(1)
		if int64(sent) >= f.winStart.Load() && int64(sent) < f.winEnd.Load() {
			n.inWindow++
			n.hist.record(now - sent)
		}
	}
}

// end stops watching a socket the server closed; close releases it.
func (l *epollLoop) end(c *rawConn, err error) {
	_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	delete(l.conns, int32(c.fd))
	l.set.f.connEnded(err)
}
