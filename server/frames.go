package server

import (
	"cmp"
	"encoding/binary"
	"errors"
	"unicode/utf8"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/transfer"
)

// frame returns a complete, unmasked server-to-client WebSocket frame.
func frame(opcode byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xffff:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | opcode // FIN + opcode
	return append(b, payload...)
}

func textFrame(payload []byte) []byte { return frame(opText, payload) }

func controlFrame(opcode byte, payload []byte) []byte {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	return frame(opcode, payload)
}

var pingFrame = controlFrame(opPing, nil)

// closeFrame builds a close frame; reason is cut to fit a control frame
// without splitting a UTF-8 sequence.
func closeFrame(code int, reason string) []byte {
	for len(reason) > 123 || !utf8.ValidString(reason) {
		reason = reason[:len(reason)-1]
	}
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return controlFrame(opClose, append(p, reason...))
}

// offsetOf returns the offset a transfer error tells the client to go on
// from, for the codes that carry one.
func offsetOf(te *transfer.Error) *int64 {
	switch te.Code {
	case transfer.CodeBadOffset, transfer.CodeBeyondSize, transfer.CodeWindowExceeded:
		off := te.Offset
		return &off
	}
	return nil
}

// errorFrame is the one translation of an error into the frame the client
// gets: protocol and transfer errors keep their code, and the upload they
// are about (uploadErr); anything else is an internal error, whose details
// stay in the server's log.
func errorFrame(id uint64, err error) protocol.ErrorFrame {
	f := protocol.ErrorFrame{T: protocol.TypeError, ID: id}
	var pe *protocol.Error
	var te *transfer.Error
	var au *aboutUpload
	if errors.As(err, &au) {
		f.Upload = au.id
	}
	switch {
	case errors.As(err, &pe):
		f.Code, f.Message, f.Offset, f.RetryAfterMS = pe.Code, pe.Message, pe.Offset, pe.RetryAfter
		f.Upload = cmp.Or(pe.Upload, f.Upload)
	case errors.As(err, &te):
		f.Code, f.Message, f.Offset, f.RetryAfterMS = te.Code, te.Message, offsetOf(te), te.RetryAfter.Milliseconds()
	default:
		f.Code, f.Message = protocol.CodeInternal, "internal error"
	}
	return f
}
