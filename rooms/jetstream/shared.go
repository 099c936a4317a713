package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/rooms"
)

// Several ferry nodes on one NATS share rooms through the stream: each
// appends its members' events with JetStream's expected last sequence per
// subject (so two nodes never give one seq to two events), and each follows
// the stream to deliver the others' events to its own members. See
// rooms.SharedJournal.

var _ rooms.SharedJournal = (*Journal)(nil)

// AppendAfter stores rec if the room's newest message in the stream is
// still the one at stream sequence after (0: none).
func (j *Journal) AppendAfter(ctx context.Context, room string, rec rooms.Record, after uint64) (uint64, error) {
	ack, err := j.js.PublishMsg(ctx, j.message(room, rec), jetstream.WithExpectLastSequencePerSubject(after))
	if isWrongLastSeq(err) {
		return 0, fmt.Errorf("jetstream: append to %s after %d: %w", room, after, rooms.ErrJournalConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("jetstream: append to %s: %w", room, err)
	}
	return ack.Sequence, nil
}

// isWrongLastSeq reports JetStream's refusal of an expected last sequence:
// 10071, or 10164 from a replicated stream.
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Since returns the room's messages after stream sequence after, read in
// batched direct gets: one round trip for what a node that lost a race
// missed, however many, so that catching up never takes longer the more
// there is to catch up (which would make a node that fell behind lose
// every race after).
func (j *Journal) Since(ctx context.Context, room string, after uint64) ([]rooms.Record, uint64, error) {
	subject := j.subject(room)
	for {
		var recs []rooms.Record
		var read uint64 // the last message read, a ferry event or not
		err := readForward(ctx, j.nc, j.cfg.Stream, subject, after+1, j.cfg.MaxPerRoom, func(pos uint64, msg *nats.Msg) bool {
			read = pos
			rec, err := decode(msg.Header, msg.Data)
			if err != nil {
				j.cfg.Log.Warn("jetstream: skip a message that is not a ferry event", "room", room, "err", err)
				return true
			}
			rec.Pos = pos
			recs = append(recs, rec)
			return len(recs) < j.cfg.MaxPerRoom
		})
		if err != nil {
			return nil, 0, fmt.Errorf("jetstream: read %s: %w", room, err)
		}
		if n := len(recs); n > 0 {
			return recs, recs[n-1].Pos, nil
		}
		if read > 0 {
			// Only messages that are not ferry's: the room is past them.
			return nil, read, nil
		}
		// Nothing after: the room's newest is older (its newer records
		// expired), or there is none, or the replica that answered is
		// behind the leader, which says so.
		last, err := lastSeq(ctx, j.nc, j.cfg.Stream, subject)
		if err != nil {
			return nil, 0, fmt.Errorf("jetstream: read %s: %w", room, err)
		}
		if last <= after {
			return nil, last, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("jetstream: read %s: the replicas are behind: %w", room, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Follow calls apply with every event appended to the stream from now on,
// by any node, in the stream's order, until ctx ends; a node gives it its
// hub's Apply. It returns ctx's error, or why the stream cannot be
// followed (see consumeNew).
func (j *Journal) Follow(ctx context.Context, apply func(room string, rec rooms.Record)) error {
	prefix := j.cfg.SubjectPrefix + "."
	return consumeNew(ctx, j.stream, prefix+"*", func(msg jetstream.Msg) {
		room, ok := decodeRoom(strings.TrimPrefix(msg.Subject(), prefix))
		if !ok {
			return
		}
		rec, err := decode(msg.Headers(), msg.Data())
		if err != nil {
			j.cfg.Log.Warn("jetstream: skip a message that is not a ferry event", "room", room, "err", err)
			return
		}
		if md, err := msg.Metadata(); err == nil {
			rec.Pos = md.Sequence.Stream
		}
		apply(room, rec)
	})
}

// decodeRoom undoes encodeRoom.
func decodeRoom(token string) (string, bool) {
	var b strings.Builder
	b.Grow(len(token))
	for i := 0; i < len(token); i++ {
		c := token[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(token) {
			return "", false
		}
		hi, lo := unhex(token[i+1]), unhex(token[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	return b.String(), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}
