package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/storage"
)

// Upload states, as manifests and State.Status spell them.
const (
	statusUploading = protocol.UploadUploading
	statusComplete  = protocol.UploadComplete
	statusFailed    = protocol.UploadFailed
)

// maxRecordSize bounds what is read back of a manifest or a file record.
const maxRecordSize = 64 << 10

// manifest is an upload's durable state, kept at .ferry/uploads/<id>.json.
// It is written when the upload opens and after every stored part, so that
// another process can resume the upload from Durable.
type manifest struct {
	Version  int    `json:"v"`
	ID       string `json:"id"`
	Status   string `json:"status"`
	User     string `json:"user"`
	UserName string `json:"user_name"`
	Room     string `json:"room"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	// Declared is the client's type (canonical); Type the one stored, known
	// once the first bytes were sniffed.
	Declared string `json:"declared,omitempty"`
	Type     string `json:"type,omitempty"`
	// SHA256 is the digest the client declared, if any.
	SHA256 string `json:"sha256,omitempty"`
	// Later says the client gives the digest with upload.finish: the
	// upload completes only once it did.
	Later bool `json:"sha256_later,omitempty"`
	// CRCLater says the digest upload.finish gives is the CRC32C (Later
	// is then set too); CRC32C is the one it gave.
	CRCLater  bool   `json:"crc32c_later,omitempty"`
	CRC32C    string `json:"crc32c,omitempty"`
	FileID    string `json:"file"`
	Key       string `json:"key"`
	Multipart string `json:"multipart,omitempty"`
	PartSize  int    `json:"part_size"`
	Durable   int64  `json:"durable"`
	// Hash is the SHA-256 state after Durable bytes
	// (encoding.BinaryMarshaler), so that a resumed upload still hashes
	// the whole file.
	Hash []byte `json:"hash,omitempty"`
	// FileCRC is the CRC32C of the Durable bytes, for CRCLater.
	FileCRC uint32    `json:"crc32c_state,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Error is set when Status is failed.
	Error *manifestError `json:"error,omitempty"`
}

type manifestError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Manifest versions: 2 adds crc32c_later. An upload without it is still
// written as version 1, which servers before 2 read; one with it as 2,
// which they refuse (unknown_upload) rather than resume without its CRC.
const (
	manifestVersion      = 2
	manifestVersionNoCRC = 1
)

// manifestVersionFor is the version an upload's manifest is written as.
func manifestVersionFor(crcLater bool) int {
	if crcLater {
		return manifestVersion
	}
	return manifestVersionNoCRC
}

func putJSON(ctx context.Context, s storage.Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.Put(ctx, key, bytes.NewReader(b), int64(len(b)), storage.Meta{ContentType: "application/json"})
}

// getJSON reads a small JSON object. It returns storage.ErrNotFound
// (wrapped) when there is none.
func getJSON(ctx context.Context, s storage.Store, key string, v any) error {
	obj, err := s.Get(ctx, key)
	if err != nil {
		return err
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, maxRecordSize+1))
	if err != nil {
		return err
	}
	if len(b) > maxRecordSize {
		return fmt.Errorf("%s: record larger than %d bytes", key, maxRecordSize)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// loadManifest reads an upload's manifest. A missing one is
// CodeUnknownUpload; any other failure is CodeStorageUnavailable.
func (m *Manager) loadManifest(ctx context.Context, id string) (*manifest, error) {
	var mf manifest
	if err := getJSON(ctx, m.store, manifestKey(id), &mf); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errorf(CodeUnknownUpload, "upload %s does not exist or has expired", id)
		}
		return nil, wrapf(err, CodeStorageUnavailable, "cannot read the state of upload %s", id)
	}
	if mf.ID != id || mf.Version < manifestVersionNoCRC || mf.Version > manifestVersion {
		return nil, errorf(CodeUnknownUpload, "upload %s has an unreadable state", id)
	}
	return &mf, nil
}

func (m *Manager) saveManifest(ctx context.Context, mf *manifest) error {
	return putJSON(ctx, m.store, manifestKey(mf.ID), mf)
}

// manifestState describes a manifest for Status.
func (mf *manifest) state() State {
	st := State{Upload: mf.ID, Room: mf.Room, Name: mf.Name, Size: mf.Size,
		Offset: mf.Durable, Durable: mf.Durable, Status: mf.Status}
	if mf.Error != nil {
		st.Error = mf.Error.Code
	}
	return st
}

// terminalError is the error a failed manifest recorded.
func (mf *manifest) terminalError() error {
	if mf.Error == nil {
		return errorf(CodeCanceled, "upload %s failed", mf.ID)
	}
	return errorf(mf.Error.Code, "%s", mf.Error.Message)
}

// File returns a stored file's record; CodeNotFound when there is none.
func (m *Manager) File(ctx context.Context, id string) (File, error) {
	if !validID(id, filePrefix) {
		return File{}, errorf(CodeNotFound, "no file %q", id)
	}
	var f File
	if err := getJSON(ctx, m.store, recordKey(id), &f); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return File{}, errorf(CodeNotFound, "no file %q", id)
		}
		return File{}, wrapf(err, CodeStorageUnavailable, "cannot read file %s", id)
	}
	return f, nil
}

// OpenFile opens a stored file for reading. The caller closes the object.
func (m *Manager) OpenFile(ctx context.Context, id string) (storage.Object, File, error) {
	f, err := m.File(ctx, id)
	if err != nil {
		return nil, File{}, err
	}
	obj, err := m.store.Get(ctx, f.Key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, File{}, wrapf(err, CodeNotFound, "file %s is gone from storage", id)
		}
		return nil, File{}, wrapf(err, CodeStorageUnavailable, "cannot open file %s", id)
	}
	return obj, f, nil
}

// OpenThumb opens a stored file's thumbnail for reading; CodeNotFound when
// the file has none. The caller closes the object; its type is the
// record's ThumbType.
func (m *Manager) OpenThumb(ctx context.Context, id string) (storage.Object, File, error) {
	f, err := m.File(ctx, id)
	if err != nil {
		return nil, File{}, err
	}
	if f.ThumbKey == "" {
		return nil, File{}, errorf(CodeNotFound, "file %s has no thumbnail", id)
	}
	obj, err := m.store.Get(ctx, f.ThumbKey)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, File{}, wrapf(err, CodeNotFound, "the thumbnail of file %s is gone from storage", id)
		}
		return nil, File{}, wrapf(err, CodeStorageUnavailable, "cannot open the thumbnail of file %s", id)
	}
	return obj, f, nil
}
