package protocol

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// MaskBytes agrees with the RFC's definition, byte by byte, for every start
// position and lengths around its block size, whole or in pieces as a
// payload arrives.
func TestMaskBytesMatchesRFC(t *testing.T) {
	r := rand.New(rand.NewPCG(6455, 3))
	key := [4]byte{0x9a, 0x17, 0xc3, 0x5e}
	data := make([]byte, 3*maskPatternLen+7)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	rfc := func(pos int, b []byte) []byte {
		out := make([]byte, len(b))
		for i := range b {
			out[i] = b[i] ^ key[(pos+i)%4]
		}
		return out
	}
	for _, n := range []int{0, 1, 7, 8, 63, maskPatternLen - 1, maskPatternLen, maskPatternLen + 1, 2*maskPatternLen + 3, len(data)} {
		for pos := range 4 {
			b := bytes.Clone(data[:n])
			if next := MaskBytes(key, pos, b); next != (pos+n)%4 {
				t.Fatalf("n=%d pos=%d: next position %d, want %d", n, pos, next, (pos+n)%4)
			}
			if want := rfc(pos, data[:n]); !bytes.Equal(b, want) {
				t.Fatalf("n=%d pos=%d: unmasked bytes differ from the RFC's", n, pos)
			}
		}
	}
	for range 200 {
		b := bytes.Clone(data)
		pos := 0
		for rest := b; len(rest) > 0; {
			k := min(len(rest), 1+r.IntN(2*maskPatternLen))
			pos = MaskBytes(key, pos, rest[:k])
			rest = rest[k:]
		}
		if !bytes.Equal(b, rfc(0, data)) {
			t.Fatal("a payload unmasked in pieces differs from the RFC's")
		}
	}
}

func BenchmarkMaskBytes(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		MaskBytes([4]byte{1, 2, 3, 4}, 1, buf)
	}
}
