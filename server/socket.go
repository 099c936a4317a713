package server

// A connection's socket takes one of two paths; everything above it (the
// frame reader, the queue, the session) is the same on both.
//
// The fast path, for a plain TCP socket on Linux (transport.fd ≥ 0): epoll starts
// a reader only while the socket has bytes, and the flushers write to the
// descriptor with non-blocking sendmsg, so an idle connection costs no
// goroutine (poll_linux.go, flush_linux.go).
//
// The portable path, for any other net.Conn (TLS, and every socket on other
// systems; transport.fd = -1): a reader goroutine blocks in Read for the
// connection's life, and queued frames are written by a writer goroutine
// (writeLoop) through the net.Conn.

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
