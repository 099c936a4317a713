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
