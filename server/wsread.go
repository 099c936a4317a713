package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/ferryhq/ferry/protocol"
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

// Close codes of RFC 6455 (7.4.1) that the reader sends.
const (
	closeProtocolError = protocol.CloseProtocolError
	closeInvalidData   = protocol.CloseInvalidPayload
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

// Violations with a value of their own, which tests tell apart.
var (
	errTooBig        = &protocolError{protocol.CloseMessageTooBig, "message far over the limit"}
	errBadUTF8       = &protocolError{closeInvalidData, "text message is not valid UTF-8"}
	errLongLength    = &protocolError{closeProtocolError, "frame length not in its shortest encoding"}
	errLengthTopBit  = &protocolError{closeProtocolError, "frame length with its most significant bit set"}
	errCloseOneByte  = &protocolError{closeProtocolError, "close frame with a one-byte payload"}
	errCloseReason   = &protocolError{closeInvalidData, "close reason is not valid UTF-8"}
	errNotMasked     = &protocolError{closeProtocolError, "client frames must be masked"}
	errReservedBits  = &protocolError{closeProtocolError, "reserved bits set without an extension"}
	errBadControl    = &protocolError{closeProtocolError, "control frame fragmented or over 125 bytes"}
	errContinuation  = &protocolError{closeProtocolError, "continuation frame without a message"}
	errMessageInside = &protocolError{closeProtocolError, "new message before the previous one ended"}
)

// frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	op     byte
	length int64
	mask   [4]byte
}

// wsOwner is what a wsReader needs from the connection it reads: bytes
// from the socket, and answers to control frames. The reader decides what
// a control frame calls for; the owner only sends it.
type wsOwner interface {
	// readSocket reads from the socket, blocking until bytes or an error.
	readSocket(p []byte) (int, error)
	// pong answers a ping with its payload.
	pong(payload []byte)
	// echoClose answers the client's valid close frame with code.
	echoClose(code int)
}

var _ wsOwner = (*conn)(nil)

// wsReader reads frames from a connection through a borrowed buffer.
type wsReader struct {
	c   wsOwner
	buf []byte
	// pooled is buf as readBufs holds it, so returning it allocates nothing.
	pooled *[]byte
	r      int // next unread byte in buf
	w      int // end of valid bytes in buf
	// inMessage is set between the first and the last frame of a
	// fragmented message, so that header can refuse a frame out of place
	// from its first two bytes.
	inMessage bool
}

func (rd *wsReader) buffered() int { return rd.w - rd.r }

// fill reads at least one more byte into the buffer, blocking.
func (rd *wsReader) fill() error {
	if rd.r > 0 {
		n := copy(rd.buf, rd.buf[rd.r:rd.w])
		rd.w, rd.r = n, 0
	}
	n, err := rd.c.readSocket(rd.buf[rd.w:])
	rd.w += n
	if n > 0 {
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

// header reads the next frame header. Everything its first two bytes can
// break is refused before the rest is read: a client that sends garbage is
// answered at once (RFC 6455, 5.2 and 5.4).
func (rd *wsReader) header() (frameHeader, error) {
	if err := rd.need(2); err != nil {
		return frameHeader{}, err
	}
	b0, b1 := rd.buf[rd.r], rd.buf[rd.r+1]
	h := frameHeader{fin: b0&0x80 != 0, op: b0 & 0x0f}
	len7 := b1 & 0x7f
	switch {
	case b0&0x70 != 0:
		return h, errReservedBits
	case b1&0x80 == 0:
		return h, errNotMasked
	}
	switch h.op {
	case opClose, opPing, opPong:
		if !h.fin || len7 > 125 {
			return h, errBadControl
		}
	case opContinuation:
		if !rd.inMessage {
			return h, errContinuation
		}
	case opText, opBinary:
		if rd.inMessage {
			return h, errMessageInside
		}
	default:
		return h, &protocolError{closeProtocolError, fmt.Sprintf("reserved opcode %d", h.op)}
	}
	size := 2
	switch len7 {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if err := rd.need(size); err != nil {
		return h, err
	}
	p := rd.buf[rd.r:]
	// RFC 6455, 5.2: "the minimal number of bytes MUST be used to encode
	// the length", and a 64-bit length has its most significant bit clear.
	switch len7 {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(p[2:]))
		if h.length < 126 {
			return h, errLongLength
		}
	case 127:
		v := binary.BigEndian.Uint64(p[2:])
		if v>>63 != 0 {
			return h, errLengthTopBit
		}
		h.length = int64(v)
		if h.length <= 0xffff {
			return h, errLongLength
		}
	default:
		h.length = int64(len7)
	}
	if err := rd.need(size + 4); err != nil {
		return h, err
	}
	copy(h.mask[:], rd.buf[rd.r+size:rd.r+size+4])
	rd.r += size + 4
	if h.op < opClose {
		rd.inMessage = !h.fin
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
		n, err := rd.c.readSocket(p)
		if n > 0 {
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

// next reads one frame. A control frame is answered and next returns no
// message; a data frame starts the message returned, which the caller reads
// to its end (see message.discard). Messages past limit bytes are refused.
func (rd *wsReader) next(limit int64) (*message, error) {
	h, err := rd.header()
	if err != nil {
		return nil, err
	}
	if h.op >= opClose {
		return nil, rd.control(h)
	}
	m := &message{rd: rd, op: h.op, limit: limit}
	// A message refused from its header never reaches a handler.
	if m.start(h); m.err != nil {
		return nil, m.err
	}
	return m, nil
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
	text      utf8Stream // for opText
}

func (m *message) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	for m.remaining == 0 {
		if m.fin {
			if !m.text.complete() {
				m.err = errBadUTF8
				return 0, m.err
			}
			return 0, io.EOF
		}
		h, err := m.rd.header()
		if err == nil && h.op >= opClose {
			err = m.rd.control(h)
		} else if err == nil {
			m.start(h)
			err = m.err
		}
		if err != nil {
			return 0, m.fail(err)
		}
	}
	if int64(len(p)) > m.remaining {
		p = p[:m.remaining]
	}
	n, err := m.rd.payload(p)
	m.pos = protocol.MaskBytes(m.mask, m.pos, p[:n])
	m.remaining -= int64(n)
	if err != nil {
		return n, m.fail(err)
	}
	// Text is checked as it arrives: a handler never sees invalid UTF-8,
	// and a client is stopped at its first bad byte (RFC 6455, 8.1).
	if m.op == opText && !m.text.valid(p[:n]) {
		m.err = errBadUTF8
		return 0, m.err
	}
	return n, nil
}

// fail records the error that ends the message. The connection's end
// before the message's is not the message's end: io.EOF from below
// becomes io.ErrUnexpectedEOF, so that a cut-off message is never taken
// for a whole one.
func (m *message) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	m.err = err
	return err
}

// start begins reading the frame h, the message's first or next.
func (m *message) start(h frameHeader) {
	m.remaining, m.pos, m.mask, m.fin = h.length, 0, h.mask, h.fin
	// Compared before adding: a 63-bit length could overflow the sum.
	if h.length > m.limit-m.total {
		m.err = errTooBig
		return
	}
	m.total += h.length
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

// utf8Stream checks that text read in pieces is valid UTF-8. A code point
// may be split between two pieces (two frames, or two reads of one): its
// first bytes wait in pend for the rest. utf8.Valid does the bulk of the
// work, so that ASCII, most of what ferry reads, costs little.
type utf8Stream struct {
	pend [utf8.UTFMax]byte
	n    int
}

// valid reports whether b, following what came before, may still be the
// start of valid UTF-8.
func (u *utf8Stream) valid(b []byte) bool {
	for u.n > 0 && len(b) > 0 {
		u.pend[u.n] = b[0]
		u.n++
		b = b[1:]
		// FullRune is true as soon as the bytes either complete a code
		// point or cannot start one.
		if utf8.FullRune(u.pend[:u.n]) {
			if r, size := utf8.DecodeRune(u.pend[:u.n]); r == utf8.RuneError && size == 1 {
				return false
			}
			u.n = 0
		}
	}
	// An unfinished code point at the end waits for the next piece.
	i := len(b) - 1
	for i > 0 && i > len(b)-utf8.UTFMax && !utf8.RuneStart(b[i]) {
		i--
	}
	if i >= 0 && !utf8.FullRune(b[i:]) {
		u.n = copy(u.pend[:], b[i:])
		b = b[:i]
	}
	return utf8.Valid(b)
}

// complete reports whether the text ended on a whole code point.
func (u *utf8Stream) complete() bool { return u.n == 0 }

// control reads a control frame and answers it through the owner: a ping
// with a pong of the same payload, a valid close frame with its own code
// (1000 for one without a code), after which it returns errClientClosed.
func (rd *wsReader) control(h frameHeader) error {
	var p [125]byte
	b := p[:h.length]
	if _, err := io.ReadFull(readerFunc(rd.payload), b); err != nil {
		return err
	}
	protocol.MaskBytes(h.mask, 0, b)
	switch h.op {
	case opPing:
		rd.c.pong(b)
	case opClose:
		code, err := closeCode(b)
		if err != nil {
			return err
		}
		rd.c.echoClose(code)
		return errClientClosed
	}
	return nil
}

// closeCode checks a close frame's payload (RFC 6455, 5.5.1 and 7.4) and
// returns the code to answer it with.
func closeCode(b []byte) (int, error) {
	switch {
	case len(b) == 0:
		return protocol.CloseNormal, nil
	case len(b) == 1:
		return 0, errCloseOneByte
	}
	code := int(binary.BigEndian.Uint16(b))
	if !validCloseCode(code) {
		return 0, &protocolError{closeProtocolError, fmt.Sprintf("close code %d is not one a client may send", code)}
	}
	if !utf8.Valid(b[2:]) {
		return 0, errCloseReason
	}
	return code, nil
}

// validCloseCode reports whether a peer may send code: the codes RFC 6455
// defines for use in a close frame, those IANA registered since (1012 to
// 1014), and the ranges for libraries and applications. 1004 is reserved;
// 1005, 1006 and 1015 must never appear on the wire.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	}
	return code >= 3000 && code <= 4999
}

// readSocket reads the socket for the connection's wsReader; any byte
// shows the client alive.
func (c *conn) readSocket(p []byte) (int, error) {
	n, err := c.tr.read(p)
	if n > 0 {
		c.seen()
	}
	return n, err
}

func (c *conn) pong(payload []byte) { c.tr.send(controlFrame(opPong, payload), kindPong) }

func (c *conn) echoClose(code int) {
	c.logger().Debug("client closed", "code", code)
	c.closeWith(code, "")
}

// control answers a control frame that starts a read.
var errClientClosed = errors.New("client closed the connection")

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
