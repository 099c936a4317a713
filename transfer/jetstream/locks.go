// Package jetstream implements transfer.Locker over NATS JetStream, for
// several ferry nodes sharing one store and one NATS: any node can resume
// any upload, and never two at once.
//
// The locks are a key-value bucket whose entries live TTL past their last
// write: the key is the upload's id, the value the holding node's id. A
// node takes a lock with Create (which fails when the key exists), renews
// it every TTL/3 with Update on the revision it wrote last, and releases
// it with Delete on that revision, so that it never removes a lock another
// node took since. A node that cannot renew for 2/3 of the TTL counts
// the lock as lost and stops writing the upload, a third of the TTL
// before the entry can expire and another node take it; a node that dies
// holds its locks until they expire.
//
// A node that wants an upload another node holds asks it, with a request
// on that node's subject (SubjectPrefix.<node>), to let go: the holder's
// manager drops an upload that waits for a client gone away
// (transfer.Manager.Yield), releases the lock and answers, and the asking
// node takes the lock at once. Only this package knows NATS; the manager
// sees a transfer.Locker.
package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/transfer"
)

// Defaults of Config.
const (
	DefaultBucket        = "FERRY_UPLOAD_LOCKS"
	DefaultSubjectPrefix = "ferry.upload.yield"
	DefaultTTL           = 15 * time.Second
	// MinTTL keeps renewals (every TTL/3) from flooding NATS.
	MinTTL = time.Second
	// DefaultYieldWait bounds how long Lock waits for the holder to let
	// go of an upload before it answers that the upload is locked.
	DefaultYieldWait = 2 * time.Second
)

// Config configures Locks. Zero values mean the documented defaults.
type Config struct {
	// Bucket names the key-value bucket of the locks. Default
	// DefaultBucket.
	Bucket string
	// SubjectPrefix starts the subject on which each node is asked to let
	// go of an upload. Default DefaultSubjectPrefix.
	SubjectPrefix string
	// TTL is how long a lock outlives the last renewal of its holder: how
	// long the uploads of a node that died stay locked. Default
	// DefaultTTL, at least MinTTL.
	TTL time.Duration
	// Node names this node in the locks it holds, and in its subject: a
	// subject token (letters and digits). Default: random, one per Locks.
	Node string
	// Replicas is the bucket's replication in a NATS cluster. Default 1.
	Replicas int
	// YieldWait bounds how long Lock waits for the holder to let go.
	// Default DefaultYieldWait.
	YieldWait time.Duration
	// Log receives the locks' diagnostics. Default: discard.
	Log *slog.Logger
}

// Yielder is asked to let go of an upload another node wants:
// transfer.Manager. It reports whether the upload left this node.
type Yielder interface {
	Yield(upload string) bool
}

// Locks is one node's transfer.Locker. Close releases every lock it holds.
type Locks struct {
	cfg     Config
	nc      *nats.Conn
	kv      jetstream.KeyValue
	sub     *nats.Subscription
	yielder atomic.Pointer[Yielder]

	ctx    context.Context // ends at Close: every lease lets go
	cancel context.CancelFunc
	wg     sync.WaitGroup // the leases' goroutines

	mu     sync.Mutex
	leases map[string]*lease
	closed bool
}

var (
	_ transfer.Locker = (*Locks)(nil)
	_ Yielder         = (*transfer.Manager)(nil)
)

// New opens (creating it if needed) the bucket of upload locks on nc and
// listens for other nodes asking this one to let go of an upload. Notify
// says who decides.
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Locks, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < MinTTL {
		return nil, fmt.Errorf("upload locks: a TTL of %v is below %v", cfg.TTL, MinTTL)
	}
	if cfg.Node == "" {
		var b [12]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		cfg.Node = hex.EncodeToString(b[:])
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.YieldWait <= 0 {
		cfg.YieldWait = DefaultYieldWait
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("upload locks: %w", err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "which ferry node writes each upload",
		TTL:         cfg.TTL,
		History:     1,
		// A lock is worth nothing once every node has restarted.
		Storage:  jetstream.MemoryStorage,
		Replicas: cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Another node made it: its TTL is every node's, since a lock's
		// entry expires by the bucket's TTL, and a node renewing by a
		// longer one of its own would lose its locks between renewals.
		kv, err = js.KeyValue(ctx, cfg.Bucket)
		if err == nil {
			var st jetstream.KeyValueStatus
			st, err = kv.Status(ctx)
			if err == nil && st.TTL() < MinTTL {
				err = fmt.Errorf("its TTL, %v, is below %v", st.TTL(), MinTTL)
			}
			if err == nil && st.TTL() != cfg.TTL {
				cfg.Log.Warn("upload locks: the other nodes' lock TTL is the one used", "ttl", st.TTL(), "flag", cfg.TTL)
				cfg.TTL = st.TTL()
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("upload locks: bucket %s: %w", cfg.Bucket, err)
	}
	l := &Locks{cfg: cfg, nc: nc, kv: kv, leases: make(map[string]*lease)}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	if l.sub, err = nc.Subscribe(l.subject(cfg.Node), l.askedToYield); err != nil {
		l.cancel()
		return nil, fmt.Errorf("upload locks: %w", err)
	}
	return l, nil
}

// Notify makes y decide whether this node lets go of an upload another
// node asks for. Until it is called, none is let go. The composition root
// calls it once the manager exists.
func (l *Locks) Notify(y Yielder) { l.yielder.Store(&y) }

// Node is this node's name in the locks.
func (l *Locks) Node() string { return l.cfg.Node }

func (l *Locks) subject(node string) string { return l.cfg.SubjectPrefix + "." + node }

// Lock implements transfer.Locker.
func (l *Locks) Lock(ctx context.Context, id string, lost func()) (transfer.Lease, error) {
	for asked := false; ; asked = true {
		sent := time.Now()
		rev, err := l.kv.Create(ctx, id, []byte(l.cfg.Node))
		if err == nil {
			return l.keep(id, rev, sent, lost)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("upload locks: lock %s: %w", id, err)
		}
		if asked {
			return nil, fmt.Errorf("upload %s: %w", id, transfer.ErrLocked)
		}
		e, err := l.kv.Get(ctx, id)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			continue // released meanwhile
		case err != nil:
			return nil, fmt.Errorf("upload locks: lock %s: %w", id, err)
		}
		if holder := string(e.Value()); holder == l.cfg.Node {
			l.mu.Lock()
			le := l.leases[id]
			l.mu.Unlock()
			if le != nil && !le.releasing() {
				// This node writes it, and goes on.
				return nil, fmt.Errorf("upload %s: %w", id, transfer.ErrLocked)
			}
			// One of this node's leases of it is letting go.
			wctx, cancel := context.WithTimeout(ctx, l.cfg.YieldWait)
			l.awaitRelease(wctx, id)
			cancel()
		} else if !l.ask(ctx, holder, id) {
			return nil, fmt.Errorf("upload %s held by node %s: %w", id, holder, transfer.ErrLocked)
		}
	}
}

// ask asks node holder to let go of upload id, and reports whether it
// did. A node that is gone does not answer: its lock expires.
func (l *Locks) ask(ctx context.Context, holder, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.YieldWait)
	defer cancel()
	msg, err := l.nc.RequestWithContext(ctx, l.subject(holder), []byte(id))
	if err != nil {
		l.cfg.Log.Debug("the holder of an upload lock did not answer", "upload", id, "node", holder, "err", err)
		return false
	}
	return string(msg.Data) == yielded
}

// Answers to a request to let go.
const (
	yielded = "yielded"
	kept    = "kept"
)

// askedToYield answers another node that wants an upload: this node lets
// go of it if its manager says so, or if it was letting go anyway, and
// answers once the lock is released.
func (l *Locks) askedToYield(msg *nats.Msg) {
	id := string(msg.Data)
	l.mu.Lock()
	le := l.leases[id]
	l.mu.Unlock()
	answer := yielded
	if le != nil && !le.releasing() {
		if y := l.yielder.Load(); y == nil || !(*y).Yield(id) {
			answer = kept
		}
	}
	if answer == yielded {
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.YieldWait/2)
		if !l.awaitRelease(ctx, id) {
			answer = kept
		}
		cancel()
	}
	if err := msg.Respond([]byte(answer)); err != nil {
		l.cfg.Log.Debug("cannot answer a request for an upload", "upload", id, "err", err)
	}
}

// awaitRelease waits until this node holds no lease of upload id, or ctx
// ends, and reports whether it holds none.
func (l *Locks) awaitRelease(ctx context.Context, id string) bool {
	l.mu.Lock()
	le := l.leases[id]
	l.mu.Unlock()
	if le == nil {
		return true
	}
	select {
	case <-le.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close releases every lock this node holds, so that other nodes resume
// its uploads at once, and stops listening. It returns once every lease's
// goroutine has ended; calling it again does nothing.
func (l *Locks) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	err := l.sub.Unsubscribe()
	l.cancel()
	l.wg.Wait()
	if errors.Is(err, nats.ErrConnectionClosed) {
		err = nil
	}
	return err
}
