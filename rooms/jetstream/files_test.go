package jetstream

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/server/fileindextest"
)

var _ server.FileIndex = (*FileIndex)(nil)

func startFiles(t testing.TB, dir string, cfg FilesConfig) (*Embedded, *FileIndex) {
	t.Helper()
	emb, err := StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	x, err := NewFileIndex(context.Background(), emb.Conn(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return emb, x
}

func TestFileIndex(t *testing.T) {
	fileindextest.Run(t, func(t *testing.T) server.FileIndex {
		_, x := startFiles(t, t.TempDir(), FilesConfig{})
		return x
	})
}

// The index outlives its server, keeps a room's newest files, and pages
// a room larger than a direct get's batch.
func TestFileIndexRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := FilesConfig{MaxPerRoom: 300}
	emb, x := startFiles(t, dir, cfg)
	for i := 1; i <= 400; i++ {
		if err := x.Add(ctx, fileindextest.File("lobby", i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = x.Add(ctx, fileindextest.File("other", 1))
	shutdown(t, emb)

	_, x = startFiles(t, dir, cfg)
	var got []string
	var before uint64
	for {
		files, next, err := x.List(ctx, "lobby", before, 120)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			got = append(got, f.ID)
		}
		if next == 0 {
			break
		}
		before = next
	}
	if len(got) != 300 {
		t.Fatalf("after a restart: %d files; want the newest 300", len(got))
	}
	if got[0] != fileindextest.File("lobby", 400).ID || got[299] != fileindextest.File("lobby", 101).ID {
		t.Fatalf("after a restart: %s to %s; want 400 to 101", got[0], got[299])
	}
}

// Two nodes on one NATS server share the index: what one adds, the
// other lists, over its own connection.
func TestFileIndexShared(t *testing.T) {
	ctx := context.Background()
	emb, err := StartEmbeddedConfig(EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	nc, err := Connect(ConnConfig{URLs: emb.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	a, err := NewFileIndex(ctx, emb.Conn(), FilesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFileIndex(ctx, nc, FilesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		x := a
		if i == 2 {
			x = b
		}
		if err := x.Add(ctx, fileindextest.File("lobby", i)); err != nil {
			t.Fatal(err)
		}
	}
	for name, x := range map[string]*FileIndex{"a": a, "b": b} {
		files, _, err := x.List(ctx, "lobby", 0, 10)
		if err != nil || len(files) != 3 || files[0].ID != fileindextest.File("lobby", 3).ID || files[1].ID != fileindextest.File("lobby", 2).ID {
			t.Errorf("node %s lists %d files (%v); want 3, newest first", name, len(files), err)
		}
	}
}

// BenchmarkFileList lists the newest page of 50 of a room of 1000 files
// (the most a room keeps by default), among 20 rooms, and the last page.
func BenchmarkFileList(b *testing.B) {
	ctx := context.Background()
	_, x := startFiles(b, b.TempDir(), FilesConfig{})
	for i := 1; i <= 1000; i++ {
		for r := range 20 {
			if err := x.Add(ctx, fileindextest.File(fmt.Sprintf("room%d", r), i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("newest", func(b *testing.B) {
		for b.Loop() {
			if files, _, err := x.List(ctx, "room7", 0, 50); err != nil || len(files) != 50 {
				b.Fatal(len(files), err)
			}
		}
	})
	_, next, _ := x.List(ctx, "room7", 0, 950)
	b.Run("oldest", func(b *testing.B) {
		for b.Loop() {
			if files, _, err := x.List(ctx, "room7", next, 50); err != nil || len(files) != 50 {
				b.Fatal(len(files), err)
			}
		}
	})
}

// BenchmarkFileAdd adds a file to the index: what an announcement costs
// more with --state jetstream.
func BenchmarkFileAdd(b *testing.B) {
	ctx := context.Background()
	_, x := startFiles(b, b.TempDir(), FilesConfig{})
	i := 0
	for b.Loop() {
		i++
		if err := x.Add(ctx, fileindextest.File("lobby", i)); err != nil {
			b.Fatal(err)
		}
	}
}
