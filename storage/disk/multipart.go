package disk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// An upload lives in uploads/<id>/: upload.json (key, creation metadata, start
// time) and one file per part named by its zero-padded number, plus, once
// Complete has begun, the journal and the growing object of complete.go.
// Everything is on disk, so any process sharing Dir can resume it.
const (
	uploadFile = "upload.json"
	partSuffix = ".part"
	idBytes    = 16
)

var _ storage.Multipart = (*multipart)(nil)

// uploadRecord is the JSON form of upload.json.
type uploadRecord struct {
	Key     string    `json:"key"`
	Meta    metaFile  `json:"meta"`
	Started time.Time `json:"started"`
}

// multipart is a handle on uploads/<id>/. It holds no state beyond its names:
// two handles on the same upload, in one process or two, see the same parts.
type multipart struct {
	s   *Store
	key string
	id  string
	dir string
}

// NewMultipart starts an upload to key.
func (s *Store) NewMultipart(ctx context.Context, key string, meta storage.Meta) (storage.Multipart, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var raw [idBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("storage/disk: new multipart %q: %w", key, err)
	}
	id := hex.EncodeToString(raw[:])
	rec, err := json.Marshal(uploadRecord{Key: key, Meta: toMetaFile(meta), Started: time.Now().UTC()})
	if err != nil {
		return nil, fmt.Errorf("storage/disk: new multipart %q: %w", key, err)
	}
	// Build the folder in tmp/ and rename it into uploads/ whole, so that an
	// upload folder without its upload.json never exists.
	staging, err := os.MkdirTemp(s.tmp, "upload-")
	if err != nil {
		return nil, fmt.Errorf("storage/disk: new multipart %q: %w", key, noRoom(err))
	}
	err = writeSynced(filepath.Join(staging, uploadFile), rec)
	if err == nil {
		err = os.Rename(staging, filepath.Join(s.uploads, id))
	}
	if err != nil {
		s.remove(staging)
		return nil, fmt.Errorf("storage/disk: new multipart %q: %w", key, noRoom(err))
	}
	return &multipart{s: s, key: key, id: id, dir: filepath.Join(s.uploads, id)}, nil
}

// ResumeMultipart reopens the upload uploadID of key.
func (s *Store) ResumeMultipart(ctx context.Context, key, uploadID string) (storage.Multipart, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &multipart{s: s, key: key, id: uploadID, dir: filepath.Join(s.uploads, uploadID)}
	// The id becomes a path: anything but our own hex ids could escape.
	if !validID(uploadID) {
		return nil, m.notFound("resume")
	}
	if _, err := m.record(); err != nil {
		return nil, fmt.Errorf("storage/disk: resume multipart %q: %w", key, err)
	}
	return m, nil
}

// ListMultipart calls fn for each unfinished upload whose key starts with
// prefix, ordered by key and then start time.
func (s *Store) ListMultipart(ctx context.Context, prefix string, fn func(key, uploadID string, started time.Time) error) error {
	entries, err := os.ReadDir(s.uploads)
	if err != nil {
		return fmt.Errorf("storage/disk: list multipart: %w", err)
	}
	type found struct {
		id  string
		rec uploadRecord
	}
	var all []found
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.uploads, e.Name(), uploadFile))
		if err != nil {
			if isNotExist(err) {
				continue // completed or aborted meanwhile
			}
			return fmt.Errorf("storage/disk: list multipart: %w", err)
		}
		var rec uploadRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("storage/disk: list multipart: upload %s: %w", e.Name(), err)
		}
		if strings.HasPrefix(rec.Key, prefix) {
			all = append(all, found{e.Name(), rec})
		}
	}
	slices.SortFunc(all, func(a, b found) int {
		if c := strings.Compare(a.rec.Key, b.rec.Key); c != 0 {
			return c
		}
		if c := a.rec.Started.Compare(b.rec.Started); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	for _, f := range all {
		if err := fn(f.rec.Key, f.id, f.rec.Started); err != nil {
			return err
		}
	}
	return nil
}

// ID returns the upload id, to pass to ResumeMultipart.
func (m *multipart) ID() string { return m.id }

// PutPart streams part n into tmp/ and renames it into the upload folder,
// replacing an earlier part n atomically.
func (m *multipart) PutPart(ctx context.Context, n int, r io.Reader, size int64) error {
	if n < 1 || n > storage.MaxParts {
		return fmt.Errorf("storage/disk: put part %d of %q: part number out of range 1-%d", n, m.key, storage.MaxParts)
	}
	if size < 0 {
		return fmt.Errorf("storage/disk: put part %d of %q: negative size %d", n, m.key, size)
	}
	if _, err := m.record(); err != nil {
		return fmt.Errorf("storage/disk: put part %d: %w", n, err)
	}
	// Complete consumes the parts it listed first; a part stored now would
	// not be in the object, or would replace one half-joined.
	if _, err := m.readPlan(); !isNotExist(err) {
		return fmt.Errorf("storage/disk: put part %d of %q: upload %s is being completed", n, m.key, m.id)
	}
	tmp, err := m.s.writeTemp("part-", func(f *os.File) error {
		return copyExactly(ctx, f, r, size)
	})
	if err != nil {
		return fmt.Errorf("storage/disk: put part %d of %q: %w", n, m.key, noRoom(err))
	}
	// No MkdirAll here: if Abort removed the folder meanwhile the part must
	// not bring it back.
	if err := os.Rename(tmp, filepath.Join(m.dir, partName(n))); err != nil {
		m.s.remove(tmp)
		if isNotExist(err) {
			return m.notFound("put part")
		}
		return fmt.Errorf("storage/disk: put part %d of %q: %w", n, m.key, noRoom(err))
	}
	return nil
}

// Parts lists the stored parts by number. Once Complete has begun they are
// the parts it is joining, as they were listed: some may already be inside
// the object being assembled, but they are still the upload's.
func (m *multipart) Parts(ctx context.Context) ([]storage.Part, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch plan, err := m.readPlan(); {
	case err == nil:
		return plan, nil
	case !isNotExist(err):
		return nil, fmt.Errorf("storage/disk: parts of %q: %w", m.key, err)
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		if isNotExist(err) {
			return nil, m.notFound("parts")
		}
		return nil, fmt.Errorf("storage/disk: parts of %q: %w", m.key, err)
	}
	var parts []storage.Part
	for _, e := range entries {
		n, ok := partNumber(e.Name())
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("storage/disk: parts of %q: %w", m.key, err)
		}
		parts = append(parts, storage.Part{Number: n, Size: fi.Size()})
	}
	slices.SortFunc(parts, func(a, b storage.Part) int { return a.Number - b.Number })
	return parts, nil
}

// Abort removes the upload and its parts. An upload that is already gone is
// not an error, as with storage/s3: there is nothing left to discard.
func (m *multipart) Abort(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := m.discard(); err != nil && !isNotExist(err) {
		return fmt.Errorf("storage/disk: abort %q: %w", m.key, err)
	}
	return nil
}

// discard moves the upload folder out of uploads/ in one step, so a
// concurrent PutPart or Resume sees it gone at once, then deletes it.
func (m *multipart) discard() error {
	gone := filepath.Join(m.s.tmp, "discard-"+m.id)
	if err := os.Rename(m.dir, gone); err != nil {
		return err
	}
	return os.RemoveAll(gone)
}

// record reads upload.json and checks that the upload is for m.key: an id
// paired with another key is as unknown as a missing one.
func (m *multipart) record() (uploadRecord, error) {
	b, err := os.ReadFile(filepath.Join(m.dir, uploadFile))
	if err != nil {
		if isNotExist(err) {
			return uploadRecord{}, m.notFound("read")
		}
		return uploadRecord{}, err
	}
	var rec uploadRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return uploadRecord{}, fmt.Errorf("upload %s: %w", m.id, err)
	}
	if rec.Key != m.key {
		return uploadRecord{}, m.notFound("read")
	}
	return rec, nil
}

func (m *multipart) notFound(op string) error {
	return fmt.Errorf("storage/disk: %s: upload %q of %q: %w", op, m.id, m.key, storage.ErrNotFound)
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func partName(n int) string { return fmt.Sprintf("%05d%s", n, partSuffix) }

func partNumber(name string) (int, bool) {
	digits, ok := strings.CutSuffix(name, partSuffix)
	if !ok || len(digits) != 5 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || n > storage.MaxParts {
		return 0, false
	}
	return n, true
}

func validID(id string) bool {
	if len(id) != 2*idBytes {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
