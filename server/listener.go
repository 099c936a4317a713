package server

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// listenSlackAddr is the room the listener leaves per address over
// MaxConnsPerIP: the page, downloads, handshakes in progress.
const listenSlackAddr = 64

// listenTotal is the listener's cap on TCP connections in all: MaxConns
// and a quarter more (at most 1,024) for the page, downloads and handshakes.
func listenTotal(maxConns int) int { return maxConns + min(1024, maxConns/4) }

// Listen wraps ln so that the TCP connections the server holds stay within
// its caps before any byte is read: MaxConns and a quarter more (at most
// 1,024) in all, and MaxConnsPerIP + 64 per peer address (trusted proxies excepted, their
// clients are counted by address at the handshake). A connection over a
// cap is closed as soon as it is accepted, so that a client opening
// sockets it never uses cannot take the descriptors everyone else needs.
func (s *Server) Listen(ln net.Listener) net.Listener {
	return &capListener{Listener: ln, s: s, byAddr: make(map[netip.Addr]int)}
}

type capListener struct {
	net.Listener
	s *Server

	mu     sync.Mutex
	total  int
	byAddr map[netip.Addr]int
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := nc.(*net.TCPConn)
		if !ok {
			return nc, nil
		}
		addr := remoteAddr(nc.RemoteAddr().String())
		if l.take(addr) {
			return &countedConn{TCPConn: tc, l: l, addr: addr}, nil
		}
		l.s.metrics.refusedSockets.Add(1)
		_ = tc.SetLinger(0) // a reset: no TIME_WAIT kept for it here
		_ = tc.Close()
	}
}

func (l *capListener) take(addr netip.Addr) bool {
	cfg := &l.s.cfg
	limited := !l.s.trusted(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= listenTotal(cfg.MaxConns) || (limited && l.byAddr[addr] >= cfg.MaxConnsPerIP+listenSlackAddr) {
		return false
	}
	l.total++
	l.byAddr[addr]++
	return true
}

func (l *capListener) give(addr netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byAddr[addr]--; l.byAddr[addr] <= 0 {
		delete(l.byAddr, addr)
	}
}

// countedConn gives its place back when closed. It embeds the
// *net.TCPConn, so the server still finds its descriptor (the fast path)
// and net/http its ReadFrom (sendfile).
type countedConn struct {
	*net.TCPConn
	l      *capListener
	addr   netip.Addr
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	err := c.TCPConn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.give(c.addr)
	}
	return err
}
