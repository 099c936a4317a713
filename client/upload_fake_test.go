package client

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// uploadFake plays the upload side of a server the way docs/protocol.md
// tells it, with what a test scripts on top: refusals of upload.open, and
// uploads it already holds (as a server does for an app that died). Its
// window is 4 KiB, chunks 1 KiB: the client hears of progress before it
// has sent everything.
type uploadFake struct {
	*fakeServer

	mu      sync.Mutex
	refuse  []protocol.ErrorFrame // answers to the next upload.opens
	opens   []protocol.Request
	chunked int64 // chunk bytes received, resends included
	uploads map[string]*fakeUpload
	// storedSHA, when set, is the digest the server claims for every
	// stored file, whatever it received.
	storedSHA string
	// noCRC makes the fake a server before crc32c_later: it ignores it,
	// and its grants do not say what digest they wait for.
	noCRC bool
	// finishes are the upload.finish requests received.
	finishes []protocol.Request
}

type fakeUpload struct {
	size  int64
	later bool
	crc   bool // crc32c_later: later, with a CRC32C
	data  []byte
	sum   string // from upload.finish: the SHA-256, or the CRC32C when crc
	done  bool
}

func newUploadFake(t *testing.T) *uploadFake {
	u := &uploadFake{uploads: make(map[string]*fakeUpload)}
	u.fakeServer = newFake(t, func(n int, _ *http.Request, ws *websocket.Conn) {
		_ = ws.WriteJSON(welcomeFrame(n, 25000, 20000))
		u.serve(ws)
	})
	return u
}

// hold makes the fake hold the first received bytes of data as upload id,
// opened with later (protocol.LaterCRC32C or LaterSHA256) or without a
// digest to wait for ("").
func (u *uploadFake) hold(id string, data []byte, received int, later string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.uploads[id] = &fakeUpload{size: int64(len(data)), later: later != "", crc: later == protocol.LaterCRC32C, data: append([]byte(nil), data[:received]...)}
}

func (u *uploadFake) serve(ws *websocket.Conn) {
	for {
		typ, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		u.mu.Lock()
		var out []any
		if typ == websocket.BinaryMessage {
			out = u.chunk(data)
		} else {
			out = u.request(data)
		}
		u.mu.Unlock()
		for _, f := range out {
			_ = ws.WriteJSON(f)
		}
	}
}

func ack(id uint64, data any) protocol.Ack {
	return protocol.Ack{T: protocol.TypeAck, ID: id, Data: data}
}

func fail(id uint64, upload, code string) protocol.ErrorFrame {
	return protocol.ErrorFrame{T: protocol.TypeError, ID: id, Code: code, Message: "scripted", Upload: upload}
}

// request answers a text frame; u.mu is held.
func (u *uploadFake) request(data []byte) []any {
	var req protocol.Request
	if json.Unmarshal(data, &req) != nil {
		return nil
	}
	switch req.T {
	case protocol.TypePing:
		return []any{protocol.Pong{T: protocol.TypePong, TS: req.TS}}
	case protocol.TypeJoin:
		return []any{ack(req.ID, protocol.RoomMembers{Room: req.Room})}
	case protocol.TypeUploadOpen:
		u.opens = append(u.opens, req)
		if len(u.refuse) > 0 {
			ef := u.refuse[0]
			u.refuse = u.refuse[1:]
			ef.T, ef.ID = protocol.TypeError, req.ID
			return []any{ef}
		}
		id := req.Resume
		if id == "" {
			id = fmt.Sprintf("up_%026d", len(u.uploads)+1)
			u.uploads[id] = &fakeUpload{size: req.Size, later: req.SHA256Later || req.CRC32CLater && !u.noCRC, crc: req.CRC32CLater && !u.noCRC}
		}
		up := u.uploads[id]
		if up == nil {
			return []any{fail(req.ID, id, protocol.CodeUnknownUpload)}
		}
		g := grant{Upload: id, Offset: int64(len(up.data)), ChunkSize: 1024, Window: 4096}
		switch {
		case u.noCRC:
		case up.crc:
			g.Later = protocol.LaterCRC32C
		case up.later:
			g.Later = protocol.LaterSHA256
		}
		return append([]any{ack(req.ID, g)}, u.complete(id)...)
	case protocol.TypeUploadStatus:
		up := u.uploads[req.Upload]
		if up == nil {
			return []any{fail(req.ID, req.Upload, protocol.CodeUnknownUpload)}
		}
		n := int64(len(up.data))
		return []any{ack(req.ID, status{Size: up.size, Offset: n, Durable: n, Status: "uploading"})}
	case protocol.TypeUploadFinish:
		u.finishes = append(u.finishes, req)
		up := u.uploads[req.Upload]
		if up == nil {
			return []any{fail(req.ID, req.Upload, protocol.CodeUnknownUpload)}
		}
		if u.noCRC && (req.SHA256 == "" || !up.later) {
			// As that server's Finish: a SHA-256, for a sha256_later upload.
			return []any{fail(req.ID, req.Upload, protocol.CodeBadRequest)}
		}
		up.sum = req.SHA256
		if up.crc {
			up.sum = req.CRC32C
		}
		return append([]any{ack(req.ID, map[string]string{"upload": req.Upload})}, u.complete(req.Upload)...)
	case protocol.TypeUploadCancel:
		delete(u.uploads, req.Upload)
		return []any{ack(req.ID, map[string]string{"upload": req.Upload})}
	}
	return []any{ack(req.ID, nil)}
}

// chunk takes a binary chunk; u.mu is held.
func (u *uploadFake) chunk(data []byte) []any {
	h, hl, err := protocol.ParseChunkHeader(data)
	up := u.uploads[h.Upload]
	switch {
	case err != nil:
		return []any{fail(0, "", protocol.CodeBadFrame)}
	case up == nil:
		return []any{fail(0, h.Upload, protocol.CodeUnknownUpload)}
	case h.Offset != int64(len(up.data)):
		e := fail(0, h.Upload, protocol.CodeBadOffset)
		n := int64(len(up.data))
		e.Offset = &n
		return []any{e}
	}
	u.chunked += int64(len(data) - hl)
	up.data = append(up.data, data[hl:]...)
	n := int64(len(up.data))
	return append([]any{protocol.UploadProgress{T: protocol.TypeUploadProgress, Upload: h.Upload, Offset: n, Received: n}}, u.complete(h.Upload)...)
}

// complete finishes upload id once it has every byte, and its digest when
// it was promised one; u.mu is held.
func (u *uploadFake) complete(id string) []any {
	up := u.uploads[id]
	if up.done || int64(len(up.data)) < up.size || up.later && up.sum == "" {
		return nil
	}
	s := sha256.Sum256(up.data)
	sum := hex.EncodeToString(s[:])
	got := sum
	if up.crc {
		got = fmt.Sprintf("%08x", crc32.Checksum(up.data, crc32.MakeTable(crc32.Castagnoli)))
	}
	if up.sum != "" && up.sum != got {
		delete(u.uploads, id)
		return []any{fail(0, id, protocol.CodeChecksumMismatch)}
	}
	up.done = true
	if u.storedSHA != "" {
		sum = u.storedSHA
	}
	return []any{map[string]any{"t": protocol.TypeUploadDone, "upload": id, "file": File{ID: "f_" + id, Size: up.size, SHA256: sum}}}
}

// counts returns the opens seen and the chunk bytes received so far.
func (u *uploadFake) counts() ([]protocol.Request, int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]protocol.Request(nil), u.opens...), u.chunked
}
