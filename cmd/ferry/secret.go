package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/secrets"
)

// anonKeyName is the key's name among the shared secrets.
const anonKeyName = "anon"

// nodeKey returns the key anonymous users' ids and download links are
// signed with, which every node of one service must share. The first that
// is there wins:
//
//  1. the file --secret-file names;
//  2. --secret (FERRY_SECRET);
//  3. with NATS (--state jetstream, embedded or --nats), the key every
//     node using it shares: made by the first node, from its
//     <data>/.ferry/anon.key when it has one, so that a server upgraded to
//     it keeps its anonymous users and the links it gave;
//  4. <data>/.ferry/anon.key, made the first time.
func nodeKey(ctx context.Context, f *serveFlags, log *slog.Logger, nc *nats.Conn) ([]byte, error) {
	switch {
	case f.secretFile != "":
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--secret-file: %w", err)
		}
		return checkSecret("--secret-file", bytes.TrimRight(b, " \t\r\n"))
	case f.secret != "":
		return checkSecret("--secret", []byte(f.secret))
	}
	path := filepath.Join(f.data, ".ferry", "anon.key")
	if nc == nil {
		return loadKey(path)
	}
	local, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) || len(local) < secrets.KeySize {
		local = nil // none worth keeping: loadKey would make a new one
	}
	ctx, cancel := context.WithTimeout(ctx, stateSetupTimeout)
	defer cancel()
	var (
		key     []byte
		created bool
	)
	err = setupRetrying(ctx, log, func(ctx context.Context) (err error) {
		key, created, err = secrets.Shared(ctx, nc, secrets.Config{Replicas: f.nats.replicas}, anonKeyName, local)
		return err
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("the key shared by the servers: %w", err)
	case created && local != nil:
		log.Info("the key of " + path + " is now the one all servers on this NATS share")
	case local != nil && !bytes.Equal(local, key):
		log.Warn("another server's key is the one all servers on this NATS share: anonymous users and links of this server's key, "+path+", are not recognized", "key", path)
	}
	return key, nil
}

// checkSecret refuses a key too short to sign with.
func checkSecret(flag string, key []byte) ([]byte, error) {
	if len(key) < secrets.KeySize {
		return nil, fmt.Errorf("%s: the key has %d bytes; it needs at least %d (head -c 32 /dev/urandom | base64)", flag, len(key), secrets.KeySize)
	}
	return key, nil
}
