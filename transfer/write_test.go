package transfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
)

// brokenReader returns some bytes, then an error.
type brokenReader struct {
	data []byte
	err  error
}

func (r *brokenReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestWriteErrors(t *testing.T) {
	f := newFixture(t, nil)
	hold := make(chan struct{})
	f.store.set(func(s *memStore) { s.hold = hold })
	sink := newSink()
	size := 2*partSize + 100_000
	data := payload(size)
	g := f.open(f.m, sink, OpenRequest{Name: "w.bin", Size: int64(size), SHA256: sum(data)})
	id := g.Upload
	garbage := bytes.Repeat([]byte{0xee}, 1<<20+1)

	write := func(off int64, b []byte) (int64, error) {
		return f.m.Write(id, "alice", off, bytes.NewReader(b))
	}
	offset := func() int64 {
		st, err := f.m.Status(context.Background(), id, "alice")
		if err != nil {
			t.Fatal(err)
		}
		return st.Offset
	}

	e := wantCode(t, second(write(10, data[10:20])), CodeBadOffset)
	if e.Offset != 0 || !errors.Is(e, ErrBadOffset) {
		t.Errorf("bad offset error %+v", e)
	}
	if n, err := write(0, data[:1000]); n != 1000 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := write(1000, nil); n != 1000 || err != nil {
		t.Fatalf("empty Write = %d, %v", n, err)
	}
	if e := wantCode(t, second(write(0, data[:10])), CodeBadOffset); e.Offset != 1000 {
		t.Errorf("offset in error %d, want 1000", e.Offset)
	}
	wantCode(t, second(write(1000, garbage)), CodeTooLarge)
	_, err := f.m.Write(id, "alice", 1000, &brokenReader{data: garbage[:500], err: errors.New("connection reset")})
	wantCode(t, err, CodeBadRequest)
	if got := offset(); got != 1000 {
		t.Fatalf("offset after refused chunks %d, want 1000", got)
	}
	wantCode(t, second(f.m.Write("up_nope", "alice", 1000, bytes.NewReader(nil))), CodeUnknownUpload)
	wantCode(t, second(f.m.Write(id, "mallory", 1000, bytes.NewReader(data[1000:1010]))), CodeForbidden)

	// Fill the window while storage holds the first part back; a chunk
	// that straddles the window's end is refused whole.
	window := int(g.Window)
	send(t, f.m, sink, g, "alice", data, 1000, int64(window-500), 1<<20)
	e = wantCode(t, second(write(int64(window-500), data[window-500:window+500])), CodeWindowExceeded)
	if e.Offset != int64(window-500) {
		t.Errorf("window error offset %d", e.Offset)
	}
	if n, err := write(int64(window-500), data[window-500:window]); n != int64(window) || err != nil {
		t.Fatalf("Write up to the window = %d, %v", n, err)
	}
	wantCode(t, second(write(int64(window), data[window:window+1])), CodeWindowExceeded)
	if got := f.m.pool.inUse.Load(); got != 2 {
		t.Errorf("%d buffers in use with a full window, want 2", got)
	}
	close(hold)
	sink.wait(t, "progress", func() bool { return sink.durable(id) >= partSize })

	// The last chunk may not go beyond the size, and nothing of it is kept.
	e = wantCode(t, second(write(int64(window), append(data[window:size:size], 'x'))), CodeBeyondSize)
	if e.Offset != int64(window) {
		t.Errorf("beyond size offset %d", e.Offset)
	}
	if n, err := write(int64(window), data[window:]); n != int64(size) || err != nil {
		t.Fatalf("last Write = %d, %v", n, err)
	}
	file := sink.waitCompleted(t, id)
	f.checkStored(file, data, octetStream)
	// A finished upload is no longer open.
	wantCode(t, second(write(int64(size), []byte("x"))), CodeUnknownUpload)
}

func second[T any](_ T, err error) error { return err }

// TestWriteRollsBackAcrossParts checks that a chunk spanning a part
// boundary that fails leaves both parts as they were.
func TestWriteRollsBackAcrossParts(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	size := partSize + 4096
	data := payload(size)
	g := f.open(f.m, sink, OpenRequest{Name: "r.bin", Size: int64(size), SHA256: sum(data)})
	start := int64(partSize - 1000)
	send(t, f.m, sink, g, "alice", data, 0, start, 1<<20)
	bad := &brokenReader{data: bytes.Repeat([]byte{1}, 3000), err: io.ErrClosedPipe}
	wantCode(t, second(f.m.Write(g.Upload, "alice", start, bad)), CodeBadRequest)
	wantCode(t, second(f.m.Write(g.Upload, "alice", start, bytes.NewReader(make([]byte, size)))), CodeBeyondSize)
	if n := sink.durable(g.Upload); n != 0 {
		t.Fatalf("a refused chunk made %d bytes durable", n)
	}
	send(t, f.m, sink, g, "alice", data, start, int64(size), 1<<20)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
}

func TestConcurrentWritesToOneUpload(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	g := f.open(f.m, sink, OpenRequest{Name: "c.bin", Size: 100})
	// A reader that blocks keeps the first Write in progress.
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	var n int64
	var err error
	go func() {
		defer wg.Done()
		n, err = f.m.Write(g.Upload, "alice", 0, pr)
	}()
	if _, werr := pw.Write(payload(10)); werr != nil {
		t.Fatal(werr)
	}
	e := wantCode(t, second(f.m.Write(g.Upload, "alice", 0, strings.NewReader("x"))), CodeBadOffset)
	if e.Offset != 0 {
		t.Errorf("offset %d", e.Offset)
	}
	pw.Close()
	wg.Wait()
	if n != 10 || err != nil {
		t.Fatalf("first Write = %d, %v", n, err)
	}
}

// Parts go to storage with the CRC32C computed as their bytes arrived, in
// chunks that straddle parts and after chunks refused halfway; the store
// checks each part against its bytes, as S3 does.
func TestPartsCarryTheirCRC32C(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	size := 2*partSize + 100_000
	data := payload(size)
	g := f.open(f.m, sink, OpenRequest{Name: "c.bin", Size: int64(size), SHA256: sum(data)})
	send(t, f.m, sink, g, "alice", data, 0, 1000, 1000)
	// A chunk cut short leaves bytes past the part's length: they must not
	// count in its checksum.
	_, err := f.m.Write(g.Upload, "alice", 1000, &brokenReader{data: bytes.Repeat([]byte{0xee}, 5000), err: errors.New("connection reset")})
	wantCode(t, err, CodeBadRequest)
	send(t, f.m, sink, g, "alice", data, 1000, int64(size), 300_001)
	f.checkStored(sink.waitCompleted(t, g.Upload), data, octetStream)
	var puts, crcs int
	f.store.set(func(s *memStore) { puts, crcs = s.putParts, s.crcParts })
	if puts != 3 || crcs != puts {
		t.Errorf("%d parts stored, %d of them with their CRC32C; want 3 and 3", puts, crcs)
	}
}
