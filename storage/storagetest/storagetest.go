// Package storagetest is the conformance suite every storage.Store must pass.
// storage/disk runs it on every `go test`; storage/s3 runs it against a real
// MinIO. Whatever ferry's other packages learn from one store, they can count
// on from the other.
//
// Beyond the interface's own documentation, the suite pins down choices both
// stores share:
//
//   - an empty Meta.ContentType is stored as "application/octet-stream";
//   - List leaves Info.Meta empty (S3 listings carry no metadata): Stat has it;
//   - Complete with no parts stores an empty object;
//   - Complete refuses parts smaller than storage.MinPartSize but the last,
//     and the upload stays usable after that refusal;
//   - Parts, PutPart and Complete of a finished (completed or aborted)
//     upload, and ResumeMultipart with an unknown id or another key, give
//     ErrNotFound; Abort of a finished upload succeeds, like Delete of a
//     missing object.
package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// defaultContentType is what stores answer for an object stored without one.
const defaultContentType = "application/octet-stream"

// Run runs the suite. newStore is called by every subtest, sometimes twice to
// stand for a second ferry process (resuming an upload after a restart), so
// all the stores it returns must see the same objects: one folder, one
// bucket. Subtests run in parallel, each under its own key prefix, so that
// storage may hold other data. newStore should register with t.Cleanup
// whatever it needs closed.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	var raw [6]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	run := "storagetest-" + hex.EncodeToString(raw[:]) + "/"
	tests := []struct {
		name string
		fn   func(t *testing.T, e *env)
	}{
		{"PutGet", testPutGet},
		{"Overwrite", testOverwrite},
		{"Metadata", testMetadata},
		{"ValidKeys", testValidKeys},
		{"InvalidKeys", testInvalidKeys},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"List", testList},
		{"ListStop", testListStop},
		{"Seek", testSeek},
		{"PutShortReader", testPutShortReader},
		{"PutCanceled", testPutCanceled},
		{"Presign", testPresign},
		{"Multipart", testMultipart},
		{"MultipartReplacePart", testMultipartReplacePart},
		{"MultipartOutOfOrder", testMultipartOutOfOrder},
		{"MultipartResume", testMultipartResume},
		{"MultipartKeepMeta", testMultipartKeepMeta},
		{"MultipartAbort", testMultipartAbort},
		{"MultipartEmpty", testMultipartEmpty},
		{"MultipartPartTooSmall", testMultipartPartTooSmall},
		{"MultipartBadPart", testMultipartBadPart},
		{"MultipartConcurrent", testMultipartConcurrent},
		{"MultipartManyParts", testMultipartManyParts},
		{"ListMultipart", testListMultipart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			t.Cleanup(cancel)
			e := &env{
				t:        t,
				ctx:      ctx,
				store:    newStore(t),
				newStore: newStore,
				prefix:   run + tc.name + "/",
			}
			tc.fn(t, e)
		})
	}
}

// env is what a subtest works with.
type env struct {
	t        *testing.T
	ctx      context.Context
	store    storage.Store
	newStore func(t *testing.T) storage.Store
	// prefix is this subtest's own part of the key space.
	prefix string
}

// key returns name inside the subtest's prefix.
func (e *env) key(name string) string { return e.prefix + name }

func (e *env) put(key string, r io.Reader, size int64, meta storage.Meta) {
	e.t.Helper()
	if err := e.store.Put(e.ctx, key, r, size, meta); err != nil {
		e.t.Fatalf("Put(%q): %v", key, err)
	}
}

func (e *env) putString(key, content string, meta storage.Meta) {
	e.t.Helper()
	e.put(key, strings.NewReader(content), int64(len(content)), meta)
}

// checkObject checks key's content against want with Get, and its size and
// metadata with both Get and Stat.
func (e *env) checkObject(key string, want io.ReadSeeker, wantMeta storage.Meta) {
	e.t.Helper()
	size, err := want.Seek(0, io.SeekEnd)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := want.Seek(0, io.SeekStart); err != nil {
		e.t.Fatal(err)
	}
	obj, err := e.store.Get(e.ctx, key)
	if err != nil {
		e.t.Fatalf("Get(%q): %v", key, err)
	}
	defer obj.Close()
	e.checkInfo("Get", obj.Info(), key, size, wantMeta)
	if err := Compare(want, obj); err != nil {
		e.t.Errorf("Get(%q): %v", key, err)
	}
	info, err := e.store.Stat(e.ctx, key)
	if err != nil {
		e.t.Fatalf("Stat(%q): %v", key, err)
	}
	e.checkInfo("Stat", info, key, size, wantMeta)
}

func (e *env) checkInfo(op string, info storage.Info, key string, size int64, meta storage.Meta) {
	e.t.Helper()
	if info.Key != key {
		e.t.Errorf("%s(%q): Info.Key = %q", op, key, info.Key)
	}
	if info.Size != size {
		e.t.Errorf("%s(%q): Info.Size = %d, want %d", op, key, info.Size, size)
	}
	checkModified(e.t, op+"("+key+")", info.Modified)
	if !sameMeta(info.Meta, meta) {
		e.t.Errorf("%s(%q): Info.Meta = %+v, want %+v", op, key, info.Meta, normMeta(meta))
	}
}

// checkModified accepts times near now: S3 rounds to seconds, and the store
// may run on another clock than the test's.
func checkModified(t *testing.T, what string, m time.Time) {
	t.Helper()
	if d := time.Since(m); d < -time.Minute || d > 10*time.Minute {
		t.Errorf("%s: Modified = %v, not near now (%v)", what, m, time.Now())
	}
}

func (e *env) stat(key string) (storage.Info, error) {
	return e.store.Stat(e.ctx, key)
}

func (e *env) wantNotFound(what string, err error) {
	e.t.Helper()
	if !errors.Is(err, storage.ErrNotFound) {
		e.t.Errorf("%s: error %v, want storage.ErrNotFound", what, err)
	}
}

// keys lists the keys under prefix.
func (e *env) keys(prefix string) []string {
	e.t.Helper()
	var keys []string
	err := e.store.List(e.ctx, prefix, func(info storage.Info) error {
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		e.t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func normMeta(m storage.Meta) storage.Meta {
	if m.ContentType == "" {
		m.ContentType = defaultContentType
	}
	if len(m.User) == 0 {
		m.User = nil
	}
	return m
}

// sameMeta compares what a store returned with what was stored, after the
// defaults the stores apply.
func sameMeta(got, want storage.Meta) bool {
	want = normMeta(want)
	return got.ContentType == want.ContentType && maps.Equal(got.User, want.User)
}

// uploadParts stores consecutive sections of want, of the given sizes, as
// parts 1, 2, … of m.
func (e *env) uploadParts(m storage.Multipart, want *Pattern, sizes ...int64) {
	e.t.Helper()
	var off int64
	for i, size := range sizes {
		if err := m.PutPart(e.ctx, i+1, want.Section(off, size), size); err != nil {
			e.t.Fatalf("PutPart(%d, %d bytes): %v", i+1, size, err)
		}
		off += size
	}
}

func (e *env) checkParts(m storage.Multipart, want ...storage.Part) {
	e.t.Helper()
	got, err := m.Parts(e.ctx)
	if err != nil {
		e.t.Fatalf("Parts: %v", err)
	}
	if len(got) != len(want) {
		e.t.Fatalf("Parts = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			e.t.Fatalf("Parts = %v, want %v", got, want)
		}
	}
}

// sum adds sizes.
func sum(sizes ...int64) int64 {
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}
