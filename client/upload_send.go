package client

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// defaultChunk is the chunk size when the server's grant names none.
const defaultChunk = 256 << 10

// send sends the chunks of g's upload on s, within the window, gives the
// digest once the last one is out, and waits for the server to finish.
func (u *upload) send(ctx context.Context, s *session, g grant) (File, error) {
	chunk := u.chunkSize(s, g)
	if u.opts.Base64 && int64(cap(u.buf)) < chunk {
		u.buf = make([]byte, chunk)
	}
	sent := g.Offset
	finished := false
	for {
		u.mu.Lock()
		done, errs := u.done, u.errs
		u.errs = nil
		p := Progress{Size: u.size, Sent: sent, Received: u.received, Durable: u.durable}
		u.mu.Unlock()
		if done != nil {
			return u.verify(*done)
		}
		for _, e := range errs {
			switch e.Code {
			case protocol.CodeStorageUnavailable:
				u.wait(e)
			case protocol.CodeBadOffset, protocol.CodeWindowExceeded:
				if e.Offset != nil {
					sent = *e.Offset
				}
			case protocol.CodeUnknownUpload:
				return File{}, errReopen
			default:
				return File{}, e
			}
		}
		p.Sent = sent
		u.report(p)
		for sent < u.size {
			n := min(chunk, u.size-sent)
			if g.Window > 0 && sent+n > p.Durable+g.Window {
				break
			}
			if err := u.sendChunk(ctx, s, g.Upload, sent, n); err != nil {
				return File{}, err
			}
			sent += n
			p.Sent = sent
			u.report(p)
			if len(u.wake) > 0 {
				break // news from the server first
			}
		}
		if sent == u.size && !finished && u.hash != nil {
			if err := u.finish(ctx, s, g.Upload); err != nil {
				return File{}, err
			}
			finished = true
		}
		select {
		case <-u.wake:
		case <-s.done:
			return File{}, lost(s.reason)
		case <-ctx.Done():
			return File{}, ctx.Err()
		}
	}
}

// chunkSize is the size of the chunks to send for g on s.
func (u *upload) chunkSize(s *session, g grant) int64 {
	chunk := int64(g.ChunkSize)
	if chunk <= 0 {
		chunk = defaultChunk
	}
	if mc := int64(s.welcome.Limits.MaxChunk); mc > 0 {
		chunk = min(chunk, mc)
	}
	if u.opts.Base64 {
		chunk = min(chunk, int64(u.chunkWanted(s)))
	}
	if g.Window > 0 {
		chunk = min(chunk, g.Window)
	}
	return chunk
}

// sendChunk reads n bytes at off and queues them as one chunk frame on s,
// hashing the ones no chunk carried before.
func (u *upload) sendChunk(ctx context.Context, s *session, id string, off, n int64) error {
	if err := u.hashTo(ctx, off); err != nil {
		return err
	}
	frame := chunkFrames.get(maxFrameHeader + 128 + len(id) + base64.StdEncoding.EncodedLen(int(n)))
	frame.b = frame.b[:maxFrameHeader]
	op := byte(websocket.BinaryMessage)
	var b []byte
	if u.opts.Base64 {
		op = websocket.TextMessage
		b = u.buf[:n]
	} else {
		// The file is read straight into the frame, after its header:
		// every pass over the bytes costs the CPU that the server and
		// storage share on a small machine.
		frame.b = protocol.AppendChunkHeader(frame.b, protocol.ChunkHeader{Upload: id, Offset: off})
		start := len(frame.b)
		frame.b = frame.b[:start+int(n)]
		b = frame.b[start:]
	}
	err := u.readAt(b, off)
	if err == nil {
		if u.hash != nil && u.hashed < off+n {
			u.hash.Write(b[u.hashed-off:])
			u.hashed = off + n
		}
		if u.opts.Base64 {
			frame.b = protocol.AppendTextChunk(frame.b, id, off, b)
		}
		err = s.enqueueFrame(ctx, outFrame{raw: true, data: maskFrame(frame.b, op), written: frame.release})
	}
	if err != nil {
		frame.release()
	}
	return err
}

// chunkFrames recycles the buffers chunk frames are built in: a fresh
// megabyte for every chunk cost the sender as much as copying it, in
// zeroing and garbage collection.
var chunkFrames framePool

type framePool struct{ p sync.Pool }

type pooledFrame struct {
	b    []byte
	pool *framePool
}

// get returns an empty frame buffer of at least capacity bytes.
func (fp *framePool) get(capacity int) *pooledFrame {
	if f, ok := fp.p.Get().(*pooledFrame); ok && cap(f.b) >= capacity {
		f.b = f.b[:0]
		return f
	}
	return &pooledFrame{b: make([]byte, 0, capacity), pool: fp}
}

// release gives the buffer back once the frame is written.
func (f *pooledFrame) release() { f.pool.p.Put(f) }

// readAt fills b from the file at off.
func (u *upload) readAt(b []byte, off int64) error {
	k, err := u.r.ReadAt(b, off)
	if k == len(b) && (err == nil || errors.Is(err, io.EOF)) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("the file is shorter than its size")
	}
	return fmt.Errorf("client: reading the file at %d: %w", off, err)
}

// hashTo brings the hash up to end by reading the bytes no chunk carried:
// the ones a resume granted past what this process sent (an earlier run
// sent them). It reads the local file; nothing is sent again.
func (u *upload) hashTo(ctx context.Context, end int64) error {
	if u.hash == nil || u.hashed >= end {
		return nil
	}
	if cap(u.buf) == 0 {
		u.buf = make([]byte, defaultChunk)
	}
	buf := u.buf[:cap(u.buf)]
	for u.hashed < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(int64(len(buf)), end-u.hashed)]
		if err := u.readAt(b, u.hashed); err != nil {
			return err
		}
		u.hash.Write(b)
		u.hashed += int64(len(b))
	}
	return nil
}

// finish gives the server the file's digest once the last chunk is out
// (upload.finish). The answer is not waited for: the outcome comes as
// upload.done or an error, which the hook records.
func (u *upload) finish(ctx context.Context, s *session, id string) error {
	if u.sum == "" {
		if err := u.hashTo(ctx, u.size); err != nil {
			return err
		}
		u.sum = hex.EncodeToString(u.hash.Sum(nil))
	}
	if u.localOnly {
		return nil
	}
	req := protocol.Request{T: protocol.TypeUploadFinish, Upload: id, SHA256: u.sum}
	if u.crc {
		req.SHA256, req.CRC32C = "", u.sum
	}
	optional := u.finishOptional
	_, err := s.send(ctx, req, func(_ json.RawMessage, err error) {
		var perr *protocol.Error
		// A server older than upload.finish does not know it: it stores
		// the file unverified, and verify compares the digests here. So
		// it does when an upload that waits for no digest refuses one
		// (see follow).
		if errors.As(err, &perr) && perr.Code != protocol.CodeUnknownType && !(optional && perr.Code == protocol.CodeBadRequest) {
			perr.Upload = id
			u.fail(perr)
		}
	})
	return err
}

// verify checks the SHA-256 of what the server received against the
// digest of the bytes read here, when there is one: a server that ignores
// sha256_later stores without checking. A CRC32C is checked by the server
// alone (the file is known by its SHA-256). A server that stored other bytes
// than it received (a JPEG without its metadata) says what it received in
// SentSHA256.
func (u *upload) verify(f File) (File, error) {
	want := u.opts.SHA256
	if want == "" && !u.crc {
		want = u.sum
	}
	got := f.SHA256
	if f.SentSHA256 != "" {
		got = f.SentSHA256
	}
	if want == "" || got == "" || strings.EqualFold(want, got) {
		return f, nil
	}
	return File{}, &protocol.Error{Code: protocol.CodeChecksumMismatch,
		Message: fmt.Sprintf("the server received a file whose SHA-256 is %s; the bytes read here hash to %s", got, want)}
}
