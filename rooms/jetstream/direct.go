package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// numPendingHeader, on each message of a batched direct get and on its
// end, counts the subject's messages after it.
const numPendingHeader = "Nats-Num-Pending"

// batchBytes bounds one batch's size: a room's history is at most a few
// MiB (the hub's HistoryBytes), and a longer read takes a few round trips.
// Without it the server sends up to its own cap (64 MiB), as much as a
// subscription's pending limit: a batch past that would be cut, its end
// lost, and the read would wait for its context.
const batchBytes = 8 << 20

// errNoBatch is what a NATS server older than 2.11 earns.
var errNoBatch = errors.New("jetstream: the NATS server answers no batched direct get: it needs to be 2.11 or later")

// readForward reads stream's messages on subject from stream sequence from
// on, oldest first, in batched direct gets of up to batch messages: one
// round trip per batch, however many messages there are, where nats.go's
// GetMsg takes one per message. each gets every message with its stream
// sequence, and returns false to stop.
func readForward(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64, batch int, each func(seq uint64, msg *nats.Msg) bool) error {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	// What is left of a batch abandoned by each goes with the subscription.
	defer func() { _ = sub.Unsubscribe() }()
	for {
		req, err := json.Marshal(struct {
			Seq      uint64 `json:"seq"`
			NextFor  string `json:"next_by_subj"`
			Batch    int    `json:"batch"`
			MaxBytes int    `json:"max_bytes"`
		}{from, subject, batch, batchBytes})
		if err != nil {
			return err
		}
		if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
			return err
		}
		if done, err := readBatch(ctx, sub, &from, each); done || err != nil {
			return err
		}
	}
}

// readBatch reads one batch's answer, moving from past each message, and
// reports whether the reading is over.
func readBatch(ctx context.Context, sub *nats.Subscription, from *uint64, each func(uint64, *nats.Msg) bool) (bool, error) {
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return true, err
		}
		switch status := msg.Header.Get("Status"); status {
		case "404": // nothing (more) on the subject
			return true, nil
		case "204": // the batch's end: more to read, or none
			return msg.Header.Get(numPendingHeader) == "0", nil
		case "":
		default:
			return true, fmt.Errorf("direct get: %s %s", status, msg.Header.Get("Description"))
		}
		if msg.Header.Get(numPendingHeader) == "" {
			return true, errNoBatch
		}
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return true, errors.New("direct get: a message without its sequence")
		}
		*from = seq + 1
		if !each(seq, msg) {
			return true, nil
		}
	}
}

// lastSeq returns the stream sequence of subject's newest message, 0 if it
// has none, read from the stream's leader. A direct get may be answered by
// any replica of a replicated stream, and one that is a few messages
// behind would say a room is older (or newer than nothing) than it is: a
// room loaded from it would miss events the feed already passed, and a
// catch-up believing it would skip them.
func lastSeq(ctx context.Context, nc *nats.Conn, stream, subject string) (uint64, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return 0, err
	}
	msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, err
	}
	var res struct {
		Message struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &res); err != nil {
		return 0, fmt.Errorf("stream message get: %w", err)
	}
	if res.Error != nil {
		if res.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return 0, nil
		}
		return 0, fmt.Errorf("stream message get: %w", res.Error)
	}
	return res.Message.Seq, nil
}
