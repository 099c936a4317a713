package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"
	"time"

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

// Bounds on the wait the server asks for with busy: a server that says 0
// is not hammered, one that says an hour does not stall the upload past
// what part memory takes to free up.
const (
	busyWaitMin = 100 * time.Millisecond
	busyWaitMax = 10 * time.Second
)

// UploadOptions describe a file to upload and how.
type UploadOptions struct {
	// Name is the file's name (no path). Required.
	Name string
	// Type is the content type the caller believes, if any; the server
	// checks it against the bytes.
	Type string
	// SHA256 is the hex SHA-256 of the file, if the caller knows it. When
	// empty, Upload hashes the bytes as it first sends them and gives the
	// server their checksum after the last one (see Checksum), unless
	// NoChecksum: no pass over the file delays the first byte. Either way
	// the server verifies it before it stores or announces anything, and
	// the file is known by the SHA-256 the server computes.
	SHA256 string
	// Checksum is what Upload computes while sending, without SHA256:
	// ChecksumCRC32C (the default: S3's own end-to-end check, computed at
	// memory speed) or ChecksumSHA256 (a fifth of that speed, for a
	// caller that wants the file's SHA-256 checked here too).
	Checksum string
	// NoChecksum gives the server no digest: it then verifies nothing.
	NoChecksum bool
	// ChunkSize is the chunk size wanted; the server's grant decides.
	ChunkSize int
	// Base64 sends chunks as base64 in text frames instead of binary frames.
	Base64 bool

	// Resume is the id of an upload to continue (OnOpen reported it,
	// possibly to another process): Upload asks the server where it
	// stands and sends only the rest of the file, which must be the same
	// file. When the server cannot continue it (unknown, expired, failed,
	// another user's, another size), Upload starts a new upload instead
	// and tells OnRestart why. The server knows uploads by user: a client
	// without a token of its own saves Client.Token with the id and dials
	// with it.
	Resume string
	// KeepOnCancel leaves the upload on the server when ctx ends, so that
	// an Upload with Resume may continue it later (within the server's
	// upload TTL, 24 hours by default). Without it the upload is canceled
	// and its parts removed.
	KeepOnCancel bool

	// OnOpen, if set, is called on Upload's goroutine whenever the server
	// grants the upload (it opened or resumed it, also after a
	// reconnection), with the upload's id and the offset the bytes go on
	// from. An app that wants to resume after it dies saves the id here.
	OnOpen func(uploadID string, offset int64)
	// OnRestart, if set, is called on Upload's goroutine when the upload
	// named by Resume cannot be continued and a new one starts from the
	// first byte; reason is the server's *protocol.Error.
	OnRestart func(reason error)
	// OnProgress, if set, is called on Upload's goroutine as the upload
	// goes: after each chunk handed to the connection and each report of
	// the server. It should return quickly.
	OnProgress func(Progress)
	// OnWait, if set, is called on Upload's goroutine when the upload
	// pauses for a reason that passes: a lost connection (it resumes after
	// the reconnection), storage the server cannot reach (it goes on when
	// storage is back), or a server short of memory for one more upload
	// (it opens once the server has some; reported once per wait).
	OnWait func(reason error)
}

// Progress is how far an upload got, in bytes from the start of the file.
// Durable <= Received, and all three reach Size when Upload returns the
// file.
type Progress struct {
	// Size is the file's size.
	Size int64
	// Sent is how far the bytes were handed to the connection. It goes
	// back when bytes must be sent again (after a reconnection that lost
	// some, or a refused chunk).
	Sent int64
	// Received is how far the server holds the bytes (stored, or in its
	// buffers): where a resume would go on. The server reports it every
	// 250 ms or so, so it trails Sent.
	Received int64
	// Durable is how far the bytes are stored: they outlive a restart of
	// the server.
	Durable int64
}

// Checksums an upload may be checked with (UploadOptions.Checksum).
const (
	ChecksumCRC32C = protocol.LaterCRC32C
	ChecksumSHA256 = protocol.LaterSHA256
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// useChecksum makes the upload compute a CRC32C when crc, else a SHA-256,
// from the file's first byte on.
func (u *upload) useChecksum(crc bool) {
	u.crc, u.hashed, u.sum = crc, 0, ""
	if crc {
		u.hash = crc32.New(castagnoli)
	} else {
		u.hash = sha256.New()
	}
}

// CancelUpload ends an upload kept on the server (KeepOnCancel), that its
// sender will not resume: for instance because the file changed since.
// Only its owner may. An upload that failed or is gone is no error; one
// already complete is bad_request (its file stays).
func (c *Client) CancelUpload(ctx context.Context, id string) error {
	_, err := c.request(ctx, protocol.Request{T: protocol.TypeUploadCancel, Upload: id}, nil)
	if errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownUpload}) {
		return nil
	}
	return err
}

// Upload uploads size bytes read from r to room, a named room the client is
// in, and returns the file once the server has stored, verified and
// announced it to the room (as an event named "file").
//
// The file is read chunk by chunk, never whole, and never more than the
// server's window ahead of what it has stored. When the connection drops,
// Upload waits for the client to reconnect, asks the server where the
// upload stands and resumes from there; when the server reports its
// storage unavailable or itself busy, it waits. Other refusals end the
// upload and come back as a *protocol.Error (type_mismatch,
// checksum_mismatch, storage_full, too_large...). When ctx ends, the upload
// is canceled on the server, unless opts.KeepOnCancel.
func (c *Client) Upload(ctx context.Context, room string, r io.ReaderAt, size int64, opts UploadOptions) (File, error) {
	if opts.Name == "" {
		return File{}, errors.New("client: UploadOptions.Name is required")
	}
	if size < 0 {
		return File{}, errors.New("client: negative upload size")
	}
	u := &upload{c: c, room: room, r: r, size: size, opts: opts, id: opts.Resume, wake: make(chan struct{}, 1)}
	if opts.SHA256 == "" && !opts.NoChecksum {
		switch opts.Checksum {
		case "", ChecksumCRC32C:
			u.useChecksum(true)
		case ChecksumSHA256:
			u.useChecksum(false)
		default:
			return File{}, fmt.Errorf("client: UploadOptions.Checksum %q is neither %s nor %s", opts.Checksum, ChecksumCRC32C, ChecksumSHA256)
		}
	}
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

	// Only run's goroutine touches these.
	//
	// hash holds the checksum of the file's first hashed bytes, a CRC32C
	// when crc, else a SHA-256 (nil when the caller gave the digest, or
	// wants none); sum is the checksum in hex once hashed == size.
	hash hash.Hash
	crc  bool
	// localOnly: the server waits for no digest (see follow); the one
	// computed here is checked here. finishOptional: it may wait for one,
	// or refuse it as bad_request.
	localOnly      bool
	finishOptional bool
	hashed         int64
	sum            string
	// granted: the server granted the upload once (a Resume that failed
	// after that is an error, not a reason to start over); busy: the last
	// open was refused with busy.
	granted bool
	busy    bool

	mu       sync.Mutex
	id       string
	durable  int64
	received int64
	done     *File
	errs     []*protocol.Error
}

// maxUploadErrors bounds the error frames kept between two looks.
const maxUploadErrors = 64

func (u *upload) signal() {
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// onProgress runs for every upload.progress frame, several a second per
// upload: it decodes a few fields, takes a lock and wakes the sender,
// nothing more.
func (u *upload) onProgress(b json.RawMessage) {
	var p protocol.UploadProgress
	if json.Unmarshal(b, &p) != nil {
		return
	}
	u.mu.Lock()
	mine := p.Upload == u.id && p.Upload != ""
	if mine {
		u.durable = max(u.durable, p.Offset)
		u.received = max(u.received, p.Received, u.durable)
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
	u.mu.Unlock()
	if mine {
		u.fail(errorOf(ef))
	}
}

// fail records an error of the server about the upload for run to act on.
func (u *upload) fail(e *protocol.Error) {
	u.mu.Lock()
	if len(u.errs) == maxUploadErrors {
		u.errs = u.errs[1:]
	}
	u.errs = append(u.errs, e)
	u.mu.Unlock()
	u.signal()
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
			if err := pause(ctx, 10*time.Millisecond); err != nil {
				return File{}, u.abandon(ctx, err)
			}
			continue
		}
		f, err := u.attempt(ctx, s)
		var perr *protocol.Error
		switch {
		case err == nil:
			u.report(Progress{Size: u.size, Sent: u.size, Received: u.size, Durable: u.size}) // all stored, whatever was heard of it
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
		case errors.As(err, &perr) && perr.Code == protocol.CodeBusy:
			if !u.busy {
				u.wait(err)
			}
			u.busy = true
			wait := time.Duration(perr.RetryAfter) * time.Millisecond
			if err := pause(ctx, min(max(wait, busyWaitMin), busyWaitMax)); err != nil {
				return File{}, u.abandon(ctx, err)
			}
			continue
		case errors.As(err, &perr) && (perr.Code == protocol.CodeStorageUnavailable || perr.Code == protocol.CodeRateLimited):
			u.wait(err)
			if err := pause(ctx, delay); err != nil {
				return File{}, u.abandon(ctx, err)
			}
			delay = min(2*delay, uploadRetryMax)
			continue
		}
		return File{}, err
	}
}

// pause waits d, or less if ctx ends (then it returns ctx's error).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *upload) wait(reason error) {
	if u.opts.OnWait != nil {
		u.opts.OnWait(reason)
	}
}

func (u *upload) report(p Progress) {
	if u.opts.OnProgress != nil {
		u.opts.OnProgress(p)
	}
}

// abandon cancels the upload on the server, best effort, when ctx ended
// and the caller does not keep it for later, and returns err.
func (u *upload) abandon(ctx context.Context, err error) error {
	u.mu.Lock()
	id := u.id
	u.mu.Unlock()
	if id == "" || ctx.Err() == nil || u.opts.KeepOnCancel {
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
