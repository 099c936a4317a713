package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ferryhq/ferry/protocol"
)

// grant is the answer to upload.open; status, to upload.status.
type (
	grant  = protocol.Grant
	status = protocol.UploadState
)

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
	if id != "" {
		st, err := u.status(ctx, s, id)
		switch {
		case err == nil && st.Status == protocol.UploadComplete && st.File != nil:
			return u.verify(*st.File)
		case err == nil:
			durable = st.Durable
			req.Resume = id
		case u.startOver(err):
			id = ""
		default:
			return File{}, err
		}
	}
	if id == "" {
		req.Room = u.room
		req.SHA256Later = u.hash != nil && !u.crc
		req.CRC32CLater = u.hash != nil && u.crc
	}
	// What the server says now is stored, rather than what an earlier
	// connection heard: a restarted server may have had to start over.
	u.mu.Lock()
	u.durable, u.received = durable, durable
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
		if req.Resume != "" && u.startOver(err) {
			return File{}, errReopen
		}
		return File{}, err
	}
	var g grant
	if err := json.Unmarshal(data, &g); err != nil {
		return File{}, errDecode("upload.open", err)
	}
	if g.Upload == "" && g.File == nil {
		return File{}, errors.New("client: the server granted an upload without an id")
	}
	u.follow(g.Later, req.Resume != "")
	u.granted, u.busy = true, false
	u.mu.Lock()
	u.received = max(u.received, g.Offset)
	u.mu.Unlock()
	if u.opts.OnOpen != nil && g.Upload != "" {
		u.opts.OnOpen(g.Upload, g.Offset)
	}
	if g.File != nil {
		return u.verify(*g.File)
	}
	return u.send(ctx, s, g)
}

// status asks the server where upload id stands. An upload that failed
// there comes back as its error, and one of another size as bad_request:
// neither can go on.
func (u *upload) status(ctx context.Context, s *session, id string) (status, error) {
	data, err := s.request(ctx, protocol.Request{T: protocol.TypeUploadStatus, Upload: id}, nil)
	if err != nil {
		return status{}, err
	}
	var st status
	if err := json.Unmarshal(data, &st); err != nil {
		return status{}, errDecode("upload.status", err)
	}
	switch {
	case st.Status == protocol.UploadFailed:
		return st, &protocol.Error{Code: st.Error, Message: "the upload failed on the server", Upload: id}
	case st.Size != u.size:
		return st, &protocol.Error{Code: protocol.CodeBadRequest, Upload: id,
			Message: fmt.Sprintf("the upload is of %d bytes, the file of %d", st.Size, u.size)}
	}
	return st, nil
}

// startOver gives up the caller's Resume for a new upload when the server
// says that upload cannot go on (rather than not right now), and reports
// whether it did. An upload this Upload opened or resumed is never
// restarted: its bytes went out, and the error says what became of them.
func (u *upload) startOver(err error) bool {
	var perr *protocol.Error
	if u.granted || u.opts.Resume == "" || !errors.As(err, &perr) {
		return false
	}
	switch perr.Code {
	case protocol.CodeBusy, protocol.CodeRateLimited, protocol.CodeStorageUnavailable:
		return false
	}
	u.mu.Lock()
	u.id = ""
	u.mu.Unlock()
	if u.opts.OnRestart != nil {
		u.opts.OnRestart(err)
	}
	return true
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

// follow makes the checksum this upload computes and gives with
// upload.finish the one the server waits for, later (the grant's):
// an upload another run opened, maybe with the other checksum or without
// one, is finished as it was opened.
//
// A grant without later is of an upload that waits for no digest, or
// from a server before crc32c_later, which never says. A new upload
// opened here with crc32c_later then went to such a server, which ignored
// it: the SHA-256 is computed and checked here instead, against what the
// server reports, and no upload.finish is sent. A resumed one may be
// that server's sha256_later upload, which waits for its SHA-256: it is
// given one, and a refusal (bad_request: it waits for none) is no error.
func (u *upload) follow(later string, resumed bool) {
	var want string
	switch {
	case later == protocol.LaterCRC32C || later == protocol.LaterSHA256:
		want = later
	case u.hash == nil:
		return // nothing to give
	case !resumed && u.crc:
		want, u.localOnly = protocol.LaterSHA256, true
	case resumed:
		want, u.finishOptional = protocol.LaterSHA256, true
	default:
		return // as opened here
	}
	if u.hash == nil || (want == protocol.LaterCRC32C) != u.crc {
		// Hashed again from the start: the bytes before the grant's
		// offset are read from the file when the digest is due (hashTo).
		u.useChecksum(want == protocol.LaterCRC32C)
	}
}
