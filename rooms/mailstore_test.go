package rooms_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// memMail is a hand-written Mailboxes for the hub's side of the contract;
// rooms/jetstream tests the real one. It can be made to fail or to stall
// its puts.
type memMail struct {
	mu       sync.Mutex
	letters  map[rooms.MailRef]rooms.Letter
	next     rooms.MailRef
	epoch    string
	ceiling  uint64
	reserves int
	putErr   error
	// stall, when set, makes PutLetter wait for it to close; putting is
	// closed when such a put starts.
	stall, putting chan struct{}
}

var _ rooms.Mailboxes = (*memMail)(nil)

func newMemMail() *memMail { return &memMail{letters: make(map[rooms.MailRef]rooms.Letter)} }

func (s *memMail) LoadMail(ctx context.Context) (rooms.Mail, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := rooms.Mail{Epoch: s.epoch, Ceiling: s.ceiling}
	for _, ref := range s.refs() {
		m.Letters = append(m.Letters, s.letters[ref])
	}
	return m, nil
}

func (s *memMail) refs() []rooms.MailRef {
	var refs []rooms.MailRef
	for ref := range s.letters {
		refs = append(refs, ref)
	}
	slices.Sort(refs)
	return refs
}

func (s *memMail) PutLetter(ctx context.Context, l rooms.Letter) (rooms.MailRef, error) {
	s.mu.Lock()
	stall, putting, err := s.stall, s.putting, s.putErr
	s.mu.Unlock()
	if stall != nil {
		close(putting)
		<-stall
	}
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	l.Ref = s.next
	l.JSON = append([]byte(nil), l.JSON...)
	s.letters[l.Ref] = l
	return l.Ref, nil
}

func (s *memMail) DropLetter(ctx context.Context, user string, ref rooms.MailRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.letters[ref]; ok && l.User == user {
		delete(s.letters, ref)
	}
	return nil
}

func (s *memMail) TakeLetters(ctx context.Context, user string, through rooms.MailRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref, l := range s.letters {
		if l.User == user && ref <= through {
			delete(s.letters, ref)
		}
	}
	return nil
}

func (s *memMail) ReserveSeqs(ctx context.Context, epoch string, through uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch, s.ceiling = epoch, through
	s.reserves++
	return nil
}

func (s *memMail) set(f func(s *memMail)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// waiting returns the data of the letters the store keeps for user, oldest
// first.
func (s *memMail) waiting(t *testing.T, user string) []string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ref := range s.refs() {
		if l := s.letters[ref]; l.User == user {
			out = append(out, eventData(t, string(l.JSON)))
		}
	}
	return out
}

func (s *memMail) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.letters)
}

// mailHub starts a hub on store, as a process starting would, and runs it
// (its Run deletes what is delivered); stop ends Run, which makes its last
// deletions.
func mailHub(t *testing.T, store *memMail, cfg rooms.Config) (h *rooms.Hub, stop func()) {
	t.Helper()
	cfg.Mailboxes = store
	h = rooms.New(cfg)
	if err := h.LoadMailboxes(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return h, stop
}

// eventData returns an event frame's data, as a string when it is one.
func eventData(t *testing.T, frame string) string {
	t.Helper()
	var ev protocol.Event
	if err := json.Unmarshal([]byte(frame), &ev); err != nil {
		t.Fatal(err)
	}
	var s string
	if json.Unmarshal(ev.Data, &s) == nil {
		return s
	}
	return string(ev.Data)
}

func dmTo(h *rooms.Hub, from rooms.Member, to, text, msgID string) (protocol.Delivered, error) {
	return h.Emit(from, rooms.Target{User: to}, "dm", json.RawMessage(`"`+text+`"`), rooms.EmitOptions{MsgID: msgID})
}

// A direct message waiting for a user survives a restart of the hub (its
// store kept): the user gets it once, in the same frame, and the next
// restart does not bring it back; a resend of its msg_id is still a
// duplicate, and the direct-message stream goes on in the same epoch.
func TestMailboxesRestart(t *testing.T) {
	store := newMemMail()
	h, stop := mailHub(t, store, rooms.Config{})
	alice := &member{id: "a"}
	h.Register(alice)
	var acks []protocol.Delivered
	for i := range 3 {
		d, err := dmTo(h, alice, "bob", fmt.Sprintf("hi %d", i), fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if !d.Queued {
			t.Fatalf("ack %+v, want queued", d)
		}
		acks = append(acks, d)
	}
	if got := store.waiting(t, "bob"); !slices.Equal(got, []string{"hi 0", "hi 1", "hi 2"}) {
		t.Fatalf("the store keeps %q", got)
	}
	stop()

	h, stop = mailHub(t, store, rooms.Config{})
	alice = &member{id: "a"} // the same user, "ua"
	h.Register(alice)
	d, err := dmTo(h, alice, "bob", "again", "m1")
	if err != nil || !d.Duplicate || d.Seq != acks[1].Seq || d.Epoch != acks[1].Epoch || !d.Queued {
		t.Fatalf("resend after the restart: %+v, %v; want the first ack %+v, duplicate", d, err, acks[1])
	}
	bob := &recorder{member: member{id: "b1"}}
	h.Register(&userRecorder{recorder: bob, user: "bob"})
	if len(bob.msgs) != 3 {
		t.Fatalf("bob got %d messages after the restart, want 3", len(bob.msgs))
	}
	for i, m := range bob.msgs {
		fs := frames(t, []string{m})
		if eventData(t, m) != fmt.Sprintf("hi %d", i) || fs[0].Seq != acks[i].Seq || fs[0].Epoch != acks[i].Epoch {
			t.Fatalf("message %d: %s, want seq %d of %s", i, m, acks[i].Seq, acks[i].Epoch)
		}
	}
	carol := &member{id: "c"}
	h.Register(carol)
	next, err := dmTo(h, carol, "bob", "live", "")
	if err != nil || next.Epoch != acks[0].Epoch || next.Seq <= acks[2].Seq {
		t.Fatalf("a direct message after the restart: %+v, %v; want a seq past %d in %s", next, err, acks[2].Seq, acks[0].Epoch)
	}
	stop() // Run deletes what was delivered
	if n := store.count(); n != 0 {
		t.Fatalf("the store keeps %d letters after their delivery", n)
	}

	h, _ = mailHub(t, store, rooms.Config{})
	bob2 := &recorder{member: member{id: "b2"}}
	h.Register(&userRecorder{recorder: bob2, user: "bob"})
	if len(bob2.msgs) != 0 {
		t.Fatalf("bob got %d messages again after a second restart", len(bob2.msgs))
	}
}

// The bounds hold across a restart: the loaded letters count in them as
// they did, so a spammer still cannot push out another sender's letter,
// and its share runs out exactly where it would have without the restart;
// what the hub pushes out leaves the store.
func TestMailboxesFairAfterRestart(t *testing.T) {
	cfg := rooms.Config{OfflineSize: 10, OfflineBytes: 10_000, OfflineSenderBytes: 20_000, OfflineTotalBytes: 1 << 20}
	alice, spammer := &member{id: "a"}, &member{id: "s"}
	spam := func(h *rooms.Hub, from, to int) {
		for i := from; i < to; i++ {
			if _, err := dmTo(h, spammer, "uv", fmt.Sprintf("spam %d %s", i, strings.Repeat("x", 500)), ""); err != nil {
				t.Fatalf("spam %d: %v", i, err)
			}
		}
	}
	// fill makes alice's letter, then spam: 50 to the victim and 10 to
	// made-up users (half the spammer's share).
	fill := func(h *rooms.Hub) {
		h.Register(alice)
		h.Register(spammer)
		if _, err := dmTo(h, alice, "uv", "meet at noon", ""); err != nil {
			t.Fatal(err)
		}
		spam(h, 0, 50)
		for i := range 10 {
			if _, err := dmTo(h, spammer, fmt.Sprintf("nobody%d", i), strings.Repeat("y", 900), ""); err != nil {
				t.Fatalf("made-up user %d: %v", i, err)
			}
		}
	}
	// more spams again, then counts the made-up users it reaches before
	// over_quota.
	more := func(h *rooms.Hub) int {
		spam(h, 50, 100)
		for i := 10; i < 100; i++ {
			_, err := dmTo(h, spammer, fmt.Sprintf("nobody%d", i), strings.Repeat("y", 900), "")
			if isCode(err, protocol.CodeOverQuota) {
				return i - 10
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Fatal("the spammer's share never ran out")
		return 0
	}
	inMemory := rooms.New(cfg)
	fill(inMemory)
	want := more(inMemory)

	store := newMemMail()
	h, stop := mailHub(t, store, cfg)
	fill(h)
	stop()
	h, stop = mailHub(t, store, cfg)
	h.Register(spammer)
	if got := more(h); got != want {
		t.Fatalf("after a restart the spammer reached %d more made-up users, without one %d", got, want)
	}
	stop() // what was pushed out leaves the store
	kept := store.waiting(t, "uv")

	h, _ = mailHub(t, store, cfg)
	victim := &recorder{member: member{id: "v"}}
	h.Register(victim)
	if len(victim.msgs) != 10 || eventData(t, victim.msgs[0]) != "meet at noon" {
		t.Fatalf("the victim got %d messages, the first %.40q; want 10, alice's first", len(victim.msgs), victim.msgs[:min(1, len(victim.msgs))])
	}
	var got []string
	for _, m := range victim.msgs {
		got = append(got, eventData(t, m))
	}
	if !slices.Equal(got, kept) {
		t.Fatalf("the victim got\n%.200q\nthe store kept\n%.200q", got, kept)
	}
	if !strings.HasPrefix(got[9], "spam 99 ") {
		t.Fatalf("the newest message is %.20q, want spam 99", got[9])
	}
}

// A letter the store cannot keep is not queued: the sender is told
// (storage_unavailable) and its share is given back.
func TestMailboxesPutFails(t *testing.T) {
	store := newMemMail()
	h, _ := mailHub(t, store, rooms.Config{OfflineSenderBytes: 1000})
	alice := &member{id: "a"}
	h.Register(alice)
	store.set(func(s *memMail) { s.putErr = errors.New("disk on fire") })
	for range 3 {
		_, err := dmTo(h, alice, "bob", strings.Repeat("z", 400), "m1")
		if !isCode(err, protocol.CodeStorageUnavailable) {
			t.Fatalf("emit while the store fails: %v", err)
		}
	}
	store.set(func(s *memMail) { s.putErr = nil })
	d, err := dmTo(h, alice, "bob", strings.Repeat("z", 400), "m1") // the id was not taken
	if err != nil || d.Duplicate {
		t.Fatalf("emit once the store is back: %+v, %v", d, err)
	}
	bob := &recorder{member: member{id: "b"}}
	h.Register(&userRecorder{recorder: bob, user: "bob"})
	if len(bob.msgs) != 1 {
		t.Fatalf("bob got %d messages, want the one stored", len(bob.msgs))
	}
}

// A letter delivered while the store is still putting it leaves the store
// once the put is done, and its sender's emit succeeds.
func TestMailboxesDeliveredWhilePut(t *testing.T) {
	store := newMemMail()
	h, stop := mailHub(t, store, rooms.Config{})
	alice := &member{id: "a"}
	h.Register(alice)
	stall, putting := make(chan struct{}), make(chan struct{})
	store.set(func(s *memMail) { s.stall, s.putting = stall, putting })
	type result struct {
		d   protocol.Delivered
		err error
	}
	res := make(chan result, 1)
	go func() {
		d, err := dmTo(h, alice, "bob", "racing", "")
		res <- result{d, err}
	}()
	<-putting
	bob := &recorder{member: member{id: "b"}}
	h.Register(&userRecorder{recorder: bob, user: "bob"})
	if len(bob.msgs) != 1 {
		t.Fatalf("bob got %d messages, want the one being stored", len(bob.msgs))
	}
	close(stall)
	if r := <-res; r.err != nil || !r.d.Queued {
		t.Fatalf("the sender's ack: %+v, %v", r.d, r.err)
	}
	stop()
	if n := store.count(); n != 0 {
		t.Fatalf("the store keeps %d letters, want none: it was delivered", n)
	}
}

// Expired letters leave the store, and a restart does not bring back those
// the store still had.
func TestMailboxesExpire(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	cfg := rooms.Config{OfflineTTL: time.Hour, Now: clock}
	store := newMemMail()
	h, stop := mailHub(t, store, cfg)
	alice := &member{id: "a"}
	h.Register(alice)
	if _, err := dmTo(h, alice, "bob", "old", ""); err != nil {
		t.Fatal(err)
	}
	advance(50 * time.Minute)
	if _, err := dmTo(h, alice, "bob", "new", ""); err != nil {
		t.Fatal(err)
	}
	stop()

	advance(20 * time.Minute) // "old" is past the hour, "new" is not
	h, stop = mailHub(t, store, cfg)
	bob := &recorder{member: member{id: "b"}}
	h.Register(&userRecorder{recorder: bob, user: "bob"})
	if len(bob.msgs) != 1 || eventData(t, bob.msgs[0]) != "new" {
		t.Fatalf("bob got %q, want only the message still within its time", bob.msgs)
	}
	stop()
	if n := store.count(); n != 0 {
		t.Fatalf("the store keeps %d letters", n)
	}

	// Expired by the sweep while the hub runs.
	h, stop = mailHub(t, store, cfg)
	alice = &member{id: "a"}
	h.Register(alice)
	if _, err := dmTo(h, alice, "carol", "soon gone", ""); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Hour)
	h.Sweep()
	stop()
	if n := store.count(); n != 0 {
		t.Fatalf("the store keeps %d expired letters", n)
	}
}

// With a store, the hub refuses direct messages until it has loaded it, so
// that no seq is handed out that a restart could give again.
func TestMailboxesNotLoaded(t *testing.T) {
	h := rooms.New(rooms.Config{Mailboxes: newMemMail()})
	alice, bob := &member{id: "a"}, &member{id: "b"}
	h.Register(alice)
	h.Register(bob)
	for _, to := range []string{"ub", "nobody"} {
		if _, err := dmTo(h, alice, to, "early", ""); !isCode(err, protocol.CodeStorageUnavailable) {
			t.Fatalf("a direct message to %s before LoadMailboxes: %v", to, err)
		}
	}
	if err := h.LoadMailboxes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := dmTo(h, alice, "ub", "now", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.LoadMailboxes(context.Background()); err == nil {
		t.Fatal("a second LoadMailboxes was accepted")
	}
}

// Letters come back in the order they were queued even when concurrent
// puts reached the store in another order.
func TestMailboxesLoadOrder(t *testing.T) {
	store := newMemMail()
	h, stop := mailHub(t, store, rooms.Config{})
	alice := &member{id: "a"}
	h.Register(alice)
	for i := range 5 {
		if _, err := dmTo(h, alice, "bob", fmt.Sprint(i), ""); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	store.set(func(s *memMail) { // the store took them in reverse
		refs := s.refs()
		old := maps.Clone(s.letters)
		for i, ref := range refs {
			l := old[refs[len(refs)-1-i]]
			l.Ref = ref
			s.letters[ref] = l
		}
	})
	if got := store.waiting(t, "bob"); !slices.Equal(got, []string{"4", "3", "2", "1", "0"}) {
		t.Fatalf("the store holds %q", got)
	}
	h, _ = mailHub(t, store, rooms.Config{})
	bob := &recorder{member: member{id: "b"}}
	h.Register(&userRecorder{recorder: bob, user: "bob"})
	var got []string
	for _, m := range bob.msgs {
		got = append(got, eventData(t, m))
	}
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) {
		t.Fatalf("bob got %q", got)
	}
}
