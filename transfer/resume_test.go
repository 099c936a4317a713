package transfer

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func TestStorageFailuresAreRetried(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *memStore)
	}{
		{"PutPart fails 3 times", func(s *memStore) { s.failPutPart = 3 }},
		{"manifest writes fail", func(s *memStore) { s.failPuts = 4 }},
		{"Complete fails twice", func(s *memStore) { s.failComplete = 2 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			sink := newSink()
			data := payload(2*partSize + 777)
			g := f.open(f.m, sink, OpenRequest{Name: "r.bin", Size: int64(len(data)), SHA256: sum(data)})
			f.store.set(tt.setup)
			send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
			file := sink.waitCompleted(t, g.Upload)
			f.checkStored(file, data, octetStream)
			errs := sink.errors(g.Upload)
			if len(errs) != 1 || ErrorCode(errs[0]) != CodeStorageUnavailable || Terminal(errs[0]) {
				t.Errorf("sink heard %v, want one storage_unavailable", errs)
			}
			if !errors.Is(errs[0], errDown) {
				t.Errorf("%v does not wrap the storage error", errs[0])
			}
		})
	}
}

func TestStorageDownStopsTheClientThenContinues(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(4*partSize + 5)
	g := f.open(f.m, sink, OpenRequest{Name: "d.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })

	f.store.setDown(true)
	off := int64(partSize)
	for {
		n, err := f.m.Write(g.Upload, "alice", off, bytes.NewReader(data[off:off+1<<20]))
		if err != nil {
			e := wantCode(t, err, CodeWindowExceeded)
			if e.Offset != 3*partSize || off != 3*partSize {
				t.Fatalf("window exceeded at %d (error offset %d), want %d", off, e.Offset, 3*partSize)
			}
			break
		}
		off = n
	}
	sink.waitFailed(t, g.Upload, CodeStorageUnavailable)
	st, err := f.m.Status(context.Background(), g.Upload, "alice")
	if err != nil || st.Durable != partSize || st.Offset != 3*partSize || st.Status != statusUploading {
		t.Fatalf("Status while down = %+v, %v", st, err)
	}

	f.store.setDown(false)
	send(t, f.m, sink, g, "alice", data, off, int64(len(data)), 1<<20)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
}

func TestResumeAfterRestart(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(3*partSize + 999)
	g := f.open(f.m, sink, OpenRequest{Name: "big.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, 2*partSize+1234, 1<<20)
	sink.wait(t, "two parts", func() bool { return sink.durable(g.Upload) == 2*partSize })
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "x", Name: "y", Size: 1}, sink); ErrorCode(err) != CodeStorageUnavailable {
		t.Errorf("Open after Shutdown: %v", err)
	}

	m2 := f.manager(nil)
	st, err := m2.Status(context.Background(), g.Upload, "alice")
	if err != nil || st.Offset != 2*partSize || st.Status != statusUploading {
		t.Fatalf("Status after restart = %+v, %v", st, err)
	}
	_, err = m2.Open(context.Background(), OpenRequest{Owner: owner("bob"), Resume: g.Upload}, newSink())
	wantCode(t, err, CodeForbidden)
	_, err = m2.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload, Size: 5}, newSink())
	wantCode(t, err, CodeBadRequest)

	sink2 := newSink()
	g2 := f.open(m2, sink2, OpenRequest{Resume: g.Upload, ChunkSize: 512 << 10})
	if g2.Upload != g.Upload || g2.Offset != 2*partSize || g2.Size != int64(len(data)) || g2.ChunkSize != 512<<10 {
		t.Fatalf("resume grant %+v", g2)
	}
	send(t, m2, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	// The declared SHA-256 only matches if the hash state survived.
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}

func TestResumeWithPartStoredButNotRecorded(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "c.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
	// The second part is stored, but its manifest update never happens.
	f.store.set(func(s *memStore) { s.failPrefix = uploadsPrefix })
	send(t, f.m, sink, g, "alice", data, partSize, 2*partSize, 1<<20)
	sink.wait(t, "the second part stored", func() bool {
		f.store.mu.Lock()
		defer f.store.mu.Unlock()
		return f.store.putParts == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.m.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with storage failing: %v", err)
	}
	f.store.set(func(s *memStore) { s.failPrefix = "" })

	m2 := f.manager(nil)
	sink2 := newSink()
	g2 := f.open(m2, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != partSize {
		t.Fatalf("resumed at %d, want %d", g2.Offset, partSize)
	}
	send(t, m2, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}

func TestResumeStartsOverWhenPartsAreMissing(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "p.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.store.set(func(s *memStore) {
		for _, mp := range s.uploads {
			delete(mp.parts, 1)
		}
	})
	m2 := f.manager(nil)
	sink2 := newSink()
	g2 := f.open(m2, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != 0 {
		t.Fatalf("resumed at %d, want 0", g2.Offset)
	}
	send(t, m2, sink2, g2, "alice", data, 0, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}

func TestResumeCompletedUpload(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 3)
	g := f.open(f.m, sink, OpenRequest{Name: "done.bin", Size: int64(len(data))})
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	file := sink.waitCompleted(t, g.Upload)

	for name, m := range map[string]*Manager{"same manager": f.m, "after restart": f.manager(nil)} {
		sink2 := newSink()
		g2 := f.open(m, sink2, OpenRequest{Resume: g.Upload})
		if g2.Offset != int64(len(data)) || g2.File == nil || *g2.File != file {
			t.Errorf("%s: grant %+v", name, g2)
		}
		if got := sink2.files(g.Upload); len(got) != 1 || got[0] != file {
			t.Errorf("%s: sink heard %v", name, got)
		}
		_, err := m.Open(context.Background(), OpenRequest{Owner: owner("bob"), Resume: g.Upload}, sink2)
		wantCode(t, err, CodeForbidden)
		wantCode(t, m.Cancel(context.Background(), g.Upload, "alice"), CodeBadRequest)
	}
	if n := len(f.announcedFiles()); n != 1 {
		t.Errorf("announced %d times", n)
	}
}

func TestResumeAfterCrashDuringCompletion(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 3)
	g := f.open(f.m, sink, OpenRequest{Name: "late.bin", Size: int64(len(data)), SHA256: sum(data)})
	// The object completes but its record cannot be written.
	f.store.set(func(s *memStore) { s.failPrefix = filesPrefix })
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	sink.wait(t, "the object", func() bool {
		f.store.mu.Lock()
		defer f.store.mu.Unlock()
		return f.store.completes == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_ = f.m.Shutdown(ctx)
	f.store.set(func(s *memStore) { s.failPrefix = "" })
	if len(f.announcedFiles()) != 0 || len(sink.files(g.Upload)) != 0 {
		t.Fatal("announced a file without its record")
	}

	m2 := f.manager(nil)
	sink2 := newSink()
	g2 := f.open(m2, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != int64(len(data)) {
		t.Fatalf("resumed at %d", g2.Offset)
	}
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
	if n := len(f.announcedFiles()); n != 1 {
		t.Errorf("announced %d times", n)
	}
}

// A dropped connection loses nothing the server received whole: the part
// being filled waits for the client, which continues right after the last
// byte received.
func TestDetachAndResume(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize+1000, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })

	f.m.Detach(sink)
	wantCode(t, second(f.m.Write(g.Upload, "alice", partSize+1000, bytes.NewReader(data[:10]))), CodeUnknownUpload)
	st, err := f.m.Status(context.Background(), g.Upload, "alice")
	if err != nil || st.Offset != partSize+1000 || st.Durable != partSize {
		t.Fatalf("Status after Detach = %+v, %v; want offset %d, durable %d", st, err, partSize+1000, partSize)
	}

	sink2 := newSink()
	g2 := f.open(f.m, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != partSize+1000 {
		t.Fatalf("resumed at %d, want %d: received bytes were thrown away", g2.Offset, partSize+1000)
	}
	// Resuming again on the same connection is harmless.
	if g3 := f.open(f.m, sink2, OpenRequest{Resume: g.Upload}); g3.Offset != partSize+1000 {
		t.Fatalf("second resume at %d", g3.Offset)
	}
	send(t, f.m, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
	if len(sink.files(g.Upload)) != 0 {
		t.Error("the detached sink heard of the completion")
	}
}

// The bytes kept for a client that went away last Idle, then the upload
// falls back to what is stored and gives its memory back.
func TestDetachedBytesLastIdle(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Idle = time.Minute })
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize+1000, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
	f.m.Detach(sink)

	f.clock.Add(30 * time.Second)
	f.m.pauseIdle()
	if st, _ := f.m.Status(context.Background(), g.Upload, "alice"); st.Offset != partSize+1000 {
		t.Fatalf("offset %d after half the idle time, want %d", st.Offset, partSize+1000)
	}
	f.clock.Add(31 * time.Second)
	f.m.pauseIdle()
	sink.wait(t, "part memory given back", func() bool { return f.m.PartMemoryInUse() == 0 })
	if n := f.m.pool.inUse.Load(); n != 0 {
		t.Errorf("an idle paused upload holds %d buffers", n)
	}
	sink2 := newSink()
	g2 := f.open(f.m, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != partSize {
		t.Fatalf("resumed at %d, want the durable offset %d", g2.Offset, partSize)
	}
	send(t, f.m, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}

func TestDetachWhileStorageIsDown(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), SHA256: sum(data)})
	f.store.setDown(true)
	send(t, f.m, sink, g, "alice", data, 0, partSize+5, 1<<20)
	sink.waitFailed(t, g.Upload, CodeStorageUnavailable)
	f.m.Detach(sink)
	// The worker gives up and the upload lets go of its buffers.
	sink.wait(t, "buffers released", func() bool { return f.m.pool.inUse.Load() == 0 })
	f.store.setDown(false)

	sink2 := newSink()
	g2 := f.open(f.m, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != 0 {
		t.Fatalf("resumed at %d, want 0", g2.Offset)
	}
	send(t, f.m, sink2, g2, "alice", data, 0, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}

func TestUploadsPerConnection(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxUploads = 2 })
	sink := newSink()
	g1 := f.open(f.m, sink, OpenRequest{Name: "1", Size: 10})
	f.open(f.m, sink, OpenRequest{Name: "2", Size: 10})
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "r", Name: "3", Size: 10}, sink)
	wantCode(t, err, CodeTooManyUploads)
	f.open(f.m, newSink(), OpenRequest{Name: "other connection", Size: 10})
	// An empty file takes no slot.
	f.open(f.m, sink, OpenRequest{Name: "empty", Size: 0})
	send(t, f.m, sink, g1, "alice", payload(10), 0, 10, 1<<20)
	sink.waitCompleted(t, g1.Upload)
	f.open(f.m, sink, OpenRequest{Name: "3", Size: 10})
}

func TestChecksumMismatch(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "bad.bin", Size: int64(len(data)), SHA256: sum(data[1:])})
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	err := sink.waitFailed(t, g.Upload, CodeChecksumMismatch)
	if !Terminal(err) || !errors.Is(err, ErrChecksumMismatch) {
		t.Errorf("%v is not terminal", err)
	}
	sink.wait(t, "cleanup", func() bool {
		st, err := f.m.Status(context.Background(), g.Upload, "alice")
		return err == nil && st.Status == statusFailed && st.Error == CodeChecksumMismatch && f.store.multipartCount() == 0
	})
	if keys := f.store.keys("rooms/"); len(keys) != 0 || len(f.announcedFiles()) != 0 || len(sink.files(g.Upload)) != 0 {
		t.Errorf("stored %v, announced %v", keys, f.announcedFiles())
	}
	_, err = f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink)
	wantCode(t, err, CodeChecksumMismatch)

	_, err = f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "r", Name: "e", SHA256: sum([]byte("x"))}, sink)
	wantCode(t, err, CodeChecksumMismatch)
}

func TestResumeAfterPartSizeChange(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "p.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	m2 := f.manager(func(c *Config) { c.PartSize = partSize + 1<<20 })
	sink2 := newSink()
	g2 := f.open(m2, sink2, OpenRequest{Resume: g.Upload})
	if g2.Offset != 0 || g2.Window != 2*(partSize+1<<20) {
		t.Fatalf("grant %+v, want offset 0 and the new window", g2)
	}
	if n := f.store.multipartCount(); n != 0 {
		t.Errorf("the old multipart upload is still there (%d)", n)
	}
	send(t, m2, sink2, g2, "alice", data, 0, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}

// interruptible is a sink whose chunk reads can be cut, like a connection.
type interruptible struct {
	*testSink
	cut chan struct{}
}

func (s *interruptible) Interrupt(string) { close(s.cut) }

// stalled blocks like a dead link until the sink is interrupted.
type stalled struct{ cut chan struct{} }

func (r stalled) Read([]byte) (int, error) {
	<-r.cut
	return 0, errors.New("read interrupted")
}

// An upload resumed by another sink while the old one is stuck in a chunk
// interrupts the old one, and the new sink's chunk goes on at once.
func TestResumeInterruptsStalledChunk(t *testing.T) {
	f := newFixture(t, nil)
	old := &interruptible{testSink: newSink(), cut: make(chan struct{})}
	data := payload(partSize + 100)
	g := f.open(f.m, old, OpenRequest{Name: "d.bin", Size: int64(len(data))})
	stuck := make(chan error, 1)
	go func() {
		_, err := f.m.Write(g.Upload, "alice", 0, stalled{old.cut})
		stuck <- err
	}()
	old.wait(t, "the stalled write holds the upload", func() bool {
		f.m.mu.Lock()
		u := f.m.uploads[g.Upload]
		f.m.mu.Unlock()
		u.mu.Lock()
		defer u.mu.Unlock()
		return u.writing
	})
	sink := newSink()
	g2 := f.open(f.m, sink, OpenRequest{Resume: g.Upload})
	if g2.Offset != 0 {
		t.Fatalf("resumed at %d", g2.Offset)
	}
	send(t, f.m, sink, g2, "alice", data, 0, int64(len(data)), 64<<10)
	if err := <-stuck; err == nil {
		t.Fatal("the interrupted write succeeded")
	}
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
}

// An S3 Complete that joined the parts but failed before setting the final
// metadata leaves the object with its creation metadata: the retry finds
// the upload gone and must keep the object, not fail the upload and delete
// it.
func TestHalfDoneCompleteKeepsTheObject(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 123)
	g := f.open(f.m, sink, OpenRequest{Name: "h.bin", Size: int64(len(data))}) // no SHA-256 declared
	f.store.set(func(s *memStore) { s.halfComplete = 1 })
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	file := sink.waitCompleted(t, g.Upload)
	stored, _, ok := f.store.object(file.Key)
	if !ok || !bytes.Equal(stored, data) {
		t.Fatalf("object at %s: present %v, %d bytes", file.Key, ok, len(stored))
	}
	if file.SHA256 != sum(data) {
		t.Fatalf("file sha256 %s, want %s", file.SHA256, sum(data))
	}
}
