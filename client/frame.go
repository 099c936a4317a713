package client

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Chunk frames are framed and masked here rather than by gorilla, which
// copies a message into its write buffer and masks it there eight bytes at
// a time: for an upload that is two more passes over every byte, on the
// cores the server and storage need. A chunk is built in its own buffer,
// so it is masked in place, with protocol.MaskBytes.

// maxFrameHeader is the longest header of a client frame (RFC 6455, 5.2):
// two bytes, a 64-bit length and the 4-byte masking key. A raw frame's
// buffer starts with this much room.
const maxFrameHeader = 2 + 8 + 4

// maskFrame makes buf, maxFrameHeader free bytes and then a payload, into
// one final frame of opcode op: it masks the payload in place with a fresh
// key and writes the header just before it. It returns the frame, a tail
// of buf.
func maskFrame(buf []byte, op byte) []byte {
	payload := buf[maxFrameHeader:]
	n := len(payload)
	var hdr [maxFrameHeader]byte
	hdr[0] = 0x80 | op // FIN
	h := 2
	switch {
	case n < 126:
		hdr[1] = 0x80 | byte(n)
	case n <= 0xffff:
		hdr[1] = 0x80 | 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		h += 2
	default:
		hdr[1] = 0x80 | 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		h += 8
	}
	// RFC 6455, 10.3: a key no one can predict, for every frame.
	var key [4]byte
	_, _ = rand.Read(key[:]) // crypto/rand.Read never fails
	copy(hdr[h:], key[:])
	h += 4
	protocol.MaskBytes(key, 0, payload)
	start := maxFrameHeader - h
	copy(buf[start:], hdr[:h])
	return buf[start:]
}

// write writes f within the write timeout: a raw frame straight to the
// socket, anything else through gorilla. Only the writer goroutine writes
// frames; gorilla's pongs from the reader goroutine may come in between,
// and each is written whole, since a net.Conn serializes its Writes.
func (s *session) write(f outFrame) error {
	deadline := time.Now().Add(s.c.cfg.WriteTimeout)
	if !f.raw {
		_ = s.ws.SetWriteDeadline(deadline)
		return s.ws.WriteMessage(f.typ, f.data)
	}
	nc := s.ws.NetConn()
	if err := nc.SetWriteDeadline(deadline); err != nil {
		return err
	}
	_, err := nc.Write(f.data)
	return err
}
