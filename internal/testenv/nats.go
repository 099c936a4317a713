package testenv

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/internal/natscluster"
)

// NATSServerEnv names the environment variable that points at a
// nats-server binary.
const NATSServerEnv = natscluster.BinEnv

// NATSCluster is a NATS cluster with JetStream of nats-server processes on
// 127.0.0.1. Kill a node and StartNode it again to test how ferry lives
// through the loss of one: it comes back on the same address with the
// same data.
type NATSCluster = natscluster.Cluster

// StartNATSCluster starts a NATS cluster of size nodes with JetStream, its
// files in t.TempDir(), waits until JetStream has a meta leader, and stops
// it when the test ends. It skips or fails the test, as Require does, when
// no nats-server binary is found (see natscluster.Find).
func StartNATSCluster(t testing.TB, size int) *NATSCluster {
	t.Helper()
	bin, err := natscluster.Find()
	if err != nil {
		Require(t, fmt.Sprintf("nats-server binary (%v; installed by scripts/test-deps.sh, or set $%s)", err, NATSServerEnv))
		return nil
	}
	c, err := natscluster.New(bin, t.TempDir(), size)
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
		return nil
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range c.Size() {
				t.Logf("testenv: end of NATS node %d's log:\n%s", i, indent(c.LogTail(i, 2048)))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return c
}

func indent(s string) string { return "\t" + strings.ReplaceAll(s, "\n", "\n\t") }
