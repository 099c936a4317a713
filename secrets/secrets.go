// Package secrets gives every ferry node sharing one NATS server (or
// cluster) the same secret keys: the key anonymous identities and
// download links are signed with must be one for all nodes, or a link
// signed by one node would not open on another, and an anonymous user
// would be someone else on each node.
//
// The keys live in a JetStream key-value bucket. The first node to ask
// for a key creates it, at random or from a seed it already had, with
// the bucket's Create, which fails when the key exists: two nodes
// starting at once cannot each keep a key of their own, the one that
// loses reads the winner's.
package secrets

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config.
const (
	DefaultBucket = "FERRY_SECRETS"
	// KeySize is the length of the keys Shared makes, and the least a seed
	// may have.
	KeySize = 32
)

// Config configures Shared. Zero values mean the documented defaults.
type Config struct {
	// Bucket names the key-value bucket. Default DefaultBucket.
	Bucket string
	// Replicas is the bucket's replication in a NATS cluster. Default 1.
	Replicas int
}

// Shared returns the key named name that every node on nc's NATS shares.
// When the bucket has none yet, it stores seed (a key this node had
// before, at least KeySize bytes), or a random one without a seed, and
// reports created; when another node created one meanwhile, that one is
// returned. name must be a valid key-value key (letters, digits, "-",
// "_", "=", "/" and ".").
func Shared(ctx context.Context, nc *nats.Conn, cfg Config, name string, seed []byte) (key []byte, created bool, err error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if len(seed) > 0 && len(seed) < KeySize {
		return nil, false, fmt.Errorf("secrets: a seed needs at least %d bytes, not %d", KeySize, len(seed))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, false, fmt.Errorf("secrets: %w", err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "ferry's keys, the same for every node",
		// A key is written once; an earlier value is of no use.
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, false, fmt.Errorf("secrets: bucket %s: %w", cfg.Bucket, err)
	}
	if e, err := kv.Get(ctx, name); err == nil {
		return check(e.Value(), name)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, fmt.Errorf("secrets: read %s: %w", name, err)
	}
	key = bytes.Clone(seed)
	if len(key) == 0 {
		key = make([]byte, KeySize)
		_, _ = rand.Read(key) // crypto/rand.Read never fails
	}
	if _, err := kv.Create(ctx, name, key); err == nil {
		return key, true, nil
	} else if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, false, fmt.Errorf("secrets: store %s: %w", name, err)
	}
	// Another node created it first: that one it is.
	e, err := kv.Get(ctx, name)
	if err != nil {
		return nil, false, fmt.Errorf("secrets: read %s: %w", name, err)
	}
	return check(e.Value(), name)
}

// check refuses a stored key too short to be one of ours: a bucket
// written by hand, wrongly.
func check(key []byte, name string) ([]byte, bool, error) {
	if len(key) < KeySize {
		return nil, false, fmt.Errorf("secrets: the stored %s has %d bytes, fewer than %d", name, len(key), KeySize)
	}
	return key, false, nil
}
