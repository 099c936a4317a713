package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/rooms/jetstream"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer"
	transferjs "github.com/ferryhq/ferry/transfer/jetstream"
)

// node is one ferry server process and the composition root: the only
// place that builds the concrete parts (the store, the rooms hub, the
// transfer manager, the server, the HTTP server on its capped listener)
// and wires them. newNode builds; Run starts the parts' loops and serves
// until its context ends; Shutdown stops them, connections first.
type node struct {
	log    *slog.Logger
	store  storage.Store
	where  string // where files are stored, for the listening line
	hub    *rooms.Hub
	tm     *transfer.Manager
	srv    *server.Server
	hs     *http.Server
	ln     net.Listener
	scheme string
	certs  *certReloader // nil without TLS
	// state is where rooms' history and waiting direct messages are kept:
	// closed after the server.
	state io.Closer
	// feeds, with --nats, give the hub what other nodes write: the events
	// they append to the rooms' journal (see rooms.SharedJournal), the
	// receipts they take.
	feeds []feed
	// roster, with --nats, shares presence with the other nodes.
	roster *jetstream.Roster
	// router, with --nats, carries direct messages to and from the other
	// nodes (see rooms.Router).
	router *jetstream.Router

	// The parts' loops, ended by Shutdown after the connections.
	stopLoops context.CancelFunc
	loops     sync.WaitGroup
	served    chan error // hs.Serve's result, once Run started it

	shutOnce sync.Once
	shutErr  error
}

// newNode builds a node from the serve flags. Nothing runs yet but the
// listener, which is open when it returns.
func newNode(ctx context.Context, f *serveFlags, log *slog.Logger) (n *node, err error) {
	n = &node{log: log, scheme: "http"}
	// What is open so far, closed on failure (a failing return sets n to nil).
	built := n
	defer func() {
		if err != nil {
			built.closeStore()
			if built.state != nil {
				_ = built.state.Close()
			}
		}
	}()
	cfg, err := f.serverConfig(log, nil)
	if err != nil {
		return nil, err
	}
	if n.store, n.where, err = openStore(ctx, f, log); err != nil {
		return nil, err
	}
	st, err := openState(ctx, f, log)
	if err != nil {
		return nil, err
	}
	n.state, cfg.History.Journal, cfg.History.Mailboxes, cfg.Files = st.closer, st.journal, st.mail, st.files
	cfg.History.Receipts = st.receipts
	if st.router != nil {
		cfg.History.Router, n.router = st.router, st.router
	}
	if cfg.AnonKey, err = nodeKey(ctx, f, log, st.nc); err != nil {
		return nil, err
	}
	locks, err := openLocks(ctx, f, log, st.nc)
	if err != nil {
		return nil, err
	}
	var locker transfer.Locker // nil: no other node
	if locks != nil {
		locker = locks
		// The locks let go before the connection they need closes.
		stop := n.state
		n.state = closerFunc(func() error { return errors.Join(locks.Close(), stop.Close()) })
	}
	n.tm, err = transfer.New(transfer.Config{
		Store:             n.store,
		PartSize:          f.partSize,
		Parts:             f.partBuffers,
		BigPartSize:       max(f.bigPartSize, f.partSize),
		BigParts:          f.bigPartBuffers,
		PartMemory:        f.partMemory,
		PartMemoryPerUser: f.partMemoryUser,
		Quota:             f.quota,
		Idle:              f.uploadIdle,
		StorageTimeout:    f.storageTimeout,
		MaxChunk:          f.maxChunk,
		MaxFileSize:       f.maxFileSize,
		MaxUploads:        f.maxUploads,
		MaxUploadsPerUser: f.maxUserUploads,
		TTL:               f.uploadTTL,
		Policy:            transfer.Policy{AllowExecutables: f.allowExec},
		NoThumbnails:      !f.thumbnails,
		PreviewMaxPixels:  f.thumbMaxPixels,
		KeepEXIF:          !f.stripEXIF,
		Locker:            locker,
		Log:               log,
	})
	if err != nil {
		return nil, err
	}
	if locks != nil {
		// Another node asking for an upload: the manager decides.
		locks.Notify(n.tm)
	}
	if n.roster, err = openRoster(ctx, f, log, st.nc); err != nil {
		return nil, err
	}
	if n.roster != nil {
		cfg.History.Roster = n.roster
	}
	n.hub = server.NewHub(cfg)
	if j, ok := cfg.History.Journal.(*jetstream.Journal); ok && f.natsURL != "" {
		n.feeds = append(n.feeds, feed{"the other nodes' events", func(ctx context.Context) error {
			return j.Follow(ctx, n.hub.Apply)
		}})
	}
	if r, ok := cfg.History.Receipts.(*jetstream.Receipts); ok && f.natsURL != "" {
		n.feeds = append(n.feeds, feed{"the other nodes' receipts", func(ctx context.Context) error {
			return r.Follow(ctx, n.hub.ApplyReceipt)
		}})
	}
	if err := n.hub.LoadMailboxes(ctx); err != nil {
		return nil, err
	}
	cfg.Hub, cfg.Transfer = n.hub, n.tm
	if n.srv, err = server.New(cfg); err != nil {
		return nil, err
	}
	// Finished uploads are announced by the server to their rooms.
	n.tm.Notify(n.srv)

	if f.tlsCert != "" || f.tlsKey != "" {
		if n.certs, err = newCertReloader(f.tlsCert, f.tlsKey, log); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return nil, err
	}
	n.ln = n.srv.Listen(ln)
	if n.certs != nil {
		n.scheme = "https"
		n.ln = tls.NewListener(n.ln, n.certs.serverTLS())
	}
	n.hs = &http.Server{
		Handler:           n.srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return n, nil
}

// Run starts the hub's and the transfer manager's loops and the
// certificate watcher, and serves until ctx ends (nil) or serving fails.
// Either way the caller then calls Shutdown.
func (n *node) Run(ctx context.Context) error {
	lctx, stop := context.WithCancel(context.Background())
	n.stopLoops = stop
	n.loops.Go(func() { _ = n.hub.Run(lctx) })
	n.loops.Go(func() { _ = n.tm.Run(lctx) })
	for _, fd := range n.feeds {
		n.loops.Go(func() { n.follow(lctx, fd) })
	}
	if n.roster != nil {
		n.loops.Go(func() { _ = n.roster.Run(lctx, n.hub) })
	}
	if n.router != nil {
		n.loops.Go(func() {
			if err := n.router.Run(lctx, n.hub); lctx.Err() == nil {
				n.log.Error("direct messages from other nodes are not received", "err", err)
			}
		})
	}
	if n.certs != nil {
		n.loops.Go(func() { n.certs.watch(lctx) })
	}
	// Through the logger, so that every line of the server has one format.
	n.log.Info("listening on "+strings.Join(openableURLs(n.scheme, n.ln.Addr()), " and "), "files", n.where)
	n.served = make(chan error, 1)
	go func() { n.served <- n.hs.Serve(n.ln) }()
	select {
	case err := <-n.served:
		n.served <- err // for Shutdown
		return err
	case <-ctx.Done():
		return nil
	}
}

// feed is a NATS stream a node follows, and what it is, for the log.
type feed struct {
	what   string
	follow func(context.Context) error
}

// follow runs fd until ctx ends, starting again a second after it fails
// (NATS unreachable at start; a feed itself rides out reconnections).
func (n *node) follow(ctx context.Context, fd feed) {
	for {
		err := fd.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("following "+fd.what, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Shutdown stops the node within ctx: the server closes its connections,
// the HTTP server its listener, the transfer manager its uploads (they
// stay resumable); then the loops end and the store closes. Calling it
// again returns the first result.
func (n *node) Shutdown(ctx context.Context) error {
	n.shutOnce.Do(func() {
		err := errors.Join(n.srv.Shutdown(ctx), n.hs.Shutdown(ctx), n.tm.Shutdown(ctx))
		if n.served != nil {
			if e := <-n.served; !errors.Is(e, http.ErrServerClosed) {
				err = errors.Join(err, e)
			}
			n.stopLoops()
			n.loops.Wait()
		} else {
			_ = n.ln.Close()
		}
		n.closeStore()
		if n.state != nil {
			err = errors.Join(err, n.state.Close())
		}
		n.shutErr = err
	})
	return n.shutErr
}

func (n *node) closeStore() {
	if c, ok := n.store.(io.Closer); ok {
		_ = c.Close()
	}
}

// Kinds of --state.
const (
	stateJetStream = "jetstream"
	stateMemory    = "memory"
)

// stateSetupTimeout bounds creating or updating the streams and buckets
// at the start.
const stateSetupTimeout = time.Minute

// sharedState is what --state opens: rooms' journal and mailboxes, and the
// NATS connection the nodes share (all nil in memory); closer ends what
// was opened.
type sharedState struct {
	journal  rooms.Journal
	mail     rooms.Mailboxes
	files    server.FileIndex
	receipts rooms.ReceiptLog
	router   *jetstream.Router // with --nats
	nc       *nats.Conn
	closer   io.Closer
}

// openState opens where rooms' history and the direct messages waiting
// for users are kept, as --state and --nats say: nothing for memory; else
// a JetStream journal and mailboxes, in an embedded NATS server under the
// data folder or on the servers --nats names.
func openState(ctx context.Context, f *serveFlags, log *slog.Logger) (sharedState, error) {
	switch f.state {
	case stateMemory:
		return sharedState{}, nil
	case stateJetStream:
	default:
		return sharedState{}, fmt.Errorf("--state: %q is neither %s nor %s", f.state, stateJetStream, stateMemory)
	}
	if err := f.nats.check(f.natsURL); err != nil {
		return sharedState{}, err
	}
	// Creating a stream replicated in a cluster waits for its copies to
	// elect a leader, seconds at times: longer than nats.go's default
	// timeout of 5 s.
	ctx, cancel := context.WithTimeout(ctx, stateSetupTimeout)
	defer cancel()
	jcfg := jetstream.Config{
		MaxAge:     f.historyTTL,
		MaxPerRoom: f.historySize,
		MaxBytes:   f.historyDisk,
		Replicas:   f.nats.replicas,
		Log:        log,
	}
	fcfg := jetstream.FilesConfig{MaxPerRoom: f.filesPerRoom, MaxBytes: f.filesBytes, Replicas: f.nats.replicas, Log: log}
	mcfg := jetstream.MailConfig{MaxAge: f.offlineTTL, Replicas: f.nats.replicas, Log: log}
	rcfg := jetstream.ReceiptsConfig{MaxAge: f.historyTTL, Replicas: f.nats.replicas, Log: log}
	var (
		st  sharedState
		err error
	)
	// Both over one connection (whose type only rooms/jetstream names).
	if f.natsURL != "" {
		// Each node its own letters and direct-message position.
		if mcfg.Node, err = nodeName(f); err != nil {
			return sharedState{}, err
		}
		conn := f.nats.conn
		conn.URLs, conn.Log = f.natsURL, log
		if st.nc, err = jetstream.Connect(conn); err != nil {
			return sharedState{}, fmt.Errorf("--nats: %w", err)
		}
		nc := st.nc
		st.closer = closerFunc(func() error { nc.Close(); return nil })
	} else {
		emb, eerr := jetstream.StartEmbedded(filepath.Join(f.data, ".ferry", "nats"), log)
		if eerr != nil {
			return sharedState{}, fmt.Errorf("embedded NATS: %w", eerr)
		}
		st.nc = emb.Conn()
		st.closer = closerFunc(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return emb.Shutdown(ctx)
		})
	}
	// Each retried alone, so that one lost answer costs one short attempt.
	for _, open := range []func(context.Context) error{
		func(ctx context.Context) (err error) {
			st.journal, err = jetstream.New(ctx, st.nc, jcfg)
			return err
		},
		func(ctx context.Context) (err error) {
			st.mail, err = jetstream.NewMailboxes(ctx, st.nc, mcfg)
			return err
		},
		func(ctx context.Context) (err error) {
			st.files, err = jetstream.NewFileIndex(ctx, st.nc, fcfg)
			return err
		},
		func(ctx context.Context) (err error) {
			st.receipts, err = jetstream.NewReceipts(ctx, st.nc, rcfg)
			return err
		},
	} {
		if err = setupRetrying(ctx, log, open); err != nil {
			break
		}
	}
	if err != nil {
		_ = st.closer.Close()
		return sharedState{}, fmt.Errorf("rooms' state in JetStream: %w", err)
	}
	if f.natsURL != "" {
		st.router = jetstream.NewRouter(st.nc, jetstream.RouteConfig{Log: log})
	}
	return st, nil
}

// openLocks opens the upload locks of the nodes sharing nc: nil without
// --nats (in memory, or an embedded server that does not listen), where no
// other node can be.
func openLocks(ctx context.Context, f *serveFlags, log *slog.Logger, nc *nats.Conn) (*transferjs.Locks, error) {
	if nc == nil || f.natsURL == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, stateSetupTimeout)
	defer cancel()
	var locks *transferjs.Locks
	err := setupRetrying(ctx, log, func(ctx context.Context) (err error) {
		locks, err = transferjs.New(ctx, nc, transferjs.Config{TTL: f.uploadLockTTL, Replicas: f.nats.replicas, Log: log})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("upload locks in JetStream: %w", err)
	}
	return locks, nil
}

var _ server.FileIndex = (*jetstream.FileIndex)(nil)

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
