package rooms

import (
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// mailbox holds direct messages for a user who has no connection.
type mailbox struct {
	msgs  []mailed
	bytes int // of the messages' JSON
}

type mailed struct {
	msg    *Message
	at     time.Time
	sender string // the sending user, whose share the message takes
	// st is the message's place in Config.Mailboxes, nil without one.
	st *letterState
}

// queueLocked keeps msg from sender for user, queued at at, with its place
// in the store st (nil without one). A full mailbox makes room by
// dropping the oldest message of whoever has the most bytes in it, so a
// sender can push out its own messages but not others'. A message is
// refused when its sender already has OfflineSenderBytes waiting in all
// mailboxes (over_quota), or when all mailboxes together would hold more
// than OfflineTotalBytes.
func (h *Hub) queueLocked(user, sender string, msg *Message, at time.Time, st *letterState) error {
	size := len(msg.JSON)
	if size > h.cfg.OfflineBytes {
		return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected, and the message is larger than the %d bytes kept for them", user, h.cfg.OfflineBytes)
	}
	if h.mailBySender[sender]+size > h.cfg.OfflineSenderBytes {
		return protocol.Errorf(protocol.CodeOverQuota, "user:%s is not connected, and your messages waiting for users who are not take %d bytes, the most one user may have waiting", user, h.mailBySender[sender])
	}
	if h.mailBytes+size > h.cfg.OfflineTotalBytes {
		return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected and the messages waiting for users fill the server's space for them", user)
	}
	box := h.mail[user]
	if box == nil {
		if len(h.mail) >= h.cfg.OfflineUsers {
			return protocol.Errorf(protocol.CodeUnknownTarget, "user:%s is not connected and too many users have messages waiting", user)
		}
		box = &mailbox{}
		h.mail[user] = box
	}
	for len(box.msgs) > 0 && (len(box.msgs) >= h.cfg.OfflineSize || box.bytes+size > h.cfg.OfflineBytes) {
		gone := box.dropHeaviest(sender, size)
		h.mailFreed(gone)
		h.letGoLocked(user, gone, false)
	}
	box.msgs = append(box.msgs, mailed{msg: msg, at: at, sender: sender, st: st})
	box.bytes += size
	h.mailBytes += size
	h.mailBySender[sender] += size
	return nil
}

// mailFreed takes messages that left the mailboxes off the books.
func (h *Hub) mailFreed(gone []mailed) {
	for _, x := range gone {
		n := len(x.msg.JSON)
		h.mailBytes -= n
		if h.mailBySender[x.sender] -= n; h.mailBySender[x.sender] <= 0 {
			delete(h.mailBySender, x.sender)
		}
	}
}

// unqueueLocked takes back the message whose place in the store is st, if
// it still waits for user: the store failed to keep it.
func (h *Hub) unqueueLocked(user string, st *letterState) {
	h.removeMailedLocked(user, func(x mailed) bool { return x.st == st })
}

// removeMailedLocked takes the first message waiting for user that match
// accepts out of its mailbox, and reports whether there was one.
func (h *Hub) removeMailedLocked(user string, match func(mailed) bool) bool {
	box := h.mail[user]
	if box == nil {
		return false
	}
	for i, x := range box.msgs {
		if !match(x) {
			continue
		}
		copy(box.msgs[i:], box.msgs[i+1:])
		box.msgs[len(box.msgs)-1] = mailed{} // let it go
		box.msgs = box.msgs[:len(box.msgs)-1]
		box.bytes -= len(x.msg.JSON)
		h.mailFreed([]mailed{x})
		if len(box.msgs) == 0 {
			delete(h.mail, user)
		}
		return true
	}
	return false
}

// dropHeaviest removes the oldest message of the sender with the most
// bytes in the box, counting the message of size about to come from
// newcomer, and returns it.
func (b *mailbox) dropHeaviest(newcomer string, size int) []mailed {
	per := map[string]int{newcomer: size}
	heaviest := newcomer
	for _, x := range b.msgs {
		per[x.sender] += len(x.msg.JSON)
		if per[x.sender] > per[heaviest] {
			heaviest = x.sender
		}
	}
	i := 0
	for i < len(b.msgs) && b.msgs[i].sender != heaviest {
		i++
	}
	if i == len(b.msgs) {
		i = 0 // the newcomer is the heaviest and has nothing here yet
	}
	x := b.msgs[i]
	copy(b.msgs[i:], b.msgs[i+1:])
	b.msgs[len(b.msgs)-1] = mailed{} // let it go
	b.msgs = b.msgs[:len(b.msgs)-1]
	b.bytes -= len(x.msg.JSON)
	return []mailed{x}
}

// deliver hands m the messages queued at or after since; older ones have
// expired and are delivered to nobody.
func (b *mailbox) deliver(m Member, since time.Time) {
	for _, x := range b.msgs {
		if !x.at.Before(since) {
			m.CatchUp(x.msg)
		}
	}
}

// expire drops messages older than before and returns them.
func (b *mailbox) expire(before time.Time) []mailed {
	i := 0
	for i < len(b.msgs) && b.msgs[i].at.Before(before) {
		i++
	}
	gone := append([]mailed(nil), b.msgs[:i]...)
	clear(b.msgs[:i])
	b.msgs = b.msgs[i:]
	for _, x := range gone {
		b.bytes -= len(x.msg.JSON)
	}
	return gone
}
