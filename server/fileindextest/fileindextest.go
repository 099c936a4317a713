// Package fileindextest is one conformance suite for every server.FileIndex:
// the in-memory one and the JetStream one run the same tests.
package fileindextest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// File returns a file record of room numbered n, with every field set.
func File(room string, n int) transfer.File {
	return transfer.File{
		ID: fmt.Sprintf("f_%s_%03d", room, n), Room: room, Name: fmt.Sprintf("file %d.jpg", n),
		Size: int64(1000 + n), Type: "image/jpeg", SHA256: fmt.Sprintf("%064x", n),
		User: "u_alice", UserName: "alice", Time: time.Date(2026, 12, 4, 10, 0, n, 0, time.UTC),
		Key: fmt.Sprintf("rooms/%s/2026/12/04/f_%d/file.jpg", room, n), SentSize: int64(2000 + n), SentSHA256: fmt.Sprintf("%064x", n+1),
		ThumbKey: "thumb", ThumbType: "image/png", Width: 640, Height: 480,
	}
}

// Run runs the suite; open returns an empty index (at least 20 files per
// room and 1 MiB in all).
func Run(t *testing.T, open func(t *testing.T) server.FileIndex) {
	ctx := context.Background()
	t.Run("empty", func(t *testing.T) {
		x := open(t)
		files, next, err := x.List(ctx, "nobody-here", 0, 10)
		if err != nil || len(files) != 0 || next != 0 {
			t.Fatalf("List of an unknown room = %v, %d, %v; want nothing", files, next, err)
		}
	})
	t.Run("pages newest first", func(t *testing.T) {
		x := open(t)
		// Two rooms, one whose name needs encoding, and a third whose
		// name is the first's encoding: none sees the others' files.
		rooms := []string{"team:1.ops", "lobby", "team_3a1_2eops"}
		for i := 1; i <= 7; i++ {
			for _, r := range rooms[:2] {
				add(t, x, File(r, i))
			}
		}
		add(t, x, File(rooms[2], 1))
		want := []int{7, 6, 5, 4, 3, 2, 1}
		for _, limit := range []int{1, 3, 7, 50} {
			var got []int
			var before uint64
			pages := 0
			for {
				files, next, err := x.List(ctx, rooms[0], before, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(files) > limit {
					t.Fatalf("limit %d: a page of %d", limit, len(files))
				}
				for _, f := range files {
					if f.Room != rooms[0] {
						t.Fatalf("room %s lists %s of room %s", rooms[0], f.ID, f.Room)
					}
					var n int
					fmt.Sscanf(f.ID[len(f.ID)-3:], "%d", &n)
					if f != File(rooms[0], n) {
						t.Fatalf("listed %+v, added %+v", f, File(rooms[0], n))
					}
					got = append(got, n)
				}
				pages++
				if next == 0 {
					break
				}
				if next == before || pages > 10 {
					t.Fatalf("limit %d: next %d after before %d", limit, next, before)
				}
				before = next
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("limit %d: listed %v, want %v", limit, got, want)
			}
			if wantPages := (7 + limit - 1) / limit; pages != wantPages {
				t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
			}
		}
		files, next, err := x.List(ctx, rooms[2], 0, 10)
		if err != nil || len(files) != 1 || files[0].ID != File(rooms[2], 1).ID || next != 0 {
			t.Errorf("room %s: %v, %d, %v; want its one file", rooms[2], files, next, err)
		}
	})
	t.Run("a file added twice is listed once", func(t *testing.T) {
		x := open(t)
		add(t, x, File("lobby", 1))
		add(t, x, File("lobby", 2))
		add(t, x, File("lobby", 1))
		files, _, err := x.List(ctx, "lobby", 0, 10)
		if err != nil || len(files) != 2 {
			t.Fatalf("List = %d files, %v; want 2", len(files), err)
		}
	})
	t.Run("before the oldest", func(t *testing.T) {
		x := open(t)
		add(t, x, File("lobby", 1))
		add(t, x, File("lobby", 2))
		_, next, err := x.List(ctx, "lobby", 0, 1)
		if err != nil || next == 0 {
			t.Fatalf("List = next %d, %v; want a next page", next, err)
		}
		files, next2, err := x.List(ctx, "lobby", next, 1)
		if err != nil || len(files) != 1 || files[0].ID != File("lobby", 1).ID || next2 != 0 {
			t.Fatalf("second page = %v, %d, %v; want file 1 and no next", files, next2, err)
		}
		// A cursor past every position lists from the newest.
		files, _, err = x.List(ctx, "lobby", 1<<62, 10)
		if err != nil || len(files) != 2 {
			t.Fatalf("List before 1<<62 = %d files, %v; want 2", len(files), err)
		}
	})
}

func add(t *testing.T, x server.FileIndex, f transfer.File) {
	t.Helper()
	if err := x.Add(context.Background(), f); err != nil {
		t.Fatal(err)
	}
}
