package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/bench"
	"github.com/ferryhq/ferry/internal/minioserver"
)

// runBenchCharts runs short sweeps of the fan-out, idle and upload benches,
// prints each run's figures as those benches do, and draws the SVG charts
// of docs/benchmarks.md from them. Every fan-out and idle run gets a child
// server of its own (or the --server given), so that no run inherits
// another's heap or sockets. A sweep that fails is not charted; the others
// are.
func runBenchCharts(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	var (
		tf     benchTargetFlags
		out    string
		rates  = intList{25, 50, 100, 200}
		counts = intList{1000, 5000, 10000}
		fan    = bench.FanoutConfig{ReadLoops: 2}
		idle   bench.IdleConfig
		up     bench.SendConfig
	)
	fs := newFlagSet("bench charts", "bench charts [flags]", stderr)
	tf.register(fs)
	fs.StringVar(&out, "out", "docs/img", fmt.Sprintf("folder for %s, %s and %s", bench.FanoutChartFile, bench.UploadChartFile, bench.IdleChartFile))
	fs.Var(&rates, "rates", "events/s of the fan-out runs, one run each (deliveries/s = rate × members)")
	fs.IntVar(&fan.Members, "members", 1000, "connections in the room of each fan-out run")
	fs.DurationVar(&fan.Warmup, "warmup", time.Second, "events flow this long before each fan-out measurement")
	fs.DurationVar(&fan.Duration, "duration", 4*time.Second, "length of each fan-out measurement")
	fs.Var(&counts, "conns", "connections of the idle runs, one run each")
	fs.DurationVar(&idle.Settle, "settle", 2*time.Second, "in each idle run, wait after the ping round before reading the server's memory")
	sizeVar(fs, &up.Size, "upload-size", 512<<20, "bytes of the upload runs' file (they start a server and MinIO of their own); 0 skips them")
	fs.IntVar(&up.Rounds, "upload-rounds", 3, "rounds of the upload runs (direct, ferry send, ferry send --base64)")
	fs.StringVar(&up.Dir, "dir", os.TempDir(), "folder for the upload runs' file, on disk (not tmpfs)")
	s3Flags(fs, &up)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if tf.server != "" && tf.pid == 0 {
		return errors.New("--server needs --pid: the charts show the server's memory and CPU")
	}
	if up.Rounds < 1 {
		return fmt.Errorf("--upload-rounds %d: want at least 1", up.Rounds)
	}
	// One profile over the whole sweep, not one per server.
	prof, err := startGenProfile(tf.cpuProfile)
	if err != nil {
		return err
	}
	defer func() { err = prof.finish(err) }()
	tf.cpuProfile = ""

	began := time.Now()
	var failed, skipped []string
	// run prints a run's figures and keeps its failed checks for the end;
	// an error it names after the run.
	run := func(name string, err error, checks []string, print func()) error {
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !tf.json {
			print()
			fmt.Fprintln(stdout)
		}
		for _, c := range checks {
			failed = append(failed, name+": "+c)
		}
		return nil
	}
	fanouts, ferr := sweep(rates, func(rate int) (bench.FanoutResult, error) {
		cfg := fan
		cfg.Rate = rate
		t, res, err := tf.fanout(ctx, cfg, stderr)
		return res, run(fmt.Sprintf("fanout at %d events/s", rate), err, res.Problems, func() { printFanout(stdout, t, res) })
	})
	idles, ierr := sweep(counts, func(n int) (bench.IdleResult, error) {
		cfg := idle
		cfg.Conns = n
		t, res, err := tf.idle(ctx, cfg, idleServeArgs(idlePing, idlePing), stderr)
		return res, run(fmt.Sprintf("idle with %d connections", n), err, res.Problems, func() { printIdle(stdout, t, res) })
	})

	var (
		sent    *bench.SendResult
		uerr    error
		noMinIO error
	)
	if up.S3Endpoint == "" {
		_, noMinIO = minioserver.Find()
	}
	switch {
	case ctx.Err() != nil:
		uerr = ctx.Err()
	case up.Size == 0:
		skipped = append(skipped, "the upload chart (--upload-size 0)")
	case noMinIO != nil:
		skipped = append(skipped, fmt.Sprintf("the upload chart: no MinIO to start (give --s3-endpoint, or build it with `make test-deps`): %v", noMinIO))
	default:
		up.ServerArgs = strings.Fields(tf.serverArgs)
		up.Progress = stderr
		res, err := bench.Send(ctx, up)
		if uerr = run("upload", err, nil, func() { _ = res.Report(stdout) }); uerr == nil {
			sent = &res
		}
	}

	paths, err := bench.WriteCharts(out, fanouts, idles, sent)
	if tf.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = errors.Join(err, enc.Encode(map[string]any{
			"bench": "charts", "fanout": fanouts, "idle": idles, "upload": sent, "charts": paths, "skipped": skipped,
		}))
	}
	for _, s := range skipped {
		fmt.Fprintf(stderr, "bench charts: skipped %s\n", s)
	}
	fmt.Fprintf(stderr, "bench charts: wrote %d chart(s) in %s: %s\n", len(paths), time.Since(began).Round(time.Second), strings.Join(paths, ", "))
	if notCharted := errors.Join(ferr, ierr, uerr); notCharted != nil {
		err = errors.Join(err, fmt.Errorf("not charted, as a run failed: %w", notCharted))
	}
	return errors.Join(err, problems(failed))
}

// sweep measures each of values in turn. The first error ends it, with no
// results: a sweep cut short is not charted.
func sweep[R any](values []int, measure func(int) (R, error)) ([]R, error) {
	var rs []R
	for _, v := range values {
		r, err := measure(v)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// intList is a flag of comma-separated positive integers, such as
// "1000,5000,10000".
type intList []int

func (l *intList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, n := range *l {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	var list intList
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a list of positive integers such as 1000,5000", v)
		}
		list = append(list, n)
	}
	*l = list
	return nil
}
