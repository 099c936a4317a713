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

// textBufs recycles the buffers small text frames (requests) are read into;
// a sync.Pool lets the garbage collector free them when they sit unused.
var textBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// bigTextBufs keeps a few buffers for large text frames (base64 chunks, up
// to MaxFrame) outside the garbage collector's reach: a sync.Pool is
// emptied at every collection, and a text upload then allocated and zeroed
// a new megabyte buffer for nearly every chunk, a fifth of the server's
// CPU.
var bigTextBufs = make(chan *bytes.Buffer, 8)

const maxPooledBuf = 64 << 10

func getTextBuf(big bool) *bytes.Buffer {
	if big {
		select {
		case b := <-bigTextBufs:
			return b
		default:
			return new(bytes.Buffer)
		}
	}
	return textBufs.Get().(*bytes.Buffer)
}

func putTextBuf(b *bytes.Buffer, big bool) {
	b.Reset()
	switch {
	case big:
		select {
		case bigTextBufs <- b:
		default:
		}
	case b.Cap() <= maxPooledBuf:
		textBufs.Put(b)
	}
}

// readText reads one text frame, at most MaxFrame bytes, and handles it. A
// larger frame is read to its end and discarded, so the connection goes on.
func (c *conn) readText(r *message) {
	limit := int64(c.s.cfg.MaxFrame)
	// A message in one frame needs its frame's length. One in fragments
	// (gorilla's clients send a frame per write buffer, 4 KiB by default)
	// may need up to the limit: growing there by doubling allocated and
	// zeroed a buffer at every step, for every base64 chunk.
	want := r.remaining
	if !r.fin {
		want = max(want, limit+1)
	}
	big := want > maxPooledBuf/2
	buf := getTextBuf(big)
	defer putTextBuf(buf, big)
	// Room for all of it, and for ReadFrom's last read that finds the end.
	buf.Grow(int(min(want, limit+1)) + bytes.MinRead)
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
		c.s.observeRequest(req.T, now)
		return
	case protocol.TypeUploadChunk:
		// Chunks are paced by the upload window (a refused one costs a
		// request: see writeChunk).
	case protocol.TypeReceived:
		// Receipts follow the events they confirm, so they have a budget
		// of their own, ten times the request rate; past it they are
		// dropped without an answer.
		if c.receipts == nil {
			l := newLimiter(10*c.s.cfg.Rate, 10*c.s.cfg.RateBurst, now)
			c.receipts = &l
		}
		if !c.receipts.allow(now) {
			if c.receipts.flooding() {
				c.closeWith(protocol.CloseFlood, "flooding")
			}
			return
		}
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
	defer c.s.observeRequest(req.T, now)
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
		if err := rooms.ValidRoom(req.Room); err != nil {
			return nil, err
		}
		pass, err := c.mayJoin(req.Room, req.Token)
		if err != nil {
			return nil, err
		}
		j, err := c.s.hub.Join(c, req.Room, req.Since)
		if err != nil {
			return nil, err
		}
		j.Pass = pass
		return j, nil
	case protocol.TypeInvite:
		return c.invite(req.Room)
	case protocol.TypeLeave:
		if err := c.s.hub.Leave(c, req.Room); err != nil {
			return nil, err
		}
		return map[string]string{"room": req.Room}, nil
	case protocol.TypeRooms:
		list, err := c.s.hub.Rooms(c)
		return protocol.RoomList{Rooms: list}, err
	case protocol.TypeMembers:
		return c.s.hub.Members(c, req.Room, req.After, req.Limit)
	case protocol.TypeEmit:
		return c.s.hub.Emit(c, rooms.Target{Room: req.Room, User: req.User, Conn: req.Conn, ExceptSelf: req.ExceptSelf},
			req.Event, req.Data, rooms.EmitOptions{MsgID: req.MsgID, Receipt: req.Receipt})
	case protocol.TypeReceived:
		return nil, c.s.hub.Received(c, req.Room, req.Seq)
	case protocol.TypeReceipts:
		return c.s.hub.Receipts(c, req.Room, req.Seq)
	case protocol.TypeUploadOpen, protocol.TypeUploadChunk, protocol.TypeUploadStatus, protocol.TypeUploadFinish, protocol.TypeUploadCancel, protocol.TypeFileLink, protocol.TypeFiles:
		return c.dispatchUpload(req)
	}
	return nil, protocol.Errorf(protocol.CodeUnknownType, "unknown frame type %q", req.T)
}
