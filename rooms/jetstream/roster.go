package jetstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/rooms"
)

// Presence across nodes, in a key-value bucket.
//
// Each node writes one key per room and user it has connections of,
// p.<node>.<hash of room and user>, whose value says the room, the user,
// its name and how many connections this node has of it; the key is
// purged when the node has none. Each node also writes n.<node>, its
// heartbeat, every Heartbeat. Every node watches the whole bucket and
// hands the other nodes' figures to its hub (rooms.Hub.ApplyPresence). A
// node whose heartbeat has not been seen for Timeout is gone: its figures
// leave every hub at once, and the live node with the smallest name purges
// its keys (a node killed without a word leaves them behind). Writes are
// coalesced per key: a burst of joins to one room costs one write per user.

// DefaultRosterBucket is RosterConfig.Bucket's default.
const DefaultRosterBucket = "FERRY_PRESENCE"

// Defaults of RosterConfig's timings.
const (
	DefaultHeartbeat  = 2 * time.Second
	DefaultFlushDelay = 50 * time.Millisecond
)

// RosterConfig configures a Roster. Zero values mean the defaults.
type RosterConfig struct {
	// Bucket is the key-value bucket's name. Default DefaultRosterBucket.
	Bucket string
	// Node names this node in the bucket: a token of letters and digits,
	// new for each process, so that a restarted node is not mistaken for
	// the one that died. Default: random.
	Node string
	// Heartbeat is how often the node says it is alive. Default
	// DefaultHeartbeat.
	Heartbeat time.Duration
	// Timeout is how long a node's heartbeat may go unseen before its
	// users leave the others' rooms. Default 3 × Heartbeat.
	Timeout time.Duration
	// FlushDelay is how long a change waits for others to share its
	// write. Default DefaultFlushDelay.
	FlushDelay time.Duration
	// MaxEntries bounds the other nodes' figures kept. Default
	// rooms.DefaultRemotePresence.
	MaxEntries int
	// MaxPending bounds the figures waiting to be written: past it (NATS
	// out of reach for long), the node forgets them and rewrites all its
	// keys once it can. Default 100,000.
	MaxPending int
	// Writes is how many writes are in flight at once. Default 32.
	Writes int
	// Replicas is the bucket's copies in a NATS cluster. Default 1.
	Replicas int
	// Log receives the roster's diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *RosterConfig) applyDefaults() {
	if c.Bucket == "" {
		c.Bucket = DefaultRosterBucket
	}
	if c.Node == "" {
		c.Node = strings.ToLower(rand.Text()[:16])
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * c.Heartbeat
	}
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = rooms.DefaultRemotePresence
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 100_000
	}
	if c.Writes <= 0 {
		c.Writes = 32
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// PresenceSink receives the other nodes' figures: a node gives its hub.
type PresenceSink interface {
	ApplyPresence(node, room, user, name string, conns int)
}

var (
	_ rooms.Roster = (*Roster)(nil)
	_ PresenceSink = (*rooms.Hub)(nil)
)

// Roster shares a hub's presence with the other nodes through a bucket.
// Set is safe for concurrent use; Run does the rest.
type Roster struct {
	cfg RosterConfig
	kv  jetstream.KeyValue
	// purgeOpts give purge markers a TTL (empty before NATS 2.11).
	purgeOpts []jetstream.KVDeleteOpt

	mu      sync.Mutex
	local   map[string]entry // key → this node's figure, conns > 0
	pending map[string]entry // key → to write; conns 0 purges
	// resync: pending was given up, or others purged this node's keys;
	// the next flush rewrites them all.
	resync bool
	kick   chan struct{}
}

// entry is a key's value.
type entry struct {
	Room  string `json:"room"`
	User  string `json:"user"`
	Name  string `json:"name,omitempty"`
	Conns int    `json:"conns"`
}

// NewRoster returns a Roster over nc, creating the bucket or updating it
// to cfg. The bucket is in memory: presence is worth nothing once every
// node has restarted.
func NewRoster(ctx context.Context, nc *nats.Conn, cfg RosterConfig) (*Roster, error) {
	cfg.applyDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	kcfg := jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "ferry: who is in each room, per node",
		History:     1,
		// A purged key's marker goes after a while, so that keys of
		// nodes long gone do not pile up.
		LimitMarkerTTL: markerTTL,
		MaxValueSize:   1024,
		Storage:        jetstream.MemoryStorage,
		Replicas:       cfg.Replicas,
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, kcfg)
	var purge []jetstream.KVDeleteOpt
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		// NATS before 2.11: markers stay, one per key a node had.
		kcfg.LimitMarkerTTL = 0
		kv, err = js.CreateOrUpdateKeyValue(ctx, kcfg)
	} else {
		purge = []jetstream.KVDeleteOpt{jetstream.PurgeTTL(markerTTL)}
	}
	if err != nil {
		return nil, fmt.Errorf("jetstream: bucket %s: %w", cfg.Bucket, err)
	}
	return &Roster{cfg: cfg, kv: kv, purgeOpts: purge, local: make(map[string]entry), pending: make(map[string]entry),
		kick: make(chan struct{}, 1)}, nil
}

// markerTTL is how long a purged key's marker stays in the bucket.
const markerTTL = time.Minute

// purge purges key, its marker to go after markerTTL where NATS can.
func (r *Roster) purge(ctx context.Context, key string) error {
	return r.kv.Purge(ctx, key, r.purgeOpts...)
}

// Node is this node's name in the bucket.
func (r *Roster) Node() string { return r.cfg.Node }

// Set implements rooms.Roster.
func (r *Roster) Set(room, user, name string, conns int) {
	k := entryKey(r.cfg.Node, room, user)
	e := entry{Room: room, User: user, Name: name, Conns: conns}
	r.mu.Lock()
	if conns > 0 {
		r.local[k] = e
	} else {
		delete(r.local, k)
	}
	if _, ok := r.pending[k]; !ok && len(r.pending) >= r.cfg.MaxPending {
		r.pending, r.resync = make(map[string]entry), true
	} else {
		r.pending[k] = e
	}
	r.mu.Unlock()
	r.wake()
}

func (r *Roster) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run writes this node's figures and heartbeat, and hands the others' to
// sink, until ctx ends; it then purges this node's keys (within a few
// seconds), so that its users leave the others' rooms at once.
func (r *Roster) Run(ctx context.Context, sink PresenceSink) error {
	var wg sync.WaitGroup
	wg.Go(func() { r.beat(ctx) })
	wg.Go(func() { r.flushLoop(ctx) })
	w := newWatch(r, sink)
	wg.Go(func() { w.cleanLoop(ctx) })
	w.run(ctx)
	wg.Wait()
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.leave(lctx); err != nil {
		r.cfg.Log.Warn("presence: purge this node's keys", "err", err)
	}
	return ctx.Err()
}

// beat writes the heartbeat every Heartbeat.
func (r *Roster) beat(ctx context.Context) {
	t := time.NewTicker(r.cfg.Heartbeat)
	defer t.Stop()
	for {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.Heartbeat)
		_, err := r.kv.Put(wctx, "n."+r.cfg.Node, []byte(`{}`))
		cancel()
		if err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("presence: heartbeat", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// flushLoop writes the pending figures, FlushDelay after a change, and
// again a second after a write fails.
func (r *Roster) flushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.FlushDelay):
		}
		if err := r.flush(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Log.Warn("presence: write this node's figures; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			r.wake()
		}
	}
}

// flush writes what is pending; what fails is pending again unless a
// newer figure came meanwhile.
func (r *Roster) flush(ctx context.Context) error {
	r.mu.Lock()
	batch, resync := r.pending, r.resync
	r.pending, r.resync = make(map[string]entry), false
	r.mu.Unlock()
	if resync {
		var err error
		if batch, err = r.everything(ctx); err != nil {
			r.mu.Lock()
			r.resync = true
			r.mu.Unlock()
			return err
		}
	}
	failed, err := r.write(ctx, batch)
	if len(failed) > 0 {
		r.mu.Lock()
		for k, e := range failed {
			if _, newer := r.pending[k]; !newer && len(r.pending) < r.cfg.MaxPending {
				r.pending[k] = e
			} else if !newer {
				r.resync = true
			}
		}
		r.mu.Unlock()
	}
	return err
}

// everything is a batch rewriting all this node's keys: its figures, and
// purges of its keys in the bucket it no longer has.
func (r *Roster) everything(ctx context.Context) (map[string]entry, error) {
	keys, err := r.ownKeys(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	batch := make(map[string]entry, len(r.local)+len(keys))
	for _, k := range keys {
		batch[k] = entry{}
	}
	for k, e := range r.local {
		batch[k] = e
	}
	// Figures set since are written after these.
	for k, e := range r.pending {
		batch[k] = e
	}
	r.pending = make(map[string]entry)
	return batch, nil
}

func (r *Roster) ownKeys(ctx context.Context) ([]string, error) {
	l, err := r.kv.ListKeysFiltered(ctx, "p."+r.cfg.Node+".>")
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range l.Keys() {
		keys = append(keys, k)
	}
	return keys, nil
}

// write puts or purges each key of batch, Writes at once, and returns
// those that failed or were not tried and the first error. After a
// failure it tries no more: with NATS out of reach, each write would wait
// its whole timeout.
func (r *Roster) write(ctx context.Context, batch map[string]entry) (map[string]entry, error) {
	var (
		mu       sync.Mutex
		failed   = make(map[string]entry)
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, r.cfg.Writes)
	)
	for k, e := range batch {
		slots <- struct{}{}
		mu.Lock()
		stop := firstErr != nil
		if stop {
			failed[k] = e
		}
		mu.Unlock()
		if stop {
			<-slots
			continue
		}
		wg.Go(func() {
			defer func() { <-slots }()
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			defer cancel()
			var err error
			if e.Conns > 0 {
				b, _ := json.Marshal(e)
				_, err = r.kv.Put(wctx, k, b)
			} else {
				err = r.purge(wctx, k)
			}
			if err != nil {
				mu.Lock()
				failed[k] = e
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return failed, firstErr
}

// writeTimeout bounds one write to the bucket.
const writeTimeout = 5 * time.Second

// leave purges this node's keys and then its heartbeat.
func (r *Roster) leave(ctx context.Context) error {
	keys, err := r.ownKeys(ctx)
	if err != nil {
		return err
	}
	batch := make(map[string]entry, len(keys))
	for _, k := range keys {
		batch[k] = entry{}
	}
	_, err = r.write(ctx, batch)
	return errors.Join(err, r.purge(ctx, "n."+r.cfg.Node))
}

// entryKey is the key of node's figure for user in room: names may hold
// characters keys cannot, and have any length, so the key has a hash of
// them; the value says them.
func entryKey(node, room, user string) string {
	sum := sha256.Sum256([]byte(room + "\x00" + user))
	return "p." + node + "." + base64.RawURLEncoding.EncodeToString(sum[:18])
}
