package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/server/fileindextest"
)

func TestMemoryFileIndex(t *testing.T) {
	fileindextest.Run(t, func(*testing.T) server.FileIndex { return server.NewMemoryFileIndex(0, 0) })
}

// The in-memory index keeps each room's newest files, and all rooms'
// within its bytes, the server's oldest going first.
func TestMemoryFileIndexBounds(t *testing.T) {
	ctx := context.Background()
	ids := func(x server.FileIndex, room string) string {
		files, _, err := x.List(ctx, room, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, f := range files {
			s = append(s, f.ID[len(f.ID)-3:])
		}
		return fmt.Sprint(s)
	}
	x := server.NewMemoryFileIndex(3, 0)
	for i := 1; i <= 5; i++ {
		_ = x.Add(ctx, fileindextest.File("a", i))
	}
	if got := ids(x, "a"); got != "[005 004 003]" {
		t.Errorf("per room 3: %s", got)
	}
	// About 480 bytes a record: 2 KiB holds 4 of them.
	x = server.NewMemoryFileIndex(100, 2048)
	for i := 1; i <= 6; i++ {
		_ = x.Add(ctx, fileindextest.File("a", i))
		_ = x.Add(ctx, fileindextest.File("b", i))
	}
	a, b := ids(x, "a"), ids(x, "b")
	if a != "[006 005]" || b != "[006 005]" {
		t.Errorf("2 KiB in all: a %s, b %s", a, b)
	}
}
