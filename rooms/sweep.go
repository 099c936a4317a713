package rooms

import (
	"context"
	"time"
)

// Run expires history, waiting messages, remembered message ids and
// receipts, and sends large rooms' presence counts, until ctx ends. With
// Config.Mailboxes, it also deletes from the store the messages delivered
// or pushed out (retrying those that fail at the next tick), and tries once
// more when ctx ends. With Config.Router, it forwards the messages waiting
// here to the hubs their users are connected to.
func (h *Hub) Run(ctx context.Context) error {
	if h.cfg.Router != nil {
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.handOverLoop(ctx)
		}()
		defer func() { <-done }()
	}
	every := min(h.cfg.HistoryTTL/4, 30*time.Second)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	counts := time.NewTicker(h.cfg.PresenceInterval)
	defer counts.Stop()
	for {
		select {
		case <-ctx.Done():
			h.flushMail()
			return ctx.Err()
		case <-t.C:
			h.Sweep()
			h.flushMail()
		case <-h.mailKick:
			h.flushMail()
		case <-counts.C:
			h.sendCounts()
		}
	}
}

// Sweep drops everything that has outlived its time-to-live now: events older
// than the history TTL (and rooms left with neither members nor history, or
// with a Journal without members: the journal keeps their history), expired
// waiting messages, message ids and receipt tracking. A room in use right
// then is left for the next sweep.
func (h *Hub) Sweep() {
	now := h.cfg.Now()
	histBefore := now.Add(-h.cfg.HistoryTTL)
	h.mu.Lock()
	for name, r := range h.rooms {
		if r.tryExpire(histBefore) {
			delete(h.rooms, name)
		}
	}
	mailBefore := now.Add(-h.cfg.OfflineTTL)
	for user, box := range h.mail {
		gone := box.expire(mailBefore)
		h.mailFreed(gone)
		h.letGoLocked(user, gone, false)
		if len(box.msgs) == 0 {
			delete(h.mail, user)
		}
	}
	h.mu.Unlock()
	h.dedup.expire(histBefore)
	h.track.expire(now)
}
