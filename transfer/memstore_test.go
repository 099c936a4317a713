package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// memStore is an in-memory storage.Store with switches to make it fail.
type memStore struct {
	mu      sync.Mutex
	now     func() time.Time
	objects map[string]memObject
	uploads map[string]*memMultipart
	seq     int

	down         bool // every call fails
	failPutPart  int  // the next n PutPart calls fail
	failComplete int
	// halfComplete makes the next n Complete calls store the object with
	// its creation metadata (no sha256) and then fail, as an S3 Complete
	// whose metadata copy failed.
	halfComplete int
	failPuts     int // the next n Put calls fail
	// failPrefix, when set, makes every Put to a key under it fail.
	failPrefix string
	// hold, when set, blocks PutPart until it is closed or ctx ends.
	hold chan struct{}
	// full makes PutPart, and Puts under failPrefix, fail with
	// storage.ErrFull.
	full bool
	// failDeletePrefix, when set, makes every Delete of a key under it fail.
	failDeletePrefix string
	// refuse, when set and true for a Put's key and bytes, makes it fail.
	refuse func(key string, data []byte) bool
	// hang, when it returns true for an operation ("get", "put") on a key,
	// makes that call block until unhang, whatever its context: a store
	// that does not answer and does not watch deadlines either.
	hang   func(op, key string) bool
	unhang chan struct{}

	putParts  int // successful PutPart calls
	crcParts  int // successful PutPartCRC32C calls (counted in putParts too)
	completes int
	aborts    int
}

var (
	_ storage.Store            = (*memStore)(nil)
	_ storage.MultipartLister  = (*memStore)(nil)
	_ storage.Multipart        = (*memMultipart)(nil)
	_ storage.CRC32CPartPutter = (*memMultipart)(nil)
	_ storage.Object           = (*memReader)(nil)
)

var errDown = errors.New("memstore: storage is down")

type memObject struct {
	data []byte
	info storage.Info
}

type memMultipart struct {
	s       *memStore
	key, id string
	meta    storage.Meta
	started time.Time
	parts   map[int][]byte
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{now: now, objects: map[string]memObject{}, uploads: map[string]*memMultipart{}}
}

func (s *memStore) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *memStore) set(f func(s *memStore)) {
	s.mu.Lock()
	f(s)
	s.mu.Unlock()
}

func checkKey(key string) error { return storage.CheckKey(key) }

func checkMeta(meta storage.Meta) error {
	for k, v := range meta.User {
		for _, c := range []byte(k + v) {
			if c < 0x20 || c > 0x7e {
				return fmt.Errorf("memstore: metadata %q=%q is not printable ASCII", k, v)
			}
		}
	}
	return nil
}

// enter checks the down switch; s.mu is held.
func (s *memStore) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.down {
		return errDown
	}
	return nil
}

// hangs blocks while s.hang says op on key hangs.
func (s *memStore) hangs(op, key string) {
	s.mu.Lock()
	hang, unhang := s.hang, s.unhang
	s.mu.Unlock()
	if hang != nil && hang(op, key) {
		<-unhang
	}
}

func (s *memStore) Put(ctx context.Context, key string, r io.Reader, size int64, meta storage.Meta) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.hangs("put", key)
	if err := checkMeta(meta); err != nil {
		return err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if int64(len(data)) != size {
		return fmt.Errorf("memstore: Put %s: %d bytes, size %d", key, len(data), size)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return err
	}
	if s.failPuts > 0 {
		s.failPuts--
		return errDown
	}
	if s.refuse != nil && s.refuse(key, data) {
		return errDown
	}
	if s.failPrefix != "" && strings.HasPrefix(key, s.failPrefix) {
		if s.full {
			return fmt.Errorf("memstore: no room for %s: %w", key, storage.ErrFull)
		}
		return errDown
	}
	s.objects[key] = memObject{data: data, info: storage.Info{Key: key, Size: size, Modified: s.now(), Meta: meta}}
	return nil
}

func (s *memStore) Get(ctx context.Context, key string) (storage.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	s.hangs("get", key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	o, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, storage.ErrNotFound)
	}
	return &memReader{Reader: bytes.NewReader(o.data), info: o.info}, nil
}

type memReader struct {
	*bytes.Reader
	info storage.Info
}

func (r *memReader) Close() error       { return nil }
func (r *memReader) Info() storage.Info { return r.info }

func (s *memStore) Stat(ctx context.Context, key string) (storage.Info, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return storage.Info{}, err
	}
	o, ok := s.objects[key]
	if !ok {
		return storage.Info{}, fmt.Errorf("%s: %w", key, storage.ErrNotFound)
	}
	return o.info, nil
}

func (s *memStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return err
	}
	if s.failDeletePrefix != "" && strings.HasPrefix(key, s.failDeletePrefix) {
		return errDown
	}
	delete(s.objects, key)
	return nil
}

func (s *memStore) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	s.mu.Lock()
	if err := s.enter(ctx); err != nil {
		s.mu.Unlock()
		return err
	}
	var infos []storage.Info
	for k, o := range s.objects {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, o.info)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(infos, func(a, b storage.Info) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

func (s *memStore) NewMultipart(ctx context.Context, key string, meta storage.Meta) (storage.Multipart, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := checkMeta(meta); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	s.seq++
	mp := &memMultipart{s: s, key: key, id: fmt.Sprintf("mp%d", s.seq), meta: meta, started: s.now(), parts: map[int][]byte{}}
	s.uploads[mp.id] = mp
	return mp, nil
}

func (s *memStore) ResumeMultipart(ctx context.Context, key, uploadID string) (storage.Multipart, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	mp, ok := s.uploads[uploadID]
	if !ok || mp.key != key {
		return nil, fmt.Errorf("multipart %s: %w", uploadID, storage.ErrNotFound)
	}
	return mp, nil
}

func (s *memStore) ListMultipart(ctx context.Context, prefix string, fn func(key, uploadID string, started time.Time) error) error {
	s.mu.Lock()
	var mps []*memMultipart
	for _, mp := range s.uploads {
		if strings.HasPrefix(mp.key, prefix) {
			mps = append(mps, mp)
		}
	}
	s.mu.Unlock()
	for _, mp := range mps {
		if err := fn(mp.key, mp.id, mp.started); err != nil {
			return err
		}
	}
	return nil
}

func (mp *memMultipart) ID() string { return mp.id }

func (mp *memMultipart) PutPart(ctx context.Context, n int, r io.Reader, size int64) error {
	data, err := mp.read(ctx, n, r)
	if err != nil {
		return err
	}
	return mp.store(ctx, n, data, size)
}

// read reads part n, once the store's hold lets it.
func (mp *memMultipart) read(ctx context.Context, n int, r io.Reader) ([]byte, error) {
	if n < 1 || n > storage.MaxParts {
		return nil, fmt.Errorf("memstore: part number %d", n)
	}
	mp.s.mu.Lock()
	hold := mp.s.hold
	mp.s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return io.ReadAll(r)
}

// store keeps part n, once read.
func (mp *memMultipart) store(ctx context.Context, n int, data []byte, size int64) error {
	if int64(len(data)) != size {
		return fmt.Errorf("memstore: part %d: %d bytes, size %d", n, len(data), size)
	}
	s := mp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return err
	}
	if s.failPutPart > 0 {
		s.failPutPart--
		return errDown
	}
	if s.full {
		return fmt.Errorf("memstore: no room for part %d: %w", n, storage.ErrFull)
	}
	if s.uploads[mp.id] != mp {
		return fmt.Errorf("multipart %s: %w", mp.id, storage.ErrNotFound)
	}
	mp.parts[n] = data
	s.putParts++
	return nil
}

// PutPartCRC32C checks the part's bytes against crc, as S3 does.
func (mp *memMultipart) PutPartCRC32C(ctx context.Context, n int, r io.Reader, size int64, crc uint32) error {
	data, err := mp.read(ctx, n, r)
	if err != nil {
		return err
	}
	if got := crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli)); got != crc {
		return fmt.Errorf("memstore: part %d: CRC32C %08x, the bytes' is %08x", n, crc, got)
	}
	if err := mp.store(ctx, n, data, size); err != nil {
		return err
	}
	mp.s.set(func(s *memStore) { s.crcParts++ })
	return nil
}

func (mp *memMultipart) Parts(ctx context.Context) ([]storage.Part, error) {
	s := mp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	var parts []storage.Part
	for n, data := range mp.parts {
		parts = append(parts, storage.Part{Number: n, Size: int64(len(data))})
	}
	slices.SortFunc(parts, func(a, b storage.Part) int { return a.Number - b.Number })
	return parts, nil
}

func (mp *memMultipart) Complete(ctx context.Context, meta storage.Meta) (storage.Info, error) {
	if err := checkMeta(meta); err != nil {
		return storage.Info{}, err
	}
	s := mp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return storage.Info{}, err
	}
	if s.failComplete > 0 {
		s.failComplete--
		return storage.Info{}, errDown
	}
	if s.uploads[mp.id] != mp {
		return storage.Info{}, fmt.Errorf("multipart %s: %w", mp.id, storage.ErrNotFound)
	}
	var data []byte
	for n := 1; n <= len(mp.parts); n++ {
		p, ok := mp.parts[n]
		if !ok {
			return storage.Info{}, fmt.Errorf("memstore: part %d missing of %d", n, len(mp.parts))
		}
		if n < len(mp.parts) && len(p) < storage.MinPartSize {
			return storage.Info{}, fmt.Errorf("memstore: part %d is %d bytes, below the minimum", n, len(p))
		}
		data = append(data, p...)
	}
	info := storage.Info{Key: mp.key, Size: int64(len(data)), Modified: s.now(), Meta: meta}
	if s.halfComplete > 0 {
		s.halfComplete--
		info.Meta = mp.meta
		s.objects[mp.key] = memObject{data: data, info: info}
		delete(s.uploads, mp.id)
		return storage.Info{}, errDown
	}
	s.objects[mp.key] = memObject{data: data, info: info}
	delete(s.uploads, mp.id)
	s.completes++
	return info, nil
}

func (mp *memMultipart) Abort(ctx context.Context) error {
	s := mp.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.enter(ctx); err != nil {
		return err
	}
	if s.uploads[mp.id] != mp {
		return fmt.Errorf("multipart %s: %w", mp.id, storage.ErrNotFound)
	}
	delete(s.uploads, mp.id)
	s.aborts++
	return nil
}

// object returns a stored object's bytes and info.
func (s *memStore) object(key string) ([]byte, storage.Info, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	return o.data, o.info, ok
}

// keys lists the stored objects under prefix.
func (s *memStore) keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (s *memStore) multipartCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.uploads)
}
