package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/ferryhq/ferry/bench"
)

// benchCommands are the sub-commands of "ferry bench".
func benchCommands() []command {
	return []command{
		{"idle", "hold idle connections; report server memory per connection", runBenchIdle},
		{"fanout", "fan events out to one room; report deliveries/s, latency, CPU per delivery", runBenchFanout},
		{"upload", "time 'ferry send' of a file into MinIO against minio-go's PutObject of it", runBenchUpload},
		{"charts", "run short sweeps of the three and draw them as SVG charts (docs/img)", runBenchCharts},
	}
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		benchUsage(stderr)
		if len(args) == 0 {
			return errors.New("bench: missing sub-command")
		}
		return nil
	}
	for _, c := range benchCommands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	switch args[0] {
	case referenceServerCommand:
		return runBenchReferenceServer(ctx, args[1:], stdout, stderr)
	case natsServerCommand:
		return runBenchNATSServer(ctx, args[1:], stdout, stderr)
	}
	benchUsage(stderr)
	return fmt.Errorf("bench: unknown sub-command %q", args[0])
}

func benchUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: ferry bench <sub-command> [flags]")
	fmt.Fprintln(w)
	for _, c := range benchCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "By default each bench starts its own server as a child process ('ferry serve' on a")
	fmt.Fprintln(w, "free loopback port); --server and --pid measure one that is already running.")
}

// benchTargetFlags are the flags every bench has: which server to measure
// and how to print the figures.
type benchTargetFlags struct {
	server     string
	pid        int
	serverArgs string
	json       bool
	cpuProfile string
}

func (f *benchTargetFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "measure this running server (ws://127.0.0.1:PORT) instead of starting one")
	fs.IntVar(&f.pid, "pid", 0, "with --server: the server's process id, for its memory and CPU (/proc)")
	fs.StringVar(&f.serverArgs, "server-args", "", "extra flags for the server started as a child, e.g. \"--cpuprofile /tmp/cpu.out\"")
	fs.BoolVar(&f.json, "json", false, "print the figures as one JSON object")
	fs.StringVar(&f.cpuProfile, "gen-cpuprofile", "", "write a CPU profile of the load generator (not the server) to this file")
}

// benchTarget is the server a bench measures, and how to stop it.
type benchTarget struct {
	bench.Target
	child   *bench.Server
	profile *os.File
}

// start returns the target: the --server given, or a child server run with
// serveArgs plus --server-args. files is how many connections the bench
// opens; the open-files limit is raised for them (and for the child, which
// inherits it) or the bench refuses to start. The generator's profile, if
// asked for, starts last.
func (f *benchTargetFlags) start(ctx context.Context, files int, serveArgs []string) (*benchTarget, error) {
	err := raiseOpenFiles(files)
	if err != nil {
		return nil, err
	}
	t := &benchTarget{}
	switch {
	case f.server != "":
		if t.Target, err = bench.ParseTarget(f.server, f.pid); err != nil {
			return nil, err
		}
	case f.pid != 0:
		return nil, errors.New("--pid needs --server")
	default:
		args := append(serveArgs, strings.Fields(f.serverArgs)...)
		if t.child, err = bench.StartServer(ctx, bench.ServerConfig{Args: args, Env: benchChildEnv}); err != nil {
			return nil, err
		}
		t.Target = t.child.Target
	}
	if f.cpuProfile != "" {
		if err := t.startProfile(f.cpuProfile); err != nil {
			return nil, t.finish(err)
		}
	}
	return t, nil
}

// raiseOpenFiles raises the open-files limit for a bench opening files
// connections (its children inherit it), or says why it cannot.
func raiseOpenFiles(files int) error {
	limit, err := bench.RaiseOpenFiles()
	if err != nil {
		return fmt.Errorf("raise the open-files limit: %w", err)
	}
	if need := uint64(files) + 256; limit < need {
		return fmt.Errorf("%d connections need about %d open files, the limit is %d (ulimit -Hn)", files, need, limit)
	}
	return nil
}

func (t *benchTarget) startProfile(path string) error {
	pf, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return err
	}
	t.profile = pf
	return nil
}

// finish stops a child server. A child that died during the bench turns
// into an error carrying the end of its log.
func (t *benchTarget) finish(err error) error {
	if t.profile != nil {
		pprof.StopCPUProfile()
		err = errors.Join(err, t.profile.Close())
	}
	if t.child == nil {
		return err
	}
	select {
	case <-t.child.Exited():
		err = errors.Join(err, fmt.Errorf("the server exited during the bench:\n%s", t.child.LogTail(4096)))
	default:
	}
	return errors.Join(err, t.child.Close())
}

func (t *benchTarget) describe() string {
	s := t.URL
	if t.PID != 0 {
		s += fmt.Sprintf(" (pid %d", t.PID)
		if t.child != nil {
			s += ", started by the bench"
		}
		s += ")"
	}
	return s
}

func runBenchIdle(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var (
		tf           benchTargetFlags
		conns        int
		workers      int
		pingInterval time.Duration
		pingTimeout  time.Duration
		settle       time.Duration
		reference    bool
	)
	fs := newFlagSet("bench idle", "bench idle [flags]", stderr)
	tf.register(fs)
	fs.IntVar(&conns, "conns", 1000, "connections to hold open")
	fs.IntVar(&workers, "dial-workers", 64, "connections opened at once")
	fs.DurationVar(&pingInterval, "ping-interval", idlePing, "the child server's --ping-interval (pings must happen during the bench)")
	fs.DurationVar(&pingTimeout, "ping-timeout", idlePing, "the child server's --ping-timeout (the server waits this long for a pong before its next ping)")
	fs.DurationVar(&settle, "settle", 2*time.Second, "wait after the ping round before reading the server's memory")
	fs.BoolVar(&reference, "reference", false, "then measure a gorilla chat-example server with default buffers the same way, for comparison")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if reference && tf.server != "" {
		return errors.New("--reference starts its own server; it does not go with --server")
	}
	serveArgs := idleServeArgs(pingInterval, pingTimeout)
	cfg := bench.IdleConfig{Conns: conns, DialWorkers: workers, Settle: settle}
	t, res, err := tf.idle(ctx, cfg, serveArgs, stderr)
	if err != nil {
		return err
	}
	var ref *bench.IdleResult
	if reference {
		rt := &benchTarget{}
		if rt.child, err = bench.StartServer(ctx, bench.ServerConfig{
			Command: []string{"bench", referenceServerCommand},
			Args:    serveArgs,
		}); err != nil {
			return err
		}
		rt.Target = rt.child.Target
		r, err := rt.idle(ctx, cfg, stderr)
		if err = rt.finish(err); err != nil {
			return err
		}
		ref = &r
	}
	if tf.json {
		var extra map[string]any
		if ref != nil {
			extra = map[string]any{"reference": ref}
		}
		if err := printJSON(stdout, "idle", t, res, extra); err != nil {
			return err
		}
	} else {
		printIdle(stdout, t, res)
		if ref != nil {
			fmt.Fprintf(stdout, "reference         gorilla chat-example server, default buffers: %.2f KiB per conn (%s idle, %s with %d connections)\n",
				ref.RSSPerConn/1024, mib(ref.RSSIdle), mib(ref.RSSLoaded), ref.Conns)
		}
	}
	if ref != nil && len(ref.Problems) > 0 {
		return problems(append(res.Problems, ref.Problems...))
	}
	return problems(res.Problems)
}

// idlePing is the idle benches' default for the child server's ping
// interval and timeout: short enough that every connection is pinged during
// the bench.
const idlePing = 5 * time.Second

func idleServeArgs(pingInterval, pingTimeout time.Duration) []string {
	return []string{"--ping-interval", pingInterval.String(), "--ping-timeout", pingTimeout.String()}
}

// idle measures cfg.Conns idle connections to the target the flags name,
// started with serveArgs if it is a child.
func (f *benchTargetFlags) idle(ctx context.Context, cfg bench.IdleConfig, serveArgs []string, stderr io.Writer) (*benchTarget, bench.IdleResult, error) {
	t, err := f.start(ctx, cfg.Conns, serveArgs)
	if err != nil {
		return nil, bench.IdleResult{}, err
	}
	res, err := t.idle(ctx, cfg, stderr)
	return t, res, t.finish(err)
}

func (t *benchTarget) idle(ctx context.Context, cfg bench.IdleConfig, stderr io.Writer) (bench.IdleResult, error) {
	fmt.Fprintf(stderr, "bench idle: %d connections to %s\n", cfg.Conns, t.describe())
	cfg.Target, cfg.Progress = t.Target, stderr
	return bench.Idle(ctx, cfg)
}

func printIdle(w io.Writer, t *benchTarget, r bench.IdleResult) {
	fmt.Fprintf(w, "server            %s\n", t.describe())
	fmt.Fprintf(w, "connections       %d opened in %.1fs; the server counts %d; %d dropped\n",
		r.Conns, r.DialSeconds, r.ServerConnections, r.Dropped)
	fmt.Fprintf(w, "heartbeats        ping interval %dms, timeout %dms; %d/%d connections pinged after all were open; %d pongs in all\n",
		r.PingIntervalMS, r.PingTimeoutMS, r.Pinged, r.Conns, r.Pings)
	if t.PID == 0 {
		fmt.Fprintln(w, "server memory     not measured (no --pid)")
		return
	}
	fmt.Fprintf(w, "server RSS        %s idle, %s with %d connections, %s peak\n",
		mib(r.RSSIdle), mib(r.RSSLoaded), r.Conns, mib(r.RSSPeak))
	fmt.Fprintf(w, "RSS per conn      %.2f KiB (target ≤ %d KiB)\n", r.RSSPerConn/1024, bench.IdleTargetKiB)
}

func runBenchFanout(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var (
		tf  benchTargetFlags
		cfg bench.FanoutConfig
		nf  fanoutNodesFlags
	)
	fs := newFlagSet("bench fanout", "bench fanout [flags]", stderr)
	tf.register(fs)
	fs.IntVar(&cfg.Members, "members", 1000, "connections in the room receiving every event")
	fs.IntVar(&cfg.Publishers, "publishers", 1, "connections sharing the publishing")
	fs.IntVar(&cfg.Size, "size", 100, fmt.Sprintf("bytes of data per event (at least %d)", bench.MinEventSize))
	fs.IntVar(&cfg.Rate, "rate", 0, fmt.Sprintf("events per second, all publishers together (deliveries/s = rate × members); 0: 500, or %d with --nodes", bench.FanoutNodesRate))
	fs.IntVar(&cfg.Burst, "burst", 1, "events scheduled at the same instant (rate/burst ticks per second)")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "events flow this long before the measurement")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the measurement")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "after publishing, wait at most this long without progress for events in flight")
	fs.StringVar(&cfg.Room, "room", "bench", "room name")
	fs.IntVar(&cfg.DialWorkers, "dial-workers", 32, "connections opened at once")
	fs.IntVar(&cfg.ReadLoops, "read-loops", 2, "epoll loops (goroutines) reading the members' sockets")
	nf.register(fs)
	fs.StringVar(&cfg.Peer, "peer", bench.PeerFerry, fmt.Sprintf("the server's kind, one of %s; a peer needs --server and --pid (see docs/benchmarks.md)", strings.Join(bench.Peers, ", ")))
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !slices.Contains(bench.Peers, cfg.Peer) {
		return fmt.Errorf("--peer %q: want one of %s", cfg.Peer, strings.Join(bench.Peers, ", "))
	}
	if cfg.Peer != bench.PeerFerry && tf.server == "" {
		return fmt.Errorf("--peer %s measures a server started by hand: give its --server and --pid", cfg.Peer)
	}
	switch {
	case nf.nodes < 1:
		return fmt.Errorf("--nodes %d: want 1 or more", nf.nodes)
	case nf.nodes > 1 && (tf.server != "" || cfg.Peer != bench.PeerFerry):
		return errors.New("--nodes starts its own ferry nodes: it does not go with --server or --peer")
	case cfg.Rate <= 0 && nf.nodes > 1:
		cfg.Rate = bench.FanoutNodesRate
	case cfg.Rate <= 0:
		cfg.Rate = 500
	}
	if nf.nodes > 1 {
		return nf.fanout(ctx, tf, cfg, stdout, stderr)
	}
	t, res, err := tf.fanout(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if tf.json {
		if err := printJSON(stdout, "fanout", t, res, nil); err != nil {
			return err
		}
	} else {
		printFanout(stdout, t, res)
	}
	return problems(res.Problems)
}

// fanout measures a fan-out to the target the flags name.
func (f *benchTargetFlags) fanout(ctx context.Context, cfg bench.FanoutConfig, stderr io.Writer) (_ *benchTarget, _ bench.FanoutResult, err error) {
	// Each read loop waits for its sockets in epoll_wait, a system call, and
	// needs a P again when woken. With one P per core, a woken loop often
	// waited behind the other loop and the publishers, and that wait of the
	// generator's own counted as the server's latency. A P per loop, plus
	// two for the publishers and the sampling, keeps it out. The server, a
	// separate process, keeps its own default.
	if want := cfg.ReadLoops + 2; runtime.GOMAXPROCS(0) < want {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(want))
	}
	t, err := f.start(ctx, cfg.Members+cfg.Publishers, fanoutServeArgs)
	if err != nil {
		return nil, bench.FanoutResult{}, err
	}
	defer func() { err = t.finish(err) }()
	fmt.Fprintf(stderr, "bench fanout: %d members, %d events/s of %d bytes to %s\n", cfg.Members, cfg.Rate, cfg.Size, t.describe())
	cfg.Target, cfg.Progress = t.Target, stderr
	res, err := bench.Fanout(ctx, cfg)
	return t, res, err
}

func printFanout(w io.Writer, t *benchTarget, r bench.FanoutResult) {
	fmt.Fprintf(w, "server            %s\n", t.describe())
	fmt.Fprintf(w, "load              %d members, %d publisher(s), %d events/s of %d bytes in bursts of %d, %.1fs measured\n",
		r.Members, r.Publishers, r.Rate, r.Size, r.Burst, r.Seconds)
	fmt.Fprintf(w, "deliveries/s      %.0f (target ≥ %d); %d events published, %d delivered in the window\n",
		r.DeliveriesPerSec, bench.FanoutRateTarget, r.Published, r.Delivered)
	fmt.Fprintf(w, "latency           p50 %.2fms  p90 %.2fms  p99 %.2fms (target < %dms)  max %.2fms; publisher lag max %.2fms\n",
		r.LatencyP50MS, r.LatencyP90MS, r.LatencyP99MS, bench.FanoutP99TargetMS, r.LatencyMaxMS, r.PublisherLagMaxMS)
	if t.PID != 0 {
		fmt.Fprintf(w, "server CPU        %.2fs in the window = %.3f µs per delivery (target ≤ %g µs)\n",
			r.ServerCPUSeconds, r.CPUPerDeliveryUS, bench.FanoutCPUTargetUS)
	} else {
		fmt.Fprintln(w, "server CPU        not measured (no --pid)")
	}
	if r.ServerWrites > 0 {
		fmt.Fprintf(w, "server writes     %d frames in %d system calls = %.1f frames per write\n",
			r.ServerMessagesOut, r.ServerWrites, float64(r.ServerMessagesOut)/float64(r.ServerWrites))
	}
	fmt.Fprintf(w, "generator CPU     %.2fs in the window; other processes %.2fs of the machine's %.2fs\n",
		r.GeneratorCPUSeconds, r.OtherCPUSeconds, r.MachineCPUSeconds)
	fmt.Fprintf(w, "totals            %d published, %d/%d delivered, %d lost, %d dropped connections, %d error frames\n",
		r.PublishedTotal, r.ReceivedTotal, r.ExpectedTotal, r.Lost, r.Dropped, r.ErrorFrames)
}

// printJSON prints one object: the bench's name, the server, the figures
// and any extra fields.
func printJSON(w io.Writer, name string, t *benchTarget, figures any, extra map[string]any) error {
	b, err := json.Marshal(figures)
	if err != nil {
		return err
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return err
	}
	out["bench"], out["server"], out["server_pid"] = name, t.URL, t.PID
	for k, v := range extra {
		out[k] = v
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// problems turns a bench's failed checks into an error.
func problems(list []string) error {
	if len(list) == 0 {
		return nil
	}
	return fmt.Errorf("bench checks failed:\n  %s", strings.Join(list, "\n  "))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func runBenchUpload(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var (
		cfg         bench.SendConfig
		old         bench.UploadConfig
		size        = int64(1 << 30)
		benchClient bool
		serverArgs  string
		sendArgs    string
		asJSON      bool
		genProfile  string
	)
	fs := newFlagSet("bench upload", "bench upload [flags]", stderr)
	sizeVar(fs, &size, "size", size, "bytes of the test file: 1GiB, 512MiB, 16MiB or a number of bytes")
	fs.IntVar(&cfg.Rounds, "rounds", 5, "rounds of the three runs (direct, ferry send, ferry send --base64), alternating their order; the figures are their medians")
	fs.StringVar(&cfg.Dir, "dir", os.TempDir(), "folder for the test file, on disk (not tmpfs)")
	fs.StringVar(&cfg.Ferry, "ferry", "", "ferry executable run as the server and as 'ferry send' (default: this one)")
	fs.StringVar(&sendArgs, "send-args", "", "extra flags for every 'ferry send'")
	fs.BoolVar(&benchClient, "bench-client", false, "instead, measure the bench's own protocol client against a streamed Put through ferry's store, then concurrent uploads (server memory) and chat latency while uploading")
	fs.IntVar(&old.Chunk, "chunk", 1<<20, "with --bench-client: binary chunk size")
	fs.IntVar(&old.Base64Chunk, "base64-chunk", 512<<10, "with --bench-client: base64 chunk size (the text frame must fit --max-frame)")
	fs.IntVar(&old.Concurrent, "concurrent", 16, "with --bench-client: uploads at once in the memory run")
	fs.Int64Var(&old.ConcurrentSize, "concurrent-size", 256<<20, "with --bench-client: bytes of each concurrent upload")
	fs.DurationVar(&old.ChatEvery, "chat-every", 10*time.Millisecond, "with --bench-client: interval of chat events on the uploading connection")
	s3Flags(fs, &cfg)
	fs.StringVar(&serverArgs, "server-args", "", "extra flags for the ferry server child, e.g. \"--cpuprofile /tmp/server.pprof\"")
	fs.BoolVar(&asJSON, "json", false, "print the figures as one JSON object")
	fs.StringVar(&genProfile, "gen-cpuprofile", "", "write a CPU profile of the bench process (the direct minio-go runs and the checks) to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if cfg.Rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", cfg.Rounds)
	}
	prof, err := startGenProfile(genProfile)
	if err != nil {
		return err
	}
	defer func() { err = prof.finish(err) }()
	if size <= 0 {
		return errors.New("bench upload: --size must be positive")
	}
	if benchClient {
		old.Size = size
		old.S3Endpoint, old.S3AccessKey, old.S3SecretKey = cfg.S3Endpoint, cfg.S3AccessKey, cfg.S3SecretKey
		old.ServerPath = cfg.Ferry
		old.ServerArgs = strings.Fields(serverArgs)
		old.Progress = stderr
		return runBenchUploadClient(ctx, old, asJSON, stdout)
	}
	cfg.Size = size
	cfg.ServerArgs = strings.Fields(serverArgs)
	cfg.SendArgs = strings.Fields(sendArgs)
	cfg.Progress = stderr
	res, err := bench.Send(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	return res.Report(stdout)
}

func s3Flags(fs *flag.FlagSet, cfg *bench.SendConfig) {
	fs.StringVar(&cfg.S3Endpoint, "s3-endpoint", "", "MinIO or S3 to use (default: start a MinIO child process)")
	fs.StringVar(&cfg.S3AccessKey, "s3-access-key", "", "S3 access key")
	fs.StringVar(&cfg.S3SecretKey, "s3-secret-key", "", "S3 secret key")
}

// startGenProfile starts a CPU profile of the generator that lasts until
// finish, for a bench that runs several servers; with no path it does
// nothing.
func startGenProfile(path string) (*benchTarget, error) {
	t := &benchTarget{}
	if path == "" {
		return t, nil
	}
	return t, t.startProfile(path)
}

// runBenchUploadClient is "bench upload --bench-client": the figures of
// ferry's own protocol client, kept for the server's memory and the chat
// latency they include.
func runBenchUploadClient(ctx context.Context, cfg bench.UploadConfig, asJSON bool, stdout io.Writer) error {
	res, err := bench.Upload(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "direct minio-go    %.0f MB/s (%d MiB, one PUT of known size)\n", res.DirectMBps, res.Size>>20)
	fmt.Fprintf(stdout, "binary frames      %.0f MB/s = %.0f%% of direct\n", res.BinaryMBps, 100*res.BinaryRatio)
	fmt.Fprintf(stdout, "base64 frames      %.0f MB/s = %.0f%% of direct\n", res.Base64MBps, 100*res.Base64Ratio)
	fmt.Fprintf(stdout, "%d × %d MiB        %.0f MB/s in all; server peak RSS %.0f MiB (target < 512 MiB); %d data files open; %d opens told busy, then retried\n",
		res.Concurrent, res.ConcurrentSize>>20, res.ConcurrentMBps, res.ConcurrentPeakRSSMB, res.OpenDataFiles, res.ConcurrentBusy)
	fmt.Fprintf(stdout, "chat while upload  %d events: p50 %.1f ms, p99 %.1f ms (target < 50 ms)\n", res.ChatSamples, res.ChatP50ms, res.ChatP99ms)
	return nil
}
