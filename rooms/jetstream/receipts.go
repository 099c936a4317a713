package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// Defaults of ReceiptsConfig.
const (
	DefaultReceiptsStream        = "FERRY_RECEIPTS"
	DefaultReceiptsSubjectPrefix = "ferry.receipt"
	// DefaultMaxPerEvent bounds the confirmations kept per event.
	DefaultMaxPerEvent = 10_000
	// DefaultReceiptsMaxBytes bounds the stream, all events together.
	DefaultReceiptsMaxBytes = 256 << 20
)

// ReceiptsConfig configures Receipts. Zero values mean the documented
// defaults.
type ReceiptsConfig struct {
	// Stream names the JetStream stream. Default DefaultReceiptsStream.
	Stream string
	// SubjectPrefix starts every event's subject. Default
	// DefaultReceiptsSubjectPrefix.
	SubjectPrefix string
	// MaxAge is how long a confirmation is kept: the events' own history
	// TTL. Default rooms.DefaultJournalTTL.
	MaxAge time.Duration
	// MaxPerEvent is how many confirmations one event keeps, the newest.
	// Default DefaultMaxPerEvent.
	MaxPerEvent int
	// MaxBytes bounds the stream; past it the oldest confirmations go.
	// Default DefaultReceiptsMaxBytes.
	MaxBytes int64
	// Replicas is the stream's replication in a cluster. Default 1.
	Replicas int
	// Log receives diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *ReceiptsConfig) applyDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultReceiptsStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultReceiptsSubjectPrefix
	}
	if c.MaxAge <= 0 {
		c.MaxAge = rooms.DefaultJournalTTL
	}
	if c.MaxPerEvent <= 0 {
		c.MaxPerEvent = DefaultMaxPerEvent
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultReceiptsMaxBytes
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Receipts keeps the confirmations of rooms' events in a JetStream stream,
// one subject per event (room, epoch, seq) and one message per
// confirmation, so a confirmation is one append and an event's are one
// batched direct get. Its methods are safe for concurrent use; it does not
// own the connection it was given.
type Receipts struct {
	cfg    ReceiptsConfig
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

var _ rooms.ReceiptLog = (*Receipts)(nil)

// NewReceipts returns Receipts over nc, creating the stream or updating
// its limits to cfg's.
func NewReceipts(ctx context.Context, nc *nats.Conn, cfg ReceiptsConfig) (*Receipts, error) {
	cfg.applyDefaults()
	js, stream, err := openHistory(ctx, nc, history{
		name:        cfg.Stream,
		description: "ferry: who received the events of named rooms that asked for receipts",
		subjects:    []string{cfg.SubjectPrefix + ".*.*.*"},
		maxAge:      cfg.MaxAge,
		perSubject:  cfg.MaxPerEvent,
		maxBytes:    cfg.MaxBytes,
		replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Receipts{cfg: cfg, nc: nc, js: js, stream: stream}, nil
}

// confirmation is one message of the stream.
type confirmation struct {
	User string `json:"user"`
	Name string `json:"name"`
	At   int64  `json:"at"`
	Conn string `json:"conn,omitempty"`
}

// Confirm stores that u received the event; a repeat within JetStream's
// duplicate window is stored once.
func (r *Receipts) Confirm(ctx context.Context, room, epoch string, seq uint64, u protocol.ReceiptUser, conn string) error {
	b, err := json.Marshal(confirmation{User: u.User, Name: u.Name, At: u.At, Conn: conn})
	if err != nil {
		return err
	}
	subject := r.subject(room, epoch, seq)
	if _, err := r.js.Publish(ctx, subject, b, jetstream.WithMsgID(subject+"/"+u.User)); err != nil {
		return fmt.Errorf("jetstream: receipt for %s %d: %w", room, seq, err)
	}
	return nil
}

// Confirmed returns the event's confirmations, oldest first.
func (r *Receipts) Confirmed(ctx context.Context, room, epoch string, seq uint64) ([]protocol.ReceiptUser, error) {
	var out []protocol.ReceiptUser
	err := readForward(ctx, r.nc, r.cfg.Stream, r.subject(room, epoch, seq), 1, 1000, func(_ uint64, msg *nats.Msg) bool {
		var c confirmation
		if json.Unmarshal(msg.Data, &c) == nil && c.User != "" {
			out = append(out, protocol.ReceiptUser{User: c.User, Name: c.Name, At: c.At})
		}
		return len(out) < r.cfg.MaxPerEvent
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: receipts of %s %d: %w", room, seq, err)
	}
	return out, nil
}

// Follow calls apply with every confirmation stored from now on, by any
// node, until ctx ends; a node gives it its hub's ApplyReceipt. It returns
// ctx's error, or why the stream cannot be followed.
func (r *Receipts) Follow(ctx context.Context, apply func(room, epoch string, seq uint64, u protocol.ReceiptUser, conn string)) error {
	prefix := r.cfg.SubjectPrefix + "."
	return consumeNew(ctx, r.stream, prefix+"*.*.*", func(msg jetstream.Msg) {
		room, epoch, seq, ok := r.parseSubject(strings.TrimPrefix(msg.Subject(), prefix))
		var c confirmation
		if !ok || json.Unmarshal(msg.Data(), &c) != nil || c.User == "" {
			return
		}
		apply(room, epoch, seq, protocol.ReceiptUser{User: c.User, Name: c.Name, At: c.At}, c.Conn)
	})
}

func (r *Receipts) subject(room, epoch string, seq uint64) string {
	return r.cfg.SubjectPrefix + "." + encodeRoom(room) + "." + encodeRoom(epoch) + "." + strconv.FormatUint(seq, 10)
}

// parseSubject reads room, epoch and seq back from a subject's last three
// tokens.
func (r *Receipts) parseSubject(tokens string) (room, epoch string, seq uint64, ok bool) {
	parts := strings.Split(tokens, ".")
	if len(parts) != 3 {
		return "", "", 0, false
	}
	room, ok1 := decodeRoom(parts[0])
	epoch, ok2 := decodeRoom(parts[1])
	seq, err := strconv.ParseUint(parts[2], 10, 64)
	return room, epoch, seq, ok1 && ok2 && err == nil
}
