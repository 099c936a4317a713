package rooms

// fairBound keeps the keys of a table (message ids remembered for dedup,
// events tracked for receipts) within perOwner per owning user and max in
// all, so that no user can push another's entries out: a user over its
// share makes room with its own oldest entry, and so does a user adding to
// a full table if it has any; only a user with none takes the oldest entry
// of the table. The caller deletes the keys add returns from its table, and
// tells remove about the ones it deletes itself. The caller's lock guards
// it.
type fairBound[K comparable] struct {
	perOwner, max int

	gen    uint64
	live   map[K]fairItem
	counts map[string]int // live keys per owner
	queues map[string]*fairQueue[K]
	all    fairQueue[K]
}

type fairItem struct {
	owner string
	gen   uint64
}

// fairQueue holds keys in the order they were added; entries of keys
// removed since are skipped when met.
type fairQueue[K comparable] struct {
	items []fairEntry[K]
	head  int
}

type fairEntry[K comparable] struct {
	key K
	gen uint64
}

func newFairBound[K comparable](perOwner, max int) fairBound[K] {
	return fairBound[K]{perOwner: perOwner, max: max, live: make(map[K]fairItem),
		counts: make(map[string]int), queues: make(map[string]*fairQueue[K])}
}

// add records k for owner and returns the keys that go to make room.
func (b *fairBound[K]) add(owner string, k K) (evicted []K) {
	if _, ok := b.live[k]; ok {
		return nil
	}
	for b.counts[owner] >= b.perOwner {
		evicted = append(evicted, b.popOldest(b.queues[owner]))
	}
	for len(b.live) >= b.max {
		q := &b.all
		if b.counts[owner] > 0 {
			q = b.queues[owner]
		}
		evicted = append(evicted, b.popOldest(q))
	}
	b.gen++
	b.live[k] = fairItem{owner, b.gen}
	b.counts[owner]++
	q := b.queues[owner]
	if q == nil {
		q = &fairQueue[K]{}
		b.queues[owner] = q
	}
	q.items = append(q.items, fairEntry[K]{k, b.gen})
	b.all.items = append(b.all.items, fairEntry[K]{k, b.gen})
	return evicted
}

// popOldest removes and returns the oldest live key of q, which has one.
func (b *fairBound[K]) popOldest(q *fairQueue[K]) K {
	for {
		e := q.items[q.head]
		q.items[q.head] = fairEntry[K]{}
		q.head++
		if it, ok := b.live[e.key]; ok && it.gen == e.gen {
			b.remove(e.key)
			return e.key
		}
	}
}

// remove forgets k.
func (b *fairBound[K]) remove(k K) {
	it, ok := b.live[k]
	if !ok {
		return
	}
	delete(b.live, k)
	if b.counts[it.owner]--; b.counts[it.owner] <= 0 {
		delete(b.counts, it.owner)
		delete(b.queues, it.owner)
	}
}

// compact drops the entries of removed keys from the queues: the sweep
// calls it after expiring entries.
func (b *fairBound[K]) compact() {
	keep := func(q *fairQueue[K]) {
		out := q.items[:0]
		for _, e := range q.items[q.head:] {
			if it, ok := b.live[e.key]; ok && it.gen == e.gen {
				out = append(out, e)
			}
		}
		clear(q.items[len(out):])
		q.items, q.head = out, 0
	}
	keep(&b.all)
	for _, q := range b.queues {
		keep(q)
	}
}
