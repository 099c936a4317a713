package rooms

import (
	"time"
)

// stream numbers a room's events and keeps the latest for replay. The epoch
// names one life of the stream: when a stream is created (a new room, a
// server restart without a Journal, a room whose history expired) it gets a
// new epoch, so a client holding a position from another life learns that
// it cannot resume. With a Journal, a stream restored from it keeps its
// epoch and seq.
type stream struct {
	epoch string
	seq   uint64
	// ring holds the kept entries, oldest at head.
	ring  []*entry
	head  int
	n     int
	bytes int
	last  time.Time // when the last event was published
	acct  *histAccount
}

type entry struct {
	seq  uint64
	msg  *Message
	at   time.Time
	user string // the sender, whose share of the history the entry takes
}

func newStream(now time.Time, acct *histAccount) stream {
	return stream{epoch: newEpoch(), last: now, acct: acct}
}

// append keeps e, dropping the oldest entries beyond maxN entries or
// maxBytes bytes.
func (s *stream) append(e *entry, maxN, maxBytes int) {
	s.last = e.at
	if maxN <= 0 {
		return
	}
	for s.n > 0 && (s.n >= maxN || s.bytes+len(e.msg.JSON) > maxBytes) {
		s.drop()
	}
	if len(e.msg.JSON) > maxBytes {
		return
	}
	if s.n == len(s.ring) {
		grown := make([]*entry, min(maxN, max(8, 2*len(s.ring))))
		for i := 0; i < s.n; i++ {
			grown[i] = s.ring[(s.head+i)%len(s.ring)]
		}
		s.ring, s.head = grown, 0
	}
	s.ring[(s.head+s.n)%len(s.ring)] = e
	s.n++
	s.bytes += len(e.msg.JSON)
	s.acct.add(e.user, len(e.msg.JSON))
}

func (s *stream) drop() {
	e := s.ring[s.head]
	s.ring[s.head] = nil
	s.head = (s.head + 1) % len(s.ring)
	s.n--
	s.bytes -= len(e.msg.JSON)
	s.acct.sub(e.user, len(e.msg.JSON))
}

// oldest returns the sequence number of the oldest kept entry, or seq+1 when
// nothing is kept.
func (s *stream) oldest() uint64 {
	if s.n == 0 {
		return s.seq + 1
	}
	return s.ring[s.head].seq
}

// after calls fn for every kept entry with a sequence number above seq.
func (s *stream) after(seq uint64, fn func(*entry)) {
	for i := 0; i < s.n; i++ {
		if e := s.ring[(s.head+i)%len(s.ring)]; e.seq > seq {
			fn(e)
		}
	}
}

// clear drops every entry, giving their bytes back to the account: the
// room leaves memory (its history stays in the journal) or its epoch ends.
func (s *stream) clear() {
	for s.n > 0 {
		s.drop()
	}
	s.ring, s.head = nil, 0
}

// expire drops entries older than before.
func (s *stream) expire(before time.Time) {
	for s.n > 0 && s.ring[s.head].at.Before(before) {
		s.drop()
	}
	if s.n == 0 && len(s.ring) > 8 {
		s.ring, s.head = nil, 0
	}
}

func newEpoch() string { return newID(8) }
