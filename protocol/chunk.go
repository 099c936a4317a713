package protocol

import (
	"encoding/binary"
	"errors"
)

// ChunkKind is the first byte of a binary frame carrying an upload chunk.
const ChunkKind = 0x01

// MaxUploadIDLen is the longest upload id a chunk header may carry.
const MaxUploadIDLen = 64

// ChunkHeader is the fixed part of a binary chunk frame:
//
//	kind (1) | n (1) | upload id (n) | offset (8, big-endian) | payload
type ChunkHeader struct {
	Upload string
	Offset int64
}

// ErrBadChunkHeader reports a binary frame whose header does not parse.
var ErrBadChunkHeader = errors.New("bad chunk header")

// HeaderLen returns the header's encoded length.
func (h ChunkHeader) HeaderLen() int { return 2 + len(h.Upload) + 8 }

// AppendChunkHeader appends the encoded header to b.
func AppendChunkHeader(b []byte, h ChunkHeader) []byte {
	b = append(b, ChunkKind, byte(len(h.Upload)))
	b = append(b, h.Upload...)
	return binary.BigEndian.AppendUint64(b, uint64(h.Offset))
}

// ParseChunkHeader parses the header at the start of a binary frame and
// returns it with the header's length.
func ParseChunkHeader(b []byte) (ChunkHeader, int, error) {
	if len(b) < 2 || b[0] != ChunkKind {
		return ChunkHeader{}, 0, ErrBadChunkHeader
	}
	n := int(b[1])
	if n == 0 || n > MaxUploadIDLen || len(b) < 2+n+8 {
		return ChunkHeader{}, 0, ErrBadChunkHeader
	}
	id := b[2 : 2+n]
	for _, c := range id {
		if c <= ' ' || c >= 0x7f {
			return ChunkHeader{}, 0, ErrBadChunkHeader
		}
	}
	off := binary.BigEndian.Uint64(b[2+n:])
	if off > 1<<62 {
		return ChunkHeader{}, 0, ErrBadChunkHeader
	}
	return ChunkHeader{Upload: string(id), Offset: int64(off)}, 2 + n + 8, nil
}
