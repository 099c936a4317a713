// Package disk is ferry's default storage.Store: a folder on the local disk.
//
// Layout under Config.Dir:
//
//	objects/<key>    the object's bytes, a plain file at the key's path
//	meta/<key>       its metadata as JSON (content type and user metadata)
//	uploads/<id>/    one folder per multipart upload: upload.json, the parts,
//	                 and while it completes the files of complete.go
//	tmp/             files being written; renamed into place when complete
//
// Keeping objects and bookkeeping in separate trees means no key is reserved:
// every key that is valid for storage/s3 is valid here. The one difference
// with S3 is the file system's: a key cannot be both an object and the parent
// of other objects ("a" and "a/b"); the second Put fails.
//
// Every write goes to tmp/ first and is renamed into place, so a reader sees
// either the old object or the new one, never a half-written file, and a crash
// leaves at worst a stray temporary file (removed by New once it is a day old).
//
// A write that finds the disk full, or the account's quota spent, fails with
// an error that wraps storage.ErrFull and leaves nothing half-written behind.
package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// Compile-time checks that Store provides everything ferry may ask for.
var (
	_ storage.Store           = (*Store)(nil)
	_ storage.MultipartLister = (*Store)(nil)
	_ storage.SpaceReporter   = (*Store)(nil)
)

// defaultContentType is what an object without a content type is stored with,
// the same default S3 applies, so that both stores answer alike.
const defaultContentType = "application/octet-stream"

// Permissions: uploads are private to the account running ferry.
const (
	dirPerm  = 0o700
	filePerm = 0o600
)

// staleTemp is how old a temporary file must be before New removes it. Another
// process using the same Dir may be writing younger ones.
const staleTemp = 24 * time.Hour

// Config configures a Store.
type Config struct {
	// Dir is the folder the store keeps everything in. It is created if
	// missing. Required.
	Dir string
	// Log receives problems that do not fail a call, such as a temporary file
	// that could not be removed. Nil means slog.Default().
	Log *slog.Logger
}

// Store keeps objects as files under a folder. It is safe for concurrent use,
// also by several processes sharing the folder.
type Store struct {
	root    string
	objects string
	meta    string
	uploads string
	tmp     string
	log     *slog.Logger
	// completing keeps two Completes of one upload in this process from
	// joining its parts at the same time.
	completing uploadLocks
	// testHook, set by tests only, is called between the steps of a
	// completion; an error it returns stops Complete there, as a crash would.
	testHook func(step string, part int) error
}

// New creates the folder layout under cfg.Dir and returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("storage/disk: Config.Dir is required")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("storage/disk: %w", err)
	}
	s := &Store{
		root:    dir,
		objects: filepath.Join(dir, "objects"),
		meta:    filepath.Join(dir, "meta"),
		uploads: filepath.Join(dir, "uploads"),
		tmp:     filepath.Join(dir, "tmp"),
		log:     cfg.Log,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	for _, d := range []string{s.objects, s.meta, s.uploads, s.tmp} {
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return nil, fmt.Errorf("storage/disk: %w", err)
		}
	}
	s.removeStaleTemps()
	return s, nil
}

// Put streams size bytes from r into a temporary file and renames it to key.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, meta storage.Meta) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("storage/disk: put %q: negative size %d", key, size)
	}
	tmp, err := s.writeTemp("put-", func(f *os.File) error {
		return copyExactly(ctx, f, r, size)
	})
	if err != nil {
		return fmt.Errorf("storage/disk: put %q: %w", key, noRoom(err))
	}
	// Metadata first: a crash between the two renames leaves new metadata on
	// an old object rather than an object whose metadata is missing.
	if err := s.writeMeta(key, meta); err != nil {
		s.remove(tmp)
		return fmt.Errorf("storage/disk: put %q: %w", key, noRoom(err))
	}
	if err := renameInto(tmp, s.objectPath(key)); err != nil {
		s.remove(tmp)
		return fmt.Errorf("storage/disk: put %q: %w", key, noRoom(err))
	}
	return nil
}

// Get opens key. The Object is the file itself, so seeking is free.
func (s *Store) Get(ctx context.Context, key string) (storage.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.objectPath(key))
	if err != nil {
		return nil, notFoundOr("get", key, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		f.Close()
		return nil, notFoundOr("get", key, err)
	}
	meta, err := s.readMeta(key)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("storage/disk: get %q: %w", key, err)
	}
	return &object{File: f, info: infoOf(key, fi, meta)}, nil
}

// Stat returns key's size, modification time and metadata.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := checkKey(key); err != nil {
		return storage.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return storage.Info{}, err
	}
	fi, err := os.Stat(s.objectPath(key))
	if err == nil && !fi.Mode().IsRegular() {
		err = fs.ErrNotExist
	}
	if err != nil {
		return storage.Info{}, notFoundOr("stat", key, err)
	}
	meta, err := s.readMeta(key)
	if err != nil {
		return storage.Info{}, fmt.Errorf("storage/disk: stat %q: %w", key, err)
	}
	return infoOf(key, fi, meta), nil
}

// Delete removes key and its metadata, then the folders that became empty so
// that finished rooms do not leave a tree of empty directories behind.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, root := range []string{s.objects, s.meta} {
		p := filepath.Join(root, filepath.FromSlash(key))
		fi, err := os.Lstat(p)
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return fmt.Errorf("storage/disk: delete %q: %w", key, err)
		}
		if fi.IsDir() {
			// key is only a prefix of other keys: there is no such object.
			continue
		}
		if err := os.Remove(p); err != nil && !isNotExist(err) {
			return fmt.Errorf("storage/disk: delete %q: %w", key, err)
		}
		pruneEmptyParents(root, p)
	}
	return nil
}

// List walks the objects whose key starts with prefix, in key order.
// Info.Meta is left empty, as storage/s3 does: S3 listings carry no metadata
// and ferry must not come to rely on something only one store offers. Use Stat
// for an object's metadata.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	err := s.walk(ctx, s.objects, "", prefix, fn)
	if err != nil {
		return fmt.Errorf("storage/disk: list %q: %w", prefix, err)
	}
	return nil
}

// walk lists dir, whose objects have keys starting with keyPrefix. Plain
// filepath.WalkDir does not give key order: it visits folder "a" (keys "a/…")
// before file "a.txt", yet "a.txt" < "a/b" because '.' < '/'. So entries are
// sorted with a slash appended to folder names.
func (s *Store) walk(ctx context.Context, dir, keyPrefix, prefix string, fn func(storage.Info) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if isNotExist(err) {
			// Removed by a concurrent Delete: nothing left to list.
			return nil
		}
		return err
	}
	sortName := func(e fs.DirEntry) string {
		if e.IsDir() {
			return e.Name() + "/"
		}
		return e.Name()
	}
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(sortName(a), sortName(b)) })
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		key := keyPrefix + e.Name()
		if e.IsDir() {
			sub := key + "/"
			if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
				continue
			}
			if err := s.walk(ctx, filepath.Join(dir, e.Name()), sub, prefix, fn); err != nil {
				return err
			}
			continue
		}
		if !e.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return err
		}
		if err := fn(infoOf(key, fi, storage.Meta{})); err != nil {
			return err
		}
	}
	return nil
}

// object is an opened object file.
type object struct {
	*os.File
	info storage.Info
}

var _ storage.Object = (*object)(nil)

// Info returns what the store knew about the object when it was opened.
func (o *object) Info() storage.Info { return o.info }

func (s *Store) objectPath(key string) string {
	return filepath.Join(s.objects, filepath.FromSlash(key))
}

// metaFile is the JSON form of storage.Meta kept next to each object.
type metaFile struct {
	ContentType string            `json:"content_type"`
	User        map[string]string `json:"user,omitempty"`
}

func toMetaFile(m storage.Meta) metaFile {
	ct := m.ContentType
	if ct == "" {
		ct = defaultContentType
	}
	return metaFile{ContentType: ct, User: m.User}
}

func (m metaFile) meta() storage.Meta {
	return storage.Meta{ContentType: m.ContentType, User: m.User}
}

func (s *Store) writeMeta(key string, meta storage.Meta) error {
	b, err := json.Marshal(toMetaFile(meta))
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp("meta-", func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	if err := renameInto(tmp, filepath.Join(s.meta, filepath.FromSlash(key))); err != nil {
		s.remove(tmp)
		return err
	}
	return nil
}

// readMeta returns key's metadata. A missing sidecar (an object copied into
// the folder by hand) means the defaults.
func (s *Store) readMeta(key string) (storage.Meta, error) {
	b, err := os.ReadFile(filepath.Join(s.meta, filepath.FromSlash(key)))
	if err != nil {
		if isNotExist(err) {
			return storage.Meta{ContentType: defaultContentType}, nil
		}
		return storage.Meta{}, err
	}
	var m metaFile
	if err := json.Unmarshal(b, &m); err != nil {
		return storage.Meta{}, fmt.Errorf("metadata of %q: %w", key, err)
	}
	return m.meta(), nil
}

func infoOf(key string, fi fs.FileInfo, meta storage.Meta) storage.Info {
	return storage.Info{Key: key, Size: fi.Size(), Modified: fi.ModTime().UTC(), Meta: meta}
}

// writeTemp creates a file in tmp/, lets write fill it, flushes it to disk
// and returns its path. On error the file is gone: a write that ran out of
// room gives the room back at once.
func (s *Store) writeTemp(pattern string, write func(*os.File) error) (string, error) {
	f, err := os.CreateTemp(s.tmp, pattern+"*")
	if err != nil {
		return "", err
	}
	err = write(f)
	if err == nil {
		// Sync before rename: otherwise a crash can leave the new name
		// pointing at an empty file.
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func (s *Store) remove(path string) {
	if err := os.RemoveAll(path); err != nil {
		s.log.Warn("storage/disk: cannot remove temporary file", "path", path, "err", err)
	}
}

func (s *Store) removeStaleTemps() {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		s.log.Warn("storage/disk: cannot read temporary folder", "path", s.tmp, "err", err)
		return
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < staleTemp {
			continue
		}
		s.remove(filepath.Join(s.tmp, e.Name()))
	}
}

// renameInto moves src to dst, creating dst's folder. A concurrent Delete may
// remove that folder between the two steps (pruneEmptyParents), hence the
// few retries.
func renameInto(src, dst string) error {
	var err error
	for range 5 {
		if err = os.MkdirAll(filepath.Dir(dst), dirPerm); err != nil {
			return err
		}
		if err = os.Rename(src, dst); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return err
}

// pruneEmptyParents removes p's parent folders up to root while they are
// empty. os.Remove refuses non-empty folders, which ends the climb.
func pruneEmptyParents(root, p string) {
	for dir := filepath.Dir(p); dir != root && strings.HasPrefix(dir, root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			return
		}
	}
}

// copyExactly copies exactly n bytes from r to w, until ctx ends. A reader
// that ends early is an error: storing a truncated object as if it were
// whole would be worse. A part held in memory (a *bytes.Reader of n bytes,
// as uploads hand their parts over) is written in one call: through
// io.CopyN it would go 32 KiB at a time, a copy and a system call each.
func copyExactly(ctx context.Context, w io.Writer, r io.Reader, n int64) error {
	if br, ok := r.(*bytes.Reader); ok && int64(br.Len()) == n {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := br.WriteTo(w)
		return err
	}
	got, err := io.CopyN(w, ctxReader{ctx, r}, n)
	if err == io.EOF {
		return fmt.Errorf("read %d of %d bytes: %w", got, n, io.ErrUnexpectedEOF)
	}
	return err
}

// ctxReader stops a long copy once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// isNotExist also treats ENOTDIR as missing: for key "a/b" when "a" is an
// object, "a/b" simply does not exist.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || isNotDir(err)
}

// noRoom marks err with storage.ErrFull when the file system had no room
// for a write, keeping the system's own words for the operator.
func noRoom(err error) error {
	if err != nil && isFull(err) && !errors.Is(err, storage.ErrFull) {
		return fmt.Errorf("%w: %w", storage.ErrFull, err)
	}
	return err
}

func notFoundOr(op, key string, err error) error {
	if isNotExist(err) {
		return fmt.Errorf("storage/disk: %s %q: %w", op, key, storage.ErrNotFound)
	}
	return fmt.Errorf("storage/disk: %s %q: %w", op, key, err)
}
