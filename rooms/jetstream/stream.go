package jetstream

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// history is a stream that keeps, for each of its subjects (a room, an
// event), the newest perSubject messages, for maxAge, within maxBytes in
// all, oldest first, read back in batched direct gets: the rooms' journal,
// the files index and the receipts have this shape, each its own limits.
type history struct {
	name, description string
	subjects          []string
	maxAge            time.Duration // 0: no age limit
	perSubject        int
	maxBytes          int64
	replicas          int
}

// openHistory creates stream h, or updates its limits to h's (a changed
// flag takes effect at the next start).
func openHistory(ctx context.Context, nc *nats.Conn, h history) (jetstream.JetStream, jetstream.Stream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              h.name,
		Description:       h.description,
		Subjects:          h.subjects,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            h.maxAge,
		MaxMsgsPerSubject: int64(h.perSubject),
		MaxBytes:          h.maxBytes,
		Storage:           jetstream.FileStorage,
		Replicas:          h.replicas,
		// Catching up, listing and reading an event's receipts are batched
		// direct gets (readForward).
		AllowDirect: true,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("jetstream: stream %s: %w", h.name, err)
	}
	return js, stream, nil
}

// consumeNew hands each every message stored on stream under filter from
// now on, by any node, in the stream's order, until ctx ends, and returns
// ctx's error or why the stream cannot be followed. The consumer is an
// ordered one: ephemeral, recreated by the client where it left off after
// a reconnection or a missed message, so each sees no gap and no repeat.
func consumeNew(ctx context.Context, stream jetstream.Stream, filter string, each func(jetstream.Msg)) error {
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("jetstream: follow %s: %w", stream.CachedInfo().Config.Name, err)
	}
	cc, err := cons.Consume(each)
	if err != nil {
		return fmt.Errorf("jetstream: follow %s: %w", stream.CachedInfo().Config.Name, err)
	}
	<-ctx.Done()
	cc.Stop()
	return ctx.Err()
}
