package rooms

import (
	"context"
	"errors"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Journal keeps named rooms' streams where a restart does not lose them
// (rooms/jetstream keeps them in NATS JetStream). With a journal, the hub
// appends every event of a named room to it before any member sees the
// event's seq, and restores a room's stream from it the first time the room
// is touched after a start, or after the room left memory: lazily, one room
// at a time, so a start reads nothing. A nil Journal keeps history in
// memory only, as a single process without one always did.
//
// The hub calls a journal for one room under that room's lock, so calls for
// one room never overlap and come in the room's order; calls for different
// rooms do overlap. Built-in rooms (direct messages) are not journaled.
type Journal interface {
	// Load returns the records the journal keeps for room in its latest
	// epoch, oldest first, with strictly increasing Seq. None (a room never
	// seen, or whose whole history expired) is no error: the room then
	// starts a new epoch, as a room whose history expired always has. The
	// hub drops records older than its HistoryTTL by its own clock and
	// keeps within HistorySize and HistoryBytes the newest of the rest; the
	// room's position is the last record's, kept or not.
	Load(ctx context.Context, room string) ([]Record, error)
	// Append stores rec as room's newest record and returns once it is
	// durable (survives the process), so that no member ever holds a
	// position the journal could lose. An error leaves the outcome unknown;
	// the hub then starts the room in a new epoch (see Config.Journal).
	// rec.JSON is the frame members' queues share: read it, never change it.
	Append(ctx context.Context, room string, rec Record) error
}

// Record is one event of a named room as a Journal keeps it.
type Record struct {
	// Epoch and Seq are the event's position in the room's stream.
	Epoch string
	Seq   uint64
	// At is when the hub published it, by the hub's clock (Config.Now):
	// HistoryTTL counts from it.
	At time.Time
	// User is the sending user (whose share of the history the event
	// takes), Conn the sending connection ("" for the server's own events).
	User, Conn string
	// MsgID is the sender's id for the event, if it gave one: a resend
	// after a restart is then still recognised (see EmitOptions.MsgID).
	MsgID string
	// Receipt: the sender asked for receipts. A hub restoring the record
	// (a load, another node's record applied) tracks the event for them.
	Receipt bool
	// JSON is the event frame exactly as members received it; nil for an
	// event too large to keep (see JournalLimit), which holds its seq.
	// A record with Seq 0 (and no JSON) is a room's start: a
	// SharedJournal's room whose stream begins in Epoch, written by the
	// first join of a room the journal has nothing of, so that every node
	// answers joins in the same epoch before the room's first event.
	JSON []byte
	// Pos is the record's place in the journal, increasing with each
	// record of the room (not contiguously: a journal may number all
	// rooms' records together). A SharedJournal sets it on what it
	// returns; 0 means unknown.
	Pos uint64
}

// JournalLimit is a Journal that cannot store records past a size (a NATS
// server's max_payload). An event whose frame is larger is journaled
// without it (Record.JSON nil) and is not kept in memory either, as no
// event larger than HistoryBytes is: a replay is the same before and after
// a restart, a history gap where the event was.
type JournalLimit interface {
	Journal
	// MaxRecordBytes is the largest Record.JSON the journal stores.
	MaxRecordBytes() int
}

// DefaultJournalTTL is HistoryTTL's default with a Journal: a chat's history
// is kept for days once it survives restarts, where memory alone keeps it
// for minutes.
const DefaultJournalTTL = 7 * 24 * time.Hour

// DefaultJournalTimeout is JournalTimeout's default.
const DefaultJournalTimeout = 2 * time.Second

// loadLocked restores the room's stream from the journal if it is not in
// memory yet. The room's lock is held: joins and emits to this room wait for the
// journal, other rooms go on.
func (r *room) loadLocked(h *Hub) error {
	if r.loaded {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	recs, err := h.journal.Load(ctx, r.name)
	if err != nil {
		h.cfg.Log.Warn("journal: load room", "room", r.name, "err", err)
		return journalError("the history of room %q cannot be read now; try again", r.name)
	}
	now := h.cfg.Now()
	st := newStream(now, h.hist)
	if n := len(recs); n > 0 {
		last := recs[n-1]
		expired := now.Add(-h.cfg.HistoryTTL)
		var prev uint64
		for _, rec := range recs {
			switch {
			case rec.Seq == 0:
				continue // the room's start: its epoch is last's
			case rec.Epoch != last.Epoch || rec.Seq > last.Seq:
				continue // the journal broke its contract; keep what is consistent
			case rec.Seq <= prev:
				h.cfg.Log.Warn("journal: records out of order", "room", r.name, "seq", rec.Seq, "after", prev)
				continue
			case rec.At.Before(expired):
				continue
			}
			prev = rec.Seq
			if rec.MsgID != "" {
				h.dedup.restore(rec.User, rec.MsgID, protocol.Delivered{Seq: rec.Seq, Epoch: rec.Epoch}, rec.At)
			}
			h.restoreTracking(r.name, rec)
			if rec.JSON == nil { // too large to keep: so is what came before
				st.clear()
				continue
			}
			st.append(&entry{seq: rec.Seq, msg: NewMessage(rec.JSON, rec.Conn), at: rec.At, user: rec.User},
				h.cfg.HistorySize, h.cfg.HistoryBytes)
		}
		// A stream none of whose events is within the history TTL has
		// ended, as it would have in memory: the room starts a new epoch.
		if prev > 0 || (last.Seq == 0 && !last.At.Before(expired)) {
			st.epoch, st.seq = last.Epoch, last.Seq
		}
		r.jpos = last.Pos
	}
	r.st, r.loaded = st, true
	return nil
}

// appendLocked journals rec, the room's next event. It returns nil, an
// error matching ErrJournalConflict (a SharedJournal's room has newer
// records), or errAppendUnknown: the record may or may not have been
// stored (a timeout).
func (r *room) appendLocked(h *Hub, rec Record) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	var err error
	if sj, ok := h.journal.(SharedJournal); ok {
		var pos uint64
		if pos, err = sj.AppendAfter(ctx, r.name, rec, r.jpos); err == nil {
			r.jpos = pos
		}
	} else {
		err = h.journal.Append(ctx, r.name, rec)
	}
	if err == nil || errors.Is(err, ErrJournalConflict) {
		return err
	}
	h.cfg.Log.Warn("journal: append", "room", r.name, "seq", rec.Seq, "err", err)
	return errAppendUnknown
}

// errAppendUnknown is an append whose outcome is unknown.
var errAppendUnknown = errors.New("rooms: the journal's append failed")

// How long and how often an append whose outcome is unknown is made again
// with a SharedJournal: a NATS cluster electing a stream's leader after a
// server died refuses appends for a few seconds. Made again, an append is
// still conditional on the room's newest record: if the first got in, the
// second is refused, and the catch-up finds the first (publish's mine)
// instead of the record being stored twice. A plain Journal cannot tell,
// and its room starts a new epoch at once.
const (
	unknownRetry = 3 // times JournalTimeout, since the emit began
	unknownPause = 100 * time.Millisecond
)

// abandonLocked gives up an event whose append's outcome stayed unknown:
// the room starts a new epoch, since the record's seq can neither go to
// the next event (the journal may hold it) nor be skipped (a stream has no
// holes). A new epoch is the protocol's honest answer; a client resuming
// from the old one gets a gap.
func (r *room) abandonLocked(h *Hub) error {
	r.st.clear()
	r.st = newStream(h.cfg.Now(), h.hist)
	return journalError("the event could not be stored; try again")
}

// journalError is what a client gets when the journal fails: the code of
// an upload's storage failure, the same situation for it. The cause goes to
// the log, not to the client.
func journalError(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeStorageUnavailable, format, args...)
}
