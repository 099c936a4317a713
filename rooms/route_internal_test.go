package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
)

// fakeNet routes direct messages between hubs in memory, as a Router over
// NATS does: a user is on the hubs whose Online named it.
type fakeNet struct {
	mu     sync.Mutex
	hubs   map[*Hub]map[string]bool
	before func(user string) // called by Send before it looks
}

type fakeRouter struct {
	net *fakeNet
	hub *Hub
}

func (n *fakeNet) join(cfg Config) *Hub {
	r := &fakeRouter{net: n}
	cfg.Router = r
	h := New(cfg)
	r.hub = h
	n.mu.Lock()
	n.hubs[h] = make(map[string]bool)
	n.mu.Unlock()
	return h
}

func (r *fakeRouter) Online(user string) {
	r.net.mu.Lock()
	r.net.hubs[r.hub][user] = true
	var others []*Hub
	for h := range r.net.hubs {
		if h != r.hub {
			others = append(others, h)
		}
	}
	r.net.mu.Unlock()
	for _, h := range others {
		h.HandOver(user)
	}
}

func (r *fakeRouter) Offline(user string) {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	delete(r.net.hubs[r.hub], user)
}

func (r *fakeRouter) others(user string) []*Hub {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	var out []*Hub
	for h, users := range r.net.hubs {
		if h != r.hub && users[user] {
			out = append(out, h)
		}
	}
	return out
}

func (r *fakeRouter) Send(_ context.Context, user string, frame []byte) (protocol.Delivered, error) {
	r.net.mu.Lock()
	f := r.net.before
	r.net.before = nil
	r.net.mu.Unlock()
	if f != nil {
		f(user)
		return protocol.Delivered{}, ErrNoRoute // as NATS answered before f
	}
	hubs := r.others(user)
	if len(hubs) == 0 {
		return protocol.Delivered{}, ErrNoRoute
	}
	return hubs[0].Receive(user, frame, true)
}

func (r *fakeRouter) Publish(user string, frame []byte) {
	for _, h := range r.others(user) {
		_, _ = h.Receive(user, frame, false)
	}
}

// recorder keeps the texts of the direct messages it gets.
type recorder struct {
	seqMember
	mu  sync.Mutex
	got []string
}

func (m *recorder) Deliver(msg *Message) bool {
	var ev protocol.Event
	if json.Unmarshal(msg.JSON, &ev) == nil && ev.T == protocol.TypeEvent {
		m.mu.Lock()
		m.got = append(m.got, string(ev.Data))
		m.mu.Unlock()
	}
	return true
}
func (m *recorder) CatchUp(msg *Message) bool { return m.Deliver(msg) }

func (m *recorder) texts() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

// A user who connects to another hub in the instant between the Router's
// "nobody has them" and the queueing of a message for them still gets it:
// the queueing hub tries its hand-over once more, and its mailbox lets the
// message go. Without that, the message would wait for the user's next
// connection.
func TestRouteQueuedWhileConnectingElsewhere(t *testing.T) {
	net := &fakeNet{hubs: make(map[*Hub]map[string]bool)}
	a, b := net.join(Config{}), net.join(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, h := range []*Hub{a, b} {
		wg.Go(func() { _ = h.Run(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	// The hand-over loops have tried their (empty) mailboxes at start.
	time.Sleep(100 * time.Millisecond)

	alice := &recorder{seqMember: seqMember{"alice"}}
	a.Register(alice)
	carol := &recorder{seqMember: seqMember{"carol"}}
	net.mu.Lock()
	net.before = func(string) { b.Register(carol) }
	net.mu.Unlock()
	d, err := a.Emit(alice, Target{User: "carol"}, "dm", json.RawMessage(`"hi"`), EmitOptions{})
	if err != nil || !d.Queued {
		t.Fatalf("%+v, %v; want queued", d, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(carol.texts()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := carol.texts(); len(got) != 1 || got[0] != `"hi"` {
		t.Fatalf("carol got %v", got)
	}
	a.mu.RLock()
	waiting := len(a.mail)
	a.mu.RUnlock()
	if waiting != 0 {
		t.Fatalf("hub A still has mail for %d users", waiting)
	}
	// Delivered across now, and to both hubs when carol is on both.
	carolA := &recorder{seqMember: seqMember{"carol"}}
	a.Register(carolA)
	if d, err := a.Emit(alice, Target{User: "carol"}, "dm", json.RawMessage(`"both"`), EmitOptions{}); err != nil || d.Queued || d.Delivered != 1 {
		t.Fatalf("%+v, %v", d, err)
	}
	if got := carol.texts(); len(got) != 2 || got[1] != `"both"` {
		t.Fatalf("carol on B got %v", got)
	}
	if got := carolA.texts(); len(got) != 1 || got[0] != `"both"` {
		t.Fatalf("carol on A got %v", got)
	}
}

// A message with a msg_id that reaches a hub twice (handed over again
// after its answer was lost) is delivered once; the second answer is the
// first's, marked duplicate.
func TestReceiveTwice(t *testing.T) {
	net := &fakeNet{hubs: make(map[*Hub]map[string]bool)}
	h := net.join(Config{})
	bob := &recorder{seqMember: seqMember{"bob"}}
	h.Register(bob)
	frame := []byte(`{"t":"event","room":"user:bob","event":"dm","data":"hi","from":{"user":"alice"},"msg_id":"m1"}`)
	first, err := h.Receive("bob", frame, true)
	if err != nil || first.Delivered != 1 || first.Seq == 0 {
		t.Fatalf("%+v, %v", first, err)
	}
	again, err := h.Receive("bob", frame, true)
	if err != nil || !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("again: %+v, %v; want the duplicate of %+v", again, err, first)
	}
	if got := bob.texts(); len(got) != 1 {
		t.Fatalf("bob got %v", got)
	}
	for _, bad := range []string{`{"t":"event","room":"user:carol","from":{"user":"alice"}}`, `{"t":"event","room":"user:bob"}`, `[]`} {
		if _, err := h.Receive("bob", []byte(bad), true); !errors.Is(err, &protocol.Error{Code: protocol.CodeBadFrame}) {
			t.Errorf("%s: %v, want bad_frame", bad, err)
		}
	}
}
