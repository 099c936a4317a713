// Package natscluster runs a NATS cluster with JetStream, of nats-server
// processes on 127.0.0.1, for the tests of ferry nodes sharing rooms. It
// runs the nats-server binary that make test builds, not the server ferry
// embeds: the nodes are separate processes that can be killed and started
// again, as the machines of a real cluster are.
package natscluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferryhq/ferry/internal/childproc"
)

// BinEnv names the environment variable that points at a nats-server
// binary.
const BinEnv = "FERRY_NATS_SERVER"

// How long a node gets to be ready (JetStream's meta leader elected, its
// streams caught up) and to shut down before it is killed. A node is
// usually ready within a couple of seconds; the margin is for loaded CI
// machines.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// Name is the cluster's name, in every node's configuration.
const Name = "ferry-test"

// Find returns the nats-server binary to run: $FERRY_NATS_SERVER, else
// $(go env GOPATH)/bin/nats-server (where scripts/test-deps.sh installs
// it), else nats-server in PATH.
func Find() (string, error) { return childproc.Find(BinEnv, "nats-server") }

// Cluster is a NATS cluster of nats-server processes with JetStream.
type Cluster struct {
	bin   string
	nodes []*node
}

// node is one nats-server: its ports and folder stay the same across
// restarts, so that it comes back as the same member with the same data.
type node struct {
	name, dir                       string
	clientAddr, routeAddr, httpAddr string
	proc                            childproc.Process
}

// New prepares a cluster of size nodes running bin, each with its
// configuration, JetStream files and log in a folder of dir, on free ports;
// Start starts it. A cluster of JetStream needs three nodes or more to keep
// working with one of them down.
func New(bin, dir string, size int) (*Cluster, error) {
	if size < 1 {
		return nil, errors.New("natscluster: a cluster needs a node")
	}
	c := &Cluster{bin: bin}
	for i := range size {
		n := &node{name: fmt.Sprintf("n%d", i+1)}
		n.dir = filepath.Join(dir, n.name)
		n.proc.Log = filepath.Join(n.dir, "nats.log")
		for _, a := range []*string{&n.clientAddr, &n.routeAddr, &n.httpAddr} {
			var err error
			if *a, err = childproc.FreeAddr(); err != nil {
				return nil, err
			}
		}
		c.nodes = append(c.nodes, n)
	}
	for _, n := range c.nodes {
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
		if err := os.WriteFile(n.confPath(), []byte(c.config(n)), 0o600); err != nil {
			return nil, fmt.Errorf("natscluster: %w", err)
		}
	}
	return c, nil
}

// config is n's configuration file: its ports, its JetStream folder, and
// routes to every node (a node skips the route to itself).
func (c *Cluster) config(n *node) string {
	var routes []string
	for _, m := range c.nodes {
		routes = append(routes, fmt.Sprintf("%q", "nats-route://"+m.routeAddr))
	}
	// max_payload as ferry's embedded server has it: an event frame of
	// 1 MiB plus its envelope must fit in one message.
	return fmt.Sprintf(`server_name: %q
listen: %q
http: %q
max_payload: 8MB
jetstream {
  store_dir: %q
}
cluster {
  name: %q
  listen: %q
  routes: [%s]
}
`, n.name, n.clientAddr, n.httpAddr, filepath.Join(n.dir, "jetstream"), Name, n.routeAddr, strings.Join(routes, ", "))
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// URLs are the nodes' client URLs (nats://127.0.0.1:port), in order.
func (c *Cluster) URLs() []string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = "nats://" + n.clientAddr
	}
	return urls
}

// URL is the client URLs joined by commas, as `ferry serve --nats` takes
// them.
func (c *Cluster) URL() string { return strings.Join(c.URLs(), ",") }

// Start starts every node that is not running and waits until each is
// healthy: JetStream has a meta leader and the node's streams are current.
// Nodes need each other to elect one, so they start together.
func (c *Cluster) Start() error {
	var started []*node
	for _, n := range c.nodes {
		switch err := n.proc.Start(exec.Command(c.bin, "-c", n.confPath())); {
		case err == nil:
			started = append(started, n)
		case !errors.Is(err, childproc.ErrRunning):
			return errors.Join(fmt.Errorf("natscluster: node %s: %w", n.name, err), c.Stop())
		}
	}
	for _, n := range started {
		if err := n.waitHealthy(); err != nil {
			return errors.Join(err, c.Stop())
		}
	}
	return nil
}

// StartNode starts node i (from 0) again after Kill or StopNode, with its
// ports and data, and waits until it is healthy: back in the cluster with
// its streams caught up.
func (c *Cluster) StartNode(i int) error {
	n := c.nodes[i]
	if err := n.proc.Start(exec.Command(c.bin, "-c", n.confPath())); err != nil {
		return fmt.Errorf("natscluster: node %s: %w", n.name, err)
	}
	return n.waitHealthy()
}

// Kill ends node i at once (SIGKILL), as a crash or a pulled plug would,
// and waits for it to exit.
func (c *Cluster) Kill(i int) error { return c.nodes[i].proc.Kill() }

// StopNode shuts node i down as an operator would, killing it past a
// timeout.
func (c *Cluster) StopNode(i int) error { return c.nodes[i].proc.Stop(stopTimeout) }

// Stop shuts every node down. Stopping a stopped cluster does nothing.
func (c *Cluster) Stop() error {
	var errs []error
	for _, n := range c.nodes {
		errs = append(errs, n.proc.Stop(stopTimeout))
	}
	return errors.Join(errs...)
}

// LogTail returns up to the last n bytes node i wrote to its log, for
// failure messages.
func (c *Cluster) LogTail(i int, n int64) string { return c.nodes[i].proc.LogTail(n) }

// waitHealthy waits for the node's /healthz, which answers 200 once
// JetStream has a meta leader and the streams the node holds are current.
func (n *node) waitHealthy() error {
	if err := n.proc.WaitHTTP("http://"+n.httpAddr+"/healthz", startTimeout); err != nil {
		return fmt.Errorf("natscluster: node %s: %w\n%s", n.name, err, n.proc.LogTail(4096))
	}
	return nil
}

func (n *node) confPath() string { return filepath.Join(n.dir, "nats.conf") }
