package transfer

import (
	"context"
	"strings"
)

// Finish gives the SHA-256 of an upload opened with SHA256Later, once the
// client has sent its last byte (it may come before the bytes are stored).
// The upload completes, and is verified against it, only then. Giving a
// digest that differs from one given or declared before is CodeBadRequest;
// for an upload that completed already, a digest other than the one of
// the bytes the client sent is CodeChecksumMismatch (the stored bytes may
// differ: see File.SentSHA256).
func (m *Manager) Finish(ctx context.Context, uploadID, user, sha string) error {
	if sha == "" {
		return errorf(CodeBadRequest, "upload.finish needs the file's sha256")
	}
	sum, err := checkSHA256(sha)
	if err != nil {
		return err
	}
	if !validID(uploadID, uploadPrefix) {
		return errorf(CodeUnknownUpload, "no upload %q", uploadID)
	}
	m.mu.Lock()
	u := m.uploads[uploadID]
	m.mu.Unlock()
	if u == nil {
		return m.finishStored(ctx, uploadID, user, sum)
	}
	if u.owner.User != user {
		return errorf(CodeForbidden, "upload %s belongs to someone else", uploadID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.status == statusFailed:
		return u.failure
	case u.status == statusComplete:
		return checkStoredSum(u.file, sum)
	case m.uploads[uploadID] != u:
		return errorf(CodeUnknownUpload, "upload %s changed; give its digest again", uploadID)
	case u.sha != "" && u.sha != sum:
		return errorf(CodeBadRequest, "upload %s was given another SHA-256 before", uploadID)
	case !u.later && u.sha == "":
		// Its completion does not wait for a digest: it could not be
		// checked for certain.
		return errorf(CodeBadRequest, "upload %s was opened without sha256_later", uploadID)
	}
	u.sha = sum
	if !u.working && u.finishableLocked() {
		u.m.startWorker(u)
	}
	return nil
}

// finishStored answers Finish for an upload that is not in memory: a
// finished one is checked against its file; one still uploading must be
// resumed first, and given its digest again.
func (m *Manager) finishStored(ctx context.Context, uploadID, user, sum string) error {
	mf, err := m.ownManifest(ctx, uploadID, user)
	if err != nil {
		return err
	}
	switch mf.Status {
	case statusComplete:
		f, err := m.File(ctx, mf.FileID)
		if err != nil {
			return err
		}
		return checkStoredSum(&f, sum)
	case statusFailed:
		return mf.terminalError()
	}
	return errorf(CodeUnknownUpload, "upload %s is paused; resume it, then give its digest", uploadID)
}

func checkStoredSum(f *File, sum string) error {
	if f != nil && !strings.EqualFold(f.sentSHA256(), sum) {
		return errorf(CodeChecksumMismatch, "the SHA-256 of the file received is %s, not %s", f.sentSHA256(), sum)
	}
	return nil
}
