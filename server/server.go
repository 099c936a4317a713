// Package server is ferry's network edge: the WebSocket endpoint, the file
// download endpoint, health and metrics. It turns frames into calls on the
// rooms hub and the transfer manager, and their errors into error frames,
// close codes and HTTP statuses.
package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/transfer"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Log receives diagnostics. Default: discard.
	Log *slog.Logger
	// AuthSecret, when set, makes an HS256 token signed with it mandatory.
	AuthSecret []byte
	// AuthAudience and AuthIssuer, when set, must be the aud and iss of
	// every token.
	AuthAudience, AuthIssuer string
	// MaxTokenTTL is the longest validity a token may have, from its iat
	// (or from now without one) to its exp. Default 30 days; negative:
	// none.
	MaxTokenTTL time.Duration
	// AnonTTL is how long an anonymous token keeps its user id; each
	// connection gets a renewed one. Default 30 days.
	AnonTTL time.Duration
	// InviteTTL is how long an invite to a private room (anonymous mode)
	// stays valid. Default 7 days.
	InviteTTL time.Duration
	// AnonKey signs the tokens handed to anonymous users so that they keep
	// their user id across connections. Default: a random key (ids then last
	// as long as the process).
	AnonKey []byte
	// AllowedOrigins lists browser origins ("https://chat.example.com") that
	// may connect besides the server's own; "*" allows any.
	AllowedOrigins []string
	// AllowedHosts lists the host names ("chat.example.com") browsers may
	// reach the server by, besides IP addresses, localhost and the
	// machine's own name; "*" allows any. Requests from browsers by any
	// other name are refused, so that a web page whose name was made to
	// resolve to this server (DNS rebinding) cannot use it.
	AllowedHosts []string
	// TrustedProxies lists the proxies (a load balancer, nginx) whose
	// X-Forwarded-For and X-Forwarded-Host are believed: the client's
	// address for the connection caps and the logs, and the host name for
	// the origin and host checks. From any other peer those headers are
	// ignored. Default: none.
	TrustedProxies []netip.Prefix
	// MaxConns caps WebSocket connections server-wide; a handshake beyond
	// it is answered 503 with Retry-After. Default DefaultMaxConns.
	MaxConns int
	// MaxConnsPerIP caps WebSocket connections from one client address
	// (429 beyond it), so that one address cannot take them all. Default
	// DefaultMaxConnsPerIP.
	MaxConnsPerIP int
	// MaxConnsPerUser caps the connections of one user (429 beyond it).
	// Default DefaultMaxConnsPerUser.
	MaxConnsPerUser int

	// PingInterval is how often the server pings. Default 25s.
	PingInterval time.Duration
	// PingTimeout is how long past an expected pong a connection may stay
	// silent before it is dropped. Default 20s.
	PingTimeout time.Duration
	// WriteTimeout bounds every write to a client. Default 10s.
	WriteTimeout time.Duration
	// WriteDelay bounds how often room traffic is written under load: when
	// the previous pass over the connections waiting for it started less than
	// WriteDelay ago, the next one waits for the rest of it, so that a client
	// gets several frames per system call. A quiet server writes at once, and
	// answers to a client's own requests never wait. Default 12ms; negative:
	// never wait.
	WriteDelay time.Duration

	// MaxFrame is the largest text frame accepted. Default 1 MiB.
	MaxFrame int
	// MaxQueue is how many bytes may wait for a client before it is dropped as
	// slow. Default 4 MiB.
	MaxQueue int
	// Rate and RateBurst limit requests per second per connection.
	// Defaults 100 and 200.
	Rate      float64
	RateBurst int
	// MaxRooms is how many named rooms one connection may be in. Default 100.
	MaxRooms int
	// History configures room history, waiting direct messages, message-id
	// dedup and receipts (see rooms.Config; its zero values are defaults).
	History rooms.Config
	// Hub is the rooms hub to serve, made and run (rooms.Hub.Run) by its
	// owner, which then ignores History and MaxRooms. Nil: the server
	// makes one from History and MaxRooms and runs it until Shutdown.
	Hub *rooms.Hub

	// Transfer handles uploads and downloads. Nil disables them (upload
	// frames then fail with not_implemented).
	Transfer *transfer.Manager
	// MaxUploads is how many uploads one connection may run at once. Default 4.
	MaxUploads int
	// LinkTTL is how long a signed download link stays valid. Default 24h.
	LinkTTL time.Duration
	// Files keeps the files announced to each room for the files
	// request. Nil: a MemoryFileIndex of FilesPerRoom files per room and
	// FilesBytes in all.
	Files FileIndex
	// FilesPerRoom and FilesBytes bound the in-memory file index.
	// Defaults DefaultFilesPerRoom and DefaultFilesBytes.
	FilesPerRoom int
	FilesBytes   int64
	// DownloadIdle is how long a download waits for its client to take
	// the next piece before it is cut off. Default 30s.
	DownloadIdle time.Duration

	// Static, when set, is served at "/" (the browser client).
	Static fs.FS
}

func (c *Config) applyDefaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.PingInterval <= 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.PingTimeout <= 0 {
		c.PingTimeout = DefaultPingTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.WriteDelay == 0 {
		c.WriteDelay = DefaultWriteDelay
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = DefaultMaxQueue
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.RateBurst <= 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.MaxRooms <= 0 {
		c.MaxRooms = DefaultMaxRooms
	}
	if c.MaxUploads <= 0 {
		c.MaxUploads = DefaultMaxUploads
	}
	if c.MaxTokenTTL == 0 {
		c.MaxTokenTTL = DefaultMaxTokenTTL
	}
	if c.InviteTTL <= 0 {
		c.InviteTTL = DefaultInviteTTL
	}
	if c.AnonTTL <= 0 {
		c.AnonTTL = DefaultAnonTTL
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxConnsPerUser <= 0 {
		c.MaxConnsPerUser = DefaultMaxConnsPerUser
	}
	if c.LinkTTL <= 0 {
		c.LinkTTL = DefaultLinkTTL
	}
	if c.DownloadIdle <= 0 {
		c.DownloadIdle = DefaultDownloadIdle
	}
	if c.Files == nil {
		c.Files = NewMemoryFileIndex(c.FilesPerRoom, c.FilesBytes)
	}
}

// Server is ferry's HTTP handler. Create it with New; stop it with Shutdown.
type Server struct {
	cfg      Config
	hub      *rooms.Hub
	mux      *http.ServeMux
	upgrader websocket.Upgrader
	metrics  metrics
	hist     histograms
	anonKey  []byte
	linkKey  []byte // signs download links
	// readLimit is the size past which a message ends its connection:
	// text frames are limited to MaxFrame and binary ones to a chunk, and
	// the excess of smaller ones is read and discarded, and reported.
	readLimit int64
	// requestTimeout bounds a request's storage work on a connection's
	// reader: less than the heartbeat waits for a pong.
	requestTimeout time.Duration
	poller         *poller
	flushers       flushers
	tenv           transportEnv

	stop  context.CancelFunc // ends the hub's sweeper
	swept chan struct{}

	admission admissions

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool
	drained chan struct{} // closed when closing and conns is empty
	// control counts upload requests running off their readers.
	storageReqs sync.WaitGroup
	shutOnce    sync.Once
}

var (
	_ http.Handler    = (*Server)(nil)
	_ transfer.Events = (*Server)(nil)
)

// New returns a Server.
func New(cfg Config) (*Server, error) {
	cfg.applyDefaults()
	s := &Server{
		cfg:     cfg,
		hub:     cfg.Hub,
		hist:    newHistograms(),
		conns:   make(map[*conn]struct{}),
		drained: make(chan struct{}),
		anonKey: cfg.AnonKey,
	}
	if len(s.anonKey) == 0 {
		s.anonKey = randomKey()
	}
	mac := hmac.New(sha256.New, s.anonKey)
	mac.Write([]byte("ferry download links"))
	s.linkKey = mac.Sum(nil)
	s.readLimit = int64(16 * max(cfg.MaxFrame, maxBinary(cfg.Transfer)))
	s.requestTimeout = min(maxRequestTimeout, cfg.PingTimeout/2)
	s.poller = newPoller(cfg.Log)
	s.tenv = transportEnv{maxQueue: cfg.MaxQueue, writeTimeout: cfg.WriteTimeout, closeGrace: closeGrace, m: &s.metrics, queueWait: s.hist.queueWait}
	s.swept = make(chan struct{})
	if s.hub != nil {
		s.stop = func() {}
		close(s.swept)
	} else {
		s.hub = NewHub(cfg)
		ctx, stop := context.WithCancel(context.Background())
		s.stop = stop
		go func() {
			defer close(s.swept)
			_ = s.hub.Run(ctx)
		}()
	}
	s.upgrader = websocket.Upgrader{
		// gorilla only performs the handshake: ferry reads and writes frames
		// itself, so gorilla should reuse net/http's buffers and allocate none.
		WriteBufferPool:  &sync.Pool{},
		HandshakeTimeout: 10 * time.Second,
		CheckOrigin:      s.checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			http.Error(w, reason.Error(), status)
		},
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /ws", s.serveWS)
	s.mux.HandleFunc("GET /healthz", s.serveHealth)
	s.mux.HandleFunc("GET /readyz", s.serveReady)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelWarn)}))
	s.routeFiles()
	if cfg.Static != nil {
		s.mux.Handle("GET /", pageHeaders(http.FileServerFS(cfg.Static)))
	}
	return s, nil
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	crossOrigin(w, r)
	if !s.hostAllowed(r) {
		http.Error(w, "this server does not answer browsers by the name "+s.requestHost(r)+" (see --allowed-hosts)", http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) add(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if s.closing && len(s.conns) == 0 {
		select {
		case <-s.drained:
		default:
			close(s.drained)
		}
	}
}

// Shutdown refuses new connections, closes every WebSocket with 1001 (going
// away: clients reconnect) and waits for them to end until ctx is done, then
// cuts the rest. Calling it again waits again and returns the same way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		list := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			list = append(list, c)
		}
		if len(s.conns) == 0 {
			close(s.drained)
		}
		s.mu.Unlock()
		for _, c := range list {
			c.closeWith(protocol.CloseGoingAway, "server shutting down")
		}
	})
	defer func() {
		s.stop()
		<-s.swept
	}()
	select {
	case <-s.drained:
		s.poller.close()
		s.flushers.stop()
		return s.waitStorageRequests(ctx)
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.kill()
		}
		s.mu.Unlock()
		s.poller.close()
		s.flushers.stop()
		return errors.Join(ctx.Err(), errors.New("server: connections still open at shutdown were cut"), s.waitStorageRequests(context.Background()))
	}
}

// waitStorageRequests waits for the upload requests still running, which end by
// their storage deadline, or until ctx ends.
func (s *Server) waitStorageRequests(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.storageReqs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		<-done // bounded by requestTimeout
		return ctx.Err()
	}
}

// NewHub makes the rooms hub a server with cfg would make for itself (from
// History, with MaxRooms and Log), for an owner that runs it and passes it
// in Config.Hub.
func NewHub(cfg Config) *rooms.Hub {
	h := cfg.History
	h.MaxRooms, h.Log = cfg.MaxRooms, cfg.Log
	return rooms.New(h)
}
