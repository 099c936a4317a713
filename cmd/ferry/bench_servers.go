package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/rooms/jetstream"
)

// The hidden sub-commands below are servers the benches start as child
// processes, each measured apart from the generator.

// referenceServerCommand is the hidden sub-command that "bench idle
// --reference" runs as its comparison server.
const referenceServerCommand = "reference-server"

func runBenchReferenceServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		addr         string
		pingInterval time.Duration
	)
	fs := newFlagSet("bench "+referenceServerCommand, "bench "+referenceServerCommand+" [flags]", stderr)
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	fs.String("data", "", "ignored: accepted like serve's")
	fs.DurationVar(&pingInterval, "ping-interval", 25*time.Second, "how often each connection is pinged")
	fs.Duration("ping-timeout", 0, "ignored: a connection is dropped after ping-interval + 10s without a pong")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// Hijacked connections are not the http.Server's to close; the process
	// exits right after and takes them along.
	return serveUntil(ctx, ln, bench.ReferenceHandler(pingInterval))
}

// serveUntil serves h on ln until ctx ends or serving fails, then shuts
// the server down within a second: for the benches' helper servers.
func serveUntil(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := hs.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) {
		err = errors.Join(err, e)
	}
	return err
}

// natsServerCommand is the hidden sub-command that "bench fanout --nodes"
// runs as the NATS server its nodes share: NATS's own server, embedded as
// `ferry serve` embeds it, in a process of its own so that its CPU is
// measured apart, and needing no nats-server binary.
const natsServerCommand = "nats-server"

func runBenchNATSServer(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var addr, data, listen, cpuProfile string
	fs := newFlagSet("bench "+natsServerCommand, "bench "+natsServerCommand+" [flags]", stderr)
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "HTTP address of /healthz, which answers the NATS client URL")
	fs.StringVar(&data, "data", "", "folder JetStream keeps its files in")
	fs.StringVar(&listen, "listen", "127.0.0.1:0", "NATS client address (port 0: a free one)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the NATS server to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	prof, err := startGenProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer func() { err = prof.finish(err) }()
	if data == "" {
		return errors.New("--data is required")
	}
	emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: data, Listen: listen})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = emb.Shutdown(sctx)
	}()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	url := emb.ClientURL()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, url) })
	return serveUntil(ctx, ln, mux)
}
