package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"
)

// ferry reads client frames itself (RFC 6455, section 5) rather than through
// gorilla's reader: gorilla's Conn needs a goroutine parked in Read for as
// long as the connection lives, about 4 KiB of stack each, while this reader
// only runs when the socket has bytes and keeps nothing between messages.
// gorilla still performs the handshake.

// WebSocket opcodes.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// readBufSize is the buffer a reading connection borrows; payload reads at
// least this large bypass it.
const readBufSize = 4 << 10

var readBufs = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// protocolError is a violation of RFC 6455 by the client; the connection is
// closed with Code.
type protocolError struct {
	Code   int
	Reason string
}

func (e *protocolError) Error() string {
	return fmt.Sprintf("websocket: %s (close %d)", e.Reason, e.Code)
}

var errTooBig = &protocolError{Code: 1009, Reason: "message far over the limit"}

// frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	op     byte
	length int64
	mask   [4]byte
}

// wsReader reads frames from a connection through a borrowed buffer.
type wsReader struct {
	c   *conn
	buf []byte
	// pooled is buf as readBufs holds it, so returning it allocates nothing.
	pooled *[]byte
	r      int // next unread byte in buf
	w      int // end of valid bytes in buf
}

func (rd *wsReader) buffered() int { return rd.w - rd.r }

// fill reads at least one more byte into the buffer, blocking.
func (rd *wsReader) fill() error {
	if rd.r > 0 {
		n := copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.w, rd.r = n, 0
	}
	n, err := rd.c.nc.Read(rd.buf[rd.w:])
	rd.w += n
	if n > 0 {
		rd.c.seen()
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// need makes n bytes available in the buffer (n ≤ len(buf)).
func (rd *wsReader) need(n int) error {
	for rd.buffered() < n {
		if err := rd.fill(); err != nil {
			return err
		}
	}
	return nil
}

// header reads the next frame header.
func (rd *wsReader) header() (frameHeader, error) {
	if err := rd.need(2); err != nil {
		return frameHeader{}, err
	}
	b0, b1 := rd.buf[rd.r], rd.buf[rd.r+1]
	h := frameHeader{fin: b0&0x80 != 0, op: b0 & 0x0f}
	if b0&0x70 != 0 {
		return h, &protocolError{1002, "reserved bits set without an extension"}
	}
	if b1&0x80 == 0 {
		return h, &protocolError{1002, "client frames must be masked"}
	}
	size := 2
	switch b1 & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if err := rd.need(size + 4); err != nil {
		return h, err
	}
	p := rd.buf[rd.r:]
	switch b1 & 0x7f {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(p[2:]))
	case 127:
		v := binary.BigEndian.Uint64(p[2:])
		if v > 1<<62 {
			return h, &protocolError{1002, "frame length out of range"}
		}
		h.length = int64(v)
	default:
		h.length = int64(b1 & 0x7f)
	}
	copy(h.mask[:], p[size:size+4])
	rd.r += size + 4
	switch h.op {
	case opClose, opPing, opPong:
		if !h.fin || h.length > 125 {
			return h, &protocolError{1002, "bad control frame"}
		}
	case opContinuation, opText, opBinary:
	default:
		return h, &protocolError{1002, fmt.Sprintf("unknown opcode %d", h.op)}
	}
	return h, nil
}

// payload reads up to len(p) payload bytes, without unmasking.
func (rd *wsReader) payload(p []byte) (int, error) {
	if rd.buffered() > 0 {
		n := copy(p, rd.buf[rd.r:rd.w])
		rd.r += n
		return n, nil
	}
	if len(p) >= len(rd.buf) {
		n, err := rd.c.nc.Read(p)
		if n > 0 {
			rd.c.seen()
			return n, nil
		}
		if err == nil {
			err = io.ErrNoProgress
		}
		return 0, err
	}
	if err := rd.fill(); err != nil {
		return 0, err
	}
	n := copy(p, rd.buf[rd.r:rd.w])
	rd.r += n
	return n, nil
}

// message is the payload of one data message, read across its frames; control
// frames met in between are handled as they come.
type message struct {
	rd        *wsReader
	op        byte
	remaining int64 // in the current frame
	pos       int   // position in the current frame's mask
	mask      [4]byte
	fin       bool
	total     int64
	limit     int64 // beyond this the connection is closed
	err       error
}

func (m *message) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	for m.remaining == 0 {
		if m.fin {
			return 0, io.EOF
		}
		h, err := m.rd.header()
		if err != nil {
			m.err = err
			return 0, err
		}
		if h.op >= opClose {
			if err := m.rd.c.control(h); err != nil {
				m.err = err
				return 0, err
			}
			continue
		}
		if h.op != opContinuation {
			m.err = &protocolError{1002, "new message before the previous one ended"}
			return 0, m.err
		}
		m.start(h)
		if m.err != nil {
			return 0, m.err
		}
	}
	if int64(len(p)) > m.remaining {
		p = p[:m.remaining]
	}
	n, err := m.rd.payload(p)
	m.pos = unmask(m.mask, m.pos, p[:n])
	m.remaining -= int64(n)
	if err != nil {
		m.err = err
	}
	return n, err
}

func (m *message) start(h frameHeader) {
	m.remaining, m.pos, m.mask, m.fin = h.length, 0, h.mask, h.fin
	m.total += h.length
	if m.total > m.limit {
		m.err = errTooBig
	}
}

// discard reads the rest of the message and returns how many bytes that was.
func (m *message) discard() (int64, error) {
	var scratch [512]byte
	var n int64
	for {
		k, err := m.Read(scratch[:])
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// control handles a control frame: it reads the payload and answers pings
// and close frames through the writer.
func (c *conn) control(h frameHeader) error {
	var p [125]byte
	b := p[:h.length]
	if _, err := io.ReadFull(readerFunc(c.rd.payload), b); err != nil {
		return err
	}
	unmask(h.mask, 0, b)
	switch h.op {
	case opPing:
		c.enqueue(controlFrame(opPong, b), kindControl)
	case opClose:
		code := 1005
		if len(b) == 1 || (len(b) >= 2 && !utf8.Valid(b[2:])) {
			c.closeWith(1002, "bad close frame")
			return errClientClosed
		}
		if len(b) >= 2 {
			code = int(binary.BigEndian.Uint16(b))
		}
		c.log.Debug("client closed", "code", code)
		if code == 1005 {
			c.closeWith(protocolNormal, "")
		} else {
			c.closeWith(code, "")
		}
		return errClientClosed
	}
	return nil
}

// protocolNormal is the close code echoed to a close frame without a code.
const protocolNormal = 1000

var errClientClosed = errors.New("client closed the connection")

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// unmask XORs b with the mask starting at position pos and returns the next
// position.
func unmask(key [4]byte, pos int, b []byte) int {
	if len(b) == 0 {
		return pos
	}
	i := 0
	// Byte by byte up to a multiple of 8, then eight bytes at a time.
	for ; i < len(b) && (pos+i)&3 != 0; i++ {
		b[i] ^= key[(pos+i)&3]
	}
	if len(b)-i >= 8 {
		k := uint64(binary.LittleEndian.Uint32(key[:]))
		k |= k << 32
		for ; len(b)-i >= 8; i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}
