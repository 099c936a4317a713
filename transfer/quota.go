package transfer

import (
	"sync"
	"time"
)

// quota counts the bytes each user opened uploads for during the current
// UTC day, against Config.Quota. An upload counts in full when it is
// opened, so that no user can go past the quota with uploads in flight;
// canceling it gives the bytes back. The counts live in memory: a restart
// starts the day's counts again.
type quota struct {
	limit int64 // 0: none

	mu   sync.Mutex
	day  string
	used map[string]int64
}

// take counts size bytes for user today, or refuses them with
// CodeOverQuota.
func (q *quota) take(user string, size int64, now time.Time) error {
	if q.limit <= 0 || size == 0 {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(now)
	if q.used[user]+size > q.limit {
		return errorf(CodeOverQuota, "this upload would take you past your %d bytes a day (%d used today)", q.limit, q.used[user])
	}
	q.used[user] += size
	return nil
}

// give returns size bytes to user's count today.
func (q *quota) give(user string, size int64, now time.Time) {
	if q.limit <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.roll(now)
	if q.used[user] -= size; q.used[user] <= 0 {
		delete(q.used, user)
	}
}

// roll starts a new day's counts when the UTC day changed. q.mu is held.
func (q *quota) roll(now time.Time) {
	if d := now.UTC().Format(time.DateOnly); d != q.day {
		q.day, q.used = d, make(map[string]int64)
	}
}
