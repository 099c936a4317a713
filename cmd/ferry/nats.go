package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/rooms/jetstream"
)

// natsFlags are serve's flags for reaching the NATS servers --nats names,
// named after the nats CLI's own (--creds, --nkey, --user, --tlsca…) so
// that NATS users find what they know.
type natsFlags struct {
	conn     jetstream.ConnConfig // URLs from --nats
	replicas int
}

// natsGroup is the heading of serve's usage these flags are listed under.
var natsGroup = flagGroup{"NATS (with --nats)", []string{"nats-replicas", "nats-name",
	"nats-creds", "nats-nkey", "nats-user", "nats-password", "nats-token",
	"nats-tls-ca", "nats-tls-cert", "nats-tls-key"}}

func (f *natsFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.replicas, "nats-replicas", 1, "copies JetStream keeps of every stream and bucket ferry creates (history, waiting direct messages…): 3 in a cluster of 3 NATS servers or more survives the loss of one; applied to existing ones at the start")
	fs.StringVar(&f.conn.Name, "nats-name", "ferry", "connection name the NATS servers show in their monitoring")
	fs.StringVar(&f.conn.Creds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed, as nsc writes them)")
	fs.StringVar(&f.conn.NKey, "nats-nkey", "", "file holding a NATS user's nkey seed")
	fs.StringVar(&f.conn.User, "nats-user", "", "NATS user (a user and password may also be given in the --nats URLs)")
	fs.StringVar(&f.conn.Password, "nats-password", "", "password of --nats-user (better given as FERRY_NATS_PASSWORD than on the command line)")
	fs.StringVar(&f.conn.Token, "nats-token", "", "NATS authorization token (better given as FERRY_NATS_TOKEN)")
	fs.StringVar(&f.conn.TLSCA, "nats-tls-ca", "", "PEM file of the authorities NATS servers' certificates are checked against, instead of the system's; requires TLS")
	fs.StringVar(&f.conn.TLSCert, "nats-tls-cert", "", "PEM client certificate for NATS servers that verify their clients (read again at each reconnection)")
	fs.StringVar(&f.conn.TLSKey, "nats-tls-key", "", "PEM private key of --nats-tls-cert")
}

// check refuses flags that contradict each other or --nats (urls).
func (f *natsFlags) check(urls string) error {
	switch {
	case f.replicas < 1:
		return errors.New("--nats-replicas must be 1 or more")
	case f.replicas > 1 && urls == "":
		return errors.New("--nats-replicas: the embedded NATS server keeps one copy; more need a cluster named by --nats")
	}
	return nil
}

// An attempt at creating or updating one stream or bucket on an external
// NATS is bounded, first by firstSetupAttempt, each next one twice as
// long up to lastSetupAttempt. In a cluster a request can go unanswered
// although the stream is made (several nodes creating the same stream at
// once, a leader being elected); the next attempt, idempotent, gets an
// answer, so a short first attempt costs nodes started together little
// (a node opens several streams, one after the other).
const (
	firstSetupAttempt = 2 * time.Second
	lastSetupAttempt  = 10 * time.Second
)

// setupRetrying runs setup, which opens one stream or bucket, in attempts
// of growing bounds until it succeeds, fails otherwise than by a timeout,
// or ctx ends.
func setupRetrying(ctx context.Context, log *slog.Logger, setup func(context.Context) error) error {
	for bound := firstSetupAttempt; ; bound = min(2*bound, lastSetupAttempt) {
		actx, cancel := context.WithTimeout(ctx, bound)
		err := setup(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
		log.Warn("NATS: streams not set up yet, trying again", "err", err, "next_wait", min(2*bound, lastSetupAttempt).String())
	}
}
