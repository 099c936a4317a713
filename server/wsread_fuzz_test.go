package server

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf8"
)

// FuzzReader feeds arbitrary bytes to ferry's frame reader as a client's
// stream. Whatever they are, the reader must not panic, must return no
// message over its limit, no text that is not UTF-8 and no pong over 125
// bytes, must end in a close code or at the end of the stream, and must
// take what gorilla's reader takes (see TestReaderMatchesGorilla): a
// message comes out only if it was well formed. The seed corpus is in
// testdata/fuzz/FuzzReader, with a few streams of genStream's; `make fuzz`
// runs the fuzzer for a while.
func FuzzReader(f *testing.F) {
	r := rand.New(rand.NewPCG(6455, 2))
	for range 8 {
		f.Add(genStream(r))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		events, err := ferryRead(stream, fuzzLimit)
		for i, e := range events {
			last := i == len(events)-1
			switch {
			case (e.op == opClose || e.op == 0) != last:
				t.Fatalf("event %d of %d is %v: the read must end with a close or the stream's end, once", i, len(events), e)
			case (e.op == opText || e.op == opBinary) && len(e.data) > fuzzLimit:
				t.Fatalf("%d-byte message past the %d-byte limit", len(e.data), fuzzLimit)
			case e.op == opText && !utf8.ValidString(e.data):
				t.Fatalf("text message not UTF-8: %q", e.data)
			case e.op == opPong && len(e.data) > 125:
				t.Fatalf("pong of %d bytes", len(e.data))
			}
		}
		gorilla := gorillaRead(t, stream, fuzzLimit)
		if msg := compareReads(events, err, gorilla); msg != "" {
			t.Fatalf("%s\nferry:   %v (%v)\ngorilla: %v", msg, events, err, gorilla)
		}
	})
}

// fuzzLimit is small, so that the fuzzer crosses it easily.
const fuzzLimit = 4 << 10

// genStream makes a client's byte stream: a few messages, whole or in
// fragments with control frames between them, pings, pongs, a close frame,
// now and then a frame broken on purpose; and, for a third of the streams,
// a few bytes changed, inserted or cut off.
func genStream(r *rand.Rand) []byte {
	g := &streamGen{r: r}
	for n := 1 + r.IntN(6); n > 0; n-- {
		switch x := r.IntN(100); {
		case x < 60:
			g.message()
		case x < 72:
			g.frame(WireFrame{Op: opPing, Payload: g.bytes(r.IntN(126))})
		case x < 78:
			g.frame(WireFrame{Op: opPong, Payload: g.bytes(r.IntN(20))})
		case x < 88:
			g.frame(WireFrame{Op: opClose, Payload: g.closePayload()})
		default:
			g.frame(WireFrame{Op: byte(r.IntN(16)), More: r.IntN(2) == 0, RSV: byte(r.IntN(8)) & byte(r.IntN(2)),
				Unmasked: r.IntN(8) == 0, Payload: g.bytes(r.IntN(130))})
		}
	}
	if r.IntN(3) == 0 {
		g.mutate()
	}
	return g.b
}

type streamGen struct {
	r       *rand.Rand
	b       []byte
	headers []int // where each frame starts in b
}

func (g *streamGen) frame(f WireFrame) {
	g.headers = append(g.headers, len(g.b))
	f.Key = [4]byte{byte(g.r.Uint32()), byte(g.r.Uint32()), byte(g.r.Uint32()), byte(g.r.Uint32())}
	if g.r.IntN(40) == 0 {
		f.LenBytes = []int{2, 8}[g.r.IntN(2)]
	}
	g.b = f.Append(g.b)
}

func (g *streamGen) bytes(n int) []byte {
	b := make([]byte, 0, n+8)
	for len(b) < n {
		b = binary.LittleEndian.AppendUint64(b, g.r.Uint64())
	}
	return b[:n]
}

// message writes a text or binary message in one or more frames, with
// control frames between them now and then.
func (g *streamGen) message() {
	op, p := byte(opBinary), []byte(nil)
	size := g.r.IntN(64)
	switch x := g.r.IntN(100); {
	case x == 0:
		size = diffLimit - 1000 + g.r.IntN(2000) // on either side of the limit
	case x < 10:
		size = 126 + g.r.IntN(3000)
	}
	if g.r.IntN(10) < 7 {
		op, p = opText, g.text(size)
	} else {
		p = g.bytes(size)
	}
	cuts := []int{0, len(p)}
	for range g.r.IntN(5) {
		cuts = append(cuts, g.r.IntN(len(p)+1))
	}
	slices.Sort(cuts)
	for i := 1; i < len(cuts); i++ {
		f := WireFrame{Op: op, Payload: p[cuts[i-1]:cuts[i]], More: i < len(cuts)-1}
		if i > 1 {
			f.Op = opContinuation
		}
		g.frame(f)
		if f.More && g.r.IntN(4) == 0 {
			g.frame(WireFrame{Op: []byte{opPing, opPong}[g.r.IntN(2)], Payload: g.bytes(g.r.IntN(10))})
		}
	}
}

// text is about n bytes of UTF-8, mostly ASCII, with code points of every
// length; one in eight is broken somewhere.
func (g *streamGen) text(n int) []byte {
	b := make([]byte, 0, n+4)
	for len(b) < n {
		switch x := g.r.IntN(100); {
		case x < 70:
			b = append(b, byte(' '+g.r.IntN(95)))
		case x < 80:
			b = utf8.AppendRune(b, rune(0x80+g.r.IntN(0x780)))
		case x < 90:
			b = utf8.AppendRune(b, rune(0x800+g.r.IntN(0xf800)))
		default:
			b = utf8.AppendRune(b, rune(0x10000+g.r.IntN(0x100000)))
		}
	}
	if g.r.IntN(8) == 0 {
		bad := [][]byte{{0x80}, {0xc0, 0xaf}, {0xed, 0xa0, 0x80}, {0xf4, 0x90}, {0xff}, {0xe2, 0x82}, {0xf0, 0x9f, 0x98}}
		at := g.r.IntN(len(b) + 1)
		b = slices.Insert(b, at, bad[g.r.IntN(len(bad))]...)
	}
	return b
}

func (g *streamGen) closePayload() []byte {
	switch g.r.IntN(10) {
	case 0:
		return nil
	case 1:
		return []byte{0x03}
	}
	codes := []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
		0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}
	p := binary.BigEndian.AppendUint16(nil, uint16(codes[g.r.IntN(len(codes))]))
	return append(p, g.text(g.r.IntN(20))...)
}

// mutate changes one to three things, half of them in frame headers.
func (g *streamGen) mutate() {
	for range 1 + g.r.IntN(3) {
		if len(g.b) == 0 {
			return
		}
		at := g.r.IntN(len(g.b))
		if g.r.IntN(2) == 0 {
			at = min(g.headers[g.r.IntN(len(g.headers))]+g.r.IntN(3), len(g.b)-1)
		}
		switch g.r.IntN(4) {
		case 0:
			g.b[at] ^= 1 << g.r.IntN(8)
		case 1:
			g.b[at] = byte(g.r.Uint32())
		case 2:
			g.b = slices.Insert(g.b, at, byte(g.r.Uint32()))
		case 3:
			g.b = g.b[:at]
		}
	}
}
