//go:build !linux

package server

import "log/slog"

// poller, outside Linux, gives every connection a reader goroutine for its
// whole life: simpler, and about 4 KiB more per idle connection.
type poller struct{}

func newPoller(*slog.Logger) *poller { return &poller{} }

func (p *poller) add(c *conn) error {
	c.reading.Store(true)
	go c.serveReads()
	return nil
}

func (p *poller) remove(*conn) {}

type readResult int

const (
	readData readResult = iota
	readIdle
	readEnd
)

// tryRead blocks until bytes arrive.
func (p *poller) tryRead(c *conn) readResult {
	if err := c.rd.fill(); err != nil {
		return readEnd
	}
	return readData
}

func (p *poller) rearm(*conn) bool { return false }

func (p *poller) close() {}
