package jetstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/rooms"
)

// Defaults of MailConfig.
const (
	DefaultMailStream        = "FERRY_MAIL"
	DefaultMailSubjectPrefix = "ferry.mail"
	// DefaultMailBucket is the key-value bucket of the direct-message
	// stream's position.
	DefaultMailBucket = "FERRY_DIRECT"
	// DefaultMailMaxAge matches rooms.Config.OfflineTTL's default.
	DefaultMailMaxAge = 24 * time.Hour
	// DefaultMailMaxBytes is four times rooms.Config.OfflineTotalBytes's
	// default: room for each letter's headers, and for letters whose
	// deletion is late.
	DefaultMailMaxBytes = 256 << 20
)

// MailConfig configures Mailboxes. Zero values mean the documented
// defaults. The hub keeps what it loads within its own bounds and
// OfflineTTL; MaxAge should be as long, and `ferry serve` gives both the
// same flag.
type MailConfig struct {
	// Stream names the stream of the letters. Default DefaultMailStream.
	Stream string
	// SubjectPrefix starts every recipient's subject. Default
	// DefaultMailSubjectPrefix.
	SubjectPrefix string
	// Bucket names the key-value bucket of the direct-message position.
	// Default DefaultMailBucket.
	Bucket string
	// MaxAge is how long a letter is kept. Default DefaultMailMaxAge.
	MaxAge time.Duration
	// MaxBytes bounds the stream; past it, new letters are refused (the
	// sender is told), never old ones dropped. Default DefaultMailMaxBytes.
	MaxBytes int64
	// Replicas is the stream's and the bucket's replication in a cluster.
	// Default 1.
	Replicas int
	// Node names this process among the ferry nodes sharing the stream
	// and the bucket: its letters go on subjects of its own
	// (SubjectPrefix.<node>.<user>) and its direct-message position under
	// a key of its own, so that nodes never write each other's and each
	// loads its own letters only. "" is the layout of a single node
	// (SubjectPrefix.<user>, one key): a named node that finds that layout
	// not yet adopted adopts it, once, for all nodes (see LoadMail).
	Node string
	// Log receives the store's diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *MailConfig) applyDefaults() {
	if c.Stream == "" {
		c.Stream = DefaultMailStream
	}
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultMailSubjectPrefix
	}
	if c.Bucket == "" {
		c.Bucket = DefaultMailBucket
	}
	if c.MaxAge <= 0 {
		c.MaxAge = DefaultMailMaxAge
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMailMaxBytes
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Headers of a letter, besides those of an event (hdrEpoch, hdrSeq, hdrAt,
// hdrMsgID; hdrUser is the sender).
const hdrTo = "Ferry-To"

// positionKey is the bucket's key of the direct-message position of a
// single node (MailConfig.Node ""); a named node's is
// positionKey.<node>.
const positionKey = "position"

// Mailboxes keeps the letters waiting for users in a JetStream stream, one
// subject per recipient, and the direct-message stream's position in a
// key-value bucket. Its methods are safe for concurrent use. It does not
// own the connection it was given.
type Mailboxes struct {
	cfg    MailConfig
	js     jetstream.JetStream
	stream jetstream.Stream
	kv     jetstream.KeyValue

	id string // random, for position.By
	// key is this process's position key; legacy: it adopted the
	// single-node layout, whose letters it loads and takes too (subjects).
	key    string
	legacy bool

	mu sync.Mutex
	// rev is the position's revision as this process last read or wrote
	// it (0: none), and tried the value it wrote or tried to write last:
	// an update is a compare-and-set, so that two processes on one store
	// are caught.
	rev   uint64
	tried []byte
}

var _ rooms.Mailboxes = (*Mailboxes)(nil)

// NewMailboxes returns Mailboxes over nc, creating the stream and the
// bucket, or updating their limits to cfg's.
func NewMailboxes(ctx context.Context, nc *nats.Conn, cfg MailConfig) (*Mailboxes, error) {
	cfg.applyDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "ferry: direct messages waiting for users who are not connected",
		// A single node's letters, and named nodes' (see MailConfig.Node).
		Subjects:  []string{cfg.SubjectPrefix + ".*", cfg.SubjectPrefix + ".*.*"},
		Retention: jetstream.LimitsPolicy,
		// The hub decides which letters go (its fair eviction) and deletes
		// them: the stream never drops one by itself but by age, and
		// refuses a letter rather than drop another when full.
		Discard:           jetstream.DiscardNew,
		MaxAge:            cfg.MaxAge,
		MaxMsgsPerSubject: -1,
		MaxBytes:          cfg.MaxBytes,
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: stream %s: %w", cfg.Stream, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "ferry: the direct-message stream's epoch and reserved seqs",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: bucket %s: %w", cfg.Bucket, err)
	}
	m := &Mailboxes{cfg: cfg, js: js, stream: stream, kv: kv, id: rand.Text(), key: positionKey}
	if cfg.Node != "" {
		m.key = positionKey + "." + encodeRoom(cfg.Node)
	}
	return m, nil
}

// position is the bucket's value.
type position struct {
	Epoch   string `json:"epoch"`
	Through uint64 `json:"through"`
	// By names the Mailboxes that wrote it, so that two processes
	// reserving the same block do not take each other's write for their
	// own.
	By string `json:"by"`
	// AdoptedBy, in the single-node layout's key, names the node that
	// took that layout's position and letters over.
	AdoptedBy string `json:"adopted_by,omitempty"`
}

// LoadMail returns this node's letters, oldest first, and the position it
// saved last. A named node without a position of its own adopts the
// single-node layout's, if nobody did (a compare-and-set marks it adopted,
// so one node only does): its epoch and seqs go on, and its letters are
// loaded and taken by this node from then on.
func (m *Mailboxes) LoadMail(ctx context.Context) (rooms.Mail, error) {
	var mail rooms.Mail
	own, rev, err := m.readPosition(ctx, m.key)
	if err != nil {
		return rooms.Mail{}, err
	}
	if own != nil {
		mail.Epoch, mail.Ceiling = own.Epoch, own.Through
		m.mu.Lock()
		m.rev = rev
		m.mu.Unlock()
	}
	if m.cfg.Node != "" {
		old, err := m.adopt(ctx, own == nil)
		if err != nil {
			return rooms.Mail{}, err
		}
		if old != nil && own == nil {
			mail.Epoch, mail.Ceiling = old.Epoch, old.Through
		}
	}
	if mail.Letters, err = m.letters(ctx); err != nil {
		return rooms.Mail{}, err
	}
	return mail, nil
}

// readPosition returns the position under key, nil if there is none.
func (m *Mailboxes) readPosition(ctx context.Context, key string) (*position, uint64, error) {
	entry, err := m.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("jetstream: load the direct-message position: %w", err)
	}
	var p position
	if err := json.Unmarshal(entry.Value(), &p); err != nil {
		return nil, 0, fmt.Errorf("jetstream: the direct-message position %q: %w", entry.Value(), err)
	}
	return &p, entry.Revision(), nil
}

// adopt finds whether this node holds the single-node layout (m.legacy),
// taking it over when take and nobody has, and returns its position when
// this node holds it.
func (m *Mailboxes) adopt(ctx context.Context, take bool) (*position, error) {
	old, rev, err := m.readPosition(ctx, positionKey)
	if err != nil || old == nil {
		return nil, err
	}
	switch {
	case old.AdoptedBy == m.cfg.Node:
	case old.AdoptedBy != "" || !take:
		return nil, nil
	default:
		mine := *old
		mine.AdoptedBy = m.cfg.Node
		value, err := json.Marshal(mine)
		if err != nil {
			return nil, err
		}
		if _, err := m.kv.Update(ctx, positionKey, value, rev); err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				return nil, nil // another node adopted it first
			}
			return nil, fmt.Errorf("jetstream: adopt the single-node direct-message position: %w", err)
		}
		m.cfg.Log.Info("jetstream: this node takes over the direct messages of the single-node layout", "node", m.cfg.Node, "epoch", old.Epoch)
	}
	m.legacy = true
	return old, nil
}

// letters reads this node's letters (subjects) with an ephemeral
// consumer, as a room's load does.
func (m *Mailboxes) letters(ctx context.Context) ([]rooms.Letter, error) {
	cons, err := m.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubjects:    m.subjects("*"),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream: load letters: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := m.stream.DeleteConsumer(ctx, cons.CachedInfo().Name); err != nil {
			m.cfg.Log.Debug("jetstream: delete the letters' load consumer", "err", err)
		}
	}()
	// This node's letters when the consumer was made (later ones the hub
	// has already); bounded by the stream's MaxBytes.
	pending := cons.CachedInfo().NumPending
	if pending == 0 {
		return nil, nil
	}
	out := make([]rooms.Letter, 0, pending)
	var read uint64
	for {
		batch, err := cons.FetchNoWait(loadBatch)
		if err != nil {
			return nil, fmt.Errorf("jetstream: load letters: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			read++
			md, err := msg.Metadata()
			if err != nil {
				return nil, fmt.Errorf("jetstream: load letters: %w", err)
			}
			l, err := decodeLetter(msg.Headers(), msg.Data())
			if err != nil {
				m.cfg.Log.Warn("jetstream: skip a message that is not a ferry letter", "seq", md.Sequence.Stream, "err", err)
				continue
			}
			l.Ref = rooms.MailRef(md.Sequence.Stream)
			out = append(out, l)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("jetstream: load letters: %w", err)
		}
		if n == 0 || read >= pending {
			return out, nil
		}
	}
}

func decodeLetter(h nats.Header, data []byte) (rooms.Letter, error) {
	rec, err := decode(h, data)
	if err != nil {
		return rooms.Letter{}, err
	}
	to := h.Get(hdrTo)
	if to == "" || rec.User == "" || rec.JSON == nil {
		return rooms.Letter{}, errors.New("no recipient, sender or frame")
	}
	return rooms.Letter{User: to, Sender: rec.User, MsgID: rec.MsgID, Epoch: rec.Epoch, Seq: rec.Seq,
		At: rec.At, JSON: rec.JSON}, nil
}

// PutLetter stores l on its recipient's subject and returns its stream
// sequence once JetStream has it: with the embedded server, written to its
// file (see Embedded).
func (m *Mailboxes) PutLetter(ctx context.Context, l rooms.Letter) (rooms.MailRef, error) {
	h := nats.Header{
		hdrTo:    {l.User},
		hdrUser:  {l.Sender},
		hdrEpoch: {l.Epoch},
		hdrSeq:   {strconv.FormatUint(l.Seq, 10)},
		hdrAt:    {strconv.FormatInt(l.At.UnixNano(), 10)},
	}
	if l.MsgID != "" {
		h[hdrMsgID] = []string{l.MsgID}
	}
	ack, err := m.js.PublishMsg(ctx, &nats.Msg{Subject: m.subject(encodeRoom(l.User)), Header: h, Data: l.JSON},
		jetstream.WithExpectStream(m.cfg.Stream))
	if err != nil {
		return 0, fmt.Errorf("jetstream: put a letter for %s: %w", l.User, err)
	}
	return rooms.MailRef(ack.Sequence), nil
}

// DropLetter deletes one letter.
func (m *Mailboxes) DropLetter(ctx context.Context, user string, ref rooms.MailRef) error {
	err := m.stream.DeleteMsg(ctx, uint64(ref))
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("jetstream: drop letter %d for %s: %w", ref, user, err)
	}
	return nil
}

// TakeLetters purges user's subject up to through, in one request (two
// for a node that adopted the single-node layout).
func (m *Mailboxes) TakeLetters(ctx context.Context, user string, through rooms.MailRef) error {
	for _, subject := range m.subjects(encodeRoom(user)) {
		err := m.stream.Purge(ctx, jetstream.WithPurgeSubject(subject), jetstream.WithPurgeSequence(uint64(through)+1))
		if err != nil {
			return fmt.Errorf("jetstream: take the letters of %s: %w", user, err)
		}
	}
	return nil
}

// ReserveSeqs saves the position, a compare-and-set on the revision this
// process read or wrote last: another process writing it is an error.
func (m *Mailboxes) ReserveSeqs(ctx context.Context, epoch string, through uint64) error {
	value, err := json.Marshal(position{Epoch: epoch, Through: through, By: m.id})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.tried
	m.tried = value
	for try := 0; ; try++ {
		var rev uint64
		if m.rev == 0 {
			rev, err = m.kv.Create(ctx, m.key, value)
		} else {
			rev, err = m.kv.Update(ctx, m.key, value, m.rev)
		}
		if err == nil {
			m.rev = rev
			return nil
		}
		if try > 0 || !(errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)) {
			return fmt.Errorf("jetstream: save the direct-message position: %w", err)
		}
		// A write whose answer was lost (a timeout) may have landed: then
		// the stored value is one this process tried, and its revision
		// this process's.
		entry, gerr := m.kv.Get(ctx, m.key)
		if gerr != nil || !bytes.Equal(entry.Value(), prev) && !bytes.Equal(entry.Value(), value) {
			return fmt.Errorf("jetstream: the direct-message position was written by another process (is a second ferry using this NATS?): %w", err)
		}
		m.rev = entry.Revision()
	}
}

// subject is the subject of the letters for token, an encoded user id (or
// a wildcard), in this node's layout.
// subjects are the subjects of the letters for token (a user's, or "*"):
// this node's, and the single-node layout's once it adopted it.
func (m *Mailboxes) subjects(token string) []string {
	if m.legacy {
		return []string{m.subject(token), m.cfg.SubjectPrefix + "." + token}
	}
	return []string{m.subject(token)}
}

func (m *Mailboxes) subject(token string) string {
	if m.cfg.Node != "" {
		return m.cfg.SubjectPrefix + "." + encodeRoom(m.cfg.Node) + "." + token
	}
	return m.cfg.SubjectPrefix + "." + token
}
