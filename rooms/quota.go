package rooms

import (
	"sync"

	"github.com/ferryhq/ferry/protocol"
)

// histAccount counts the history bytes every room keeps, in all and per
// sender, so that nobody can fill the server's memory with history by
// spreading events over many rooms: a sender over its share is refused
// (over_quota) before its event is published; everyone else goes on.
type histAccount struct {
	perUser, total int // the caps (Config.HistoryUserBytes, HistoryTotalBytes)

	mu     sync.Mutex
	bytes  int
	byUser map[string]int
}

func newHistAccount(perUser, total int) *histAccount {
	return &histAccount{perUser: perUser, total: total, byUser: make(map[string]int)}
}

func (a *histAccount) add(user string, n int) {
	a.mu.Lock()
	a.bytes += n
	a.byUser[user] += n
	a.mu.Unlock()
}

func (a *histAccount) sub(user string, n int) {
	a.mu.Lock()
	a.bytes -= n
	if a.byUser[user] -= n; a.byUser[user] <= 0 {
		delete(a.byUser, user)
	}
	a.mu.Unlock()
}

// allow checks that user may add an event of about n bytes to a room's
// history: its own kept events stay within perUser, and, once all rooms
// together hold total, a sender already holding an eighth of perUser waits
// for its events to expire (small senders, a chat's usual people, go on).
func (a *histAccount) allow(user string, n int) error {
	a.mu.Lock()
	mine, all := a.byUser[user], a.bytes
	a.mu.Unlock()
	switch {
	case mine+n > a.perUser:
		return protocol.Errorf(protocol.CodeOverQuota, "your events in rooms' history take %d bytes, the most one user may have kept; wait for them to expire", mine)
	case all+n > a.total && mine > a.perUser/8:
		return protocol.Errorf(protocol.CodeOverQuota, "the server's history is full and your events take %d bytes of it; wait for them to expire", mine)
	}
	return nil
}

// Bytes returns the history bytes kept in all rooms.
func (a *histAccount) Bytes() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bytes
}
