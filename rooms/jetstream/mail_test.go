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

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// mailNode is one life of a ferry process keeping direct messages: an
// embedded server on a folder, the mailboxes, and a hub running (its Run
// deletes what is delivered).
type mailNode struct {
	emb  *Embedded
	mail *Mailboxes
	hub  *rooms.Hub
	stop func() // ends Run, then the server; idempotent
}

// startMail starts a mailNode on dir; the test's end stops it if the test
// did not.
func startMail(t testing.TB, dir string, mcfg MailConfig, hcfg rooms.Config) *mailNode {
	t.Helper()
	emb, err := StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mail, err := NewMailboxes(context.Background(), emb.Conn(), mcfg)
	if err != nil {
		shutdown(t, emb)
		t.Fatal(err)
	}
	hcfg.Mailboxes = mail
	h := rooms.New(hcfg)
	if err := h.LoadMailboxes(context.Background()); err != nil {
		shutdown(t, emb)
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(ctx)
	}()
	var once sync.Once
	n := &mailNode{emb: emb, mail: mail, hub: h, stop: func() {
		once.Do(func() {
			cancel()
			<-done
			shutdown(t, emb)
		})
	}}
	t.Cleanup(n.stop)
	return n
}

// letters returns how many letters the stream holds.
func (n *mailNode) letters(t testing.TB) uint64 {
	t.Helper()
	info, err := n.mail.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitLetters waits until the stream holds want letters: Run deletes
// delivered ones in the background.
func (n *mailNode) waitLetters(t testing.TB, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := n.letters(t)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stream holds %d letters, want %d", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func dm(h *rooms.Hub, from rooms.Member, to, text, msgID string) (protocol.Delivered, error) {
	return h.Emit(from, rooms.Target{User: to}, "dm", json.RawMessage(`"`+text+`"`), rooms.EmitOptions{MsgID: msgID})
}

// dmEvent is what the tests read of a direct message a member got.
type dmEvent struct {
	Text, Epoch string
	Seq         uint64
}

func (m *member) dms(t testing.TB) []dmEvent {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []dmEvent
	for _, s := range m.frames {
		var ev protocol.Event
		if err := json.Unmarshal([]byte(s), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.T != protocol.TypeEvent || ev.Event != "dm" {
			continue
		}
		var text string
		if err := json.Unmarshal(ev.Data, &text); err != nil {
			t.Fatal(err)
		}
		out = append(out, dmEvent{Text: text, Epoch: ev.Epoch, Seq: ev.Seq})
	}
	return out
}

// mailCrashDirEnv tells a re-run of this test binary to be the process
// that is killed in TestMailRestart.
const mailCrashDirEnv = "FERRY_JETSTREAM_MAIL_CRASH_DIR"

// sent is what the first life tells the second: the acks of the letters
// queued for bob.
type sent struct {
	Acks []protocol.Delivered
}

// mailFill is the first life of TestMailRestart: alice sends bob (not
// connected) three direct messages with ids and carol two; carol connects
// and gets hers, and Run deletes them. It returns the acks of bob's.
func mailFill(t testing.TB, n *mailNode) sent {
	alice := &member{conn: "a1", user: "alice"}
	n.hub.Register(alice)
	var s sent
	for i := range 3 {
		d, err := dm(n.hub, alice, "bob", fmt.Sprintf("hi bob %d", i), fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if !d.Queued {
			t.Fatalf("ack %+v, want queued", d)
		}
		s.Acks = append(s.Acks, d)
	}
	for i := range 2 {
		if _, err := dm(n.hub, alice, "carol", fmt.Sprintf("hi carol %d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	carol := &member{conn: "c1", user: "carol"}
	n.hub.Register(carol)
	if got := carol.dms(t); len(got) != 2 {
		t.Fatalf("carol got %+v", got)
	}
	n.waitLetters(t, 3) // carol's are deleted
	return s
}

// A direct message waiting for a user who is not connected survives a
// restart, whether the server stopped cleanly or the process was killed:
// the user gets it exactly once, as the same frame; the messages delivered
// before the restart are not delivered again, nor those delivered after it
// at the next restart; a resend of a waiting message's id is still a
// duplicate; and the direct-message stream goes on in its epoch.
func TestMailRestart(t *testing.T) {
	if dir := os.Getenv(mailCrashDirEnv); dir != "" {
		mailCrashChild(t, dir)
		return
	}
	for _, tc := range []struct {
		name string
		fill func(t *testing.T, dir string) sent
	}{
		{"clean shutdown", func(t *testing.T, dir string) sent {
			n := startMail(t, dir, MailConfig{}, rooms.Config{})
			s := mailFill(t, n)
			n.stop()
			return s
		}},
		{"process killed", func(t *testing.T, dir string) sent {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMailRestart$", "-test.count=1")
			cmd.Env = append(os.Environ(), mailCrashDirEnv+"="+dir)
			out, err := cmd.Output()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Success() {
				t.Fatalf("the child was not killed: %v\n%s", err, out)
			}
			line, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "sent ")
			var s sent
			if !ok || json.Unmarshal([]byte(line), &s) != nil {
				t.Fatalf("the child said %q", out)
			}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := tc.fill(t, dir)
			epoch := s.Acks[0].Epoch
			n := startMail(t, dir, MailConfig{}, rooms.Config{})
			if got := n.letters(t); got != 3 {
				t.Fatalf("the stream holds %d letters after the restart, want bob's 3", got)
			}
			alice := &member{conn: "a2", user: "alice"}
			n.hub.Register(alice)
			d, err := dm(n.hub, alice, "bob", "resent", "m1")
			if err != nil || !d.Duplicate || d.Seq != s.Acks[1].Seq || d.Epoch != epoch {
				t.Fatalf("a resend after the restart: %+v, %v; want the first ack %+v, duplicate", d, err, s.Acks[1])
			}
			carol := &member{conn: "c2", user: "carol"}
			n.hub.Register(carol)
			if got := carol.dms(t); len(got) != 0 {
				t.Fatalf("carol got %+v again", got)
			}
			bob := &member{conn: "b1", user: "bob"}
			n.hub.Register(bob)
			got := bob.dms(t)
			if len(got) != 3 {
				t.Fatalf("bob got %+v, want 3 messages", got)
			}
			for i, g := range got {
				if want := (dmEvent{fmt.Sprintf("hi bob %d", i), epoch, s.Acks[i].Seq}); g != want {
					t.Fatalf("message %d is %+v, want %+v", i, g, want)
				}
			}
			next, err := dm(n.hub, alice, "bob", "live", "")
			if err != nil || next.Queued || next.Epoch != epoch || next.Seq <= s.Acks[2].Seq {
				t.Fatalf("a message after the restart: %+v, %v; want one delivered past seq %d in %s", next, err, s.Acks[2].Seq, epoch)
			}
			n.waitLetters(t, 0)
			n.stop()

			n = startMail(t, dir, MailConfig{}, rooms.Config{})
			bob = &member{conn: "b2", user: "bob"}
			n.hub.Register(bob)
			if got := bob.dms(t); len(got) != 0 {
				t.Fatalf("bob got %+v again after a second restart", got)
			}
			if d, err := dm(n.hub, alice, "dave", "later", ""); err != nil || d.Epoch != epoch || d.Seq <= next.Seq {
				t.Fatalf("a message after the second restart: %+v, %v; want past seq %d in %s", d, err, next.Seq, epoch)
			}
		})
	}
}

// mailCrashChild is the killed process of TestMailRestart: every letter is
// acked (the store has it), and carol's deleted, before the kill; nothing
// is shut down. With mailNoDeleteEnv, the hub does not run (nothing
// delivered is deleted) and carol is the only recipient.
func mailCrashChild(t *testing.T, dir string) {
	emb, err := StartEmbedded(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	mail, err := NewMailboxes(context.Background(), emb.Conn(), MailConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := rooms.New(rooms.Config{Mailboxes: mail})
	if err := h.LoadMailboxes(context.Background()); err != nil {
		t.Fatal(err)
	}
	var s sent
	if os.Getenv(mailNoDeleteEnv) == "" {
		go func() { _ = h.Run(context.Background()) }()
		s = mailFill(t, &mailNode{emb: emb, mail: mail, hub: h})
	} else {
		alice := &member{conn: "a1", user: "alice"}
		h.Register(alice)
		for i := range 2 {
			d, err := dm(h, alice, "carol", fmt.Sprintf("hi carol %d", i), fmt.Sprintf("c%d", i))
			if err != nil {
				t.Fatal(err)
			}
			s.Acks = append(s.Acks, d)
		}
		carol := &member{conn: "c1", user: "carol"}
		h.Register(carol)
		if got := carol.dms(t); len(got) != 2 {
			t.Fatalf("carol got %+v", got)
		}
	}
	b, _ := json.Marshal(s)
	fmt.Printf("sent %s\n", b)
	_ = os.Stdout.Sync()
	p, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Kill()
	select {} // killed
}

// mailNoDeleteEnv makes mailCrashChild die between a delivery and its
// deletion.
const mailNoDeleteEnv = "FERRY_JETSTREAM_MAIL_NO_DELETE"

// A process killed after delivering letters but before deleting them
// delivers them again after the restart (at least once): the same frames,
// in the same epoch and seqs, so a client that drops what is not past the
// last seq it processed in its user room (the Go client does) processes
// each once.
func TestMailRedeliveredAfterCrash(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMailRestart$", "-test.count=1")
	cmd.Env = append(os.Environ(), mailCrashDirEnv+"="+dir, mailNoDeleteEnv+"=1")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Success() {
		t.Fatalf("the child was not killed: %v\n%s", err, out)
	}
	line, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "sent ")
	var s sent
	if !ok || json.Unmarshal([]byte(line), &s) != nil || len(s.Acks) != 2 {
		t.Fatalf("the child said %q", out)
	}
	n := startMail(t, dir, MailConfig{}, rooms.Config{})
	carol := &member{conn: "c2", user: "carol"}
	n.hub.Register(carol)
	got := carol.dms(t)
	if len(got) != 2 {
		t.Fatalf("carol got %+v, want her 2 messages again", got)
	}
	for i, g := range got {
		if want := (dmEvent{fmt.Sprintf("hi carol %d", i), s.Acks[i].Epoch, s.Acks[i].Seq}); g != want {
			t.Fatalf("message %d again is %+v, want the same as before, %+v", i, g, want)
		}
	}
	n.waitLetters(t, 0)
}

// The mailboxes' bounds hold across a restart: the loaded letters count as
// they did, so a spammer cannot push out another sender's letter, and its
// share runs out exactly where it would have without the restart; the
// letters the hub pushes out leave the stream.
func TestMailFairAfterRestart(t *testing.T) {
	hcfg := rooms.Config{OfflineSize: 10, OfflineBytes: 10_000, OfflineSenderBytes: 20_000}
	alice, spammer := &member{conn: "a", user: "alice"}, &member{conn: "s", user: "spammer"}
	spam := func(h *rooms.Hub, from, to int) {
		for i := from; i < to; i++ {
			if _, err := dm(h, spammer, "victim", fmt.Sprintf("spam %d %s", i, strings.Repeat("x", 500)), ""); err != nil {
				t.Fatalf("spam %d: %v", i, err)
			}
		}
	}
	fill := func(h *rooms.Hub) {
		h.Register(alice)
		h.Register(spammer)
		if _, err := dm(h, alice, "victim", "meet at noon", ""); err != nil {
			t.Fatal(err)
		}
		spam(h, 0, 50)
		for i := range 10 {
			if _, err := dm(h, spammer, fmt.Sprintf("nobody%d", i), strings.Repeat("y", 900), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	more := func(h *rooms.Hub) int {
		spam(h, 50, 100)
		for i := 10; i < 100; i++ {
			_, err := dm(h, spammer, fmt.Sprintf("nobody%d", i), strings.Repeat("y", 900), "")
			var pe *protocol.Error
			if errors.As(err, &pe) && pe.Code == protocol.CodeOverQuota {
				return i - 10
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Fatal("the spammer's share never ran out")
		return 0
	}
	inMemory := rooms.New(hcfg)
	fill(inMemory)
	want := more(inMemory)

	dir := t.TempDir()
	n := startMail(t, dir, MailConfig{}, hcfg)
	fill(n.hub)
	n.waitLetters(t, 10+10) // the victim's 10, the made-up users' 10
	n.stop()
	n = startMail(t, dir, MailConfig{}, hcfg)
	n.hub.Register(spammer)
	if got := more(n.hub); got != want {
		t.Fatalf("after a restart the spammer reached %d more made-up users, without one %d", got, want)
	}
	n.waitLetters(t, 10+10+uint64(want))
	n.stop()

	n = startMail(t, dir, MailConfig{}, hcfg)
	victim := &member{conn: "v", user: "victim"}
	n.hub.Register(victim)
	got := victim.dms(t)
	if len(got) != 10 || got[0].Text != "meet at noon" || !strings.HasPrefix(got[9].Text, "spam 99 ") {
		t.Fatalf("the victim got %d messages (%.60v); want alice's, then the spam up to 99", len(got), got)
	}
	n.waitLetters(t, 10+uint64(want))
}

// Letters past their time are gone after a restart, whichever side expires
// them: the stream's MaxAge by the wall clock, or the hub's OfflineTTL by
// its own clock (the hub then deletes them from the stream).
func TestMailExpire(t *testing.T) {
	t.Run("the stream's MaxAge", func(t *testing.T) {
		dir := t.TempDir()
		mcfg := MailConfig{MaxAge: time.Second}
		n := startMail(t, dir, mcfg, rooms.Config{})
		alice := &member{conn: "a", user: "alice"}
		n.hub.Register(alice)
		if _, err := dm(n.hub, alice, "bob", "soon gone", ""); err != nil {
			t.Fatal(err)
		}
		n.stop()
		time.Sleep(1500 * time.Millisecond)
		n = startMail(t, dir, mcfg, rooms.Config{})
		bob := &member{conn: "b", user: "bob"}
		n.hub.Register(bob)
		if got := bob.dms(t); len(got) != 0 {
			t.Fatalf("bob got %+v past its time", got)
		}
	})
	t.Run("the hub's OfflineTTL", func(t *testing.T) {
		dir := t.TempDir()
		var mu sync.Mutex
		now := time.Now()
		hcfg := rooms.Config{OfflineTTL: time.Hour, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
		n := startMail(t, dir, MailConfig{}, hcfg)
		alice := &member{conn: "a", user: "alice"}
		n.hub.Register(alice)
		for _, text := range []string{"old", "new"} {
			if _, err := dm(n.hub, alice, "bob", text, ""); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			now = now.Add(50 * time.Minute)
			mu.Unlock()
		}
		n.stop() // "old" is 100 minutes old, "new" 50
		n = startMail(t, dir, MailConfig{}, hcfg)
		n.waitLetters(t, 1) // the hub dropped "old"
		bob := &member{conn: "b", user: "bob"}
		n.hub.Register(bob)
		if got := bob.dms(t); len(got) != 1 || got[0].Text != "new" {
			t.Fatalf("bob got %+v, want only the message within its time", got)
		}
		n.waitLetters(t, 0)
	})
}

// Many senders writing to many users who are not connected, at once: after
// a restart each user gets exactly the messages sent to them, in the order
// they were queued.
func TestMailConcurrentRestart(t *testing.T) {
	dir := t.TempDir()
	n := startMail(t, dir, MailConfig{}, rooms.Config{})
	const senders, users, each = 8, 5, 10
	var wg sync.WaitGroup
	for s := range senders {
		m := &member{conn: fmt.Sprintf("s%d", s), user: fmt.Sprintf("s%d", s)}
		n.hub.Register(m)
		wg.Go(func() {
			for i := range each {
				for u := range users {
					if _, err := dm(n.hub, m, fmt.Sprintf("u%d", u), fmt.Sprintf("%s-%d", m.user, i), ""); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	n.stop()

	n = startMail(t, dir, MailConfig{}, rooms.Config{})
	for u := range users {
		m := &member{conn: fmt.Sprintf("u%d", u), user: fmt.Sprintf("u%d", u)}
		n.hub.Register(m)
		got := m.dms(t)
		if len(got) != senders*each {
			t.Fatalf("user %d got %d messages, want %d", u, len(got), senders*each)
		}
		seen := make(map[string]bool)
		for i, g := range got {
			if seen[g.Text] {
				t.Fatalf("user %d got %q twice", u, g.Text)
			}
			seen[g.Text] = true
			if i > 0 && g.Seq <= got[i-1].Seq {
				t.Fatalf("user %d got seq %d after %d", u, g.Seq, got[i-1].Seq)
			}
		}
	}
	n.waitLetters(t, 0)
}

// Two processes saving the direct-message position in one store: the
// second to write is told, rather than both handing out the same seqs.
func TestMailPositionOneWriter(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(t, emb)
	ctx := context.Background()
	var boxes [2]*Mailboxes
	for i := range boxes {
		if boxes[i], err = NewMailboxes(ctx, emb.Conn(), MailConfig{}); err != nil {
			t.Fatal(err)
		}
		if _, err := boxes[i].LoadMail(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := boxes[0].ReserveSeqs(ctx, "e", 100); err != nil {
		t.Fatal(err)
	}
	if err := boxes[0].ReserveSeqs(ctx, "e", 200); err != nil {
		t.Fatal(err)
	}
	if err := boxes[1].ReserveSeqs(ctx, "e", 100); err == nil {
		t.Fatal("a second writer of the position was not told")
	}
	// Two processes that loaded the same position reserve the same block
	// at once: the second is told, though the value is the one it wanted.
	for i := range boxes {
		if boxes[i], err = NewMailboxes(ctx, emb.Conn(), MailConfig{}); err != nil {
			t.Fatal(err)
		}
		if _, err := boxes[i].LoadMail(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := boxes[0].ReserveSeqs(ctx, "e", 300); err != nil {
		t.Fatal(err)
	}
	if err := boxes[1].ReserveSeqs(ctx, "e", 300); err == nil {
		t.Fatal("a second writer of the same block was not told")
	}
	mail, err := boxes[0].LoadMail(ctx)
	if err != nil || mail.Epoch != "e" || mail.Ceiling != 300 {
		t.Fatalf("loaded %+v, %v; want e/300", mail, err)
	}
}
