package transfer

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// fakeLocks is one lock table shared by the fake lockers of several
// nodes, asking the holder's manager to yield as a real Locker does.
type fakeLocks struct {
	mu      sync.Mutex
	holders map[string]*fakeLocker // by upload id
	lost    map[string]func()
}

func newFakeLocks() *fakeLocks {
	return &fakeLocks{holders: map[string]*fakeLocker{}, lost: map[string]func(){}}
}

// fakeLocker is one node's Locker on a fakeLocks.
type fakeLocker struct {
	locks *fakeLocks
	name  string
	m     *Manager // set once the manager exists, as Notify would
}

var _ Locker = (*fakeLocker)(nil)

func (l *fakeLocker) Lock(_ context.Context, id string, lost func()) (Lease, error) {
	for try := 0; ; try++ {
		l.locks.mu.Lock()
		h := l.locks.holders[id]
		if h == nil {
			l.locks.holders[id] = l
			l.locks.lost[id] = lost
			l.locks.mu.Unlock()
			return &fakeLease{locks: l.locks, id: id, holder: l}, nil
		}
		l.locks.mu.Unlock()
		if try > 0 || h == l {
			return nil, fmt.Errorf("upload %s held by %s: %w", id, h.name, ErrLocked)
		}
		h.m.Yield(id)
	}
}

// kill makes the holder of id lose its lock, as one whose renewals failed.
func (fl *fakeLocks) kill(id string) {
	fl.mu.Lock()
	lost := fl.lost[id]
	delete(fl.holders, id)
	delete(fl.lost, id)
	fl.mu.Unlock()
	lost()
}

func (fl *fakeLocks) holder(id string) string {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if h := fl.holders[id]; h != nil {
		return h.name
	}
	return ""
}

type fakeLease struct {
	locks  *fakeLocks
	id     string
	holder *fakeLocker
}

func (f *fakeLease) Release() {
	f.locks.mu.Lock()
	defer f.locks.mu.Unlock()
	if f.locks.holders[f.id] == f.holder {
		delete(f.locks.holders, f.id)
		delete(f.locks.lost, f.id)
	}
}

// twoNodes returns a fixture's manager A and a manager B on the same
// store, each with a fake locker on one lock table.
func twoNodes(t *testing.T) (*fixture, *fakeLocks, *Manager, *Manager) {
	locks := newFakeLocks()
	la, lb := &fakeLocker{locks: locks, name: "A"}, &fakeLocker{locks: locks, name: "B"}
	f := newFixture(t, func(c *Config) { c.Locker = la })
	la.m = f.m
	lb.m = f.manager(func(c *Config) { c.Locker = lb })
	return f, locks, f.m, lb.m
}

// An upload paused on node A (its connection gone) is resumed on node B
// at once: A lets go of it, B continues from what A stored, and the file
// is whole.
func TestLockedUploadMovesToAnotherNode(t *testing.T) {
	f, locks, a, b := twoNodes(t)
	sink := newSink()
	data := payload(3*partSize + 4321)
	g := f.open(a, sink, OpenRequest{Name: "moved.bin", Size: int64(len(data)), SHA256: sum(data)})
	if locks.holder(g.Upload) != "A" {
		t.Fatalf("the lock of a new upload is held by %q, want A", locks.holder(g.Upload))
	}
	send(t, a, sink, g, "alice", data, 0, partSize+999, 1<<20)
	sink.wait(t, "a part stored", func() bool { return sink.durable(g.Upload) == partSize })

	// While A's connection is attached, B is refused, and retries.
	sinkB := newSink()
	_, err := b.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sinkB)
	if e := wantCode(t, err, CodeBusy); e.RetryAfter <= 0 {
		t.Fatalf("busy without a retry time: %+v", e)
	}
	if _, err := a.Write(g.Upload, "alice", partSize+999, bytes.NewReader(data[partSize+999:partSize+1000])); err != nil {
		t.Fatalf("A's connection, still attached, cannot write after B was refused: %v", err)
	}

	a.Detach(sink)
	g2, err := b.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sinkB)
	if err != nil {
		t.Fatal(err)
	}
	if g2.Offset != partSize || locks.holder(g.Upload) != "B" {
		t.Fatalf("resumed on B at %d with the lock on %q, want %d on B", g2.Offset, locks.holder(g.Upload), partSize)
	}
	if _, err := a.Write(g.Upload, "alice", partSize+1000, bytes.NewReader(data[partSize+1000:partSize+2000])); ErrorCode(err) != CodeUnknownUpload {
		t.Fatalf("A still takes chunks of the upload B has: %v", err)
	}
	send(t, b, sinkB, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sinkB.waitCompleted(t, g.Upload), data, octetStream)
	if h := locks.holder(g.Upload); h != "" {
		t.Fatalf("the lock of a completed upload is still held by %s", h)
	}
}

// A node that loses its lock stops at once: its client hears it must
// resume, its chunks are refused, and the other node continues from what
// is stored.
func TestLockLostStopsTheUpload(t *testing.T) {
	f, locks, a, b := twoNodes(t)
	sink := newSink()
	data := payload(2*partSize + 10)
	g := f.open(a, sink, OpenRequest{Name: "lost.bin", Size: int64(len(data)), SHA256: sum(data)})
	send(t, a, sink, g, "alice", data, 0, partSize+5, 1<<20)
	sink.wait(t, "a part stored", func() bool { return sink.durable(g.Upload) == partSize })

	locks.kill(g.Upload)
	sink.waitFailed(t, g.Upload, CodeUnknownUpload)
	if _, err := a.Write(g.Upload, "alice", partSize+5, bytes.NewReader(data[partSize+5:partSize+6])); ErrorCode(err) != CodeUnknownUpload {
		t.Fatalf("a chunk after the lock was lost: %v", err)
	}
	if n := a.PartMemoryInUse(); n != 0 {
		t.Fatalf("A still holds %d bytes of part memory", n)
	}
	sinkB := newSink()
	g2, err := b.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sinkB)
	if err != nil || g2.Offset != partSize {
		t.Fatalf("resume on B: %+v, %v; want offset %d", g2, err, partSize)
	}
	send(t, b, sinkB, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
	f.checkStored(sinkB.waitCompleted(t, g.Upload), data, octetStream)
}

// Canceling an upload another node has attached is refused (busy) rather
// than pulling its parts from under it.
func TestCancelWaitsForTheLock(t *testing.T) {
	f, locks, a, b := twoNodes(t)
	sink := newSink()
	data := payload(partSize + 10)
	g := f.open(a, sink, OpenRequest{Name: "c.bin", Size: int64(len(data))})
	if err := b.Cancel(context.Background(), g.Upload, "alice"); ErrorCode(err) != CodeBusy {
		t.Fatalf("Cancel on B while A has it attached: %v, want busy", err)
	}
	a.Detach(sink)
	if err := b.Cancel(context.Background(), g.Upload, "alice"); err != nil {
		t.Fatalf("Cancel on B once A's client left: %v", err)
	}
	if h := locks.holder(g.Upload); h != "" {
		t.Fatalf("the lock of a canceled upload is held by %s", h)
	}
	if _, err := a.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink); ErrorCode(err) != CodeUnknownUpload {
		t.Fatalf("resume of the canceled upload: %v", err)
	}
}
