package server

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// TestReaderMatchesGorilla feeds the same client byte streams, frame
// sequences valid and broken, to ferry's frame reader and to gorilla's, and
// compares what each makes of them: the messages it takes (type and
// payload), the pongs it answers, and how it ends (the close code it sends,
// or a stream cut short). gorilla reads through a server Conn of its own,
// made by its Upgrader over an in-memory connection; ferry's through the
// wsReader its connections use.
//
// The differences that are meant, each a place where RFC 6455 asks for
// more than gorilla does, are in ferryIntends.
func TestReaderMatchesGorilla(t *testing.T) {
	const streams = 3000
	r := rand.New(rand.NewPCG(6455, 1))
	seen := map[string]int{}
	for i := range streams {
		stream := genStream(r)
		fev, ferr := ferryRead(stream, diffLimit)
		gev := gorillaRead(t, stream, diffLimit)
		if msg := compareReads(fev, ferr, gev); msg != "" {
			t.Fatalf("stream %d (%d bytes, %x…): %s\nferry:   %v (%v)\ngorilla: %v",
				i, len(stream), stream[:min(len(stream), 64)], msg, fev, ferr, gev)
		}
		for _, e := range fev {
			seen[e.kind()]++
		}
	}
	// A generator that stopped producing some outcome would leave the
	// comparison above with nothing to say about it.
	for _, kind := range []string{"text", "binary", "pong", "close 1000", "close 1002", "close 1007", "close 1009", "eof"} {
		if seen[kind] < 10 {
			t.Errorf("only %d streams ended in or carried %q: %v", seen[kind], kind, seen)
		}
	}
	t.Logf("outcomes: %v", seen)
}

// diffLimit is the read limit both readers get: small enough that random
// streams cross it.
const diffLimit = 1 << 16

// wsEvent is one thing a server's reader did with a client's bytes.
type wsEvent struct {
	op   byte // opText, opBinary, opPong (answered), opClose (closed with code); 0: the stream ended
	data string
	code int
}

func (e wsEvent) kind() string {
	switch e.op {
	case opText:
		return "text"
	case opBinary:
		return "binary"
	case opPong:
		return "pong"
	case opClose:
		return fmt.Sprint("close ", e.code)
	}
	return "eof"
}

func (e wsEvent) String() string {
	if e.op == opText || e.op == opBinary || e.op == opPong {
		return fmt.Sprintf("%s %.40q", e.kind(), e.data)
	}
	return e.kind()
}

// memOwner is a wsOwner on a byte stream, which records the answers.
type memOwner struct {
	src    io.Reader
	events []wsEvent
}

var _ wsOwner = (*memOwner)(nil)

func (o *memOwner) readSocket(p []byte) (int, error) { return o.src.Read(p) }
func (o *memOwner) pong(b []byte)                    { o.events = append(o.events, wsEvent{op: opPong, data: string(b)}) }
func (o *memOwner) echoClose(code int)               { o.events = append(o.events, wsEvent{op: opClose, code: code}) }

// ferryRead reads stream as a server connection does, until the reader
// stops; it returns what the reader did and the error it stopped with.
func ferryRead(stream []byte, limit int64) ([]wsEvent, error) {
	o := &memOwner{src: bytes.NewReader(stream)}
	rd := wsReader{c: o, buf: make([]byte, readBufSize)}
	for {
		m, err := rd.next(limit)
		if err == nil && m == nil {
			continue
		}
		if err == nil {
			// Never more than the limit, whatever the reader lets through.
			var b []byte
			b, err = io.ReadAll(io.LimitReader(m, limit+1))
			if err == nil && int64(len(b)) > limit {
				err = fmt.Errorf("message of %d bytes read past the %d-byte limit", len(b), limit)
			}
			if err == nil {
				o.events = append(o.events, wsEvent{op: m.op, data: string(b)})
				continue
			}
		}
		var pe *protocolError
		switch {
		case errors.Is(err, errClientClosed):
		case errors.As(err, &pe):
			o.events = append(o.events, wsEvent{op: opClose, code: pe.Code})
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			o.events = append(o.events, wsEvent{})
		}
		return o.events, err
	}
}

// gorillaRead reads stream with gorilla's server Conn, which an Upgrader
// makes over an in-memory connection. gorilla leaves the UTF-8 of text to
// the application; this checks it as gorilla's own Autobahn server does,
// and, as RFC 6455 (8.1) asks, stops at the first byte that cannot begin
// valid UTF-8.
func gorillaRead(t testing.TB, stream []byte, limit int64) []wsEvent {
	t.Helper()
	nc := &memConn{src: bytes.NewReader(stream)}
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	for k, v := range map[string]string{
		"Connection": "Upgrade", "Upgrade": "websocket",
		"Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
	} {
		req.Header.Set(k, v)
	}
	ws, err := (&websocket.Upgrader{}).Upgrade(hijacker{nc}, req, nil)
	if err != nil {
		t.Fatalf("gorilla upgrade: %v", err)
	}
	nc.out.Reset() // the handshake's answer
	ws.SetReadLimit(limit)
	var events []wsEvent
	// answers turns the frames gorilla wrote into events; the stream ends
	// with gorilla's close frame if it wrote one.
	answers := func() (closed bool) {
		for nc.out.Len() > 0 {
			op, p, err := ReadServerFrame(&nc.out)
			if err != nil {
				t.Fatalf("gorilla wrote a bad frame: %v", err)
			}
			switch op {
			case opPong:
				events = append(events, wsEvent{op: opPong, data: string(p)})
			case opClose:
				events = append(events, wsEvent{op: opClose, code: answeredCode(p)})
				return true
			}
		}
		return false
	}
	for {
		mt, r, err := ws.NextReader()
		if err == nil {
			var b []byte
			b, err = readUTF8Checked(r, mt == websocket.TextMessage)
			if errors.Is(err, errBadUTF8) {
				answers()
				return append(events, wsEvent{op: opClose, code: closeInvalidData})
			}
			if err == nil {
				answers()
				events = append(events, wsEvent{op: byte(mt), data: string(b)})
				continue
			}
		}
		if answers() {
			return events
		}
		// Ended without a close frame: cut short (gorilla reports that as
		// 1006), or ErrReadLimit for a 64-bit length with its top bit set.
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure {
			return append(events, wsEvent{})
		}
		return append(events, wsEvent{op: opClose, code: -1, data: err.Error()})
	}
}

// readUTF8Checked reads a message; for text, it stops with errBadUTF8 at
// the first read after which the bytes can no longer be the start of valid
// UTF-8, or at the end if they are not whole.
func readUTF8Checked(r io.Reader, text bool) ([]byte, error) {
	var b []byte
	chunk := make([]byte, 4096)
	for {
		n, err := r.Read(chunk)
		b = append(b, chunk[:n]...)
		if text && !utf8Prefix(b) {
			return b, errBadUTF8
		}
		if err == io.EOF {
			if text && !utf8.Valid(b) {
				return b, errBadUTF8
			}
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// utf8Prefix reports whether some bytes appended to b could make it valid
// UTF-8, by trying them: valid UTF-8 followed by up to three bytes of a code
// point whose second byte can take one of 64 values and whose later bytes
// any continuation byte.
func utf8Prefix(b []byte) bool {
	for k := 0; k < utf8.UTFMax && k <= len(b); k++ {
		head, tail := b[:len(b)-k], b[len(b)-k:]
		if !utf8.Valid(head) {
			continue
		}
		if k == 0 {
			return true
		}
		for second := byte(0x80); second <= 0xbf; second++ {
			try := append([]byte(nil), tail...)
			if k == 1 {
				try = append(try, second)
			}
			for range 3 {
				if utf8.Valid(try) && utf8.RuneCount(try) == 1 {
					return true
				}
				try = append(try, 0x80)
			}
		}
	}
	return false
}

// answeredCode returns the code of a server's close frame payload. An
// empty one answers a close frame that had no code, which ferry answers with
// 1000 (RFC 6455 lets it send either).
func answeredCode(p []byte) int {
	if len(p) < 2 {
		return 1000
	}
	return int(binary.BigEndian.Uint16(p))
}

// ferryIntends are the refusals in which ferry means to differ from
// gorilla, which accepts what RFC 6455 forbids or refuses it otherwise.
// For the first group gorilla goes on, and only what came before is
// compared; for the second ferry's close code stands for gorilla's.
var ferryIntends = map[*protocolError]int{
	// 5.2: "the minimal number of bytes MUST be used to encode the length".
	errLongLength: 0,
	// 5.2: a 64-bit length's "most significant bit MUST be 0"; gorilla
	// stops with ErrReadLimit and no close frame.
	errLengthTopBit: 0,
	// 5.5.1: a close payload starts with a two-byte code; gorilla reads one
	// byte as no code.
	errCloseOneByte: 0,
	// 7.4.1: 1007 is for "data within a message that was not consistent
	// with the type of the message"; gorilla answers 1002.
	errCloseReason: closeProtocolError,
}

// compareReads returns what differs between ferry's and gorilla's reads of
// one stream, allowing for ferryIntends; "" if nothing does.
func compareReads(ferry []wsEvent, ferr error, gorilla []wsEvent) string {
	var pe *protocolError
	switch {
	case errors.Is(ferr, errClientClosed), errors.As(ferr, &pe), errors.Is(ferr, io.EOF), errors.Is(ferr, io.ErrUnexpectedEOF):
	default:
		return fmt.Sprintf("ferry's reader stopped with %v", ferr)
	}
	if errors.As(ferr, &pe) {
		code, ok := ferryIntends[pe]
		switch {
		case ok && code == 0:
			before := ferry[:len(ferry)-1]
			if len(gorilla) < len(before) || !slices.Equal(before, gorilla[:len(before)]) {
				return "different before ferry refused: " + pe.Reason
			}
			return ""
		case ok:
			ferry = append(slices.Clone(ferry[:len(ferry)-1]), wsEvent{op: opClose, code: code})
		}
	}
	// 1014 (bad gateway) is registered with IANA since RFC 6455; gorilla's
	// list of codes predates it.
	if n := len(ferry); errors.Is(ferr, errClientClosed) && ferry[n-1].code == 1014 {
		ferry = append(slices.Clone(ferry[:n-1]), wsEvent{op: opClose, code: closeProtocolError})
	}
	if !slices.Equal(ferry, gorilla) {
		return "different reads"
	}
	return ""
}

// memConn is a net.Conn whose reads come from src and whose writes go to
// out.
type memConn struct {
	src io.Reader
	out bytes.Buffer
}

func (c *memConn) Read(p []byte) (int, error)       { return c.src.Read(p) }
func (c *memConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// hijacker is the http.ResponseWriter the Upgrader takes over.
type hijacker struct{ c *memConn }

func (h hijacker) Header() http.Header         { return http.Header{} }
func (h hijacker) Write(b []byte) (int, error) { return len(b), nil }
func (h hijacker) WriteHeader(int)             {}
func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.c, bufio.NewReadWriter(bufio.NewReader(h.c), bufio.NewWriter(h.c)), nil
}

// WireFrame is a client frame as it goes on the wire, with every field a
// test may want wrong. It is exported for the black-box tests of package
// server_test, from a _test.go file: no part of the package's API.
type WireFrame struct {
	Op      byte
	Payload []byte
	// More clears FIN: more frames of the message follow.
	More bool
	// RSV sets RSV1, RSV2 and RSV3 from its bits 4, 2 and 1.
	RSV byte
	// Unmasked leaves out the mask bit and the masking key.
	Unmasked bool
	// LenBytes, 2 or 8, encodes the length in that many bytes whatever
	// it is; 0 is the shortest encoding.
	LenBytes int
	// Claim, if not 0, is the length the header gives instead of
	// len(Payload).
	Claim uint64
	// Key is the masking key.
	Key [4]byte
}

// Append appends the frame's bytes to b.
func (f WireFrame) Append(b []byte) []byte {
	length := uint64(len(f.Payload))
	if f.Claim != 0 {
		length = f.Claim
	}
	b0 := f.Op&0x0f | (f.RSV&7)<<4
	if !f.More {
		b0 |= 0x80
	}
	var b1 byte
	if !f.Unmasked {
		b1 = 0x80
	}
	switch {
	case f.LenBytes == 8 || (f.LenBytes == 0 && length > 0xffff):
		b = binary.BigEndian.AppendUint64(append(b, b0, b1|127), length)
	case f.LenBytes == 2 || (f.LenBytes == 0 && length > 125):
		b = binary.BigEndian.AppendUint16(append(b, b0, b1|126), uint16(length))
	default:
		b = append(b, b0, b1|byte(length))
	}
	if f.Unmasked {
		return append(b, f.Payload...)
	}
	b = append(b, f.Key[:]...)
	start := len(b)
	b = append(b, f.Payload...)
	protocol.MaskBytes(f.Key, 0, b[start:])
	return b
}

// ReadServerFrame reads one frame as a server must send it: whole,
// unmasked, with no reserved bit set. It reads no further than the frame.
func ReadServerFrame(r io.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 || h[0]&0x70 != 0 || h[0]&0x80 == 0 {
		return 0, nil, fmt.Errorf("server frame header %x: masked, fragmented or with reserved bits", h)
	}
	n := uint64(h[1] & 0x7f)
	if n >= 126 {
		ext := make([]byte, 2+6*(n-126))
		if _, err := io.ReadFull(r, ext); err != nil {
			return 0, nil, err
		}
		n = 0
		for _, x := range ext {
			n = n<<8 | uint64(x)
		}
	}
	if n > 1<<24 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[0] & 0x0f, payload, err
}
