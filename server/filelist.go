package server

import (
	"context"
	"strconv"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/transfer"
)

// indexTimeout bounds adding a file to the index when it is announced.
const indexTimeout = 2 * time.Second

// listFiles answers a files request: a page of the room's files, newest
// first, with links signed now, so that a file announced days ago opens
// as well as one announced a minute ago. Only members may list a room,
// as only they get its events.
func (c *conn) listFiles(ctx context.Context, req *protocol.Request) (any, error) {
	if err := c.s.hub.CheckMember(c, req.Room); err != nil {
		return nil, err
	}
	limit := req.Limit
	switch {
	case limit == 0:
		limit = protocol.DefaultFilesPage
	case limit < 0 || limit > protocol.MaxFilesPage:
		return nil, protocol.Errorf(protocol.CodeBadRequest, "limit must be 1 to %d, or absent for %d", protocol.MaxFilesPage, protocol.DefaultFilesPage)
	}
	var before uint64
	if req.Before != "" {
		b, err := strconv.ParseUint(req.Before, 10, 64)
		if err != nil || b == 0 {
			return nil, protocol.Errorf(protocol.CodeBadRequest, "before %q is not the next of a files answer", req.Before)
		}
		before = b
	}
	files, next, err := c.s.cfg.Files.List(ctx, req.Room, before, limit)
	if err != nil {
		c.s.cfg.Log.Warn("list files", "room", req.Room, "err", err)
		return nil, protocol.Errorf(protocol.CodeStorageUnavailable, "the room's files cannot be listed now; try again")
	}
	out := protocol.RoomFiles{Room: req.Room, Files: make([]protocol.File, len(files))}
	for i, f := range files {
		out.Files[i] = c.s.wireFile(f)
	}
	if next != 0 {
		out.Next = strconv.FormatUint(next, 10)
	}
	return out, nil
}

// indexFile adds an announced file to the index. A file the index could
// not take is still announced: its event is in the room's history, and
// only a later listing misses it.
func (s *Server) indexFile(ctx context.Context, f transfer.File) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), indexTimeout)
	defer cancel()
	if err := s.cfg.Files.Add(ctx, f); err != nil {
		s.cfg.Log.Error("index file", "file", f.ID, "room", f.Room, "err", err)
	}
}
