package jetstream_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/internal/testenv"
	roomsjs "github.com/ferryhq/ferry/rooms/jetstream"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
	"github.com/ferryhq/ferry/transfer/jetstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testenv.Shared(m))
}

const partSize = storage.MinPartSize

// natsURL starts an embedded NATS server that nodes reach over TCP.
func natsURL(t *testing.T) string {
	t.Helper()
	emb, err := roomsjs.StartEmbeddedConfig(roomsjs.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	return emb.ClientURL()
}

// node is one ferry node's upload side: its NATS connection, its locks
// and its manager, on the store every node shares.
type node struct {
	nc    *nats.Conn
	locks *jetstream.Locks
	m     *transfer.Manager
}

func startNode(t *testing.T, url string, store storage.Store, ttl time.Duration) *node {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	locks, err := jetstream.New(context.Background(), nc, jetstream.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	m, err := transfer.New(transfer.Config{Store: store, PartSize: partSize, Parts: 2, Locker: locks,
		RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	locks.Notify(m)
	n := &node{nc: nc, locks: locks, m: m}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop shuts the node down as ferry does: uploads, then locks, then NATS.
func (n *node) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := n.locks.Close(); err != nil {
		t.Errorf("locks: %v", err)
	}
	n.nc.Close()
}

// sink is a connection as the manager sees it.
type sink struct {
	mu      sync.Mutex
	durable int64
	file    *transfer.File
	failed  []error
	changed chan struct{}
}

func newSink() *sink { return &sink{changed: make(chan struct{}, 1)} }

func (s *sink) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *sink) Progress(_ string, _, durable int64) {
	s.mu.Lock()
	s.durable = durable
	s.mu.Unlock()
	s.poke()
}

func (s *sink) Completed(_ string, f transfer.File) {
	s.mu.Lock()
	s.file = &f
	s.mu.Unlock()
	s.poke()
}

func (s *sink) Failed(_ string, err error) {
	s.mu.Lock()
	s.failed = append(s.failed, err)
	s.mu.Unlock()
	s.poke()
}

// wait waits until cond holds, read under the sink's lock.
func (s *sink) wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// send writes data[from:to] in chunks, waiting for the window.
func send(t *testing.T, m *transfer.Manager, s *sink, g transfer.Grant, data []byte, from, to int64) {
	t.Helper()
	for off := from; off < to; {
		n := min(int64(256<<10), to-off)
		got, err := m.Write(g.Upload, "alice", off, bytes.NewReader(data[off:off+n]))
		if transfer.ErrorCode(err) == transfer.CodeWindowExceeded {
			s.wait(t, "window", func() bool { return s.durable+g.Window >= off+n })
			continue
		}
		if err != nil {
			t.Fatalf("Write at %d: %v", off, err)
		}
		off = got
	}
}

// resume resumes upload id on m, as a client does: again after busy.
func resume(t *testing.T, m *transfer.Manager, id string, s *sink, within time.Duration) (transfer.Grant, int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for refusals := 0; ; refusals++ {
		g, err := m.Open(context.Background(), transfer.OpenRequest{Owner: transfer.Owner{User: "alice", Conn: "b"}, Resume: id}, s)
		var e *transfer.Error
		if errors.As(err, &e) && e.Code == transfer.CodeBusy && time.Now().Before(deadline) {
			time.Sleep(min(e.RetryAfter, 200*time.Millisecond))
			continue
		}
		if err != nil {
			t.Fatalf("resume after %d refusals: %v", refusals, err)
		}
		return g, refusals
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func stored(t *testing.T, store storage.Store, f transfer.File) string {
	t.Helper()
	obj, err := store.Get(context.Background(), f.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	h := sha256.New()
	if _, err := io.Copy(h, obj); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func stores(t *testing.T) map[string]func(*testing.T) storage.Store {
	return map[string]func(*testing.T) storage.Store{
		"disk":  func(t *testing.T) storage.Store { return ferrytest.DiskStore(t) },
		"minio": func(t *testing.T) storage.Store { return ferrytest.MinIOStore(t) },
	}
}

// An upload started on node A, whose connection is cut halfway, is
// resumed on node B and completes there, the stored file identical to
// the one sent. While A's connection is attached, B is refused: two nodes
// never write one upload at once.
func TestUploadMovesToAnotherNode(t *testing.T) {
	for name, newStore := range stores(t) {
		t.Run(name, func(t *testing.T) {
			url, store := natsURL(t), newStore(t)
			a := startNode(t, url, store, 3*time.Second)
			b := startNode(t, url, store, 3*time.Second)
			data := random(3*partSize + 12345)
			want := sha256.Sum256(data)
			sa := newSink()
			g, err := a.m.Open(context.Background(), transfer.OpenRequest{Owner: transfer.Owner{User: "alice", Conn: "a"},
				Room: "lobby", Name: "moved.bin", Size: int64(len(data))}, sa)
			if err != nil {
				t.Fatal(err)
			}
			half := int64(len(data) / 2)
			send(t, a.m, sa, g, data, 0, half)
			sa.wait(t, "a part stored", func() bool { return sa.durable == partSize })

			sb := newSink()
			_, err = b.m.Open(context.Background(), transfer.OpenRequest{Owner: transfer.Owner{User: "alice", Conn: "b"}, Resume: g.Upload}, sb)
			if transfer.ErrorCode(err) != transfer.CodeBusy {
				t.Fatalf("resume on B while A's connection is attached: %v, want busy", err)
			}
			if _, err := a.m.Write(g.Upload, "alice", half, bytes.NewReader(data[half:half+1000])); err != nil {
				t.Fatalf("A, still attached, refused a chunk after B asked: %v", err)
			}

			a.m.Detach(sa) // the connection moves
			start := time.Now()
			g2, refusals := resume(t, b.m, g.Upload, sb, 10*time.Second)
			// Where B continues is what A stored: the part after it was
			// not whole, and goes.
			if g2.Offset != partSize {
				t.Fatalf("resumed on B at %d, want what A stored, %d", g2.Offset, partSize)
			}
			t.Logf("resumed on B at %d after %v (%d busy answers)", g2.Offset, time.Since(start), refusals)
			if time.Since(start) > 2*time.Second {
				t.Errorf("taking over a paused upload took %v: A should let go at once", time.Since(start))
			}
			send(t, b.m, sb, g2, data, g2.Offset, int64(len(data)))
			sb.wait(t, "completion", func() bool { return sb.file != nil })
			if got := stored(t, store, *sb.file); got != hex.EncodeToString(want[:]) || sb.file.SHA256 != got {
				t.Fatalf("stored %s (record %s), sent %x", got, sb.file.SHA256, want)
			}
		})
	}
}

// A node that dies holding an upload (its lock neither renewed nor
// released) keeps it until its lock expires: other nodes are refused with
// busy meanwhile, then take over from what it stored. The dead node
// itself, cut from NATS, stops writing the upload before the lock
// expires.
func TestDeadNodeLockExpires(t *testing.T) {
	url, store := natsURL(t), ferrytest.DiskStore(t)
	const ttl = 2 * time.Second
	a := startNode(t, url, store, ttl)
	b := startNode(t, url, store, ttl)
	data := random(2*partSize + 999)
	sa := newSink()
	g, err := a.m.Open(context.Background(), transfer.OpenRequest{Owner: transfer.Owner{User: "alice", Conn: "a"},
		Room: "lobby", Name: "dead.bin", Size: int64(len(data))}, sa)
	if err != nil {
		t.Fatal(err)
	}
	send(t, a.m, sa, g, data, 0, partSize+10)
	sa.wait(t, "a part stored", func() bool { return sa.durable == partSize })

	// A is cut off: no renewal, no release, no answer.
	killed := time.Now()
	a.nc.Close()
	sb := newSink()
	_, err = b.m.Open(context.Background(), transfer.OpenRequest{Owner: transfer.Owner{User: "alice", Conn: "b"}, Resume: g.Upload}, sb)
	if transfer.ErrorCode(err) != transfer.CodeBusy {
		t.Fatalf("resume on B while A's lock lives: %v, want busy", err)
	}
	g2, refusals := resume(t, b.m, g.Upload, sb, 3*ttl)
	took := time.Since(killed)
	t.Logf("B took over %v after A died (%d busy answers)", took, refusals)
	// A renewed its lock at most TTL/3 before it died, so the lock lived
	// at least 2/3 of the TTL after.
	if took < ttl*2/3 || refusals == 0 {
		t.Fatalf("B took over after %v and %d refusals, before A's lock (TTL %v) could expire", took, refusals, ttl)
	}
	// A counted its lock lost (2/3 of the TTL without renewal) and let go.
	sa.wait(t, "A hears the upload moved", func() bool {
		return len(sa.failed) > 0 && transfer.ErrorCode(sa.failed[len(sa.failed)-1]) == transfer.CodeUnknownUpload
	})
	if _, err := a.m.Write(g.Upload, "alice", partSize+10, bytes.NewReader(data[partSize+10:partSize+20])); transfer.ErrorCode(err) != transfer.CodeUnknownUpload {
		t.Fatalf("A still writes the upload after losing its lock: %v", err)
	}
	if g2.Offset != partSize {
		t.Fatalf("resumed at %d, want %d", g2.Offset, partSize)
	}
	send(t, b.m, sb, g2, data, g2.Offset, int64(len(data)))
	sb.wait(t, "completion", func() bool { return sb.file != nil })
	want := sha256.Sum256(data)
	if got := stored(t, store, *sb.file); got != hex.EncodeToString(want[:]) {
		t.Fatalf("stored %s, sent %x", got, want)
	}
}

// Locks are exclusive however many nodes race for one, and a lock
// released is free at once.
func TestLocksAreExclusive(t *testing.T) {
	url := natsURL(t)
	var nodes []*jetstream.Locks
	for range 5 {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		l, err := jetstream.New(context.Background(), nc, jetstream.Config{TTL: 3 * time.Second, YieldWait: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		nodes = append(nodes, l)
	}
	for round := range 20 {
		id := fmt.Sprintf("up_round%d", round)
		leases := make([]transfer.Lease, len(nodes))
		var wg sync.WaitGroup
		for i, l := range nodes {
			wg.Go(func() {
				le, err := l.Lock(context.Background(), id, func() {})
				if err != nil && !errors.Is(err, transfer.ErrLocked) {
					t.Errorf("Lock: %v", err)
				}
				leases[i] = le
			})
		}
		wg.Wait()
		var held []transfer.Lease
		for _, le := range leases {
			if le != nil {
				held = append(held, le)
			}
		}
		if len(held) != 1 {
			t.Fatalf("round %d: %d nodes hold the lock", round, len(held))
		}
		held[0].Release()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		le, err := nodes[round%len(nodes)].Lock(ctx, id, func() {})
		cancel()
		if err != nil {
			t.Fatalf("round %d: the released lock cannot be taken: %v", round, err)
		}
		le.Release()
	}
}

// BenchmarkLockRelease measures what a lock adds to opening an upload and
// to its end: one Create, and one Delete done by the lease's goroutine.
func BenchmarkLockRelease(b *testing.B) {
	emb, err := roomsjs.StartEmbeddedConfig(roomsjs.EmbeddedConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = emb.Shutdown(context.Background()) }()
	l, err := jetstream.New(context.Background(), emb.Conn(), jetstream.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		le, err := l.Lock(ctx, fmt.Sprintf("up_bench%d", i), func() {})
		if err != nil {
			b.Fatal(err)
		}
		le.Release()
	}
}
