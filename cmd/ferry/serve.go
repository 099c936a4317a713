package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/rooms/jetstream"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/storage/s3"
	"github.com/ferryhq/ferry/transfer"
	transferjs "github.com/ferryhq/ferry/transfer/jetstream"
	"github.com/ferryhq/ferry/web"
)

// serveFlags are the flags of "ferry serve".
type serveFlags struct {
	addr           string
	data           string
	authSecret     string
	secretFile     string
	secret         string
	allowedOrigins string
	allowedHosts   string
	pingInterval   time.Duration
	pingTimeout    time.Duration
	writeTimeout   time.Duration
	writeDelay     time.Duration
	maxFrame       int
	maxQueue       int
	rate           float64
	rateBurst      int
	maxRooms       int
	historySize    int
	historyTTL     time.Duration
	state          string
	natsURL        string
	node           string
	nats           natsFlags
	historyDisk    int64
	filesPerRoom   int
	filesBytes     int64
	presenceLimit  int
	historyUser    int
	historyMemory  int
	offlineSize    int
	offlineTTL     time.Duration
	offlineSender  int
	s3Endpoint     string
	s3Public       string
	s3Bucket       string
	s3AccessKey    string
	s3SecretKey    string
	s3Region       string
	maxChunk       int
	maxFileSize    int64
	maxUploads     int
	maxUserUploads int
	partSize       int
	partBuffers    int
	bigPartSize    int
	bigPartBuffers int
	partMemory     int64
	partMemoryUser int64
	quota          int64
	uploadIdle     time.Duration
	storageTimeout time.Duration
	uploadTTL      time.Duration
	uploadLockTTL  time.Duration
	linkTTL        time.Duration
	allowExec      bool
	thumbnails     bool
	thumbMaxPixels int64
	stripEXIF      bool
	logLevel       string
	logFormat      string
	cpuProfile     string
	shutdownGrace  time.Duration
	tlsCert        string
	tlsKey         string
	trustedProxies string
	authAudience   string
	authIssuer     string
	authMaxTTL     time.Duration
	anonTTL        time.Duration
	inviteTTL      time.Duration
	maxConns       int
	maxConnsPerIP  int
	maxConnsUser   int
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (chain) to serve HTTPS and wss:// with; reloaded when the file changes or on SIGHUP")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.trustedProxies, "trusted-proxies", "", "comma-separated addresses or CIDR prefixes of proxies in front of ferry whose X-Forwarded-For and X-Forwarded-Host are believed (client addresses for the caps and logs, host names for the origin checks)")
	fs.IntVar(&f.maxConns, "max-conns", defaultMaxConns(), "WebSocket connections in all (503 beyond; the listener closes TCP connections a quarter past it); default: 10000, or less when the open-file limit is lower")
	fs.IntVar(&f.maxConnsPerIP, "max-conns-per-ip", server.DefaultMaxConnsPerIP, "WebSocket connections from one client address (429 beyond)")
	fs.IntVar(&f.maxConnsUser, "max-conns-per-user", server.DefaultMaxConnsPerUser, "WebSocket connections of one user (429 beyond)")
	fs.StringVar(&f.data, "data", "./data", "folder for files (local disk storage) and the server's own state")
	fs.StringVar(&f.authSecret, "auth-secret", "", "HS256 secret; when set, every connection needs a token signed with it, whose rooms claim lists the rooms it may join")
	fs.StringVar(&f.authAudience, "auth-audience", "", "with --auth-secret: the aud every token must carry")
	fs.StringVar(&f.authIssuer, "auth-issuer", "", "with --auth-secret: the iss every token must carry")
	fs.StringVar(&f.secretFile, "secret-file", "", "file holding the key anonymous users' ids and download links are signed with (at least 32 bytes; white space at the end is left out); every node of one service needs the same. Default: with --state jetstream, the one kept in NATS for every node using it (created by the first, from <data>/.ferry/anon.key if it has one); with --state memory, <data>/.ferry/anon.key")
	fs.StringVar(&f.secret, "secret", "", "that key itself (at least 32 bytes), when there is no --secret-file: give it in the environment, FERRY_SECRET, rather than as a flag other users of the machine can see")
	fs.DurationVar(&f.authMaxTTL, "auth-max-ttl", server.DefaultMaxTokenTTL, "with --auth-secret: the longest validity a token may have (iat to exp); tokens without exp are refused")
	fs.DurationVar(&f.inviteTTL, "invite-ttl", server.DefaultInviteTTL, "without --auth-secret: how long an invite to a private room stays valid")
	fs.DurationVar(&f.anonTTL, "anon-ttl", server.DefaultAnonTTL, "without --auth-secret: how long an anonymous user keeps its id without connecting (renewed at each connection)")
	fs.StringVar(&f.allowedOrigins, "allowed-origins", "", "comma-separated browser origins allowed besides the server's own (* for any)")
	fs.StringVar(&f.allowedHosts, "allowed-hosts", "", "comma-separated host names browsers may reach the server by, besides IP addresses, localhost and this machine's name (* for any); others are refused against DNS rebinding")
	fs.DurationVar(&f.pingInterval, "ping-interval", server.DefaultPingInterval, "how often the server pings each connection")
	fs.DurationVar(&f.pingTimeout, "ping-timeout", server.DefaultPingTimeout, "how long past a ping a silent connection is kept")
	fs.DurationVar(&f.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "deadline of every write to a client")
	fs.DurationVar(&f.writeDelay, "write-delay", server.DefaultWriteDelay, "under load, write room traffic at most this often, so that clients get several frames per system call (0: write at once)")
	sizeVar(fs, &f.maxFrame, "max-frame", server.DefaultMaxFrame, "largest text frame")
	sizeVar(fs, &f.maxQueue, "max-queue", server.DefaultMaxQueue, "bytes queued for a client before it is dropped as slow")
	fs.Float64Var(&f.rate, "rate", server.DefaultRate, "requests per second allowed per connection")
	fs.IntVar(&f.rateBurst, "rate-burst", server.DefaultRateBurst, "requests a connection may send in a burst")
	fs.IntVar(&f.maxRooms, "max-rooms", server.DefaultMaxRooms, "named rooms one connection may be in")
	fs.IntVar(&f.historySize, "history-size", 1000, "events each room keeps for clients catching up (-1: none)")
	fs.DurationVar(&f.historyTTL, "history-ttl", 0, "how long a room keeps an event (default 7 days with --state jetstream, 10 minutes in memory)")
	fs.IntVar(&f.presenceLimit, "presence-limit", rooms.DefaultPresenceLimit, "rooms with more users than this tell their members their numbers once a second instead of each join and leave (-1: always each)")
	fs.StringVar(&f.state, "state", stateJetStream, "where rooms' history and the direct messages waiting for users live: jetstream (kept across restarts, in an embedded NATS server under --data, or the one --nats names) or memory (lost at each restart)")
	fs.StringVar(&f.natsURL, "nats", "", "with --state jetstream: NATS server URLs (comma-separated, nats://host:4222) to keep history in, instead of the embedded server; ferry nodes on the same NATS share their rooms")
	fs.StringVar(&f.node, "node", "", "with --nats: this node's name among the nodes on that NATS (letters, digits, - and _), under which it keeps the direct messages waiting with it and its user rooms' epoch; default: one made at the first start and kept in <data>/.ferry/node")
	f.nats.register(fs)
	sizeVar(fs, &f.historyDisk, "history-disk", jetstream.DefaultMaxBytes, "with --state jetstream: bytes all rooms' history may take on disk; past it the oldest events go")
	fs.IntVar(&f.filesPerRoom, "files-per-room", server.DefaultFilesPerRoom, "files a room lists (the files request), the newest; older ones stay downloadable by their links")
	sizeVar(fs, &f.filesBytes, "files-bytes", 0, "bytes the file listings of all rooms may take, past which the oldest go (default 64 MiB in memory, 256 MiB on disk with --state jetstream)")
	sizeVar(fs, &f.historyUser, "history-per-user", 64<<20, "bytes one user's events may take in all rooms' history; past it the user's emits are refused (over_quota) until some expire")
	sizeVar(fs, &f.historyMemory, "history-memory", 1<<30, "bytes all rooms' history may hold; past it, users holding over an eighth of --history-per-user are refused")
	fs.IntVar(&f.offlineSize, "offline-size", 100, "direct messages kept for a user with no connection (-1: none)")
	fs.DurationVar(&f.offlineTTL, "offline-ttl", 24*time.Hour, "how long a direct message waits for its user")
	sizeVar(fs, &f.offlineSender, "offline-per-sender", 4<<20, "bytes of direct messages one user may have waiting for users who are not connected, in all (over_quota beyond)")
	fs.StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 service URL (http://127.0.0.1:9000, https://s3.eu-west-1.amazonaws.com); empty stores files under --data")
	fs.StringVar(&f.s3Public, "s3-public-endpoint", "", "URL at which browsers reach the S3 service, when it differs from --s3-endpoint")
	fs.StringVar(&f.s3Bucket, "s3-bucket", "ferry", "bucket for files (created if missing)")
	fs.StringVar(&f.s3AccessKey, "s3-access-key", "", "S3 access key")
	fs.StringVar(&f.s3SecretKey, "s3-secret-key", "", "S3 secret key")
	fs.StringVar(&f.s3Region, "s3-region", "us-east-1", "S3 region")
	sizeVar(fs, &f.maxChunk, "max-chunk", transfer.DefaultMaxChunk, "largest upload chunk")
	sizeVar(fs, &f.maxFileSize, "max-file-size", transfer.DefaultMaxFileSize, "largest file")
	fs.IntVar(&f.maxUploads, "max-uploads", server.DefaultMaxUploads, "uploads one connection may run at once")
	fs.IntVar(&f.maxUserUploads, "max-uploads-per-user", transfer.DefaultMaxUploadsPerUser, "uploads one user may have in memory at once (running, or waiting for a client that dropped), over all its connections")
	sizeVar(fs, &f.partSize, "part-size", transfer.DefaultPartSize, "bytes buffered per part before it is stored (at least 5 MiB)")
	sizeVar(fs, &f.bigPartSize, "big-part-size", 16<<20, "part size of new uploads while all uploads' part buffers fit in a quarter of --part-memory (fewer, larger requests store a lone upload faster); --part-size beyond that")
	fs.IntVar(&f.bigPartBuffers, "big-part-buffers", 4, "parts an upload with --big-part-size parts may buffer: one filling, the others being stored at once, as minio-go's PutObject stores four 16 MiB parts at once")
	sizeVar(fs, &f.partMemory, "part-memory", transfer.DefaultPartMemory, "hard cap on the part buffers of all uploads together, in bytes; an upload holds its window of it, and new uploads get --big-part-size parts while a quarter of it is free")
	sizeVar(fs, &f.quota, "quota", 0, "bytes one user may upload per UTC day, counted when an upload opens (0: no quota)")
	sizeVar(fs, &f.partMemoryUser, "part-memory-per-user", 0, "cap on the part buffers of one user's uploads together, in bytes (default: a quarter of --part-memory, and at least a window of big parts plus an ordinary window, so that a user can send a photo beside a video: 80 MiB with the defaults)")
	fs.DurationVar(&f.uploadIdle, "upload-idle", transfer.DefaultIdle, "how long an upload keeps its buffers without a chunk: the bytes received before a dropped connection wait that long for the client, and a silent upload then gives its memory back (it stays resumable from what is stored)")
	fs.DurationVar(&f.storageTimeout, "storage-timeout", transfer.DefaultStorageTimeout, "deadline of every storage request an upload makes (retried after it)")
	fs.IntVar(&f.partBuffers, "part-buffers", transfer.DefaultParts, "parts an upload may buffer: one filling, the others being stored; the upload window is part-buffers × part-size")
	fs.DurationVar(&f.uploadTTL, "upload-ttl", transfer.DefaultTTL, "how long an unfinished upload is kept")
	fs.DurationVar(&f.uploadLockTTL, "upload-lock-ttl", transferjs.DefaultTTL, "with --state jetstream: how long a server that died keeps its uploads locked; another server resumes them after that (a live one lets go of an upload at once when its client has gone)")
	fs.DurationVar(&f.linkTTL, "link-ttl", server.DefaultLinkTTL, "how long a signed download link is valid")
	fs.BoolVar(&f.allowExec, "allow-executables", false, "accept executables and scripts (refused by default)")
	fs.BoolVar(&f.thumbnails, "thumbnails", true, "make a thumbnail (at most 640 px) of every JPEG, PNG, GIF or WebP uploaded, one at a time, before announcing it; announced without one past 10 s")
	fs.Int64Var(&f.thumbMaxPixels, "thumbnail-max-pixels", transfer.DefaultPreviewMaxPixels, "largest image, in width × height pixels, that gets a thumbnail: decoding one takes up to 17 bytes a pixel")
	fs.BoolVar(&f.stripEXIF, "strip-exif", true, "store JPEG photos (up to 64 MiB) without the metadata that tells where, when and with what they were taken (the orientation stays); their sha256 is then the stored bytes', sent_sha256 the uploaded ones'")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile to this file until the server stops")
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", server.DefaultShutdownGrace, "how long connections get to close on shutdown")
}

// serveGroups orders "ferry serve --help": what most deployments set
// first, then the rest by subject. Every flag register defines belongs to
// one group (TestServeHelpGroupsEveryFlag).
var serveGroups = []flagGroup{
	{"Essentials", []string{"addr", "data",
		"s3-endpoint", "s3-bucket", "s3-access-key", "s3-secret-key", "s3-region",
		"tls-cert", "tls-key", "auth-secret", "allowed-origins"}},
	{"Storage", []string{"s3-public-endpoint", "storage-timeout", "link-ttl"}},
	{"Uploads", []string{"max-file-size", "quota", "max-uploads", "max-uploads-per-user", "max-chunk",
		"part-size", "big-part-size", "big-part-buffers", "part-buffers", "part-memory", "part-memory-per-user",
		"upload-idle", "upload-ttl", "upload-lock-ttl", "thumbnails", "thumbnail-max-pixels", "strip-exif"}},
	{"Rooms and history", []string{"state", "nats", "node",
		"history-size", "history-ttl", "history-disk", "history-per-user", "history-memory",
		"files-per-room", "files-bytes",
		"offline-size", "offline-ttl", "offline-per-sender", "max-rooms", "presence-limit"}},
	natsGroup,
	{"Connections and limits", []string{"max-conns", "max-conns-per-ip", "max-conns-per-user",
		"max-frame", "max-queue", "rate", "rate-burst",
		"ping-interval", "ping-timeout", "write-timeout", "write-delay", "shutdown-grace"}},
	{"Security", []string{"secret-file", "secret", "auth-audience", "auth-issuer", "auth-max-ttl", "anon-ttl", "invite-ttl",
		"allowed-hosts", "trusted-proxies", "allow-executables"}},
	{"Logging and diagnostics", []string{"log-level", "log-format", "cpuprofile"}},
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := newFlagSet("serve", "serve [flags]", stderr)
	f.register(fs)
	groupUsage(fs, "serve [flags]", serveGroups)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = pf.Close() }()
	}
	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	n, err := newNode(ctx, &f, log)
	if err != nil {
		return err
	}
	runErr := n.Run(ctx)
	if runErr == nil {
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownGrace)
	defer cancel()
	return errors.Join(runErr, n.Shutdown(sctx))
}

// serverConfig is the server's configuration from the flags.
func (f *serveFlags) serverConfig(log *slog.Logger, anonKey []byte) (server.Config, error) {
	var err error
	cfg := server.Config{
		Log:          log,
		AnonKey:      anonKey,
		PingInterval: f.pingInterval,
		PingTimeout:  f.pingTimeout,
		WriteTimeout: f.writeTimeout,
		WriteDelay:   cmp.Or(f.writeDelay, -1),
		MaxFrame:     f.maxFrame,
		MaxQueue:     f.maxQueue,
		Rate:         f.rate,
		RateBurst:    f.rateBurst,
		MaxRooms:     f.maxRooms,
		FilesPerRoom: f.filesPerRoom,
		FilesBytes:   f.filesBytes,
		History: rooms.Config{
			HistorySize:        f.historySize,
			HistoryTTL:         f.historyTTL,
			HistoryUserBytes:   f.historyUser,
			HistoryTotalBytes:  f.historyMemory,
			OfflineSize:        f.offlineSize,
			OfflineTTL:         f.offlineTTL,
			OfflineSenderBytes: f.offlineSender,
			PresenceLimit:      f.presenceLimit,
		},
	}
	if f.authSecret != "" {
		cfg.AuthSecret = []byte(f.authSecret)
	}
	cfg.AuthAudience, cfg.AuthIssuer, cfg.MaxTokenTTL, cfg.AnonTTL, cfg.InviteTTL = f.authAudience, f.authIssuer, f.authMaxTTL, f.anonTTL, f.inviteTTL
	if f.allowedOrigins != "" {
		for _, o := range strings.Split(f.allowedOrigins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				cfg.AllowedOrigins = append(cfg.AllowedOrigins, o)
			}
		}
	}
	for _, h := range strings.Split(f.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.AllowedHosts = append(cfg.AllowedHosts, h)
		}
	}
	if cfg.TrustedProxies, err = parsePrefixes(f.trustedProxies); err != nil {
		return cfg, fmt.Errorf("--trusted-proxies: %w", err)
	}
	cfg.MaxConns, cfg.MaxConnsPerIP, cfg.MaxConnsPerUser = f.maxConns, f.maxConnsPerIP, f.maxConnsUser
	cfg.Static = web.FS()
	cfg.LinkTTL = f.linkTTL
	cfg.MaxUploads = f.maxUploads
	return cfg, nil
}

// openableURLs are the URLs a person can open to reach a server listening
// on addr: for a wildcard address (":8080", "0.0.0.0:8080", "[::]:8080"),
// this machine's own loopback address and its first network addresses,
// which a phone on the same network can open, rather than "[::]".
func openableURLs(scheme string, addr net.Addr) []string {
	ta, ok := addr.(*net.TCPAddr)
	if !ok || !ta.IP.IsUnspecified() {
		return []string{fmt.Sprintf("%s://%s/", scheme, addr)}
	}
	port := strconv.Itoa(ta.Port)
	urls := []string{scheme + "://" + net.JoinHostPort("127.0.0.1", port) + "/"}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			ipn, ok := a.(*net.IPNet)
			if ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && len(urls) < 3 {
				urls = append(urls, scheme+"://"+net.JoinHostPort(ipn.IP.String(), port)+"/")
			}
		}
	}
	return urls
}

// parsePrefixes parses a comma-separated list of addresses and CIDR
// prefixes.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", v)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// defaultMaxConns is server.DefaultMaxConns, lowered when the process may
// not open that many files: every connection is one, and files, storage
// connections and the listener's slack need some.
func defaultMaxConns() int {
	limit := openFileLimit()
	if limit <= 0 {
		return server.DefaultMaxConns
	}
	return max(16, min(server.DefaultMaxConns, max(limit/2, limit-3072)))
}

// openStore returns the S3 store when an endpoint is set, else the folder.
func openStore(ctx context.Context, f *serveFlags, log *slog.Logger) (storage.Store, string, error) {
	if f.s3Endpoint == "" {
		st, err := disk.New(disk.Config{Dir: filepath.Join(f.data, "files"), Log: log})
		return st, filepath.Join(f.data, "files"), err
	}
	st, err := s3.New(ctx, s3.Config{
		Endpoint:       f.s3Endpoint,
		PublicEndpoint: f.s3Public,
		Bucket:         f.s3Bucket,
		AccessKey:      f.s3AccessKey,
		SecretKey:      f.s3SecretKey,
		Region:         f.s3Region,
		Log:            log,
	})
	if err != nil {
		return nil, "", fmt.Errorf("s3 storage: %w", err)
	}
	return st, f.s3Endpoint + "/" + f.s3Bucket, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither text nor json", format)
}

// loadKey reads the key at path, creating a random one the first time, so
// that anonymous users keep their ids across restarts.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := randRead(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("saving the server key: %w", err)
	}
	return b, nil
}
