package server

import (
	"io"

	"github.com/ferryhq/ferry/protocol"
)

// Uploads are not wired yet: every upload frame is refused.

type uploadSet struct{}

type transferManager any

func transferLimits(transferManager) (int, int64) { return 0, 0 }

func (c *conn) maxBinary() int { return 1 << 20 }

func (c *conn) dispatchUpload(req *protocol.Request) (any, error) {
	return nil, protocol.Errorf(protocol.CodeNotImplemented, "uploads are not enabled on this server")
}

func (c *conn) readBinary(r io.Reader) {
	_, _ = io.Copy(io.Discard, r)
	c.sendError(0, protocol.Errorf(protocol.CodeNotImplemented, "uploads are not enabled on this server"))
}

func (c *conn) detachUploads() {}

func (s *Server) routeFiles() {}
