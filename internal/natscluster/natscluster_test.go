package natscluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A stream of three replicas on the cluster takes messages while one node
// is down (the two others are a quorum), and the node, started again,
// catches up with what it missed.
func TestClusterLosesANode(t *testing.T) {
	c := testenv.StartNATSCluster(t, 3)
	urls := c.URLs()
	if len(urls) != 3 {
		t.Fatalf("URLs = %v, want 3", urls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Connected to the node that stays up, so the client keeps going.
	nc, err := nats.Connect(urls[0], nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(s.CachedInfo().Cluster.Replicas) + 1; got != 3 {
		t.Fatalf("the stream has %d copies, want 3", got)
	}
	publish := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := js.Publish(ctx, "t.x", fmt.Appendf(nil, "m%d", i)); err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	publish(0, 10)

	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	// The stream's leader may have been the killed node: publishing goes
	// on once the two others have elected one, within seconds.
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.Publish(pctx, "t.x", []byte("m10"))
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish with a node down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	publish(11, 20)

	if err := c.StartNode(2); err != nil {
		t.Fatal(err)
	}
	// StartNode waited for the node's /healthz, which answers once its
	// copy of the stream is current; the stream's own view agrees.
	nc3, err := nats.Connect(urls[2])
	if err != nil {
		t.Fatal(err)
	}
	defer nc3.Close()
	js3, err := jetstream.New(nc3)
	if err != nil {
		t.Fatal(err)
	}
	info, err := js3.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 20 {
		t.Fatalf("the stream holds %d messages after the restart, want 20", n)
	}
	cl := info.CachedInfo().Cluster
	for _, r := range cl.Replicas {
		if !r.Current || r.Offline {
			t.Errorf("%s's copy (leader %s): current %v, offline %v", r.Name, cl.Leader, r.Current, r.Offline)
		}
	}
}
