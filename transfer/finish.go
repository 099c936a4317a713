package transfer

import (
	"context"
	"strings"
)

// Digest is what upload.finish gives: the SHA-256 of an upload opened with
// SHA256Later, the CRC32C of one opened with CRC32CLater (8 hex digits),
// or both.
type Digest struct {
	SHA256, CRC32C string
}

// Finish gives the digest of an upload opened with SHA256Later or
// CRC32CLater, once the client has sent its last byte (it may come before
// the bytes are stored). The upload completes, and is verified against it,
// only then. Giving a digest that differs from one given or declared
// before is CodeBadRequest; for an upload that completed already, a digest
// other than the one of the bytes the client sent is CodeChecksumMismatch
// (the stored bytes may differ: see File.SentSHA256).
func (m *Manager) Finish(ctx context.Context, uploadID, user string, d Digest) error {
	if d.SHA256 == "" && d.CRC32C == "" {
		return errorf(CodeBadRequest, "upload.finish needs the file's sha256 or crc32c")
	}
	sum, err := checkSHA256(d.SHA256)
	if err != nil {
		return err
	}
	crc, err := checkCRC32C(d.CRC32C)
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
		return m.finishStored(ctx, uploadID, user, sum, crc)
	}
	if u.owner.User != user {
		return errorf(CodeForbidden, "upload %s belongs to someone else", uploadID)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.status == statusFailed {
		return u.failure
	}
	if err := checkCRCKind(uploadID, u.crcLater, crc); err != nil {
		return err
	}
	switch {
	case u.status == statusComplete:
		if err := checkStoredCRC(u.fileCRC, crc); err != nil || sum == "" {
			return err
		}
		return checkStoredSum(u.file, sum)
	case m.uploads[uploadID] != u:
		return errorf(CodeUnknownUpload, "upload %s changed; give its digest again", uploadID)
	case sum != "" && u.sha != "" && u.sha != sum:
		return errorf(CodeBadRequest, "upload %s was given another SHA-256 before", uploadID)
	case crc != "" && u.crc != "" && u.crc != crc:
		return errorf(CodeBadRequest, "upload %s was given another CRC32C before", uploadID)
	case u.finished && (sum != "" && u.sha == "" || crc != "" && u.crc == ""):
		// Completion may be checking the digests already.
		return errorf(CodeBadRequest, "upload %s was given its digest already; a second upload.finish may repeat it, not add to it", uploadID)
	case !u.later && u.sha == "":
		// Its completion does not wait for a digest: it could not be
		// checked for certain.
		return errorf(CodeBadRequest, "upload %s was opened without sha256_later", uploadID)
	}
	if sum != "" {
		u.sha = sum
	}
	if crc != "" {
		u.crc = crc
	}
	u.finished = true
	if !u.working && u.finishableLocked() {
		u.m.startWorker(u)
	}
	return nil
}

// finishStored answers Finish for an upload that is not in memory: a
// finished one is checked against its file; one still uploading must be
// resumed first, and given its digest again.
func (m *Manager) finishStored(ctx context.Context, uploadID, user, sum, crc string) error {
	mf, err := m.ownManifest(ctx, uploadID, user)
	if err != nil {
		return err
	}
	switch mf.Status {
	case statusComplete:
		if err := checkCRCKind(uploadID, mf.CRCLater, crc); err != nil {
			return err
		}
		if err := checkStoredCRC(mf.FileCRC, crc); err != nil || sum == "" {
			return err
		}
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

// checkCRCKind refuses a CRC32C for an upload opened without crc32c_later,
// and a finish without one for an upload opened with it.
func checkCRCKind(uploadID string, crcLater bool, crc string) error {
	switch {
	case crc != "" && !crcLater:
		return errorf(CodeBadRequest, "upload %s was opened without crc32c_later", uploadID)
	case crcLater && crc == "":
		return errorf(CodeBadRequest, "upload %s was opened with crc32c_later: upload.finish needs its crc32c", uploadID)
	}
	return nil
}

// checkStoredCRC checks crc, if given, against fileCRC, a completed
// upload's.
func checkStoredCRC(fileCRC uint32, crc string) error {
	if crc != "" && crc != crcHex(fileCRC) {
		return errorf(CodeChecksumMismatch, "the CRC32C of the file received is %s, not %s", crcHex(fileCRC), crc)
	}
	return nil
}
