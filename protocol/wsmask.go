package protocol

import (
	"crypto/subtle"
	"encoding/binary"
)

// MaskBytes XORs b with a WebSocket masking key (RFC 6455, 5.3), starting
// at position pos of the key, and returns the position after b. Masking
// and unmasking are the same operation. Long payloads go through
// crypto/subtle.XORBytes, whose vector code is about three times as fast
// as eight bytes at a time: every byte of an upload passes here twice
// (the client masks, the server unmasks), on the same cores as its
// SHA-256.
func MaskBytes(key [4]byte, pos int, b []byte) int {
	next := (pos + len(b)) & 3
	if len(b) >= maskPatternLen {
		var pat [maskPatternLen]byte
		for i := range 4 {
			pat[i] = key[(pos+i)&3]
		}
		for n := 4; n < maskPatternLen; n *= 2 {
			copy(pat[n:], pat[:n])
		}
		// The pattern's length is a multiple of 4, so every block starts
		// at the same position in the mask.
		for len(b) >= maskPatternLen {
			subtle.XORBytes(b[:maskPatternLen], b[:maskPatternLen], pat[:])
			b = b[maskPatternLen:]
		}
		subtle.XORBytes(b, b, pat[:len(b)])
		return next
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
	return next
}

// maskPatternLen is the block MaskBytes XORs at once: a multiple of 4, large
// enough that a call per block costs little, small enough for the stack.
const maskPatternLen = 512
