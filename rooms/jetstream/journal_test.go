package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is one life of a ferry process: an embedded server on a folder, a
// journal and a hub.
type node struct {
	emb *Embedded
	j   *Journal
	hub *rooms.Hub
}

// start starts a node on dir; the test's end shuts it down if the test did
// not.
func start(t testing.TB, dir string, jcfg Config, hcfg rooms.Config) *node {
	t.Helper()
	emb, err := StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	j, err := New(context.Background(), emb.Conn(), jcfg)
	if err != nil {
		t.Fatal(err)
	}
	hcfg.Journal = j
	return &node{emb: emb, j: j, hub: rooms.New(hcfg)}
}

func shutdown(t testing.TB, emb *Embedded) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := emb.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

// member records every frame it gets, live or caught up, in order.
type member struct {
	conn, user string

	mu     sync.Mutex
	frames []string
}

func (m *member) ConnID() string   { return m.conn }
func (m *member) UserID() string   { return m.user }
func (m *member) UserName() string { return m.user }
func (m *member) Deliver(msg *rooms.Message) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.frames = append(m.frames, string(msg.JSON))
	return true
}
func (m *member) CatchUp(msg *rooms.Message) bool { return m.Deliver(msg) }

// frame is what the tests read of a frame: an event's or a gap's position.
type frame struct {
	T, Epoch, Reason string
	Seq, From, To    uint64
	JSON             string
}

// got returns the member's event and gap frames (not presence).
func (m *member) got(t testing.TB) []frame {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []frame
	for _, s := range m.frames {
		var f struct {
			T      string          `json:"t"`
			Seq    uint64          `json:"seq"`
			Epoch  string          `json:"epoch"`
			Reason string          `json:"reason"`
			From   json.RawMessage `json:"from"` // a gap's number, an event's sender
			To     uint64          `json:"to"`
		}
		if err := json.Unmarshal([]byte(s), &f); err != nil {
			t.Fatal(err)
		}
		fr := frame{T: f.T, Epoch: f.Epoch, Reason: f.Reason, Seq: f.Seq, To: f.To, JSON: s}
		switch f.T {
		case protocol.TypeGap:
			if len(f.From) > 0 {
				if err := json.Unmarshal(f.From, &fr.From); err != nil {
					t.Fatal(err)
				}
			}
		case protocol.TypeEvent:
		default:
			continue
		}
		out = append(out, fr)
	}
	return out
}

func join(t testing.TB, h *rooms.Hub, m *member, room string, since *protocol.Position) protocol.Joined {
	t.Helper()
	h.Register(m)
	j, err := h.Join(m, room, since)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func emit(t testing.TB, h *rooms.Hub, m *member, room string, n int) protocol.Delivered {
	t.Helper()
	var d protocol.Delivered
	for i := range n {
		var err error
		d, err = h.Emit(m, rooms.Target{Room: room}, "chat", json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), rooms.EmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// seqs returns the seq of every event frame, and checks that all are in
// epoch.
func seqs(t testing.TB, fs []frame, epoch string) []uint64 {
	t.Helper()
	var out []uint64
	for _, f := range fs {
		if f.T != protocol.TypeEvent {
			continue
		}
		if f.Epoch != epoch {
			t.Fatalf("event %d in epoch %q, want %q", f.Seq, f.Epoch, epoch)
		}
		out = append(out, f.Seq)
	}
	return out
}

func span(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func equal(a, b []uint64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// A room name with every character rooms allow that NATS subjects do not
// like.
const oddRoom = "team:ops.general@eu-1_x"

// crashDirEnv tells a re-run of this test binary to be the process that
// is killed: it fills a room in the folder the variable names, prints the
// epoch, and kills itself without shutting anything down.
const crashDirEnv = "FERRY_JETSTREAM_CRASH_DIR"

// After a restart, on the same folder, a client with its last position
// gets exactly the events it missed, in order, in the same epoch, whether
// the server stopped cleanly or the process was killed; a position from
// another epoch gets the epoch gap and the kept events.
func TestRestart(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	for _, tc := range []struct {
		name string
		// fill puts 1000 events in oddRoom in the folder and returns the
		// epoch, leaving the folder to a new start.
		fill func(t *testing.T, dir string) string
	}{
		{"clean shutdown", func(t *testing.T, dir string) string {
			n := start(t, dir, Config{}, rooms.Config{})
			alice := &member{conn: "a1", user: "alice"}
			join(t, n.hub, alice, oddRoom, nil)
			d := emit(t, n.hub, alice, oddRoom, 1000)
			shutdown(t, n.emb)
			return d.Epoch
		}},
		{"process killed", func(t *testing.T, dir string) string {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRestart$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
			out, err := cmd.Output()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Success() {
				t.Fatalf("the child was not killed: %v\n%s", err, out)
			}
			epoch, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "epoch ")
			if !ok {
				t.Fatalf("the child said %q", out)
			}
			return epoch
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			epoch := tc.fill(t, dir)
			n := start(t, dir, Config{}, rooms.Config{})

			info, err := n.j.stream.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != 1000 {
				t.Fatalf("the stream holds %d events, want 1000", info.State.Msgs)
			}
			for _, c := range []struct {
				name     string
				since    protocol.Position
				recovery string
				gap      string
				events   []uint64
			}{
				{"missed 600", protocol.Position{Epoch: epoch, Seq: 400}, "ok", "", span(401, 1000)},
				{"missed none", protocol.Position{Epoch: epoch, Seq: 1000}, "ok", "", nil},
				{"another epoch", protocol.Position{Epoch: "zzzzzzzzzzzzz", Seq: 400}, "epoch", "epoch", span(1, 1000)},
			} {
				t.Run(c.name, func(t *testing.T) {
					m := &member{conn: "b-" + c.name, user: "bob"}
					since := c.since
					jn := join(t, n.hub, m, oddRoom, &since)
					if jn.Epoch != epoch || jn.Seq != 1000 || jn.Recovery != c.recovery || jn.Replayed != len(c.events) {
						t.Fatalf("joined %s/%d recovery %q replayed %d, want %s/1000 %q %d",
							jn.Epoch, jn.Seq, jn.Recovery, jn.Replayed, epoch, c.recovery, len(c.events))
					}
					got := m.got(t)
					if c.gap != "" {
						if len(got) == 0 || got[0].T != protocol.TypeGap || got[0].Reason != c.gap || got[0].Epoch != epoch {
							t.Fatalf("first frame %+v, want a %s gap into %s", got, c.gap, epoch)
						}
					}
					if s := seqs(t, got, epoch); !equal(s, c.events) {
						t.Fatalf("caught up %d events (%.60v...), want %d from %v", len(s), s, len(c.events), c.events[:min(1, len(c.events))])
					}
				})
			}
			carol := &member{conn: "c1", user: "carol"}
			join(t, n.hub, carol, oddRoom, nil)
			if d := emit(t, n.hub, carol, oddRoom, 1); d.Epoch != epoch || d.Seq != 1001 {
				t.Fatalf("the next event is %s/%d, want %s/1001", d.Epoch, d.Seq, epoch)
			}
		})
	}
}

// crashChild is the killed process of TestRestart: every emit is acked
// (the journal has it) before the kill, nothing is shut down.
func crashChild(t *testing.T, dir string) {
	emb, err := StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := New(context.Background(), emb.Conn(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	h := rooms.New(rooms.Config{Journal: j})
	alice := &member{conn: "a1", user: "alice"}
	join(t, h, alice, oddRoom, nil)
	d := emit(t, h, alice, oddRoom, 1000)
	fmt.Printf("epoch %s\n", d.Epoch)
	_ = os.Stdout.Sync()
	p, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Kill()
	select {} // killed
}
