package rooms

import (
	"bytes"
	"context"
	"errors"

	"github.com/ferryhq/ferry/protocol"
)

// SharedJournal is a Journal that several hubs (ferry nodes) write at once,
// each for its own members of the same rooms. A room then has one order,
// the journal's: a hub appends an event only after the room's newest record
// it knows of, and when another hub got there first it catches up (the
// records it missed go to its members, in order) and numbers its event
// after them. No lock between nodes, no leader per room: the journal's
// conditional append is the arbiter, and the loser of a race pays one round
// trip. Each hub also learns of the others' events without writing, from a
// feed of the journal given to Apply (rooms/jetstream's Follow).
type SharedJournal interface {
	Journal
	// AppendAfter stores rec as room's newest record if the room's newest
	// record is still the one at position after (0: the room has none),
	// and returns rec's position. When it is not, it stores nothing and
	// returns an error matching ErrJournalConflict.
	AppendAfter(ctx context.Context, room string, rec Record, after uint64) (uint64, error)
	// Since returns room's records after position after, oldest first,
	// with their Pos, and the position of the room's newest record now (0
	// when it has none: they expired).
	Since(ctx context.Context, room string, after uint64) ([]Record, uint64, error)
}

// ErrJournalConflict is what a SharedJournal's AppendAfter returns when the
// room has records its caller did not know of.
var ErrJournalConflict = errors.New("rooms: the room has newer records in the journal")

// Apply gives the hub a record that the shared journal holds for room,
// written by this hub or another: if the room is in memory and the record
// is newer than what the room has, its members get it, and it joins the
// history and the message ids seen. Records of rooms not in memory are
// dropped: the room loads them from the journal when it is next used.
// Records must come in the journal's order per room; older and repeated
// ones are ignored, so a feed may overlap what the hub already knows.
func (h *Hub) Apply(room string, rec Record) {
	r := h.pinRoom(room)
	if r == nil {
		return
	}
	defer r.pins.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.loaded && r.durable && rec.Pos > r.jpos {
		r.applyLocked(h, rec)
	}
}

// applyLocked makes rec, a record newer than the room's, its newest event,
// and delivers it to the room's members.
func (r *room) applyLocked(h *Hub, rec Record) {
	r.jpos = rec.Pos
	switch {
	case rec.Epoch == r.st.epoch && rec.Seq <= r.st.seq:
		return // this hub has it already
	case rec.Epoch != r.st.epoch || rec.Seq != r.st.seq+1:
		// A new epoch (a node's append failed), or events this hub never
		// saw (a feed that skipped): a replay from here cannot cross into
		// what came before; it has a gap.
		if rec.Epoch == r.st.epoch {
			h.cfg.Log.Warn("journal: events missing from the feed", "room", r.name, "seq", rec.Seq, "after", r.st.seq)
		}
		r.st.clear()
		r.st.epoch = rec.Epoch
	}
	r.st.seq = rec.Seq
	if rec.MsgID != "" {
		h.dedup.restore(rec.User, rec.MsgID, protocol.Delivered{Seq: rec.Seq, Epoch: rec.Epoch}, rec.At)
	}
	h.restoreTracking(r.name, rec)
	if rec.JSON == nil {
		r.st.clear()
		r.st.last = rec.At
		return
	}
	msg := NewMessage(rec.JSON, rec.Conn)
	if len(rec.JSON) <= h.maxKeep {
		r.st.append(&entry{seq: rec.Seq, msg: msg, at: rec.At, user: rec.User}, h.cfg.HistorySize, h.cfg.HistoryBytes)
	} else {
		r.st.clear()
		r.st.last = rec.At
	}
	r.deliverLocked(msg, "")
}

// catchUpLocked applies the records of the room that the journal has and
// the hub does not, after an append lost the race for the next position.
// When one of them is the event (user, msgID) being published, another
// node published it first (a resend through another node): its position
// is returned, and the caller does not publish it again. When the first is
// mine, an earlier append of the record being published whose outcome was
// unknown, it was stored: ours says so, the room is at it, and the caller
// goes on as after a successful append (records after it come with the
// feed, which a room sharing its journal follows).
func (r *room) catchUpLocked(h *Hub, sj SharedJournal, user, msgID string, mine *Record) (dup *protocol.Delivered, ours bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	recs, newest, err := sj.Since(ctx, r.name, r.jpos)
	if err != nil {
		h.cfg.Log.Warn("journal: catch up", "room", r.name, "err", err)
		return nil, false, journalError("the history of room %q cannot be read now; try again", r.name)
	}
	for _, rec := range recs {
		if rec.Pos <= r.jpos {
			continue
		}
		if mine != nil && sameRecord(rec, *mine) {
			r.jpos = rec.Pos
			return nil, true, nil
		}
		r.applyLocked(h, rec)
		if msgID != "" && rec.MsgID == msgID && rec.User == user {
			dup = &protocol.Delivered{Seq: rec.Seq, Epoch: rec.Epoch, Duplicate: true}
		}
	}
	// The journal's newest may be older than what the hub knew: records
	// expired or were purged. The next append goes after what is there.
	r.jpos = newest
	return dup, false, nil
}

// sameRecord reports whether a and b are one record: what the journal
// read back of an append is what was appended.
func sameRecord(a, b Record) bool {
	return a.Epoch == b.Epoch && a.Seq == b.Seq && a.At.Equal(b.At) && a.User == b.User &&
		a.Conn == b.Conn && a.MsgID == b.MsgID && bytes.Equal(a.JSON, b.JSON)
}

// startLocked makes the room's epoch the journal's before a join is
// answered in it, when the journal has nothing of the room yet: each node
// gives a room it creates an epoch of its own, and without a start record
// members joining on different nodes would be told different epochs, one
// of which the room's first event then ends, though nothing was lost. The
// first node to write the start wins; the others adopt its epoch (or
// whatever the room has by then) by catching up.
func (r *room) startLocked(h *Hub) error {
	sj, ok := h.journal.(SharedJournal)
	if !ok || !r.durable || r.jpos != 0 || r.st.seq != 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	pos, err := sj.AppendAfter(ctx, r.name, Record{Epoch: r.st.epoch, At: h.cfg.Now()}, 0)
	switch {
	case err == nil:
		r.jpos = pos
		return nil
	case errors.Is(err, ErrJournalConflict):
		_, _, err := r.catchUpLocked(h, sj, "", "", nil)
		return err
	default:
		h.cfg.Log.Warn("journal: start room", "room", r.name, "err", err)
		return journalError("room %q cannot be started now; try again", r.name)
	}
}
