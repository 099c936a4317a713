package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// partSize is the smallest part size New accepts; tests use it to get
// several parts out of small files.
const partSize = storage.MinPartSize

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 17, 30, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testSink records what the manager tells a connection.
type testSink struct {
	mu        sync.Mutex
	progress  map[string][]int64
	received  map[string]int64
	completed map[string][]File
	failed    map[string][]error
	changed   chan struct{}
}

var _ Sink = (*testSink)(nil)

func newSink() *testSink {
	return &testSink{progress: map[string][]int64{}, received: map[string]int64{}, completed: map[string][]File{},
		failed: map[string][]error{}, changed: make(chan struct{}, 1)}
}

func (s *testSink) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Progress records each new durable offset once (reports of received
// bytes repeat it), and the last received offset.
func (s *testSink) Progress(id string, received, durable int64) {
	s.mu.Lock()
	if p := s.progress[id]; len(p) == 0 && durable != 0 || len(p) > 0 && p[len(p)-1] != durable {
		s.progress[id] = append(p, durable)
	}
	s.received[id] = received
	s.mu.Unlock()
	s.poke()
}

func (s *testSink) lastReceived(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received[id]
}

func (s *testSink) Completed(id string, f File) {
	s.mu.Lock()
	s.completed[id] = append(s.completed[id], f)
	s.mu.Unlock()
	s.poke()
}

func (s *testSink) Failed(id string, err error) {
	s.mu.Lock()
	s.failed[id] = append(s.failed[id], err)
	s.mu.Unlock()
	s.poke()
}

func (s *testSink) durable(id string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.progress[id]; len(p) > 0 {
		return p[len(p)-1]
	}
	return 0
}

func (s *testSink) files(id string) []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]File(nil), s.completed[id]...)
}

func (s *testSink) errors(id string) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.failed[id]...)
}

// await waits until cond holds, or gives up after a while.
func (s *testSink) await(what string, cond func() bool) error {
	// A bound on hangs, not a speed requirement: a loaded machine (make
	// test runs packages side by side, under the race detector) takes
	// seconds for what takes milliseconds alone.
	deadline := time.After(30 * time.Second)
	for !cond() {
		select {
		case <-s.changed:
		case <-time.After(5 * time.Millisecond):
		case <-deadline:
			return fmt.Errorf("timed out waiting for %s", what)
		}
	}
	return nil
}

// wait is await for the test's goroutine.
func (s *testSink) wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := s.await(what, cond); err != nil {
		t.Fatal(err)
	}
}

// waitCompleted waits for the upload's completion, failing at once if the
// upload ends otherwise.
func (s *testSink) waitCompleted(t testing.TB, id string) File {
	t.Helper()
	var failed error
	s.wait(t, "completion of "+id, func() bool {
		for _, err := range s.errors(id) {
			if Terminal(err) {
				failed = err
				return true
			}
		}
		return len(s.files(id)) > 0
	})
	if failed != nil {
		t.Fatalf("upload %s failed: %v", id, failed)
	}
	return s.files(id)[0]
}

func (s *testSink) waitFailed(t testing.TB, id, code string) error {
	t.Helper()
	var found error
	s.wait(t, code+" on "+id, func() bool {
		for _, err := range s.errors(id) {
			if ErrorCode(err) == code {
				found = err
				return true
			}
		}
		return false
	})
	return found
}

type fixture struct {
	t     testing.TB
	store *memStore
	clock *clock
	m     *Manager

	mu        sync.Mutex
	announced []File
}

// newFixture returns a manager on a fresh memStore, shut down at the end of
// the test.
func newFixture(t testing.TB, tweak func(*Config)) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: newClock()}
	f.store = newMemStore(f.clock.Now)
	f.m = f.manager(tweak)
	return f
}

// manager returns another manager on the fixture's store, as after a
// restart.
func (f *fixture) manager(tweak func(*Config)) *Manager {
	f.t.Helper()
	cfg := Config{
		Store:    f.store,
		PartSize: partSize,
		Parts:    2,
		RetryMin: time.Millisecond,
		RetryMax: 5 * time.Millisecond,
		Now:      f.clock.Now,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	m.Notify(f)
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			f.t.Errorf("Shutdown: %v", err)
		}
	})
	return m
}

// Announce implements Events: the fixture records what is announced.
func (f *fixture) Announce(_ context.Context, file File) {
	f.mu.Lock()
	f.announced = append(f.announced, file)
	f.mu.Unlock()
}

// PartStored implements Events.
func (f *fixture) PartStored(time.Duration) {}

func (f *fixture) announcedFiles() []File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]File(nil), f.announced...)
}

func owner(user string) Owner { return Owner{User: user, Name: "Name of " + user, Conn: "c_" + user} }

func (f *fixture) open(m *Manager, sink Sink, req OpenRequest) Grant {
	f.t.Helper()
	if req.Owner.User == "" {
		req.Owner = owner("alice")
	}
	if req.Room == "" {
		req.Room = "lobby"
	}
	g, err := m.Open(context.Background(), req, sink)
	if err != nil {
		f.t.Fatalf("Open(%+v): %v", req, err)
	}
	return g
}

// send writes data[from:to] in chunks of chunk bytes, waiting for progress
// whenever the window is full.
func send(t testing.TB, m *Manager, sink *testSink, g Grant, user string, data []byte, from, to int64, chunk int) {
	t.Helper()
	if err := trySend(m, sink, g, user, data, from, to, chunk); err != nil {
		t.Fatal(err)
	}
}

// trySend is send for any goroutine.
func trySend(m *Manager, sink *testSink, g Grant, user string, data []byte, from, to int64, chunk int) error {
	for off := from; off < to; {
		n := min(int64(chunk), to-off)
		got, err := m.Write(g.Upload, user, off, bytes.NewReader(data[off:off+n]))
		if ErrorCode(err) == CodeWindowExceeded {
			err := sink.await("progress", func() bool { return sink.durable(g.Upload)+g.Window >= off+n })
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("Write at %d: %w", off, err)
		}
		if got != off+n {
			return fmt.Errorf("Write at %d of %d bytes returned %d", off, n, got)
		}
		off = got
	}
	return nil
}

// payload returns n bytes that no sniffer recognizes.
func payload(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x >> 32)
	}
	if n > 0 {
		b[0] = 0 // no signature starts with NUL followed by random bytes
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func wantCode(t testing.TB, err error, code string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got error %v, want code %s", err, code)
	}
	return e
}

// checkStored checks the object of a completed upload.
func (f *fixture) checkStored(file File, want []byte, ctype string) {
	f.t.Helper()
	data, info, ok := f.store.object(file.Key)
	if !ok {
		f.t.Fatalf("no object at %s", file.Key)
	}
	if !bytes.Equal(data, want) {
		f.t.Fatalf("object %s: %d bytes differ from the %d sent", file.Key, len(data), len(want))
	}
	if info.Meta.ContentType != ctype || file.Type != ctype {
		f.t.Errorf("content type: object %q, file %q, want %q", info.Meta.ContentType, file.Type, ctype)
	}
	if file.SHA256 != sum(want) || info.Meta.User["sha256"] != sum(want) {
		f.t.Errorf("sha256: file %s, meta %s, want %s", file.SHA256, info.Meta.User["sha256"], sum(want))
	}
	if file.Size != int64(len(want)) {
		f.t.Errorf("file size %d, want %d", file.Size, len(want))
	}
	rec, err := f.m.File(context.Background(), file.ID)
	if err != nil {
		f.t.Fatalf("File(%s): %v", file.ID, err)
	}
	if rec != file {
		f.t.Errorf("File record %+v, want %+v", rec, file)
	}
}
