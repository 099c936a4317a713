package jetstream

import (
	"context"
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
