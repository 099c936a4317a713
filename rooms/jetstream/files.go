package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/transfer"
)

// Defaults of FilesConfig.
const (
	DefaultFilesStream        = "FERRY_FILES"
	DefaultFilesSubjectPrefix = "ferry.files"
	// DefaultFilesPerRoom matches server.DefaultFilesPerRoom.
	DefaultFilesPerRoom = 1000
	// DefaultFilesMaxBytes bounds the index of all rooms on disk: about
	// 300,000 files.
	DefaultFilesMaxBytes = 256 << 20
)

// FilesConfig configures a FileIndex. Zero values mean the documented
// defaults.
type FilesConfig struct {
	// Stream names the JetStream stream. Default DefaultFilesStream.
	Stream string
	// SubjectPrefix starts every room's subject. Default
	// DefaultFilesSubjectPrefix.
	SubjectPrefix string
	// MaxPerRoom is how many files a room's listing keeps, the newest.
	// Default DefaultFilesPerRoom.
	MaxPerRoom int
	// MaxBytes bounds the stream, all rooms together; past it the oldest
	// entries go, whatever their room. Default DefaultFilesMaxBytes.
	MaxBytes int64
	// MaxAge is how long a file stays listed. Default 0: as long as the
	// bounds above allow, since ferry keeps the files themselves.
	MaxAge time.Duration
	// Replicas is the stream's replication in a cluster. Default 1.
	Replicas int
	// Log receives the index's diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *FilesConfig) applyDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultFilesStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultFilesSubjectPrefix
	}
	if c.MaxPerRoom <= 0 {
		c.MaxPerRoom = DefaultFilesPerRoom
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultFilesMaxBytes
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// FileIndex keeps the files announced to rooms in a JetStream stream, one
// subject per room (the room's events' encoding), a message per file: its
// record as JSON. Every node on the same NATS shares it. A file's position
// is its message's stream sequence. Its methods are safe for concurrent
// use; it does not own the connection it was given.
//
// It implements server.FileIndex (checked where it is wired, in
// cmd/ferry, as this package does not know the server).
type FileIndex struct {
	cfg FilesConfig
	nc  *nats.Conn
	js  jetstream.JetStream
}

// NewFileIndex returns a FileIndex over nc, creating the stream, or
// updating its limits to cfg's.
func NewFileIndex(ctx context.Context, nc *nats.Conn, cfg FilesConfig) (*FileIndex, error) {
	cfg.applyDefaults()
	js, _, err := openHistory(ctx, nc, history{
		name:        cfg.Stream,
		description: "ferry: the files announced to named rooms, for listing",
		subjects:    []string{cfg.SubjectPrefix + ".*"},
		maxAge:      cfg.MaxAge,
		perSubject:  cfg.MaxPerRoom,
		maxBytes:    cfg.MaxBytes,
		replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &FileIndex{cfg: cfg, nc: nc, js: js}, nil
}

// Add stores f as its room's newest file and returns once JetStream has
// it. The file id is the message id: a file announced twice within the
// stream's duplicate window (two minutes) is stored once.
func (x *FileIndex) Add(ctx context.Context, f transfer.File) error {
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: x.subject(f.Room), Header: nats.Header{jetstream.MsgIDHeader: {f.ID}}, Data: data}
	if _, err := x.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("jetstream: index file %s of %s: %w", f.ID, f.Room, err)
	}
	return nil
}

// listBatch is how many entries one direct get asks for.
const listBatch = 256

// List returns up to limit of room's files with a stream sequence below
// before (0: any), newest first, and the sequence of the oldest one
// returned when there are older ones.
//
// JetStream reads a subject forward only (a direct get's last_by_subj
// ignores up_to_seq), so a page reads the room's entries from its oldest
// up to before, in batches, keeping the last limit+1: a read of at most
// MaxPerRoom entries, each a few hundred bytes. Batched direct gets need
// nats-server 2.11 or later.
func (x *FileIndex) List(ctx context.Context, room string, before uint64, limit int) ([]transfer.File, uint64, error) {
	if limit <= 0 {
		return nil, 0, nil
	}
	subject := x.subject(room)
	// Entries are decoded once they are known to be on the page.
	type entry struct {
		seq  uint64
		data []byte
	}
	// The newest limit+1 entries seen, as a ring: one more than a page
	// tells whether there is a next page.
	ring := make([]entry, limit+1)
	n := 0
	err := readForward(ctx, x.nc, x.cfg.Stream, subject, 1, listBatch, func(seq uint64, msg *nats.Msg) bool {
		if before > 0 && seq >= before {
			return false
		}
		ring[n%len(ring)] = entry{seq: seq, data: msg.Data}
		n++
		return true
	})
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: list %s: %w", room, err)
	}
	keep := min(n, limit)
	out := make([]transfer.File, 0, keep)
	for i := range keep {
		e := ring[(n-1-i)%len(ring)]
		var f transfer.File
		if err := json.Unmarshal(e.data, &f); err != nil {
			x.cfg.Log.Warn("jetstream: skip an entry that is not a ferry file", "room", room, "seq", e.seq, "err", err)
			continue
		}
		out = append(out, f)
	}
	var next uint64
	if n > limit {
		next = ring[(n-limit)%len(ring)].seq
	}
	return out, next, nil
}

func (x *FileIndex) subject(room string) string {
	return x.cfg.SubjectPrefix + "." + encodeRoom(room)
}
