package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/rooms/jetstream"
)

// openRoster opens the presence the nodes on one NATS share (see
// rooms.Roster): nil without --nats, where the node is alone and its
// hub's own presence is everyone's.
func openRoster(ctx context.Context, f *serveFlags, log *slog.Logger, nc *nats.Conn) (*jetstream.Roster, error) {
	if nc == nil || f.natsURL == "" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, stateSetupTimeout)
	defer cancel()
	var r *jetstream.Roster
	err := setupRetrying(ctx, log, func(ctx context.Context) (err error) {
		r, err = jetstream.NewRoster(ctx, nc, jetstream.RosterConfig{Replicas: f.nats.replicas, Log: log})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("presence in JetStream: %w", err)
	}
	return r, nil
}
