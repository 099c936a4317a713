package transfer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// An upload whose client stays connected but sends nothing for Idle gives
// its memory back; its next chunk is told to resume, from what is stored.
func TestIdleAttachedUploadPauses(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Idle = time.Minute })
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize+1000, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
	if n := f.m.PartMemoryInUse(); n != g.Window {
		t.Fatalf("an open upload holds %d bytes of part memory, want its window %d", n, g.Window)
	}

	f.clock.Add(61 * time.Second)
	f.m.pauseIdle()
	sink.waitFailed(t, g.Upload, CodeUnknownUpload) // told to resume
	// A part still being stored goes back once it is stored.
	sink.wait(t, "part memory given back", func() bool { return f.m.PartMemoryInUse() == 0 })
	if n := f.m.pool.inUse.Load(); n != 0 {
		t.Errorf("an idle upload holds %d buffers", n)
	}
	wantCode(t, second(f.m.Write(g.Upload, "alice", partSize+1000, bytes.NewReader(data[partSize+1000:partSize+2000]))), CodeUnknownUpload)
	g2 := f.open(f.m, sink, OpenRequest{Resume: g.Upload})
	if g2.Offset != partSize {
		t.Fatalf("resumed at %d, want %d", g2.Offset, partSize)
	}
	send(t, f.m, sink, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
}

// PartMemory is a hard cap: an upload that does not fit is refused with
// CodeBusy and a delay, and bytes kept for a client that went away are
// given up before anyone is refused.
func TestPartMemoryCap(t *testing.T) {
	const window = 2 * partSize
	f := newFixture(t, func(c *Config) { c.PartMemory, c.PartMemoryPerUser, c.MaxUploads = 2*window, 2*window, 8 })
	sink := newSink()
	data := payload(3 * partSize)
	req := OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)}
	other := newSink()
	first := f.open(f.m, sink, req)
	f.open(f.m, other, req)
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "y.bin", Size: 10}, other)
	e := wantCode(t, err, CodeBusy)
	if e.RetryAfter <= 0 {
		t.Errorf("busy without a retry delay: %+v", e)
	}

	// The first one's client goes away with bytes in a part being filled.
	send(t, f.m, sink, first, "alice", data, 0, 1000, 1<<20)
	f.m.Detach(sink)
	if n := f.m.PartMemoryInUse(); n != 2*window {
		t.Fatalf("part memory %d after detaching, want %d: the kept bytes hold their window", n, 2*window)
	}
	g := f.open(f.m, other, OpenRequest{Name: "z.bin", Size: int64(len(data)), SHA256: sum(data)})
	if n := f.m.PartMemoryInUse(); n != 2*window {
		t.Fatalf("part memory %d, want %d", n, 2*window)
	}
	send(t, f.m, other, g, "alice", data, 0, int64(len(data)), 1<<20)
	f.checkStored(other.waitCompleted(t, g.Upload), data, octetStream)

	// The reclaimed upload resumes from what was stored: nothing.
	again := f.open(f.m, other, OpenRequest{Resume: first.Upload})
	if again.Offset != 0 {
		t.Fatalf("reclaimed upload resumed at %d", again.Offset)
	}
}

// One user's uploads on many connections hold at most its share of the
// part memory; another user still gets in.
func TestPartMemoryPerUser(t *testing.T) {
	const window = 2 * partSize
	f := newFixture(t, func(c *Config) { c.PartMemory, c.PartMemoryPerUser = 4*window, 2*window })
	req := OpenRequest{Name: "x.bin", Size: 3 * partSize}
	f.open(f.m, newSink(), req)
	f.open(f.m, newSink(), req)
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "y.bin", Size: 3 * partSize}, newSink())
	wantCode(t, err, CodeBusy)
	req.Owner = owner("bob")
	f.open(f.m, newSink(), req)
	if n := f.m.PartMemoryInUse(); n != 3*window {
		t.Fatalf("part memory %d, want %d", n, 3*window)
	}
}

// With the server's defaults, a user whose upload got big parts may still
// open another beside it, a photo or a file as large: its share holds a
// window of big parts and an ordinary window. Past that, busy.
func TestPartMemoryPerUserDefault(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.PartSize, c.BigPartSize, c.BigParts = DefaultPartSize, 16<<20, 4 // as ferry serve
	})
	video := f.open(f.m, newSink(), OpenRequest{Name: "video.mp4", Size: 100 << 20})
	if n := f.m.PartMemoryInUse(); n != 64<<20 {
		t.Fatalf("part memory %d after the video, want a window of big parts (64 MiB)", n)
	}
	f.open(f.m, newSink(), OpenRequest{Name: "photo.jpg", Size: 3 << 20})
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "more.bin", Size: 100 << 20}, newSink())
	wantCode(t, err, CodeBusy)
	if err := f.m.Cancel(context.Background(), video.Upload, "alice"); err != nil {
		t.Fatal(err)
	}
	f.open(f.m, newSink(), OpenRequest{Name: "more.bin", Size: 100 << 20})
}

// With SHA256Later the client gives the digest after the last byte; the
// upload completes only then, and only if it matches.
func TestSHA256Later(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 1234)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256Later: true})
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	sink.wait(t, "all stored", func() bool { return sink.durable(g.Upload) == int64(len(data)) })
	time.Sleep(20 * time.Millisecond)
	if len(sink.files(g.Upload)) != 0 || len(f.announcedFiles()) != 0 {
		t.Fatal("completed before the digest was given")
	}
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "bob", Digest{SHA256: sum(data)}), CodeForbidden)
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: "nope"}), CodeBadRequest)
	if err := f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum(data)}); err != nil {
		t.Fatal(err)
	}
	file := sink.waitCompleted(t, g.Upload)
	stored, info, _ := f.store.object(file.Key)
	if !bytes.Equal(stored, data) || file.SHA256 != sum(data) {
		t.Fatalf("stored %d bytes with SHA-256 %s", len(stored), file.SHA256)
	}
	// Writing it into the object's metadata would copy the object.
	if got := info.Meta.User["sha256"]; got != "" {
		t.Errorf("object metadata sha256 %q: the object was copied to add it", got)
	}
	// Again, after completion: the same digest is fine, another is not.
	if err := f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum(data)}); err != nil {
		t.Errorf("Finish again: %v", err)
	}
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum([]byte("other"))}), CodeChecksumMismatch)

	// A wrong digest ends the upload, and nothing is announced.
	g2 := f.open(f.m, sink, OpenRequest{Name: "y.bin", Size: int64(len(data)), SHA256Later: true})
	if err := f.m.Finish(context.Background(), g2.Upload, "alice", Digest{SHA256: sum([]byte("other"))}); err != nil {
		t.Fatal(err) // taken before the bytes: checked at the end
	}
	send(t, f.m, sink, g2, "alice", data, 0, int64(len(data)), 1<<20)
	sink.waitFailed(t, g2.Upload, CodeChecksumMismatch)
	if n := len(f.announcedFiles()); n != 1 {
		t.Errorf("%d files announced, want 1", n)
	}
}

// A store that hangs is told within SlowStorage, each request ends at
// StorageTimeout, and the upload goes on when the store answers again.
func TestHungStorageIsTold(t *testing.T) {
	// StorageTimeout leaves room for a request on a loaded machine (the
	// race detector, other test binaries): at 300 ms, requests kept timing
	// out after the store answered again.
	f := newFixture(t, func(c *Config) { c.SlowStorage, c.StorageTimeout = 50*time.Millisecond, time.Second })
	sink := newSink()
	hold := make(chan struct{})
	f.store.set(func(s *memStore) { s.hold = hold })
	data := payload(2 * partSize)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)})
	start := time.Now()
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.waitFailed(t, g.Upload, CodeStorageUnavailable)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("heard of the hung store after %v", d)
	}
	time.Sleep(2500 * time.Millisecond) // a few requests time out
	close(hold)
	send(t, f.m, sink, g, "alice", data, partSize, int64(len(data)), 1<<20)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
}

// A full store ends the upload with CodeStorageFull and removes its parts.
func TestFullStorageEndsUpload(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	f.store.set(func(s *memStore) { s.full = true })
	data := payload(2 * partSize)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data))})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	err := sink.waitFailed(t, g.Upload, CodeStorageFull)
	if !Terminal(err) || !errors.Is(err, storage.ErrFull) {
		t.Errorf("%v: want a final error wrapping storage.ErrFull", err)
	}
	sink.wait(t, "parts removed", func() bool { return f.store.multipartCount() == 0 })
	st, err := f.m.Status(context.Background(), g.Upload, "alice")
	if err != nil || st.Status != statusFailed || st.Error != CodeStorageFull {
		t.Errorf("status %+v, %v", st, err)
	}
}

// spaceStore is a memStore that knows its free space.
type spaceStore struct {
	*memStore
	free int64
}

func (s spaceStore) Free(context.Context) (int64, error) { return s.free, nil }

// An upload that cannot fit in what a store has left is refused at open,
// counting what the uploads in progress still need.
func TestFreeSpaceCheckedAtOpen(t *testing.T) {
	store := spaceStore{newMemStore(time.Now), 3 * partSize}
	m, err := New(Config{Store: store, PartSize: partSize, MaxUploads: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	sink := newSink()
	open := func(size int64) error {
		_, err := m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "x.bin", Size: size}, sink)
		return err
	}
	wantCode(t, open(3*partSize+1), CodeStorageFull)
	if err := open(2 * partSize); err != nil {
		t.Fatal(err)
	}
	wantCode(t, open(partSize+1), CodeStorageFull)
	if err := open(partSize); err != nil {
		t.Fatal(err)
	}
}

// The sink hears of received bytes while chunks arrive, not only of
// stored parts.
func TestReceivedProgress(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize / 2)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)) * 3})
	if _, err := f.m.Write(g.Upload, "alice", 0, bytes.NewReader(data[:1000])); err != nil {
		t.Fatal(err)
	}
	if got := sink.lastReceived(g.Upload); got != 1000 {
		t.Fatalf("first report says %d received, want 1000", got)
	}
	if _, err := f.m.Write(g.Upload, "alice", 1000, bytes.NewReader(data[1000:2000])); err != nil {
		t.Fatal(err)
	}
	if got := sink.lastReceived(g.Upload); got != 1000 {
		t.Errorf("reported again within %v: %d", ProgressInterval, got)
	}
	f.clock.Add(ProgressInterval)
	if _, err := f.m.Write(g.Upload, "alice", 2000, bytes.NewReader(data[2000:3000])); err != nil {
		t.Fatal(err)
	}
	if got := sink.lastReceived(g.Upload); got != 3000 {
		t.Errorf("after %v the report says %d, want 3000", ProgressInterval, got)
	}
}

// A file smaller than a part holds no more part memory than its size, so
// that photos do not each take a window.
func TestSmallFileHoldsItsSize(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(300_000)
	g := f.open(f.m, sink, OpenRequest{Name: "photo.bin", Size: int64(len(data)), SHA256: sum(data)})
	if n := f.m.PartMemoryInUse(); n != int64(len(data)) {
		t.Fatalf("a %d-byte upload holds %d bytes of part memory", len(data), n)
	}
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 64<<10)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
	if n := f.m.pool.allocated.Load(); n != 0 {
		t.Errorf("%d part-sized buffers made for a small file", n)
	}
	sink.wait(t, "memory given back", func() bool { return f.m.PartMemoryInUse() == 0 })
}

// A failure that storage refuses to record (the disk is full) is kept in
// memory, so that Status and resumes still hear it, until it is recorded.
func TestUnrecordedFailureIsKept(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2 * partSize)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data))})
	f.store.set(func(s *memStore) { s.full, s.failPrefix = true, uploadsPrefix })
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.waitFailed(t, g.Upload, CodeStorageFull)
	for range 2 {
		if st, err := f.m.Status(context.Background(), g.Upload, "alice"); err != nil || st.Status != statusFailed || st.Error != CodeStorageFull {
			t.Fatalf("status %+v, %v", st, err)
		}
		_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink)
		wantCode(t, err, CodeStorageFull)
		// Storage comes back: the failure is recorded, and still told.
		f.store.set(func(s *memStore) { s.full, s.failPrefix = false, "" })
		f.m.recordFailures(context.Background())
	}
	f.m.mu.Lock()
	_, inMemory := f.m.uploads[g.Upload]
	f.m.mu.Unlock()
	if inMemory {
		t.Error("a recorded failure stays in memory")
	}
}

// An upload the server holds up (its window full while storage is slow) is
// not idle, however long that takes: its client is waiting for the server.
func TestIdleDoesNotPauseWhileServerHoldsUp(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Idle = time.Minute })
	sink := newSink()
	hold := make(chan struct{})
	f.store.set(func(s *memStore) { s.hold = hold })
	data := payload(3 * partSize)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, g.Window, 1<<20) // the window is full
	f.clock.Add(5 * time.Minute)
	f.m.pauseIdle()
	close(hold)
	send(t, f.m, sink, g, "alice", data, g.Window, int64(len(data)), 1<<20)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
}

// An upload opened with SHA256Later still waits for its digest after a
// restart: the manifest keeps saying so once parts are stored.
func TestSHA256LaterSurvivesRestart(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2*partSize + 77)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256Later: true})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })

	m2 := f.manager(nil)
	sink2 := newSink()
	g2, err := m2.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink2)
	if err != nil {
		t.Fatal(err)
	}
	send(t, m2, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	if err := m2.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum(data)}); err != nil {
		t.Fatalf("Finish after a restart: %v", err)
	}
	if f := sink2.waitCompleted(t, g.Upload); f.SHA256 != sum(data) {
		t.Fatalf("file %+v", f)
	}
}

// --quota: bytes a user may upload per UTC day, counted at open, given back
// on cancel, counted again the next day.
func TestQuota(t *testing.T) {
	const mb = 1 << 20
	f := newFixture(t, func(c *Config) { c.Quota = 10 * mb })
	first := f.open(f.m, newSink(), OpenRequest{Name: "a.bin", Size: 6 * mb})
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "b.bin", Size: 5 * mb}, newSink())
	wantCode(t, err, CodeOverQuota)
	f.open(f.m, newSink(), OpenRequest{Owner: owner("bob"), Name: "b.bin", Size: 5 * mb}) // bob has his own
	if err := f.m.Cancel(context.Background(), first.Upload, "alice"); err != nil {
		t.Fatal(err)
	}
	f.open(f.m, newSink(), OpenRequest{Name: "c.bin", Size: 5 * mb})
	_, err = f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "d.bin", Size: 6 * mb}, newSink())
	wantCode(t, err, CodeOverQuota)
	f.clock.Add(24 * time.Hour)
	f.open(f.m, newSink(), OpenRequest{Name: "e.bin", Size: 6 * mb})
}

// One user's uploads in memory are capped over all its connections.
func TestUploadsPerUser(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxUploadsPerUser, c.PartMemory = 3, 1<<40 })
	for i := range 3 {
		f.open(f.m, newSink(), OpenRequest{Name: fmt.Sprintf("%d.bin", i), Size: 10})
	}
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "x.bin", Size: 10}, newSink())
	wantCode(t, err, CodeTooManyUploads)
	f.open(f.m, newSink(), OpenRequest{Owner: owner("bob"), Name: "b.bin", Size: 10})
}
