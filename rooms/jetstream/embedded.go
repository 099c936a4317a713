package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures an embedded NATS server. Zero values mean the
// documented defaults.
type EmbeddedConfig struct {
	// Dir is where JetStream keeps its files (under Dir/jetstream).
	// Required: `ferry serve` gives a folder in its data folder.
	Dir string
	// Listen, when set (host:port), also serves NATS clients there: the
	// `nats` CLI to look at the stream, another process. Default: no
	// listener, only the in-process connection.
	Listen string
	// SyncAlways makes JetStream sync its files to the disk on every
	// write. Without it, what JetStream acknowledged is written to its
	// files (so it survives the process being killed) and synced every
	// two minutes (so a power cut may lose the last ones). Default false.
	SyncAlways bool
	// Log receives the server's warnings and errors (its notices at debug
	// level). Default: discard.
	Log *slog.Logger
	// ReadyTimeout bounds the wait for the server to start, which includes
	// recovering the stream's files after a crash. Default 30 s.
	ReadyTimeout time.Duration
}

// embeddedMaxPayload is the embedded server's max_payload.
const embeddedMaxPayload = 4<<20 + headerRoom

// Embedded is a NATS server with JetStream running in this process, and a
// connection to it that needs no socket.
type Embedded struct {
	srv *server.Server
	nc  *nats.Conn

	mu   sync.Mutex
	done chan struct{} // closed when the server has stopped
}

// StartEmbedded starts a NATS server with JetStream keeping its files in
// dir, listening on no port, and connects to it in-process.
func StartEmbedded(dir string, log *slog.Logger) (*Embedded, error) {
	return StartEmbeddedConfig(EmbeddedConfig{Dir: dir, Log: log})
}

// StartEmbeddedConfig starts a NATS server with JetStream as cfg says and
// connects to it in-process.
func StartEmbeddedConfig(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("jetstream: the embedded server needs a folder")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	opts := &server.Options{
		ServerName: "ferry",
		JetStream:  true,
		StoreDir:   cfg.Dir,
		SyncAlways: cfg.SyncAlways,
		DontListen: cfg.Listen == "",
		// ferry's main owns the signals.
		NoSigs: true,
		// An event frame is up to the server's largest frame (1 MiB by
		// default) plus its envelope, and a room keeps events up to its
		// HistoryBytes (4 MiB): NATS's 1 MiB default would leave the
		// largest ones out of the journal (see rooms.JournalLimit).
		MaxPayload: embeddedMaxPayload,
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("jetstream: listen address: %w", err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("jetstream: listen port: %w", err)
		}
		if opts.Port == 0 {
			// Port 0 is NATS's 4222 to nats-server; here, as for net.Listen,
			// any free port.
			opts.Port = server.RANDOM_PORT
		}
		opts.Host = host
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("jetstream: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLog{cfg.Log}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(cfg.ReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("jetstream: the embedded server did not start within %s", cfg.ReadyTimeout)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("ferry"),
		// The server is in the process: it is there as long as we are, and
		// Shutdown closes this connection before stopping it.
		nats.MaxReconnects(-1))
	if err != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("jetstream: connect to the embedded server: %w", err)
	}
	return &Embedded{srv: srv, nc: nc}, nil
}

// Conn is the in-process connection to the server, for New. Shutdown
// closes it.
func (e *Embedded) Conn() *nats.Conn { return e.nc }

// ClientURL is the address NATS clients reach the server at, "" without a
// listener.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Shutdown closes the connection and stops the server, which writes its
// state so that the next start does not have to recover it. It waits until
// the server has stopped or ctx ends; calling it again waits again.
func (e *Embedded) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.done == nil {
		e.done = make(chan struct{})
		e.nc.Close()
		go func() {
			e.srv.Shutdown()
			e.srv.WaitForShutdown()
			close(e.done)
		}()
	}
	done := e.done
	e.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("jetstream: the embedded server is still stopping: %w", ctx.Err())
	}
}

// serverLog hands the NATS server's log to slog. Its notices (a banner of
// twenty lines at every start) go to debug; its fatal errors, which a
// standalone server exits on (a listener it cannot open), are errors.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug(l.line(format, v)) }
func (l serverLog) Warnf(format string, v ...any)   { l.log.Warn(l.line(format, v)) }
func (l serverLog) Errorf(format string, v ...any)  { l.log.Error(l.line(format, v)) }
func (l serverLog) Fatalf(format string, v ...any)  { l.log.Error(l.line(format, v), "fatal", true) }
func (l serverLog) Debugf(format string, v ...any)  { l.log.Debug(l.line(format, v)) }
func (l serverLog) Tracef(format string, v ...any)  {}

func (serverLog) line(format string, v []any) string { return "nats: " + fmt.Sprintf(format, v...) }
