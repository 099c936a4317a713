package transfer

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
)

func storageMeta() storage.Meta { return storage.Meta{ContentType: octetStream} }

func TestCancel(t *testing.T) {
	f := newFixture(t, nil)
	hold := make(chan struct{})
	f.store.set(func(s *memStore) { s.hold = hold })
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "c.bin", Size: int64(len(data))})
	// One part is being stored (held), the next is being filled.
	send(t, f.m, sink, g, "alice", data, 0, partSize+100, 1<<20)

	wantCode(t, f.m.Cancel(context.Background(), g.Upload, "bob"), CodeForbidden)
	if err := f.m.Cancel(context.Background(), g.Upload, "alice"); err != nil {
		t.Fatal(err)
	}
	close(hold)
	wantCode(t, second(f.m.Write(g.Upload, "alice", partSize+100, bytes.NewReader(data[:1]))), CodeUnknownUpload)
	wantCode(t, second(f.m.Status(context.Background(), g.Upload, "alice")), CodeUnknownUpload)
	if n := f.m.pool.inUse.Load(); n != 0 {
		t.Errorf("%d buffers in use after Cancel", n)
	}
	if n := f.store.multipartCount(); n != 0 {
		t.Errorf("%d multipart uploads left", n)
	}
	if keys := f.store.keys(".ferry/"); len(keys) != 0 {
		t.Errorf("left %v", keys)
	}
	if errs := sink.errors(g.Upload); len(errs) != 0 {
		t.Errorf("sink heard %v", errs)
	}
	wantCode(t, f.m.Cancel(context.Background(), g.Upload, "alice"), CodeUnknownUpload)
}

func TestCancelAfterRestart(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "c.bin", Size: int64(len(data))})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "a part", func() bool { return sink.durable(g.Upload) == partSize })
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	m2 := f.manager(nil)
	wantCode(t, m2.Cancel(context.Background(), g.Upload, "bob"), CodeForbidden)
	if err := m2.Cancel(context.Background(), g.Upload, "alice"); err != nil {
		t.Fatal(err)
	}
	if n := f.store.multipartCount(); n != 0 || len(f.store.keys(uploadsPrefix)) != 0 {
		t.Errorf("left %d multipart uploads and %v", n, f.store.keys(uploadsPrefix))
	}
	_, err := m2.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink)
	wantCode(t, err, CodeUnknownUpload)
}

func TestExpire(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TTL = time.Hour })
	ctx := context.Background()

	// paused: detached after a part, then forgotten.
	pausedSink := newSink()
	paused := payload(partSize + 10)
	gp := f.open(f.m, pausedSink, OpenRequest{Name: "paused.bin", Size: int64(len(paused))})
	send(t, f.m, pausedSink, gp, "alice", paused, 0, partSize, 1<<20)
	pausedSink.wait(t, "a part", func() bool { return pausedSink.durable(gp.Upload) == partSize })
	f.m.Detach(pausedSink)

	// idle: still attached, but silent.
	idleSink := newSink()
	gi := f.open(f.m, idleSink, OpenRequest{Name: "idle.bin", Size: 100})

	// active: started long ago, still sending.
	activeSink := newSink()
	active := payload(partSize + 10)
	ga := f.open(f.m, activeSink, OpenRequest{Name: "active.bin", Size: int64(len(active)), SHA256: sum(active)})
	send(t, f.m, activeSink, ga, "alice", active, 0, partSize, 1<<20)
	activeSink.wait(t, "a part", func() bool { return activeSink.durable(ga.Upload) == partSize })

	// done: finished long ago.
	doneSink := newSink()
	gd := f.open(f.m, doneSink, OpenRequest{Name: "done.bin", Size: 10})
	send(t, f.m, doneSink, gd, "alice", payload(10), 0, 10, 1<<20)
	doneFile := doneSink.waitCompleted(t, gd.Upload)
	doneSink.wait(t, "the finished upload leaves memory", func() bool {
		f.m.mu.Lock()
		defer f.m.mu.Unlock()
		return f.m.uploads[gd.Upload] == nil
	})

	// orphan: a multipart upload nobody recorded.
	orphan, err := f.store.NewMultipart(ctx, "rooms/lobby/2026/11/25/f_x/orphan.bin", storageMeta())
	if err != nil {
		t.Fatal(err)
	}

	f.clock.Add(time.Hour + time.Minute)
	send(t, f.m, activeSink, ga, "alice", active, partSize, partSize+5, 1<<20)
	recent, err := f.store.NewMultipart(ctx, "rooms/lobby/2026/11/25/f_y/recent.bin", storageMeta())
	if err != nil {
		t.Fatal(err)
	}

	if err := f.m.Expire(ctx); err != nil {
		t.Fatal(err)
	}
	wantCode(t, second(f.m.Status(ctx, gp.Upload, "alice")), CodeUnknownUpload)
	wantCode(t, second(f.m.Status(ctx, gi.Upload, "alice")), CodeUnknownUpload)
	wantCode(t, second(f.m.Status(ctx, gd.Upload, "alice")), CodeUnknownUpload)
	idleSink.waitFailed(t, gi.Upload, CodeExpired)
	if _, err := f.m.File(ctx, doneFile.ID); err != nil {
		t.Errorf("the finished file went with its manifest: %v", err)
	}
	f.store.mu.Lock()
	_, orphanLeft := f.store.uploads[orphan.ID()]
	_, recentLeft := f.store.uploads[recent.ID()]
	left := len(f.store.uploads)
	f.store.mu.Unlock()
	if orphanLeft || !recentLeft || left != 2 {
		t.Errorf("multipart uploads: orphan left %v, recent left %v, %d in all (want the recent and the active one)",
			orphanLeft, recentLeft, left)
	}

	// The active upload goes on.
	send(t, f.m, activeSink, ga, "alice", active, partSize+5, int64(len(active)), 1<<20)
	f.checkStored(activeSink.waitCompleted(t, ga.Upload), active, octetStream)
}

func TestRunSweeps(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TTL = 100 * time.Millisecond })
	sink := newSink()
	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: 100})
	f.m.Detach(sink)
	f.clock.Add(time.Second)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.m.Run(ctx) }()
	sink.wait(t, "the sweep", func() bool { return len(f.store.keys(uploadsPrefix)) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	wantCode(t, second(f.m.Status(context.Background(), g.Upload, "alice")), CodeUnknownUpload)

	// Shutdown stops Run too.
	go func() { done <- f.m.Run(context.Background()) }()
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestFileAndOpenFile(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	sink := newSink()
	data := []byte(`{"hello":"world"}`)
	g := f.open(f.m, sink, OpenRequest{Name: "a.txt", Type: "text/plain", Size: int64(len(data))})
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	file := sink.waitCompleted(t, g.Upload)

	obj, got, err := f.m.OpenFile(ctx, file.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(b, data) || got != file || obj.Info().Meta.ContentType != "text/plain" {
		t.Errorf("OpenFile = %q, %+v, %v", b, got, err)
	}
	for _, id := range []string{"f_" + g.Upload[3:], "nope", "f_../../x", g.Upload} {
		wantCode(t, second(f.m.File(ctx, id)), CodeNotFound)
		_, _, err := f.m.OpenFile(ctx, id)
		wantCode(t, err, CodeNotFound)
	}
	if err := f.store.Delete(ctx, file.Key); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.m.OpenFile(ctx, file.ID)
	wantCode(t, err, CodeNotFound)
	f.store.setDown(true)
	wantCode(t, second(f.m.File(ctx, file.ID)), CodeStorageUnavailable)
	f.store.setDown(false)
}

func TestShutdown(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 10)
	g := f.open(f.m, sink, OpenRequest{Name: "s.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	// A full part handed over before Shutdown is still stored.
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := sink.durable(g.Upload); d != partSize {
		t.Errorf("durable after a graceful Shutdown %d, want %d", d, partSize)
	}
	if err := f.m.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	wantCode(t, second(f.m.Write(g.Upload, "alice", partSize, bytes.NewReader(data[partSize:]))), CodeStorageUnavailable)
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink)
	wantCode(t, err, CodeStorageUnavailable)

	m2 := f.manager(nil)
	sink2 := newSink()
	g2 := f.open(m2, sink2, OpenRequest{Resume: g.Upload})
	send(t, m2, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sink2.waitCompleted(t, g.Upload), data, octetStream)
}
