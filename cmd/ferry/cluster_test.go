package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/protocol"
)

// ferryCluster is ferry as several nodes run it: `ferry serve` processes
// (this test binary run as ferry, see runMainEnv), each on its own port
// and data folder, all on one 3-node NATS cluster (nats-server processes,
// streams replicated 3 times) and one MinIO bucket. A node or a NATS
// server can be killed with SIGKILL and started again.
type ferryCluster struct {
	t     *testing.T
	nats  *testenv.NATSCluster
	nodes []*clusterNode
}

// clusterNode is one ferry node: its address and arguments stay the same
// across restarts.
type clusterNode struct {
	addr string
	args []string
	proc *ferryProcess // nil while killed
}

// startFerryCluster starts a 3-node NATS cluster and n ferry nodes on it
// and waits until each node's /readyz answers 200. extra is given to every
// node. Without nats-server or minio it skips, or fails under
// FERRY_REQUIRE_ALL=1.
func startFerryCluster(t *testing.T, n int, extra ...string) *ferryCluster {
	t.Helper()
	nc := testenv.StartNATSCluster(t, 3)
	endpoint, access, secret := testenv.MinIO(t)
	// A bucket of the test's own in the shared MinIO: the nodes share it,
	// other tests do not.
	bucket := "cluster-" + strings.ToLower(rand.Text()[:12])
	c := &ferryCluster{t: t, nats: nc}
	for range n {
		node := &clusterNode{addr: freePort(t)}
		node.args = append([]string{"serve", "--addr", node.addr, "--data", t.TempDir(),
			"--nats", nc.URL(), "--nats-replicas", "3",
			"--s3-endpoint", endpoint, "--s3-access-key", access, "--s3-secret-key", secret, "--s3-bucket", bucket,
			"--rate", "100000", "--rate-burst", "100000"}, extra...)
		c.nodes = append(c.nodes, node)
	}
	// All at once, as a deployment starts them: each node keeps its own
	// direct-message position and letters, so none is refused.
	start := time.Now()
	for i := range c.nodes {
		c.spawn(i)
	}
	for i := range c.nodes {
		c.waitReady(i)
	}
	retried := 0
	for _, node := range c.nodes {
		retried += strings.Count(node.proc.stderr.String(), "streams not set up yet")
	}
	t.Logf("%d ferry nodes started together, ready in %v; %d setup attempts went unanswered", n, time.Since(start).Round(time.Millisecond), retried)
	t.Cleanup(func() {
		if t.Failed() {
			for i, node := range c.nodes {
				if node.proc != nil {
					t.Logf("ferry node %d's log:\n%s", i, node.proc.stderr.String())
				}
			}
		}
	})
	return c
}

func (c *ferryCluster) spawn(i int) {
	c.t.Helper()
	c.nodes[i].proc = startFerryProcess(c.t, nil, c.nodes[i].args...)
}

// waitReady waits until node i's /readyz answers 200.
func (c *ferryCluster) waitReady(i int) {
	c.t.Helper()
	node := c.nodes[i]
	deadline := time.Now().Add(time.Minute)
	last := "no answer"
	for {
		res, err := http.Get(c.url(i) + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", res.StatusCode, body)
		}
		select {
		case <-node.proc.done:
			c.t.Fatalf("ferry node %d ended before it was ready:\n%s", i, node.proc.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("ferry node %d not ready after a minute (/readyz: %s):\n%s", i, last, node.proc.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// url is node i's base URL, http://127.0.0.1:port.
func (c *ferryCluster) url(i int) string { return "http://" + c.nodes[i].addr }

// kill ends node i with SIGKILL: no shutdown, no flush.
func (c *ferryCluster) kill(i int) {
	c.t.Helper()
	p := c.nodes[i].proc
	if err := p.cmd.Process.Signal(os.Kill); err != nil {
		c.t.Fatal(err)
	}
	<-p.done
	c.nodes[i].proc = nil
}

// restart starts node i again, with its port and data, and waits until
// it is ready.
func (c *ferryCluster) restart(i int) {
	c.t.Helper()
	c.spawn(i)
	c.waitReady(i)
}

// emitRetrying emits an event through w until it is acknowledged or a
// deadline passes, with the same msg_id each time (a resend is safe).
func emitRetrying(t *testing.T, w *wire, room, msgID string, data any) map[string]any {
	t.Helper()
	_, d := requestRetrying(t, w, map[string]any{"t": "emit", "room": room, "event": "chat", "data": data, "msg_id": msgID})
	return d
}

// requestRetrying sends req through w until it is answered without an
// error or a deadline passes, and returns the frames that came before the
// answer and its data: while NATS elects a leader (a cluster starting, a
// server killed), the journal's calls fail for a moment, and the client
// is told so with an error frame.
func requestRetrying(t *testing.T, w *wire, req map[string]any) (before []map[string]any, data map[string]any) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		w.id++
		req["id"] = w.id
		if err := w.ws.WriteJSON(req); err != nil {
			t.Fatal(err)
		}
		for {
			f := w.next()
			if id, _ := f["id"].(float64); uint64(id) != w.id {
				before = append(before, f)
				continue
			}
			if f["t"] != protocol.TypeError {
				d, _ := f["data"].(map[string]any)
				return before, d
			}
			if time.Now().After(deadline) {
				t.Fatalf("%v still refused: %v", req, f)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Three ferry nodes on a 3-node NATS cluster: each is ready and serves the
// page; what one node journals, another replays to a client that rejoins
// there; a ferry node killed with SIGKILL comes back; and with one NATS
// server killed, the nodes go on journaling in the same epoch (the streams
// keep a quorum of copies), and what they journaled is replayed.
func TestClusterNodesServe(t *testing.T) {
	c := startFerryCluster(t, 3)
	for i := range c.nodes {
		res, err := http.Get(c.url(i) + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "<html") {
			t.Errorf("node %d's page: %d, %.80q", i, res.StatusCode, page)
		}
	}

	a := dialWire(t, c.nodes[0].addr, "")
	_, joined := a.request(map[string]any{"t": "join", "room": "lobby"})
	epoch, _ := joined["epoch"].(string)
	for i := 1; i <= 5; i++ {
		_, ack := a.request(map[string]any{"t": "emit", "room": "lobby", "event": "chat",
			"data": map[string]any{"n": i}, "msg_id": fmt.Sprintf("a%d", i)})
		if ack["seq"] != float64(i) {
			t.Fatalf("emit %d on node 0 acked %v", i, ack)
		}
	}
	replayedOn := func(node int, epoch string, want int) {
		t.Helper()
		b := dialWire(t, c.nodes[node].addr, "")
		before, ack := requestRetrying(t, b, map[string]any{"t": "join", "room": "lobby",
			"since": map[string]any{"epoch": epoch, "seq": 0}})
		if ack["recovery"] != "ok" || ack["epoch"] != epoch {
			t.Fatalf("join on node %d since the start: %v, want recovery ok in epoch %s", node, ack, epoch)
		}
		var seqs []float64
		for _, f := range before {
			if f["t"] == protocol.TypeEvent {
				seqs = append(seqs, f["seq"].(float64))
			}
		}
		if len(seqs) != want || (want > 0 && (seqs[0] != 1 || seqs[want-1] != float64(want))) {
			t.Fatalf("node %d replayed seqs %v, want 1 to %d", node, seqs, want)
		}
		b.ws.Close()
	}
	replayedOn(1, epoch, 5)

	// A ferry node killed and started again loads the room from NATS.
	c.kill(2)
	c.restart(2)
	replayedOn(2, epoch, 5)

	// A NATS server killed: the ferry nodes that were connected to it move
	// to another, and the streams, replicated 3 times, go on with 2.
	if err := c.nats.Kill(0); err != nil {
		t.Fatal(err)
	}
	a = dialWire(t, c.nodes[0].addr, "")
	a.request(map[string]any{"t": "join", "room": "lobby", "since": map[string]any{"epoch": epoch, "seq": 5}})
	// While the streams elect new leaders, appends fail for a moment; the
	// node makes them again (the room's append is conditional, so it is
	// stored once), and the room keeps its epoch: nothing was lost.
	ack := emitRetrying(t, a, "lobby", "a6", map[string]any{"n": 6})
	if ack["seq"] != float64(6) || ack["epoch"] != epoch {
		t.Fatalf("emit with a NATS server down acked %v, want seq 6 of epoch %s", ack, epoch)
	}
	if err := c.nats.StartNode(0); err != nil {
		t.Fatal(err)
	}
	c.kill(1)
	c.restart(1)
	replayedOn(1, epoch, 6)
}
