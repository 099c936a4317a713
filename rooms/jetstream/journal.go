// Package jetstream keeps ferry rooms' history in NATS JetStream: Journal
// implements rooms.Journal over one stream, and Embedded runs a NATS server
// with JetStream inside the process, for a single node that keeps its
// history in its data folder. Only this package knows NATS; the hub sees a
// rooms.Journal.
//
// The mapping: one stream (DefaultStream) holds every room, one subject per
// room (SubjectPrefix + "." + the room name encoded as one subject token);
// a message is one event, its data the event frame exactly as members got
// it, its headers ferry's position (epoch, seq), the hub's time and the
// sender. The stream's limits are the history's: MaxMsgsPerSubject is the
// events a room keeps, MaxAge how long, MaxBytes all rooms on disk. A
// room's epoch is the one of its newest message: a room whose messages
// have all expired starts a new epoch, as a room whose history expired in
// memory always has, and an event and its position are one write.
package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/rooms"
)

// Defaults of Config.
const (
	DefaultStream        = "FERRY_ROOMS"
	DefaultSubjectPrefix = "ferry.room"
	// DefaultMaxPerRoom matches rooms.Config.HistorySize's default.
	DefaultMaxPerRoom = 1000
	// DefaultMaxBytes bounds the history of all rooms on disk.
	DefaultMaxBytes = 1 << 30
)

// Config configures a Journal. Zero values mean the documented defaults.
// The hub applies its own HistoryTTL, HistorySize and HistoryBytes to what
// it loads, so these should be at least as long; `ferry serve` gives both
// the same flags.
type Config struct {
	// Stream names the JetStream stream. Default DefaultStream.
	Stream string
	// SubjectPrefix starts every room's subject. Default
	// DefaultSubjectPrefix.
	SubjectPrefix string
	// MaxAge is how long an event is kept. Default rooms.DefaultJournalTTL.
	MaxAge time.Duration
	// MaxPerRoom is how many events a room keeps, the newest. Default
	// DefaultMaxPerRoom.
	MaxPerRoom int
	// MaxBytes bounds the stream, all rooms together; past it the oldest
	// events of the stream go, whatever their room. Default
	// DefaultMaxBytes.
	MaxBytes int64
	// Replicas is the stream's replication in a cluster. Default 1.
	Replicas int
	// Log receives the journal's diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *Config) applyDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultSubjectPrefix
	}
	if c.MaxAge <= 0 {
		c.MaxAge = rooms.DefaultJournalTTL
	}
	if c.MaxPerRoom <= 0 {
		c.MaxPerRoom = DefaultMaxPerRoom
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Headers of a journaled event. The event frame carries the same, but a
// load reads them without decoding the frame.
const (
	hdrEpoch = "Ferry-Epoch"
	hdrSeq   = "Ferry-Seq"
	hdrAt    = "Ferry-At" // Unix nanoseconds, by the hub's clock
	hdrUser  = "Ferry-User"
	hdrConn  = "Ferry-Conn"
	hdrMsgID = "Ferry-Msg-Id"
	// hdrReceipt, "1", marks an event whose sender asked for receipts.
	hdrReceipt = "Ferry-Receipt"
)

// Journal keeps rooms' events in a JetStream stream. Its methods are safe
// for concurrent use. It does not own the connection it was given.
type Journal struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
}

var _ rooms.JournalLimit = (*Journal)(nil)

// New returns a Journal over nc, creating the stream, or updating its
// limits to cfg's (a changed flag takes effect at the next start).
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Journal, error) {
	cfg.applyDefaults()
	js, stream, err := openHistory(ctx, nc, history{
		name:        cfg.Stream,
		description: "ferry: the events of named rooms, for replay",
		subjects:    []string{cfg.SubjectPrefix + ".*"},
		maxAge:      cfg.MaxAge,
		perSubject:  cfg.MaxPerRoom,
		maxBytes:    cfg.MaxBytes,
		replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &Journal{cfg: cfg, nc: nc, js: js, stream: stream}, nil
}

// headerRoom is what a record's headers take at most: ids are at most 128
// bytes, the rest is numbers and names.
const headerRoom = 1024

// MaxRecordBytes is the largest event frame the server takes in one
// message (its max_payload, less the headers); the hub journals larger
// events' positions only.
func (j *Journal) MaxRecordBytes() int {
	return int(j.nc.MaxPayload()) - headerRoom
}

// Append stores rec as room's newest event and returns once JetStream has
// it: with the embedded server, written to its file (see Embedded).
func (j *Journal) Append(ctx context.Context, room string, rec rooms.Record) error {
	_, err := j.js.PublishMsg(ctx, j.message(room, rec))
	if err != nil {
		return fmt.Errorf("jetstream: append to %s: %w", room, err)
	}
	return nil
}

// message is rec as the stream keeps it.
func (j *Journal) message(room string, rec rooms.Record) *nats.Msg {
	h := nats.Header{
		hdrEpoch: {rec.Epoch},
		hdrSeq:   {strconv.FormatUint(rec.Seq, 10)},
		hdrAt:    {strconv.FormatInt(rec.At.UnixNano(), 10)},
		hdrUser:  {rec.User},
	}
	if rec.Conn != "" {
		h[hdrConn] = []string{rec.Conn}
	}
	if rec.MsgID != "" {
		h[hdrMsgID] = []string{rec.MsgID}
	}
	if rec.Receipt {
		h[hdrReceipt] = []string{"1"}
	}
	return &nats.Msg{Subject: j.subject(room), Header: h, Data: rec.JSON}
}

// loadBatch is how many messages one fetch asks for: a room's whole
// default history in one round trip.
const loadBatch = 1000

// Load returns the events room keeps in its latest epoch, oldest first.
func (j *Journal) Load(ctx context.Context, room string) ([]rooms.Record, error) {
	subject := j.subject(room)
	// Most rooms touched are new or expired: one request says so. Asked
	// of the stream's leader through the JetStream API, not a direct get
	// any replica may answer: one behind would miss the newest.
	last, err := lastSeq(ctx, j.nc, j.cfg.Stream, subject)
	if err != nil {
		return nil, fmt.Errorf("jetstream: load %s: %w", room, err)
	}
	if last == 0 {
		return nil, nil
	}
	cons, err := j.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckNonePolicy,
		MemoryStorage: true,
		// Gone by itself if this process dies before deleting it.
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: load %s: %w", room, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := j.stream.DeleteConsumer(ctx, cons.CachedInfo().Name); err != nil {
			j.cfg.Log.Debug("jetstream: delete load consumer", "room", room, "err", err)
		}
	}()
	var recs []rooms.Record
	for {
		// No wait: what is there now is all there is, as only the hub
		// writes the room and it waits for this load.
		batch, err := cons.FetchNoWait(loadBatch)
		if err != nil {
			return nil, fmt.Errorf("jetstream: load %s: %w", room, err)
		}
		n := 0
		var stop bool
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err == nil && md.Sequence.Stream >= last {
				stop = true
			}
			rec, err := decode(msg.Headers(), msg.Data())
			if err != nil {
				j.cfg.Log.Warn("jetstream: skip a message that is not a ferry event", "room", room, "err", err)
				continue
			}
			if md != nil {
				rec.Pos = md.Sequence.Stream
			}
			recs = append(recs, rec)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("jetstream: load %s: %w", room, err)
		}
		if n == 0 || stop {
			break
		}
	}
	return latestEpoch(recs), nil
}

// latestEpoch keeps the records of the newest record's epoch: older ones
// were left by an epoch that ended (an append whose outcome was unknown).
func latestEpoch(recs []rooms.Record) []rooms.Record {
	if len(recs) == 0 {
		return nil
	}
	epoch := recs[len(recs)-1].Epoch
	out := recs[:0]
	for _, r := range recs {
		if r.Epoch == epoch {
			out = append(out, r)
		}
	}
	return out
}

func decode(h nats.Header, data []byte) (rooms.Record, error) {
	seq, err := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
	if err != nil {
		return rooms.Record{}, fmt.Errorf("%s: %w", hdrSeq, err)
	}
	at, err := strconv.ParseInt(h.Get(hdrAt), 10, 64)
	if err != nil {
		return rooms.Record{}, fmt.Errorf("%s: %w", hdrAt, err)
	}
	epoch := h.Get(hdrEpoch)
	if epoch == "" || (seq == 0 && len(data) > 0) {
		return rooms.Record{}, errors.New("no position")
	}
	if len(data) == 0 {
		data = nil // a position only: the event was too large to keep
	}
	return rooms.Record{Epoch: epoch, Seq: seq, At: time.Unix(0, at), User: h.Get(hdrUser),
		Conn: h.Get(hdrConn), MsgID: h.Get(hdrMsgID), Receipt: h.Get(hdrReceipt) == "1", JSON: data}, nil
}

func (j *Journal) subject(room string) string {
	return j.cfg.SubjectPrefix + "." + encodeRoom(room)
}

// encodeRoom turns a room name into one subject token. Room names allow
// '.', which separates tokens, and ':' and '@', which NATS accepts but
// its tools and permissions handle poorly; letters, digits and '-' stay as
// they are, so subjects stay readable in `nats stream subjects`, and every
// other byte, '_' included (which makes the encoding reversible), becomes
// '_' and two hex digits: "team:1.ops" is "team_3a1_2eops".
func encodeRoom(room string) string {
	var b strings.Builder
	b.Grow(len(room) + 8)
	for i := 0; i < len(room); i++ {
		c := room[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			const hex = "0123456789abcdef"
			b.WriteByte('_')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
