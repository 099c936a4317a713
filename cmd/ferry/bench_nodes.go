package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry/bench"
)

// benchChildEnv is added to the environment of the servers a bench starts
// as children of this executable: empty for ferry; the tests, whose
// binary acts as ferry only when told, set it.
var benchChildEnv []string

// fanoutServeArgs are the child server's flags for a fan-out: the
// publishers emit far above a chat client's rate limit.
var fanoutServeArgs = []string{"--rate", "1000000", "--rate-burst", "1000000"}

// fanoutNodesFlags are "bench fanout"'s flags for a room served by
// several nodes.
type fanoutNodesFlags struct {
	nodes    int
	baseline bool
	natsArgs string
}

func (f *fanoutNodesFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.nodes, "nodes", 1, "ferry nodes sharing the room through one NATS server, all started by the bench: members split evenly, publishers on node 1; {node} in --server-args becomes each node's number (0 for the one-node run)")
	fs.BoolVar(&f.baseline, "baseline", true, "with --nodes: first measure the same load on one node, for the ratios")
	fs.StringVar(&f.natsArgs, "nats-args", "", "with --nodes: extra flags for the NATS server the bench starts, e.g. \"--cpuprofile /tmp/nats.pprof\"")
}

// fanout is "bench fanout --nodes N": the fan-out on one node first (the
// baseline, unless told not to), then across N ferry nodes sharing a NATS
// server, each a child process, with the same members and rate.
func (f *fanoutNodesFlags) fanout(ctx context.Context, tf benchTargetFlags, cfg bench.FanoutConfig, stdout, stderr io.Writer) (err error) {
	prof, err := startGenProfile(tf.cpuProfile)
	if err != nil {
		return err
	}
	defer func() { err = prof.finish(err) }()
	tf.cpuProfile = "" // the whole run's, above
	if want := cfg.ReadLoops + 2; runtime.GOMAXPROCS(0) < want {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(want))
	}
	var (
		one  *bench.FanoutResult
		oneT *benchTarget
	)
	if f.baseline {
		single := tf
		single.serverArgs = nodeArgs(tf.serverArgs, 0)
		t, res, err := single.fanout(ctx, cfg, stderr)
		if err != nil {
			return fmt.Errorf("one node: %w", err)
		}
		one, oneT = &res, t
	}
	c, err := startCluster(ctx, f.nodes, cfg.Members+cfg.Publishers, tf.serverArgs, f.natsArgs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bench fanout: %d members over %d nodes, %d events/s of %d bytes, publishers on node 1\n", cfg.Members, f.nodes, cfg.Rate, cfg.Size)
	cfg.Nodes, cfg.SharedPIDs, cfg.Progress = c.targets(), []int{c.nats.PID}, stderr
	res, err := bench.Fanout(ctx, cfg)
	if err = c.finish(err); err != nil {
		return err
	}
	if tf.json {
		err = printFanoutNodesJSON(stdout, c, res, one)
	} else {
		if one != nil {
			fmt.Fprintln(stdout, "one node")
			printFanout(stdout, oneT, *one)
			fmt.Fprintln(stdout)
		}
		fmt.Fprintf(stdout, "across %d nodes\n", f.nodes)
		printFanoutNodes(stdout, c, res, one)
	}
	if err != nil {
		return err
	}
	list := res.Problems
	if one != nil {
		for _, p := range one.Problems {
			list = append(list, "one node: "+p)
		}
	}
	return problems(list)
}

// cluster is ferry nodes sharing a NATS server, each a child process.
type cluster struct {
	nats    *benchTarget
	natsURL string
	nodes   []*benchTarget
}

// startCluster starts a NATS server ("bench nats-server") and n ferry
// nodes on it, each with its own data folder and serverArgs (see
// nodeArgs), for a bench opening files connections. natsArgs go to the
// NATS server.
func startCluster(ctx context.Context, n, files int, serverArgs, natsArgs string) (c *cluster, err error) {
	if err := raiseOpenFiles(files); err != nil {
		return nil, err
	}
	c = &cluster{}
	defer func() {
		if err != nil {
			err = c.finish(err)
		}
	}()
	ns, err := bench.StartServer(ctx, bench.ServerConfig{Command: []string{"bench", natsServerCommand},
		Args: strings.Fields(natsArgs), Env: benchChildEnv})
	if err != nil {
		return c, fmt.Errorf("NATS server: %w", err)
	}
	c.nats = &benchTarget{Target: ns.Target, child: ns}
	if c.natsURL, err = natsClientURL(ctx, ns.HealthURL()); err != nil {
		return c, err
	}
	// One after the other: the first creates the streams, the next find them.
	for i := range n {
		args := append(append(fanoutServeArgs[:len(fanoutServeArgs):len(fanoutServeArgs)], "--nats", c.natsURL), strings.Fields(nodeArgs(serverArgs, i+1))...)
		s, err := bench.StartServer(ctx, bench.ServerConfig{Args: args, Env: benchChildEnv})
		if err != nil {
			return c, fmt.Errorf("node %d: %w", i+1, err)
		}
		c.nodes = append(c.nodes, &benchTarget{Target: s.Target, child: s})
	}
	return c, nil
}

// nodeArgs are the --server-args of node n (0: the one-node baseline),
// with {node} replaced by n: each node its own profile, say.
func nodeArgs(serverArgs string, n int) string {
	return strings.ReplaceAll(serverArgs, "{node}", strconv.Itoa(n))
}

func (c *cluster) targets() []bench.Target {
	var ts []bench.Target
	for _, n := range c.nodes {
		ts = append(ts, n.Target)
	}
	return ts
}

// finish stops the nodes, then the NATS server, as benchTarget.finish
// does; it is called once.
func (c *cluster) finish(err error) error {
	for i, n := range c.nodes {
		if e := n.finish(nil); e != nil {
			err = errors.Join(err, fmt.Errorf("node %d: %w", i+1, e))
		}
	}
	if c.nats != nil {
		if e := c.nats.finish(nil); e != nil {
			err = errors.Join(err, fmt.Errorf("NATS server: %w", e))
		}
	}
	return err
}

// natsClientURL asks a "bench nats-server" where its clients connect: its
// /healthz answers with the URL.
func natsClientURL(ctx context.Context, healthURL string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, healthURL, nil)
	if err != nil {
		return "", err
	}
	req.Close = true // one request: no idle connection left behind
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("NATS server: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return "", fmt.Errorf("NATS server: %w", err)
	}
	url := strings.TrimSpace(string(b))
	if !strings.HasPrefix(url, "nats://") {
		return "", fmt.Errorf("NATS server: /healthz answered %q, want its client URL", url)
	}
	return url, nil
}

func printFanoutNodes(w io.Writer, c *cluster, r bench.FanoutResult, one *bench.FanoutResult) {
	fmt.Fprintf(w, "NATS server       %s (pid %d, started by the bench, JetStream on disk)\n", c.natsURL, c.nats.PID)
	fmt.Fprintf(w, "load              %d members split over %d nodes, %d publisher(s) on node 1, %d events/s of %d bytes in bursts of %d, %.1fs measured\n",
		r.Members, len(r.Nodes), r.Publishers, r.Rate, r.Size, r.Burst, r.Seconds)
	for i, n := range r.Nodes {
		fmt.Fprintf(w, "node %d            %s (pid %d): %d members, %.0f deliveries/s, p50 %.2fms p99 %.2fms max %.2fms, CPU %.2fs = %.3f µs per delivery",
			i+1, n.URL, n.PID, n.Members, n.DeliveriesPerSec, n.LatencyP50MS, n.LatencyP99MS, n.LatencyMaxMS, n.ServerCPUSeconds, n.CPUPerDeliveryUS)
		if n.ServerWrites > 0 {
			fmt.Fprintf(w, ", %.1f frames per write", float64(n.ServerMessagesOut)/float64(n.ServerWrites))
		}
		fmt.Fprintf(w, "; %d lost, %d duplicates\n", n.Lost, n.Duplicates)
	}
	fmt.Fprintf(w, "deliveries/s      %.0f in all (target ≥ %d); %d events published, %d delivered in the window\n",
		r.DeliveriesPerSec, bench.FanoutRateTarget, r.Published, r.Delivered)
	fmt.Fprintf(w, "latency           p50 %.2fms  p90 %.2fms  p99 %.2fms (target < %dms)  max %.2fms; publisher lag max %.2fms\n",
		r.LatencyP50MS, r.LatencyP90MS, r.LatencyP99MS, bench.FanoutNodesP99TargetMS, r.LatencyMaxMS, r.PublisherLagMaxMS)
	nodesCPU := r.ServerCPUSeconds - r.SharedCPUSeconds
	fmt.Fprintf(w, "server CPU        nodes %.2fs + NATS %.2fs = %.2fs in the window = %.3f µs per delivery\n",
		nodesCPU, r.SharedCPUSeconds, r.ServerCPUSeconds, r.CPUPerDeliveryUS)
	fmt.Fprintf(w, "generator CPU     %.2fs in the window; other processes %.2fs of the machine's %.2fs\n",
		r.GeneratorCPUSeconds, r.OtherCPUSeconds, r.MachineCPUSeconds)
	fmt.Fprintf(w, "totals            %d published, %d/%d delivered, %d lost, %d duplicates, %d dropped connections, %d error frames\n",
		r.PublishedTotal, r.ReceivedTotal, r.ExpectedTotal, r.Lost, r.Duplicates, r.Dropped, r.ErrorFrames)
	if one != nil {
		fmt.Fprintf(w, "vs one node       CPU per delivery %.2f× (%.3f µs against %.3f), p99 %.2f× (%.2fms against %.2fms)\n",
			ratio(r.CPUPerDeliveryUS, one.CPUPerDeliveryUS), r.CPUPerDeliveryUS, one.CPUPerDeliveryUS,
			ratio(r.LatencyP99MS, one.LatencyP99MS), r.LatencyP99MS, one.LatencyP99MS)
	}
}

func printFanoutNodesJSON(w io.Writer, c *cluster, r bench.FanoutResult, one *bench.FanoutResult) error {
	out := map[string]any{"bench": "fanout", "nats": c.natsURL, "nats_pid": c.nats.PID, "across_nodes": r}
	if one != nil {
		out["one_node"] = one
		out["cpu_per_delivery_ratio"] = ratio(r.CPUPerDeliveryUS, one.CPUPerDeliveryUS)
		out["p99_ratio"] = ratio(r.LatencyP99MS, one.LatencyP99MS)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// ratio is a/b, 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
