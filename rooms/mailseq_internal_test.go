package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/ferryhq/ferry/protocol"
)

// seqStore is a Mailboxes that keeps nothing but the reserved seqs, and can
// be made to fail saving them.
type seqStore struct {
	mu      sync.Mutex
	through uint64
	err     error
}

func (s *seqStore) LoadMail(context.Context) (Mail, error) { return Mail{}, nil }
func (s *seqStore) PutLetter(context.Context, Letter) (MailRef, error) {
	return 1, nil
}
func (s *seqStore) DropLetter(context.Context, string, MailRef) error  { return nil }
func (s *seqStore) TakeLetters(context.Context, string, MailRef) error { return nil }
func (s *seqStore) ReserveSeqs(_ context.Context, _ string, through uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.through = through
	return nil
}

type seqMember struct{ id string }

func (m *seqMember) ConnID() string        { return m.id }
func (m *seqMember) UserID() string        { return m.id }
func (m *seqMember) UserName() string      { return m.id }
func (m *seqMember) Deliver(*Message) bool { return true }
func (m *seqMember) CatchUp(*Message) bool { return true }

func (s *seqStore) saved() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.through
}

func (s *seqStore) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func dm(h *Hub, from, to *seqMember) error {
	_, err := h.Emit(from, Target{User: to.id}, "dm", json.RawMessage(`1`), EmitOptions{})
	return err
}

// Direct messages are numbered only up to the seqs the store has saved:
// half-way through a block, the next block is saved; when it cannot be, the
// messages past the saved ceiling are refused rather than given seqs a
// restart could give again, and they go on once it can.
func TestReservedSeqs(t *testing.T) {
	store := &seqStore{}
	h := New(Config{Mailboxes: store})
	if err := h.LoadMailboxes(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := store.saved(); got != seqBlock {
		t.Fatalf("saved %d at load, want %d", got, seqBlock)
	}
	a, b := &seqMember{"a"}, &seqMember{"b"}
	h.Register(a)
	h.Register(b)

	store.fail(errors.New("away"))
	h.dmCeiling.Store(h.dmSeq.Load() + 2)
	for _, to := range []*seqMember{b, {"offline"}} { // both up to the ceiling
		if err := dm(h, a, to); err != nil {
			t.Fatal(err)
		}
	}
	for _, to := range []*seqMember{b, {"offline"}} {
		if err := dm(h, a, to); !errors.Is(err, &protocol.Error{Code: protocol.CodeStorageUnavailable}) {
			t.Fatalf("a direct message past the saved seqs: %v", err)
		}
	}
	store.fail(nil)
	for _, to := range []*seqMember{b, {"offline"}} { // a block is saved first
		if err := dm(h, a, to); err != nil {
			t.Fatal(err)
		}
	}
	seq, ceiling := h.dmSeq.Load(), h.dmCeiling.Load()
	if ceiling <= seq || store.saved() != ceiling {
		t.Fatalf("seq %d, ceiling %d, saved %d", seq, ceiling, store.saved())
	}
}
