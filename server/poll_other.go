//go:build !linux

package server

import "log/slog"

// fastPath: outside Linux every connection takes the portable path (see
// socket.go), about 4 KiB more per idle connection.
const fastPath = false

type poller struct{}

func newPoller(*slog.Logger) *poller { return &poller{} }

func (p *poller) add(c *conn) error {
	c.readForever()
	return nil
}

func (p *poller) remove(*conn) {}

func (p *poller) tryRead(c *conn) readResult { return c.waitRead() }

func (p *poller) rearm(*conn) bool { return false }

func (p *poller) close() {}
