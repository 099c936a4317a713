package s3_test

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/storagetest"
)

// TestMemoryBounded uploads 64 MiB with Put and with PutPart, from readers
// that cannot seek (as a WebSocket stream cannot), and checks that the store
// allocated far less than that: bodies are streamed, never gathered.
func TestMemoryBounded(t *testing.T) {
	const size = 64 << 20
	const limit = 16 << 20
	s := newStore(t, "memory")
	ctx := context.Background()
	m, err := s.NewMultipart(ctx, "multipart", storage.Meta{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Abort(ctx)
	stream := func() io.Reader { return struct{ io.Reader }{storagetest.NewPattern(1, size)} }
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"Put", func() error { return s.Put(ctx, "whole", stream(), size, storage.Meta{}) }},
		{"PutPart", func() error { return m.PutPart(ctx, 1, stream(), size) }},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > limit {
			t.Errorf("%s of %d MiB allocated %d MiB, want under %d MiB", tc.name, size>>20, n>>20, limit>>20)
		}
	}
	if err := storagetest.Compare(storagetest.NewPattern(1, size), mustGet(t, s, "whole")); err != nil {
		t.Error(err)
	}
}

func mustGet(t *testing.T, s storage.Store, key string) io.Reader {
	t.Helper()
	obj, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obj.Close() })
	return obj
}
