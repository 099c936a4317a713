package disk_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/storage/storagetest"
)

// smallDisk is the size of the file systems these tests fill: room for four
// parts of storage.MinPartSize, not five.
const smallDisk = 24 << 20

const part = storage.MinPartSize

// tmpfs mounts a file system of smallDisk bytes on a new folder, for the
// test's lifetime, and returns the folder.
func tmpfs(t *testing.T) string { return testenv.Tmpfs(t, smallDisk) }

func statfsFree(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

func free(t *testing.T, s *disk.Store) int64 {
	t.Helper()
	n, err := s.Free(context.Background())
	if err != nil {
		t.Fatalf("Free: %v", err)
	}
	return n
}

func wantFull(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, storage.ErrFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%s: %v, want storage.ErrFull with the system's ENOSPC", what, err)
	}
}

// near fails unless got is within slack bytes of want.
func near(t *testing.T, what string, got, want, slack int64) {
	t.Helper()
	if got < want-slack || got > want+slack {
		t.Errorf("%s = %d, want %d ± %d", what, got, want, slack)
	}
}

// Parts that fill the disk end in storage.ErrFull, leave nothing
// half-written, and Abort gives all the room back.
func TestFullDiskParts(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs(t)
	s := newStore(t, dir)
	before := free(t, s)
	m, err := s.NewMultipart(ctx, "big", storage.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	for ; n <= smallDisk/part+1; n++ {
		if err = m.PutPart(ctx, n, storagetest.NewPattern(uint64(n), part), part); err != nil {
			break
		}
	}
	wantFull(t, fmt.Sprintf("PutPart(%d) on a full disk", n), err)
	checkEmpty(t, dir, "tmp")
	if parts, err := m.Parts(ctx); err != nil || len(parts) != n-1 {
		t.Errorf("Parts = %v, %v; want the %d that fit", parts, err, n-1)
	}
	err = s.Put(ctx, "small", storagetest.NewPattern(0, part), part, storage.Meta{})
	wantFull(t, "Put on a full disk", err)
	if _, err := s.Stat(ctx, "small"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after a failed Put = %v, want ErrNotFound", err)
	}
	checkEmpty(t, dir, "tmp")
	if err := m.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	near(t, "Free after Abort", free(t, s), before, 64<<10)
}

// Completing a file needs room for about one part more than its parts hold:
// 15 MiB complete on a 24 MiB disk, where a copy of the parts into a new
// file would need 30.
func TestCompleteInPlace(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs(t)
	s := newStore(t, dir)
	want := storagetest.NewPattern(7, 3*part)
	m := putParts(t, s, "rooms/r/film.mkv", want, part, part, part)
	info, err := m.Complete(ctx, storage.Meta{})
	if err != nil {
		t.Fatalf("Complete of %d MiB on a %d MiB disk: %v", want.Size()>>20, smallDisk>>20, err)
	}
	if info.Size != want.Size() {
		t.Errorf("Complete: size %d, want %d", info.Size, want.Size())
	}
	checkContent(t, s, "rooms/r/film.mkv", want)
	checkEmpty(t, dir, "uploads", "tmp")
}

// A Complete that runs out of room fails with storage.ErrFull, gives back
// what it wrote, and finishes once room is made.
func TestCompleteOnFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs(t)
	s := newStore(t, dir)
	want := storagetest.NewPattern(8, 3*part)
	m := putParts(t, s, "k", want, part, part, part)
	// Leave less than a part free: the first append cannot fit.
	filler := free(t, s) - part/2
	if err := s.Put(ctx, "filler", storagetest.NewPattern(9, filler), filler, storage.Meta{}); err != nil {
		t.Fatal(err)
	}
	before := free(t, s)
	_, err := m.Complete(ctx, storage.Meta{})
	wantFull(t, "Complete on a full disk", err)
	near(t, "Free after the failed Complete", free(t, s), before, 64<<10)
	if parts, err := m.Parts(ctx); err != nil || len(parts) != 3 {
		t.Errorf("Parts after the failed Complete = %v, %v; want the 3 parts", parts, err)
	}
	if err := s.Delete(ctx, "filler"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Complete(ctx, storage.Meta{}); err != nil {
		t.Fatalf("Complete once room is made: %v", err)
	}
	checkContent(t, s, "k", want)
	checkEmpty(t, dir, "uploads", "tmp")
}

// Free says what statfs says, and shrinks as the disk fills.
func TestFreeTracksStatfs(t *testing.T) {
	ctx := context.Background()
	dir := tmpfs(t)
	s := newStore(t, dir)
	got := free(t, s)
	near(t, "Free", got, statfsFree(t, dir), 0)
	if got < smallDisk-(1<<20) || got > smallDisk {
		t.Errorf("Free = %d on an empty %d-byte disk", got, smallDisk)
	}
	const size = 4 << 20
	if err := s.Put(ctx, "k", storagetest.NewPattern(1, size), size, storage.Meta{}); err != nil {
		t.Fatal(err)
	}
	after := free(t, s)
	near(t, "Free after a Put", after, statfsFree(t, dir), 0)
	near(t, "bytes taken by a Put", got-after, size, 64<<10)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Free(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Free with a canceled context = %v", err)
	}
}
