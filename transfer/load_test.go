package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"testing"
)

// genReader produces the bytes of a large test file from their offsets, so
// that the test itself holds none of it: row r of genPeriod bytes is
// genBase rotated by r*31, so that no two parts are alike.
type genReader struct{ off, end int64 }

const genPeriod = 65521 // prime, unrelated to part and chunk sizes

var genBase = payload(genPeriod)

func (g *genReader) Read(p []byte) (int, error) {
	if g.off >= g.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), g.end-g.off)]
	n := 0
	for n < len(p) {
		i := g.off + int64(n)
		start := int((i + i/genPeriod*31) % genPeriod)
		k := min(len(p)-n, genPeriod-int(i%genPeriod), genPeriod-start)
		n += copy(p[n:n+k], genBase[start:])
	}
	g.off += int64(n)
	return n, nil
}

func TestMemoryIsBoundedByParts(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB upload")
	}
	f := newFixture(t, nil)
	sink := newSink()
	const size = 64 << 20
	h := sha256.New()
	if _, err := io.Copy(h, &genReader{0, size}); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	g := f.open(f.m, sink, OpenRequest{Name: "big.bin", Size: size, SHA256: want})
	for off := int64(0); off < size; {
		n := min(int64(g.ChunkSize), size-off)
		got, err := f.m.Write(g.Upload, "alice", off, &genReader{off, off + n})
		if ErrorCode(err) == CodeWindowExceeded {
			sink.wait(t, "progress", func() bool { return sink.durable(g.Upload)+g.Window >= off+n })
			continue
		}
		if err != nil {
			t.Fatalf("Write at %d: %v", off, err)
		}
		off = got
	}
	file := sink.waitCompleted(t, g.Upload)
	if file.SHA256 != want || file.Size != size {
		t.Fatalf("file %+v", file)
	}
	data, _, _ := f.store.object(file.Key)
	if s := sha256.Sum256(data); hex.EncodeToString(s[:]) != want {
		t.Fatal("stored bytes differ")
	}
	// 13 parts went through; only the 2 buffers of the window were made.
	if n := f.m.pool.allocated.Load(); n > 2 {
		t.Errorf("allocated %d part buffers for one upload, want at most 2", n)
	}
	if n := f.m.pool.peak.Load(); n > 2 {
		t.Errorf("held %d part buffers at once, want at most 2", n)
	}
}

func TestConcurrentUploads(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxUploads = 4 })
	const conns, perConn = 4, 4
	var wg sync.WaitGroup
	for c := range conns {
		sink := newSink()
		for i := range perConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				size := (c*perConn+i)%3*partSize/2 + 1000*(c+1) + i
				data := payload(size)
				user := fmt.Sprintf("user%d", c)
				g, err := f.m.Open(context.Background(), OpenRequest{Owner: owner(user), Room: "lobby",
					Name: fmt.Sprintf("%d-%d.bin", c, i), Size: int64(size), SHA256: sum(data)}, sink)
				if err != nil {
					t.Error(err)
					return
				}
				if err := trySend(f.m, sink, g, user, data, 0, int64(size), 256<<10); err != nil {
					t.Error(err)
					return
				}
				if err := sink.await("completion", func() bool { return len(sink.files(g.Upload)) > 0 }); err != nil {
					t.Error(err)
					return
				}
				file := sink.files(g.Upload)[0]
				stored, _, _ := f.store.object(file.Key)
				if sum(stored) != sum(data) || file.User != user {
					t.Errorf("upload %d-%d: stored %d bytes, file %+v", c, i, len(stored), file)
				}
			}()
		}
	}
	wg.Wait()
	if n := len(f.announcedFiles()); n != conns*perConn {
		t.Errorf("announced %d files, want %d", n, conns*perConn)
	}
	if n := f.m.pool.peak.Load(); n > conns*perConn*2 {
		t.Errorf("held %d part buffers at once, want at most %d", n, conns*perConn*2)
	}
	if n := f.m.pool.inUse.Load(); n != 0 {
		t.Errorf("%d buffers still in use", n)
	}
}

// A lone upload gets big parts; uploads opened while the big windows would
// not fit in BigPartMemory get small ones. Both kinds store the file whole,
// parts of each size come from their own buffers, and a restarted manager
// resumes an upload with the part size it was given.
func TestBigPartsWhileMemoryAllows(t *testing.T) {
	const big = 2 * partSize
	tweak := func(c *Config) { c.BigPartSize, c.BigPartMemory = big, 3*big }
	f := newFixture(t, tweak)
	sink := newSink()
	data := payload(3*big + 1000)
	first := f.open(f.m, sink, OpenRequest{Name: "first.bin", Size: int64(len(data)), ChunkSize: 64 << 10})
	second := f.open(f.m, sink, OpenRequest{Name: "second.bin", Size: int64(len(data)), ChunkSize: 64 << 10})
	if first.Window != 2*big || second.Window != 2*partSize {
		t.Fatalf("windows %d and %d, want %d (big parts) and %d (the big ones would not fit)", first.Window, second.Window, 2*big, 2*partSize)
	}
	send(t, f.m, sink, first, "alice", data, 0, int64(len(data)), 64<<10)
	f.checkStored(sink.waitCompleted(t, first.Upload), data, "application/octet-stream")
	if n := f.m.bigPool.peak.Load(); n < 1 || n > 2 {
		t.Errorf("%d big buffers in use at most, want 1-2", n)
	}

	// Half of the second upload, then a restart.
	send(t, f.m, sink, second, "alice", data, 0, big, 64<<10)
	sink.wait(t, "half stored", func() bool { return sink.durable(second.Upload) == big })
	m2 := f.manager(tweak)
	again, err := m2.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: second.Upload}, sink)
	if err != nil {
		t.Fatal(err)
	}
	if again.Offset != big || again.Window != 2*partSize {
		t.Fatalf("resumed at %d with window %d, want %d and %d", again.Offset, again.Window, big, 2*partSize)
	}
	send(t, m2, sink, again, "alice", data, big, int64(len(data)), 64<<10)
	f.checkStored(sink.waitCompleted(t, second.Upload), data, "application/octet-stream")

	// Nothing open any more: big parts again.
	third := f.open(m2, sink, OpenRequest{Name: "third.bin", Size: 3 * big})
	if third.Window != 2*big {
		t.Fatalf("window %d after the others ended, want %d", third.Window, 2*big)
	}
}

// With BigParts, an upload given big parts holds that many of them: its
// window is BigParts × BigPartSize, and no more buffers than that are
// taken. Uploads with PartSize parts
// keep Parts buffers.
func TestBigPartsHaveTheirOwnCount(t *testing.T) {
	const big = 2 * partSize
	f := newFixture(t, func(c *Config) { c.BigPartSize, c.BigParts, c.BigPartMemory = big, 4, 4*big })
	sink := newSink()
	data := payload(9*big + 1000)
	var grants []Grant
	for _, want := range []int64{4 * big, 2 * partSize} {
		g := f.open(f.m, sink, OpenRequest{Name: "f.bin", Size: int64(len(data)), ChunkSize: 64 << 10})
		if g.Window != want {
			t.Fatalf("upload %d: window %d, want %d", len(grants)+1, g.Window, want)
		}
		grants = append(grants, g)
	}
	send(t, f.m, sink, grants[0], "alice", data, 0, int64(len(data)), 64<<10)
	f.checkStored(sink.waitCompleted(t, grants[0].Upload), data, "application/octet-stream")
	if n := f.m.bigPool.peak.Load(); n < 2 || n > 4 {
		t.Errorf("%d big buffers in use at most, want 2-4", n)
	}
}

// Uploads opened at the same moment do not all find the memory free.
func TestBigPartsReservedWhileOpening(t *testing.T) {
	const big = 2 * partSize
	f := newFixture(t, func(c *Config) {
		c.BigPartSize, c.BigPartMemory, c.PartMemoryPerUser, c.MaxUploads = big, 2*big, 1<<40, 16
	})
	sink := newSink()
	grants := make(chan Grant, 16)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			grants <- f.open(f.m, sink, OpenRequest{Name: fmt.Sprintf("f%d.bin", i), Size: 3 * big})
		})
	}
	wg.Wait()
	close(grants)
	bigs := 0
	for g := range grants {
		if g.Window == 2*big {
			bigs++
		}
	}
	if bigs != 1 {
		t.Fatalf("%d of 16 uploads opened at once got big parts, want 1", bigs)
	}
}
