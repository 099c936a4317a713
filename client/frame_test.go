package client

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// maskFrame makes frames a WebSocket server reads as the payload given, for
// every length encoding, each masked with a key of its own.
func TestMaskFrame(t *testing.T) {
	keys := map[[4]byte]bool{}
	for _, n := range []int{0, 1, 125, 126, 0xffff, 0x10000, 1 << 20} {
		payload := bytes.Repeat([]byte("ferry\x00\xff"), n/7+1)[:n]
		buf := append(make([]byte, maxFrameHeader, maxFrameHeader+n), payload...)
		frame := maskFrame(buf, websocket.BinaryMessage)

		op, got, key := parseClientFrame(t, frame)
		if op != websocket.BinaryMessage || !bytes.Equal(got, payload) {
			t.Fatalf("%d bytes: read back opcode %d and %d bytes that differ", n, op, len(got))
		}
		if n > 0 && bytes.Equal(frame[len(frame)-n:], payload) {
			t.Fatalf("%d bytes: the payload went out unmasked", n)
		}
		keys[key] = true
	}
	if len(keys) < 6 {
		t.Fatalf("%d distinct keys for 7 frames", len(keys))
	}
}

// parseClientFrame reads one masked, final frame as RFC 6455 (5.2) lays it
// out, and checks that nothing follows it.
func parseClientFrame(t *testing.T, frame []byte) (op byte, payload []byte, key [4]byte) {
	t.Helper()
	r := bufio.NewReader(bytes.NewReader(frame))
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if hdr[0]&0xf0 != 0x80 || hdr[1]&0x80 == 0 {
		t.Fatalf("header % x: want FIN, no reserved bits, masked", hdr)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		_, _ = io.ReadFull(r, b[:])
		n = uint64(b[0])<<8 | uint64(b[1])
		if n < 126 {
			t.Fatalf("length %d not in its shortest encoding", n)
		}
	case 127:
		var b [8]byte
		_, _ = io.ReadFull(r, b[:])
		n = 0
		for _, c := range b {
			n = n<<8 | uint64(c)
		}
		if n <= 0xffff {
			t.Fatalf("length %d not in its shortest encoding", n)
		}
	}
	if _, err := io.ReadFull(r, key[:]); err != nil {
		t.Fatal(err)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("%d bytes after the frame", r.Buffered())
	}
	protocol.MaskBytes(key, 0, payload)
	return hdr[0] & 0x0f, payload, key
}
