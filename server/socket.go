package server

import (
	"crypto/tls"
	"net"
	"syscall"
)

// A connection's socket takes one of two paths; everything above it (the
// frame reader, the queue, the session) is the same on both.
//
// The fast path, for a plain TCP socket on Linux (conn.fd ≥ 0): epoll starts
// a reader only while the socket has bytes, and the flushers write to the
// descriptor with non-blocking sendmsg, so an idle connection costs no
// goroutine (poll_linux.go, flush_linux.go).
//
// The portable path, for any other net.Conn (TLS, and every socket on other
// systems; conn.fd = -1): a reader goroutine blocks in Read for the
// connection's life, and queued frames are written by a writer goroutine
// (writeLoop) through the net.Conn.

// attach gives c its socket and picks its path.
func (c *conn) attach(nc net.Conn) error {
	c.nc, c.closer, c.fd = nc, nc, -1
	if t, ok := nc.(*tls.Conn); ok {
		// Closing a TLS connection first sends close_notify, which waits
		// (up to 5 s) for a client that does not read; the WebSocket close
		// frame has already said goodbye, so the TCP connection under it
		// is closed instead.
		c.closer = t.NetConn()
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
	c.raw = raw
	return raw.Control(func(fd uintptr) { c.fd = int(fd) })
}

// portable reports whether c takes the portable path.
func (c *conn) portable() bool { return c.fd < 0 }

// readForever starts the reader of a portable connection, for its life.
func (c *conn) readForever() {
	c.reading.Store(true)
	go c.serveReads()
}

type readResult int

const (
	readData readResult = iota // bytes are in the buffer
	readIdle                   // nothing to read now
	readEnd                    // end of stream or error
)

// waitRead blocks until bytes arrive: a portable connection's tryRead.
func (c *conn) waitRead() readResult {
	if err := c.rd.fill(); err != nil {
		return readEnd
	}
	return readData
}
