package bench

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
)

// rawConn is a client WebSocket connection on a plain socket that Go's
// netpoller does not know: after the handshake, the bench's own epoll loop
// reads it, one read per wake-up, and parses the server's frames in place.
// It only reads what a fan-out member needs: unfragmented server frames
// (unmasked, as RFC 6455 requires of servers), pings and closes.
type rawConn struct {
	fd   int
	buf  []byte
	r, w int // unparsed bytes are buf[r:w]
	mask [4]byte

	// A fan-out member's: the server it joined (an index into the
	// fan-out's targets) and the events it received.
	node int
	seen seenSet
}

// rawBufSize is a member's read buffer; one read takes as many queued
// frames as fit.
const rawBufSize = 16 << 10

// WebSocket opcodes.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

var errFrameMasked = errors.New("websocket: server frame is masked")

// readJSON reads frames in blocking mode until a text frame, and decodes it.
func (c *rawConn) readJSON(v any) error {
	for {
		op, payload, err := c.readBlocking()
		if err != nil {
			return err
		}
		switch op {
		case opText:
			return json.Unmarshal(payload, v)
		case opPing:
			c.pong(payload)
		case opClose:
			return closeError(payload)
		}
	}
}

// readBlocking returns the next frame, reading the socket as needed.
func (c *rawConn) readBlocking() (byte, []byte, error) {
	for {
		op, payload, ok, err := c.next()
		if ok || err != nil {
			return op, payload, err
		}
		if err := c.fill(); err != nil {
			return 0, nil, err
		}
	}
}

// request sends a frame with id and waits, in blocking mode, for its ack.
func (c *rawConn) request(id uint64, frame any) error {
	b, err := json.Marshal(frame)
	if err != nil {
		return err
	}
	if err := c.writeFrame(opText, b); err != nil {
		return err
	}
	return awaitReply(id, func(r *reply) error { return c.readJSON(r) })
}

// next parses the frame at the front of the buffer. ok is false when the
// frame is not complete yet; the buffer grows for a frame larger than it.
func (c *rawConn) next() (op byte, payload []byte, ok bool, err error) {
	b := c.buf[c.r:c.w]
	if len(b) < 2 {
		return 0, nil, false, nil
	}
	if b[1]&0x80 != 0 {
		return 0, nil, false, errFrameMasked
	}
	op = b[0] & 0x0f
	n, hdr := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, nil, false, nil
		}
		n, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, false, nil
		}
		n, hdr = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > 64<<20 {
		return 0, nil, false, fmt.Errorf("websocket: %d-byte frame", n)
	}
	size := hdr + int(n)
	if len(b) < size {
		if size > len(c.buf) {
			nb := make([]byte, size+rawBufSize)
			c.w = copy(nb, b)
			c.r, c.buf = 0, nb
		}
		return 0, nil, false, nil
	}
	c.r += size
	return op, b[hdr:size], true, nil
}

// writeFrame writes a masked client frame of at most 64 KiB.
func (c *rawConn) writeFrame(op byte, payload []byte) error {
	f := make([]byte, 0, 8+len(payload))
	f = append(f, 0x80|op)
	if len(payload) < 126 {
		f = append(f, 0x80|byte(len(payload)))
	} else {
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(len(payload)))
	}
	f = append(f, c.mask[:]...)
	for i, x := range payload {
		f = append(f, x^c.mask[i&3])
	}
	return c.writeAll(f)
}

// pong answers a ping. A pong that does not fit in the socket's buffer
// right away is dropped: the server's heartbeat allows for a missed one.
func (c *rawConn) pong(payload []byte) {
	_ = c.writeFrame(opPong, payload[:min(len(payload), 125)])
}

// closeError describes a close frame's payload.
func closeError(payload []byte) error {
	if len(payload) < 2 {
		return errors.New("websocket: close")
	}
	return fmt.Errorf("websocket: close %d: %s", binary.BigEndian.Uint16(payload), bytes.ToValidUTF8(payload[2:], nil))
}
