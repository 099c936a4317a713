package server

import (
	"container/list"
	"context"
	"sort"
	"sync"

	"github.com/ferryhq/ferry/transfer"
)

// FileIndex keeps the files announced to each room, so that a room's files
// can be listed after their announcements left its history. The server
// adds a file when it announces it, and lists a room's files for the files
// request. Positions are the index's own: positive, growing with each
// file added; a page holds the files before a position, newest first.
type FileIndex interface {
	// Add records f, just announced to f.Room. Adding a file id again
	// keeps one entry.
	Add(ctx context.Context, f transfer.File) error
	// List returns up to limit of room's files before position before
	// (0: the newest), newest first, and the position to list the next
	// page before: 0 when there are no older files.
	List(ctx context.Context, room string, before uint64, limit int) (files []transfer.File, next uint64, err error)
}

var _ FileIndex = (*MemoryFileIndex)(nil)

// MemoryFileIndex is a FileIndex in the process's memory, lost with it:
// the index of `--state memory`, and of a Server without one. It keeps
// each room's newest files up to a count, and all rooms' within a number
// of bytes, dropping the oldest files of the server first.
type MemoryFileIndex struct {
	perRoom  int
	maxBytes int64

	mu    sync.Mutex
	seq   uint64
	bytes int64
	rooms map[string][]*list.Element // each room's entries, oldest first
	all   *list.List                 // every entry, oldest first
	ids   map[string]bool
}

type fileEntry struct {
	seq   uint64
	f     transfer.File
	bytes int64
}

// NewMemoryFileIndex returns an empty index that keeps perRoom files per
// room (default DefaultFilesPerRoom) within maxBytes in all (default
// DefaultFilesBytes).
func NewMemoryFileIndex(perRoom int, maxBytes int64) *MemoryFileIndex {
	if perRoom <= 0 {
		perRoom = DefaultFilesPerRoom
	}
	if maxBytes <= 0 {
		maxBytes = DefaultFilesBytes
	}
	return &MemoryFileIndex{perRoom: perRoom, maxBytes: maxBytes,
		rooms: make(map[string][]*list.Element), all: list.New(), ids: make(map[string]bool)}
}

// entryBytes is what an entry is counted for: its strings, and a guess of
// the rest (the record's numbers, the list element, the map entries).
func entryBytes(f transfer.File) int64 {
	return int64(256 + len(f.ID) + len(f.Room) + len(f.Name) + len(f.Type) + len(f.SHA256) + len(f.SentSHA256) +
		len(f.User) + len(f.UserName) + len(f.Key) + len(f.ThumbKey) + len(f.ThumbType))
}

// Add implements FileIndex.
func (x *MemoryFileIndex) Add(_ context.Context, f transfer.File) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ids[f.ID] {
		return nil
	}
	x.seq++
	e := &fileEntry{seq: x.seq, f: f, bytes: entryBytes(f)}
	x.rooms[f.Room] = append(x.rooms[f.Room], x.all.PushBack(e))
	x.ids[f.ID] = true
	x.bytes += e.bytes
	if len(x.rooms[f.Room]) > x.perRoom {
		x.dropOldest(f.Room)
	}
	for x.bytes > x.maxBytes && x.all.Len() > 0 {
		x.dropOldest(x.all.Front().Value.(*fileEntry).f.Room)
	}
	return nil
}

// dropOldest forgets room's oldest entry. The server's oldest entry is its
// room's oldest too, as both lists are in the order of adding.
func (x *MemoryFileIndex) dropOldest(room string) {
	es := x.rooms[room]
	e := x.all.Remove(es[0]).(*fileEntry)
	es[0] = nil
	if es = es[1:]; len(es) == 0 {
		delete(x.rooms, room)
	} else {
		x.rooms[room] = es
	}
	delete(x.ids, e.f.ID)
	x.bytes -= e.bytes
}

// List implements FileIndex.
func (x *MemoryFileIndex) List(_ context.Context, room string, before uint64, limit int) ([]transfer.File, uint64, error) {
	if limit <= 0 {
		return nil, 0, nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	es := x.rooms[room]
	end := len(es)
	if before > 0 {
		end = sort.Search(len(es), func(i int) bool { return es[i].Value.(*fileEntry).seq >= before })
	}
	start := max(0, end-limit)
	out := make([]transfer.File, 0, end-start)
	for i := end - 1; i >= start; i-- {
		out = append(out, es[i].Value.(*fileEntry).f)
	}
	var next uint64
	if start > 0 {
		next = es[start].Value.(*fileEntry).seq
	}
	return out, next, nil
}
