package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// maxBase64Chunk is the largest chunk sent as base64 text: its encoding
// must fit in a text frame, 1 MiB by default.
const maxBase64Chunk = 512 << 10

// Upload retry delays, when the server says to try again later (storage
// unavailable, rate limited).
const (
	uploadRetryMin = 100 * time.Millisecond
	uploadRetryMax = 2 * time.Second
)

// UploadOptions describe a file to upload and how.
type UploadOptions struct {
	// Name is the file's name (no path). Required.
	Name string
	// Type is the content type the caller believes, if any; the server
	// checks it against the bytes.
	Type string
	// SHA256 is the hex SHA-256 of the file. When empty, Upload computes it
	// in a first pass over the file, unless NoChecksum. The server verifies
	// it before it stores or announces anything.
	SHA256 string
	// NoChecksum skips the first pass: the server then verifies nothing.
	NoChecksum bool
	// ChunkSize is the chunk size wanted; the server's grant decides.
	ChunkSize int
	// Base64 sends chunks as base64 in text frames instead of binary frames.
	Base64 bool
	// OnProgress, if set, is called on Upload's goroutine as the upload
	// goes: sent bytes have been handed to the connection, durable ones are
	// stored by the server.
	OnProgress func(sent, durable int64)
	// OnWait, if set, is called on Upload's goroutine when the upload
	// pauses for a reason that passes: a lost connection (it resumes after
	// the reconnection) or storage the server cannot reach (it goes on when
	// storage is back).
	OnWait func(reason error)
}

// Upload uploads size bytes read from r to room, a named room the client is
// in, and returns the file once the server has stored, verified and
// announced it to the room (as an event named "file").
//
// The file is read chunk by chunk, never whole, and never more than the
// server's window ahead of what it has stored. When the connection drops,
// Upload waits for the client to reconnect, asks the server where the
// upload stands and resumes from there; when the server reports its
// storage unavailable, it waits. Other refusals end the upload and come
// back as a *protocol.Error (type_mismatch, checksum_mismatch,
// too_large...). When ctx ends, the upload is canceled on the server.
func (c *Client) Upload(ctx context.Context, room string, r io.ReaderAt, size int64, opts UploadOptions) (File, error) {
	if opts.Name == "" {
		return File{}, errors.New("client: UploadOptions.Name is required")
	}
	if size < 0 {
		return File{}, errors.New("client: negative upload size")
	}
	if opts.SHA256 == "" && !opts.NoChecksum {
		sum, err := checksum(ctx, r, size)
		if err != nil {
			return File{}, err
		}
		opts.SHA256 = sum
	}
	u := &upload{c: c, room: room, r: r, size: size, opts: opts, wake: make(chan struct{}, 1)}
	for _, h := range []struct {
		t  string
		fn func(json.RawMessage)
	}{
		{protocol.TypeUploadProgress, u.onProgress},
		{protocol.TypeUploadDone, u.onDone},
		{protocol.TypeError, u.onError},
	} {
		defer c.hookFrames(h.t, h.fn)()
	}
	return u.run(ctx)
}

// checksum hashes size bytes of r.
func checksum(ctx context.Context, r io.ReaderAt, size int64) (string, error) {
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		if err != nil && !(errors.Is(err, io.EOF) && off == size) {
			return "", fmt.Errorf("client: reading the file: %w", shortRead(err))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func shortRead(err error) error {
	if errors.Is(err, io.EOF) {
		return errors.New("the file is shorter than its size")
	}
	return err
}

// upload is one Upload in progress. The frame hooks run on the reader
// goroutine and only record what they see; run, on the caller's goroutine,
// acts on it.
type upload struct {
	c    *Client
	room string
	r    io.ReaderAt
	size int64
	opts UploadOptions
	buf  []byte
	wake chan struct{}

	mu      sync.Mutex
	id      string
	durable int64
	done    *File
	errs    []*protocol.Error
}

// maxUploadErrors bounds the error frames kept between two looks.
const maxUploadErrors = 64

func (u *upload) signal() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

func (u *upload) onProgress(b json.RawMessage) {
	var p protocol.UploadProgress
	if json.Unmarshal(b, &p) != nil {
		return
	}
	u.mu.Lock()
	mine := p.Upload == u.id && p.Upload != ""
	if mine {
		u.durable = max(u.durable, p.Offset)
	}
	u.mu.Unlock()
	if mine {
		u.signal()
	}
}

func (u *upload) onDone(b json.RawMessage) {
	var d struct {
		Upload string `json:"upload"`
		File   File   `json:"file"`
	}
	if json.Unmarshal(b, &d) != nil {
		return
	}
	u.mu.Lock()
	mine := d.Upload == u.id && d.Upload != ""
	if mine {
		u.done = &d.File
	}
	u.mu.Unlock()
	if mine {
		u.signal()
	}
}

func (u *upload) onError(b json.RawMessage) {
	var ef protocol.ErrorFrame
	if json.Unmarshal(b, &ef) != nil {
		return
	}
	u.mu.Lock()
	mine := ef.Upload == u.id && ef.Upload != ""
	if mine {
		if len(u.errs) == maxUploadErrors {
			u.errs = u.errs[1:]
		}
		u.errs = append(u.errs, &protocol.Error{Code: ef.Code, Message: ef.Message, Upload: ef.Upload, Offset: ef.Offset})
	}
	u.mu.Unlock()
	if mine {
		u.signal()
	}
}

// errReopen asks run to open the upload again, at once: the server paused
// it (as it does when the connection it was opened on went away).
var errReopen = errors.New("client: the server keeps pausing the upload")

// maxReopens bounds how often one Upload reopens at the server's request.
const maxReopens = 16

// run drives the upload across connections.
func (u *upload) run(ctx context.Context) (File, error) {
	delay := uploadRetryMin
	reopens := 0
	var last *session
	for {
		s, err := u.c.session(ctx)
		if err != nil {
			return File{}, u.abandon(ctx, err)
		}
		if s == last {
			// Stopped, and not withdrawn yet: give it a moment.
			select {
			case <-time.After(10 * time.Millisecond):
				continue
			case <-ctx.Done():
				return File{}, u.abandon(ctx, ctx.Err())
			}
		}
		f, err := u.attempt(ctx, s)
		var perr *protocol.Error
		switch {
		case err == nil:
			if u.opts.OnProgress != nil {
				u.opts.OnProgress(u.size, u.size) // all stored, whatever was heard of it
			}
			return f, nil
		case ctx.Err() != nil:
			return File{}, u.abandon(ctx, ctx.Err())
		case errors.Is(err, ErrConnectionLost):
			last = s
			u.wait(err)
			continue
		case errors.Is(err, errReopen) && reopens < maxReopens:
			reopens++
			continue
		case errors.As(err, &perr) && (perr.Code == protocol.CodeStorageUnavailable || perr.Code == protocol.CodeRateLimited):
			u.wait(err)
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return File{}, u.abandon(ctx, ctx.Err())
			}
			delay = min(2*delay, uploadRetryMax)
			continue
		}
		return File{}, err
	}
}

func (u *upload) wait(reason error) {
	if u.opts.OnWait != nil {
		u.opts.OnWait(reason)
	}
}

// abandon cancels the upload on the server, best effort, when ctx ended,
// and returns err.
func (u *upload) abandon(ctx context.Context, err error) error {
	u.mu.Lock()
	id := u.id
	u.mu.Unlock()
	if id == "" || ctx.Err() == nil {
		return err
	}
	u.c.mu.Lock()
	s := u.c.sess
	u.c.mu.Unlock()
	if s != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), u.c.cfg.WriteTimeout)
		_, _ = s.request(cctx, protocol.Request{T: protocol.TypeUploadCancel, Upload: id}, nil)
		cancel()
	}
	return err
}

// grant is the answer to upload.open.
type grant struct {
	Upload    string `json:"upload"`
	Offset    int64  `json:"offset"`
	ChunkSize int    `json:"chunk_size"`
	Window    int64  `json:"window"`
	File      *File  `json:"file"`
}

// status is the answer to upload.status.
type status struct {
	Offset  int64  `json:"offset"`
	Durable int64  `json:"durable"`
	Status  string `json:"status"`
	Error   string `json:"error"`
	File    *File  `json:"file"`
}

// attempt opens (or resumes) the upload on s and sends it until the server
// says it is done, s drops, or something goes wrong.
func (u *upload) attempt(ctx context.Context, s *session) (File, error) {
	u.mu.Lock()
	id := u.id
	u.errs, u.done = nil, nil
	u.mu.Unlock()

	req := protocol.Request{T: protocol.TypeUploadOpen, Name: u.opts.Name, Size: u.size,
		Type: u.opts.Type, SHA256: u.opts.SHA256, ChunkSize: u.chunkWanted(s)}
	var durable int64
	if id == "" {
		req.Room = u.room
	} else {
		data, err := s.request(ctx, protocol.Request{T: protocol.TypeUploadStatus, Upload: id}, nil)
		if err != nil {
			return File{}, err
		}
		var st status
		if err := json.Unmarshal(data, &st); err != nil {
			return File{}, errDecode("upload.status", err)
		}
		switch st.Status {
		case "complete":
			if st.File != nil {
				return *st.File, nil
			}
		case "failed":
			return File{}, &protocol.Error{Code: st.Error, Message: "the upload failed on the server", Upload: id}
		}
		durable = st.Durable
		req.Resume = id
	}
	// What the server says now is stored, rather than what an earlier
	// connection heard: a restarted server may have had to start over.
	u.mu.Lock()
	u.durable = durable
	u.mu.Unlock()
	data, err := s.request(ctx, req, func(data json.RawMessage, err error) {
		// On the reader goroutine: frames about the new upload that come
		// right after the grant must find it known.
		var g grant
		if err == nil && json.Unmarshal(data, &g) == nil {
			u.mu.Lock()
			u.id = g.Upload
			u.mu.Unlock()
		}
	})
	if err != nil {
		return File{}, err
	}
	var g grant
	if err := json.Unmarshal(data, &g); err != nil {
		return File{}, errDecode("upload.open", err)
	}
	if g.File != nil {
		return *g.File, nil
	}
	if g.Upload == "" {
		return File{}, errors.New("client: the server granted an upload without an id")
	}
	return u.send(ctx, s, g)
}

// chunkWanted is the chunk size to ask for: the caller's, within what a
// frame may carry.
func (u *upload) chunkWanted(s *session) int {
	want := u.opts.ChunkSize
	if u.opts.Base64 {
		limit := maxBase64Chunk
		if mf := s.welcome.Limits.MaxFrame; mf > 0 {
			limit = min(limit, (mf-512)/4*3)
		}
		if want <= 0 || want > limit {
			want = limit
		}
	}
	return want
}

// send sends the chunks of g's upload on s, within the window, and waits
// for the server to finish.
func (u *upload) send(ctx context.Context, s *session, g grant) (File, error) {
	chunk := int64(g.ChunkSize)
	if chunk <= 0 {
		chunk = 256 << 10
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
	if int64(cap(u.buf)) < chunk {
		u.buf = make([]byte, chunk)
	}
	sent := g.Offset
	for {
		u.mu.Lock()
		done, errs, durable := u.done, u.errs, u.durable
		u.errs = nil
		u.mu.Unlock()
		if done != nil {
			return *done, nil
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
		if u.opts.OnProgress != nil {
			u.opts.OnProgress(sent, durable)
		}
		for sent < u.size {
			n := min(chunk, u.size-sent)
			if g.Window > 0 && sent+n > durable+g.Window {
				break
			}
			if err := u.sendChunk(ctx, s, g.Upload, sent, n); err != nil {
				return File{}, err
			}
			sent += n
			if u.opts.OnProgress != nil {
				u.opts.OnProgress(sent, durable)
			}
			if len(u.wake) > 0 {
				break // news from the server first
			}
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

// sendChunk reads n bytes at off and queues them as one chunk frame on s.
func (u *upload) sendChunk(ctx context.Context, s *session, id string, off, n int64) error {
	b := u.buf[:n]
	k, err := u.r.ReadAt(b, off)
	if int64(k) < n || err != nil && !errors.Is(err, io.EOF) {
		if err == nil {
			err = io.EOF
		}
		return fmt.Errorf("client: reading the file at %d: %w", off, shortRead(err))
	}
	if u.opts.Base64 {
		frame := make([]byte, 0, 128+len(id)+base64.StdEncoding.EncodedLen(len(b)))
		return s.enqueue(ctx, websocket.TextMessage, protocol.AppendTextChunk(frame, id, off, b))
	}
	return u.c.sendChunk(ctx, s.welcome.Conn, protocol.ChunkHeader{Upload: id, Offset: off}, b)
}
