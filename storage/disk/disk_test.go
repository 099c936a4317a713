package disk_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/storage/storagetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newStore(t *testing.T, dir string) *disk.Store {
	t.Helper()
	s, err := disk.New(disk.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkEmpty checks that the store's folders under dir named by trees
// ("tmp", "uploads", …) hold nothing.
func checkEmpty(t *testing.T, dir string, trees ...string) {
	t.Helper()
	for _, tree := range trees {
		entries, err := os.ReadDir(filepath.Join(dir, tree))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("%s/ still holds %v", tree, entries)
		}
	}
}

// putParts starts an upload to key and stores want in it, cut in parts of
// the given sizes.
func putParts(t *testing.T, s *disk.Store, key string, want *storagetest.Pattern, sizes ...int64) storage.Multipart {
	t.Helper()
	ctx := context.Background()
	m, err := s.NewMultipart(ctx, key, storage.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for i, n := range sizes {
		if err := m.PutPart(ctx, i+1, want.Section(off, n), n); err != nil {
			t.Fatalf("PutPart(%d): %v", i+1, err)
		}
		off += n
	}
	return m
}

// checkContent checks key's bytes against want and returns its Info.
func checkContent(t *testing.T, s *disk.Store, key string, want *storagetest.Pattern) storage.Info {
	t.Helper()
	obj, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if err := storagetest.Compare(want.Section(0, want.Size()), obj); err != nil {
		t.Errorf("%s: %v", key, err)
	}
	return obj.Info()
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	storagetest.Run(t, func(t *testing.T) storage.Store { return newStore(t, dir) })
}

// Free reports the room left where the platform says, and otherwise says
// it does not know, which callers take as "unknown".
func TestFree(t *testing.T) {
	s := newStore(t, t.TempDir())
	n, err := s.Free(context.Background())
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		t.Logf("Free is not supported here: %v", err)
	case err != nil:
		t.Fatalf("Free: %v", err)
	case n <= 0:
		t.Errorf("Free = %d on the folder this test writes in", n)
	}
}

func TestNewNeedsDir(t *testing.T) {
	if _, err := disk.New(disk.Config{}); err == nil {
		t.Fatal("New without Dir succeeded")
	}
}

// The bookkeeping trees must stay out of the key space: a key named like
// them is an ordinary object.
func TestLayoutKeysAreOrdinary(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	for _, key := range []string{"meta", "tmp/x", "uploads/y", "objects/z"} {
		if err := s.Put(ctx, key, strings.NewReader(key), int64(len(key)), storage.Meta{}); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	if _, err := s.NewMultipart(ctx, "pending", storage.Meta{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.List(ctx, "", func(i storage.Info) error { got = append(got, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := "meta objects/z tmp/x uploads/y"; strings.Join(got, " ") != want {
		t.Errorf("List = %q, want %q", got, want)
	}
}

// A key cannot be an object and a folder of objects at once on a file
// system; the store must say so instead of corrupting either.
func TestObjectFolderConflict(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	if err := s.Put(ctx, "a/b", strings.NewReader("x"), 1, storage.Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "a", strings.NewReader("y"), 1, storage.Meta{}); err == nil {
		t.Error("Put(a) over folder a/ succeeded")
	}
	if err := s.Put(ctx, "a/b/c", strings.NewReader("z"), 1, storage.Meta{}); err == nil {
		t.Error("Put(a/b/c) under object a/b succeeded")
	}
	if err := s.Delete(ctx, "a"); err != nil {
		t.Errorf("Delete(a), a folder: %v", err)
	}
	if info, err := s.Stat(ctx, "a/b"); err != nil || info.Size != 1 {
		t.Errorf("Stat(a/b) = %+v, %v after the conflicts", info, err)
	}
}

func TestResumeRejectsPathIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	m, err := s.NewMultipart(ctx, "k", storage.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"../uploads/" + m.ID(), "./" + m.ID(), strings.ToUpper(m.ID()), "", "..", "/etc"} {
		if _, err := s.ResumeMultipart(ctx, "k", id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("ResumeMultipart(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

// Delete removes the folders it empties, so finished rooms leave nothing.
func TestDeletePrunesFolders(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	if err := s.Put(ctx, "rooms/lobby/2026/f/cat.jpg", strings.NewReader("x"), 1, storage.Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "rooms/lobby/2026/f/cat.jpg"); err != nil {
		t.Fatal(err)
	}
	checkEmpty(t, dir, "objects", "meta")
}

func TestStaleTempsRemoved(t *testing.T) {
	dir := t.TempDir()
	newStore(t, dir)
	old := filepath.Join(dir, "tmp", "put-old")
	young := filepath.Join(dir, "tmp", "put-young")
	for _, p := range []string{old, young} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	newStore(t, dir)
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file survived New: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("recent temporary file (maybe another process's) removed: %v", err)
	}
}

// TestMemoryBounded stores 32 MiB with Put, and 64 MiB with PutPart and Complete,
// from readers that cannot seek, and checks the store allocated far less.
func TestMemoryBounded(t *testing.T) {
	const size = 32 << 20
	const limit = 8 << 20
	ctx := context.Background()
	s := newStore(t, t.TempDir())
	stream := func() io.Reader { return struct{ io.Reader }{storagetest.NewPattern(1, size)} }
	var m storage.Multipart
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { return s.Put(ctx, "whole", stream(), size, storage.Meta{}) }},
		{"NewMultipart+PutPart", func() (err error) {
			if m, err = s.NewMultipart(ctx, "parts", storage.Meta{}); err != nil {
				return err
			}
			if err := m.PutPart(ctx, 1, stream(), size); err != nil {
				return err
			}
			return m.PutPart(ctx, 2, stream(), size)
		}},
		{"Complete", func() error { _, err := m.Complete(ctx, storage.Meta{}); return err }},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > limit {
			t.Errorf("%s allocated %d MiB, want under %d MiB", tc.name, n>>20, limit>>20)
		}
	}
	if info, err := s.Stat(ctx, "parts"); err != nil || info.Size != 2*size {
		t.Errorf("Stat(parts) = %+v, %v", info, err)
	}
}
