package secrets_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/rooms/jetstream"
	"github.com/ferryhq/ferry/secrets"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// natsServer starts an embedded NATS server with a listener and returns
// n connections to it, as n nodes would have.
func natsServer(t *testing.T, n int) []*nats.Conn {
	t.Helper()
	emb, err := jetstream.StartEmbeddedConfig(jetstream.EmbeddedConfig{Dir: t.TempDir(), Listen: "127.0.0.1:-1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emb.Shutdown(context.Background()) })
	var conns []*nats.Conn
	for range n {
		nc, err := nats.Connect(emb.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		conns = append(conns, nc)
	}
	return conns
}

// Nodes starting at once agree on one key, whoever creates it; later
// nodes read it, whatever seed they bring.
func TestSharedKeyIsOneForAllNodes(t *testing.T) {
	conns := natsServer(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys := make([][]byte, len(conns))
	created := make([]bool, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, nc := range conns {
		wg.Go(func() { keys[i], created[i], errs[i] = secrets.Shared(ctx, nc, secrets.Config{}, "anon", nil) })
	}
	wg.Wait()
	creators := 0
	for i := range conns {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if len(keys[i]) != secrets.KeySize || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("node %d got key %x, node 0 %x", i, keys[i], keys[0])
		}
		if created[i] {
			creators++
		}
	}
	if creators != 1 {
		t.Fatalf("%d nodes say they created the key, want 1", creators)
	}
	seed := bytes.Repeat([]byte{7}, secrets.KeySize)
	later, made, err := secrets.Shared(ctx, conns[0], secrets.Config{}, "anon", seed)
	if err != nil || made || !bytes.Equal(later, keys[0]) {
		t.Fatalf("a later node with a seed of its own got %x (created %v, %v), want the shared %x", later, made, err, keys[0])
	}
	// Another name is another key.
	other, _, err := secrets.Shared(ctx, conns[1], secrets.Config{}, "other", nil)
	if err != nil || bytes.Equal(other, keys[0]) {
		t.Fatalf("another name got %x, %v", other, err)
	}
}

// The first node's seed (a key it kept in its data folder before) becomes
// everyone's; a seed too short to be a key is refused.
func TestSharedKeyFromSeed(t *testing.T) {
	conns := natsServer(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seed := bytes.Repeat([]byte("k"), 40)
	key, created, err := secrets.Shared(ctx, conns[0], secrets.Config{}, "anon", seed)
	if err != nil || !created || !bytes.Equal(key, seed) {
		t.Fatalf("with a seed: %q created %v, %v", key, created, err)
	}
	key, created, err = secrets.Shared(ctx, conns[1], secrets.Config{}, "anon", nil)
	if err != nil || created || !bytes.Equal(key, seed) {
		t.Fatalf("the other node: %q created %v, %v", key, created, err)
	}
	if _, _, err := secrets.Shared(ctx, conns[1], secrets.Config{}, "short", []byte("short")); err == nil {
		t.Fatal("a 5-byte seed was taken")
	}
}
