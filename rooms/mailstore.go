package rooms

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// Mailboxes keeps what the hub holds for direct messages where a restart
// does not lose it (rooms/jetstream keeps it in NATS JetStream): the
// letters waiting for users who are not connected, and the position of the
// direct-message stream (its epoch and how far its seq may go). A nil
// Mailboxes keeps them in memory only, as a single process without one
// always did.
//
// The hub decides under its lock what waits and what goes (the per-user,
// per-sender and total bounds, the fair eviction); the store only mirrors
// those decisions, and is never called under the hub's lock: a letter is
// put by its sender's emit after the hub queued it, and deletions are
// made by the hub's Run loop. Calls overlap.
type Mailboxes interface {
	// LoadMail returns everything the store keeps: the letters in the
	// order they were stored, and the position ReserveSeqs saved last
	// (Epoch "" if none). The hub keeps the letters within its own bounds
	// and OfflineTTL, by its clock, and drops the rest.
	LoadMail(ctx context.Context) (Mail, error)
	// PutLetter stores l and returns, once it is durable (survives the
	// process), the ref naming it in the store. l.JSON is the frame the
	// user will get, shared: read it, never change it. An error leaves the
	// outcome unknown.
	PutLetter(ctx context.Context, l Letter) (MailRef, error)
	// DropLetter removes one letter of user: pushed out of its mailbox, or
	// delivered while it was being put. A letter already gone is no
	// error.
	DropLetter(ctx context.Context, user string, ref MailRef) error
	// TakeLetters removes every letter of user whose ref is at most
	// through: the hub delivered the user's mailbox. Every letter the store
	// took for user before the last delivered one was delivered too, or
	// has gone from the hub's memory (pushed out, expired): none is kept.
	TakeLetters(ctx context.Context, user string, through MailRef) error
	// ReserveSeqs saves the direct-message stream's epoch and a seq that
	// no direct message has passed: the hub hands out seqs up to it, and
	// after a restart goes on above it, in the same epoch.
	ReserveSeqs(ctx context.Context, epoch string, through uint64) error
}

// Mail is what a Mailboxes store keeps.
type Mail struct {
	Letters []Letter
	// Epoch and Ceiling are the last ReserveSeqs's.
	Epoch   string
	Ceiling uint64
}

// MailRef names a letter in a Mailboxes store. Refs increase in the order
// the store took the letters; 0 is no letter.
type MailRef uint64

// Letter is a direct message waiting for its user, as a Mailboxes store
// keeps it.
type Letter struct {
	// User is the recipient; Sender the sending user, whose share of the
	// waiting messages (OfflineSenderBytes) the letter takes.
	User, Sender string
	// MsgID is the sender's id for the message, if it gave one: a resend
	// after a restart is then still recognised while the letter waits.
	MsgID string
	// Epoch and Seq are the message's position in the direct-message
	// stream, as in its frame.
	Epoch string
	Seq   uint64
	// At is when it was queued, by the hub's clock: OfflineTTL counts
	// from it.
	At time.Time
	// JSON is the event frame exactly as the user gets it.
	JSON []byte
	// Ref is the store's name for it, set by LoadMail.
	Ref MailRef
}

// seqBlock is how many direct-message seqs one ReserveSeqs covers: one
// store write per million direct messages, and at most that many seqs
// skipped at a restart (direct messages' seqs are increasing, not
// contiguous).
const seqBlock = 1 << 20

// maxMailOps bounds the deletions waiting for Run. Past it, further ones
// are forgotten (and logged): those letters stay in the store until it
// expires them, and a restart before that delivers them again.
const maxMailOps = 100_000

// letterState is a queued letter's place in the store. The hub's lock
// guards it.
type letterState struct {
	ref MailRef // 0 while the letter is being put
	// gone: the letter left its mailbox while being put; the put drops it
	// once it has its ref.
	gone bool
}

// mailOps are the deletions the store has to mirror, made by Run.
type mailOps struct {
	takes map[string]MailRef // user → through
	drops []userRef
	lost  int // forgotten past maxMailOps since the last flush
}

type userRef struct {
	user string
	ref  MailRef
}

func (o *mailOps) len() int { return len(o.takes) + len(o.drops) }

// LoadMailboxes restores, from Config.Mailboxes, the direct messages that
// were waiting and the direct-message stream's epoch, and reserves the next
// seqs. With Mailboxes, call it once before the hub is used: until then,
// direct messages are refused (storage_unavailable). Without, it does
// nothing.
//
// The letters re-enter their mailboxes in the order they were stored,
// through the same bounds as new ones, so the accounting (per user, per
// sender, in all, users with mail) is what it was; what the bounds refuse
// now (they were lowered) is dropped from the store. Their message ids
// re-enter the dedup table.
func (h *Hub) LoadMailboxes(ctx context.Context) error {
	if h.mailStore == nil {
		return nil
	}
	h.mu.RLock()
	loaded := h.mailLoaded
	h.mu.RUnlock()
	if loaded {
		return errors.New("rooms: mailboxes loaded twice")
	}
	mail, err := h.mailStore.LoadMail(ctx)
	if err != nil {
		return fmt.Errorf("rooms: load mailboxes: %w", err)
	}
	epoch, base := mail.Epoch, mail.Ceiling
	if epoch == "" { // never saved: the stream starts
		epoch, base = newEpoch(), 0
	}
	for _, l := range mail.Letters {
		if l.Epoch == epoch {
			base = max(base, l.Seq)
		}
	}
	// In the order they were queued: the store's order is the order their
	// puts arrived, which concurrent senders may have swapped, while seqs
	// were given in the queue's order. Letters of an older epoch (the
	// position was lost) are older, and keep the store's order.
	slices.SortStableFunc(mail.Letters, func(a, b Letter) int {
		if ac, bc := a.Epoch == epoch, b.Epoch == epoch; ac != bc || !ac {
			return cmp.Compare(b2i(ac), b2i(bc))
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	if err := h.mailStore.ReserveSeqs(ctx, epoch, base+seqBlock); err != nil {
		return fmt.Errorf("rooms: reserve direct-message seqs: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mailLoaded {
		return errors.New("rooms: mailboxes loaded twice")
	}
	h.epoch = epoch
	h.dmSeq.Store(base)
	h.dmCeiling.Store(base + seqBlock)
	expired := h.cfg.Now().Add(-h.cfg.OfflineTTL)
	for _, l := range mail.Letters {
		st := &letterState{ref: l.Ref}
		if l.At.Before(expired) || h.cfg.OfflineSize <= 0 ||
			h.queueLocked(l.User, l.Sender, NewMessage(l.JSON, ""), l.At, st) != nil {
			h.letGoLocked(l.User, []mailed{{st: st}}, false)
			continue
		}
		if l.MsgID != "" {
			h.dedup.restore(l.Sender, l.MsgID, protocol.Delivered{Seq: l.Seq, Epoch: l.Epoch, Queued: true}, l.At)
		}
	}
	h.mailLoaded = true
	return nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nextDMSeq numbers a direct message. With a store, only up to the
// reserved ceiling: past it (the store could not save the next one), the
// message is refused rather than given a seq a restart could give again.
// The hub's lock is held, read or write.
func (h *Hub) nextDMSeq() (uint64, error) {
	if h.mailStore != nil && !h.mailLoaded {
		return 0, journalError("direct messages are not available yet; try again")
	}
	seq := h.dmSeq.Add(1)
	if h.mailStore != nil && seq > h.dmCeiling.Load() {
		return 0, errNoSeq
	}
	return seq, nil
}

// errNoSeq refuses a direct message past the saved seqs.
var errNoSeq = journalError("direct messages cannot be numbered now; try again")

// reserveSeqs saves the next block of direct-message seqs once half of
// the current one is used, outside the hub's lock, one caller at a time,
// and reports whether it saved one.
func (h *Hub) reserveSeqs() bool {
	if h.mailStore == nil || h.dmSeq.Load()+seqBlock/2 < h.dmCeiling.Load() {
		return false
	}
	if !h.reserving.CompareAndSwap(false, true) {
		return false
	}
	defer h.reserving.Store(false)
	h.mu.RLock()
	loaded, epoch := h.mailLoaded, h.epoch
	h.mu.RUnlock()
	if !loaded {
		return false
	}
	through := max(h.dmCeiling.Load(), h.dmSeq.Load()) + seqBlock
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	if err := h.mailStore.ReserveSeqs(ctx, epoch, through); err != nil {
		h.cfg.Log.Warn("mailboxes: reserve direct-message seqs", "through", through, "err", err)
		return false
	}
	h.dmCeiling.Store(through)
	return true
}

// putLetter stores a letter the hub has just queued, outside the hub's
// lock, and reconciles with what happened to it meanwhile. When the store
// fails and the letter still waits, it leaves its mailbox and the sender is
// told (storage_unavailable); when it was delivered or pushed out
// meanwhile, the emit succeeded as it would have in memory.
func (h *Hub) putLetter(l Letter, st *letterState) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
	defer cancel()
	ref, err := h.mailStore.PutLetter(ctx, l)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.cfg.Log.Warn("mailboxes: put", "user", l.User, "seq", l.Seq, "err", err)
		if st.gone {
			return nil
		}
		h.unqueueLocked(l.User, st)
		return journalError("user:%s is not connected, and the message could not be stored for them; try again", l.User)
	}
	st.ref = ref
	if st.gone {
		h.addDropLocked(l.User, ref)
	}
	return nil
}

// letGoLocked mirrors letters leaving the mailboxes of user: delivered (the
// store takes them all, through the newest), or pushed out or expired
// (each is dropped: the store may expire them itself, but by its own clock
// and settings). A letter still being put is marked, and its put drops it.
func (h *Hub) letGoLocked(user string, gone []mailed, delivered bool) {
	var through MailRef
	for _, x := range gone {
		switch {
		case x.st == nil:
		case x.st.ref == 0:
			x.st.gone = true
		case delivered:
			through = max(through, x.st.ref)
		default:
			h.addDropLocked(user, x.st.ref)
		}
	}
	if through == 0 {
		return
	}
	if h.ops.takes == nil {
		h.ops.takes = make(map[string]MailRef)
	}
	if _, ok := h.ops.takes[user]; !ok && h.ops.len() >= maxMailOps {
		h.ops.lost++
		return
	}
	h.ops.takes[user] = max(h.ops.takes[user], through)
	h.kickMail()
}

func (h *Hub) addDropLocked(user string, ref MailRef) {
	if h.ops.len() >= maxMailOps {
		h.ops.lost++
		return
	}
	h.ops.drops = append(h.ops.drops, userRef{user, ref})
	h.kickMail()
}

func (h *Hub) kickMail() {
	select {
	case h.mailKick <- struct{}{}:
	default:
	}
}

// flushMail makes the store's deletions, outside the hub's lock. At the
// first failure (the store is away) it keeps the rest for the next flush,
// so that a flush waits for at most one timeout.
func (h *Hub) flushMail() {
	if h.mailStore == nil {
		return
	}
	h.mu.Lock()
	ops := h.ops
	h.ops = mailOps{}
	h.mu.Unlock()
	if ops.lost > 0 {
		h.cfg.Log.Warn("mailboxes: too many deletions waiting; some letters stay in the store until they expire", "forgotten", ops.lost)
	}
	var failed mailOps
	var err error
	call := func(f func(ctx context.Context) error) bool {
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.JournalTimeout)
		defer cancel()
		err = f(ctx)
		return err == nil
	}
	for user, through := range ops.takes {
		if !call(func(ctx context.Context) error { return h.mailStore.TakeLetters(ctx, user, through) }) {
			if failed.takes == nil {
				failed.takes = make(map[string]MailRef)
			}
			failed.takes[user] = through
		}
	}
	for _, d := range ops.drops {
		if !call(func(ctx context.Context) error { return h.mailStore.DropLetter(ctx, d.user, d.ref) }) {
			failed.drops = append(failed.drops, d)
		}
	}
	if err == nil {
		return
	}
	h.cfg.Log.Warn("mailboxes: delete delivered or pushed-out letters; will retry", "left", failed.len(), "err", err)
	h.mu.Lock()
	defer h.mu.Unlock()
	for user, through := range failed.takes {
		if h.ops.takes == nil {
			h.ops.takes = make(map[string]MailRef)
		}
		h.ops.takes[user] = max(h.ops.takes[user], through)
	}
	h.ops.drops = append(failed.drops, h.ops.drops...)
	if n := h.ops.len() - maxMailOps; n > 0 {
		h.ops.drops = h.ops.drops[min(n, len(h.ops.drops)):]
		h.ops.lost += n
	}
}
