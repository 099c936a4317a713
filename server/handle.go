package server

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// textBufs and bigTextBufs recycle the buffers text frames are read into:
// small ones for requests, big ones (up to MaxFrame) for base64 chunks. A
// sync.Pool lets the garbage collector free them when they sit unused.
var textBufs, bigTextBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}, sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBuf = 64 << 10

// readText reads one text frame, at most MaxFrame bytes, and handles it. A
// larger frame is read to its end and discarded, so the connection goes on.
func (c *conn) readText(r *message) {
	limit := int64(c.s.cfg.MaxFrame)
	pool := &textBufs
	if r.remaining > maxPooledBuf/2 {
		pool = &bigTextBufs
	}
	buf := pool.Get().(*bytes.Buffer)
	defer func() {
		if pool == &bigTextBufs || buf.Cap() <= maxPooledBuf {
			buf.Reset()
			pool.Put(buf)
		}
	}()
	// The first frame's length is known: room for all of it, and for
	// ReadFrom's last read that finds the end, spares growing by copies.
	buf.Grow(int(min(r.remaining, limit+1)) + bytes.MinRead)
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return // the next NextReader reports the broken connection
	}
	c.s.metrics.bytesIn.Add(uint64(n))
	if n > limit {
		rest, _ := io.Copy(io.Discard, r)
		c.s.metrics.bytesIn.Add(uint64(rest))
		c.badFrame(0, protocol.Errorf(protocol.CodeFrameTooLarge, "text frames are limited to %d bytes; this one had %d", limit, n+rest))
		return
	}
	c.handle(buf.Bytes())
}

// handle decodes and runs one request.
func (c *conn) handle(data []byte) {
	if id, upload, offset, payload, ok := protocol.ParseTextChunk(data); ok {
		// The common upload.chunk shape skips encoding/json (see
		// ParseTextChunk); chunks are not rate limited either way.
		c.badFrames = 0
		c.writeBase64(id, upload, offset, payload)
		return
	}
	req, err := protocol.DecodeRequest(data)
	if err != nil {
		var id uint64
		if req != nil {
			id = req.ID
		}
		c.badFrame(id, err)
		return
	}
	now := time.Now()
	switch req.T {
	case protocol.TypePing:
		c.send(protocol.Pong{T: protocol.TypePong, TS: req.TS, ServerTS: now.UnixMilli()})
		c.badFrames = 0
		return
	case protocol.TypeUploadChunk, protocol.TypeReceived:
		// Chunks are paced by the upload window, and receipts by the events
		// they confirm, not by the request rate.
	default:
		if !c.limiter.allow(now) {
			c.sendError(req.ID, protocol.Errorf(protocol.CodeRateLimited, "over %g requests a second; request dropped", c.s.cfg.Rate))
			if c.limiter.flooding() {
				c.closeWith(protocol.CloseFlood, "flooding")
			}
			return
		}
	}
	if needsStorage(req.T) {
		c.badFrames = 0
		c.offReader(req)
		return
	}
	data2, err := c.dispatch(req)
	if err != nil {
		if pe := (*protocol.Error)(nil); errors.As(err, &pe) && (pe.Code == protocol.CodeUnknownType || pe.Code == protocol.CodeBadFrame) {
			c.badFrame(req.ID, err)
			return
		}
		c.badFrames = 0
		c.sendError(req.ID, err)
		return
	}
	c.badFrames = 0
	if _, answered := data2.(answeredItself); req.ID != 0 && !answered {
		c.send(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: data2})
	}
}

// answeredItself is returned by handlers that answer by themselves. A type
// of its own, since pointers to empty values need not differ.
type answeredItself struct{}

func (c *conn) dispatch(req *protocol.Request) (any, error) {
	switch req.T {
	case protocol.TypeJoin:
		return c.s.hub.Join(c, req.Room, req.Since)
	case protocol.TypeLeave:
		if err := c.s.hub.Leave(c, req.Room); err != nil {
			return nil, err
		}
		return map[string]string{"room": req.Room}, nil
	case protocol.TypeRooms:
		list, err := c.s.hub.Rooms(c)
		return protocol.RoomList{Rooms: list}, err
	case protocol.TypeMembers:
		return c.s.hub.Members(c, req.Room)
	case protocol.TypeEmit:
		return c.s.hub.Emit(c, rooms.Target{Room: req.Room, User: req.User, Conn: req.Conn, ExceptSelf: req.ExceptSelf},
			req.Event, req.Data, rooms.EmitOptions{MsgID: req.MsgID, Receipt: req.Receipt})
	case protocol.TypeReceived:
		return nil, c.s.hub.Received(c, req.Room, req.Seq)
	case protocol.TypeReceipts:
		return c.s.hub.Receipts(c, req.Room, req.Seq)
	case protocol.TypeUploadOpen, protocol.TypeUploadChunk, protocol.TypeUploadStatus, protocol.TypeUploadFinish, protocol.TypeUploadCancel, protocol.TypeFileLink:
		return c.dispatchUpload(req)
	}
	return nil, protocol.Errorf(protocol.CodeUnknownType, "unknown frame type %q", req.T)
}
