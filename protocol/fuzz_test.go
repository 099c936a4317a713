package protocol_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/protocol"
)

// FuzzDecodeRequest feeds arbitrary bytes to the text frame decoder: it must
// never panic, must fail only with a protocol code, and what it accepts must
// carry its data through unchanged.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"t":"join","id":1,"room":"lobby"}`,
		`{"t":"emit","id":2,"room":"lobby","event":"chat","data":{"text":"hi"}}`,
		`{"t":"emit","user":"u_x","event":"dm","data":[1,2,{"a":null}],"except_self":true}`,
		`{"t":"ping","ts":1764091200000}`,
		`{"t":"upload.open","id":3,"room":"r","name":"cat.jpg","size":123,"type":"image/jpeg","chunk_size":262144}`,
		`{"t":"upload.chunk","upload":"up_x","offset":0,"data":"aGVsbG8="}`,
		`{"t":`, `[]`, `null`, `{"t":7}`, `{"id":-1}`, `{"t":"x","data":}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := protocol.DecodeRequest(b)
		if err != nil {
			var pe *protocol.Error
			if !errors.As(err, &pe) || (pe.Code != protocol.CodeBadFrame && pe.Code != protocol.CodeUnknownType) || pe.Message == "" {
				t.Fatalf("error %v is not a bad_frame/unknown_type protocol error", err)
			}
			return
		}
		if req.T == "" {
			t.Fatal("accepted a frame without type")
		}
		if len(req.Data) > 0 && !json.Valid(req.Data) {
			t.Fatalf("accepted invalid data %q", req.Data)
		}
	})
}

// FuzzChunkHeader checks the binary header parser: no panics, and whatever
// it accepts encodes back to the same bytes.
func FuzzChunkHeader(f *testing.F) {
	f.Add(protocol.AppendChunkHeader(nil, protocol.ChunkHeader{Upload: "up_abc", Offset: 1 << 20}))
	f.Add([]byte{1, 0})
	f.Add([]byte{2, 3, 'a', 'b', 'c', 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := protocol.ParseChunkHeader(b)
		if err != nil {
			return
		}
		if n != h.HeaderLen() || n > len(b) {
			t.Fatalf("header length %d for %d bytes", n, len(b))
		}
		if got := protocol.AppendChunkHeader(nil, h); string(got) != string(b[:n]) {
			t.Fatalf("re-encoded %x, parsed from %x", got, b[:n])
		}
	})
}

// FuzzParseTextChunk checks the upload.chunk fast path against the general
// decoder: whatever the fast path accepts, encoding/json reads the same way.
func FuzzParseTextChunk(f *testing.F) {
	f.Add([]byte(`{"t":"upload.chunk","upload":"up_x","offset":262144,"data":"aGVsbG8="}`))
	f.Add([]byte(`{"data":"AAAA","offset":0,"upload":"u","t":"upload.chunk","id":3}`))
	f.Add([]byte(`{"t":"upload.chunk","upload":"up_x","offset":1,"data":"a\/b"}`))
	f.Add([]byte(`{"t":"upload.chunk","upload":"up_x","offset":1,"data":"` + strings.Repeat("QUJD", 70) + "\x01\xff" + `"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, upload, offset, data, ok := protocol.ParseTextChunk(b)
		if !ok {
			return
		}
		if bytes.ContainsFunc(data, func(r rune) bool { return r < 0x20 || r >= 0x80 }) {
			// Long data is not scanned for these: base64 must refuse it.
			if _, err := base64.StdEncoding.DecodeString(string(data)); err == nil {
				t.Fatalf("fast path accepted data %q that base64 decodes", data)
			}
			return
		}
		req, err := protocol.DecodeRequest(b)
		if err != nil {
			t.Fatalf("fast path accepted %q, decoder refused it: %v", b, err)
		}
		var s string
		if err := json.Unmarshal(req.Data, &s); err != nil || s != string(data) {
			t.Fatalf("data %q, decoder %q (%v)", data, s, err)
		}
		if req.T != protocol.TypeUploadChunk || req.Upload != upload || req.Offset != offset || req.ID != id {
			t.Fatalf("fast path %v %q %d %q, decoder %+v", id, upload, offset, data, req)
		}
	})
}

// AppendTextChunk writes what ParseTextChunk reads, and what encoding/json
// reads the same way.
func TestAppendTextChunk(t *testing.T) {
	data := []byte("any bytes\x00\xff")
	for _, upload := range []string{"up_3kx0", `odd "id"`} {
		b := protocol.AppendTextChunk([]byte("keep"), upload, 262144, data)
		if !bytes.HasPrefix(b, []byte("keep")) {
			t.Fatalf("dst not kept: %q", b)
		}
		b = b[len("keep"):]
		req, err := protocol.DecodeRequest(b)
		if err != nil || req.T != protocol.TypeUploadChunk || req.Upload != upload || req.Offset != 262144 {
			t.Fatalf("%s: decoded %+v, %v", b, req, err)
		}
		var s string
		if err := json.Unmarshal(req.Data, &s); err != nil || s != base64.StdEncoding.EncodeToString(data) {
			t.Fatalf("data %s: %v", req.Data, err)
		}
		_, id, off, got, ok := protocol.ParseTextChunk(b)
		if upload == "up_3kx0" && (!ok || id != upload || off != 262144 || string(got) != s) {
			t.Fatalf("fast path: %q %d %q %v", id, off, got, ok)
		}
	}
}
