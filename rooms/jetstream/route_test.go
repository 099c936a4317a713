package jetstream

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// dmHub is one ferry node on a shared NATS server, as `ferry serve --nats`
// builds it: its own connection, mailboxes under its node name, a router,
// and the hub's and the router's loops running.
type dmHub struct {
	nc   *nats.Conn
	mail *Mailboxes
	hub  *rooms.Hub
	stop func() // idempotent
}

func startDMHub(t testing.TB, emb *Embedded, node string, hcfg rooms.Config) *dmHub {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(emb.srv))
	if err != nil {
		t.Fatal(err)
	}
	mail, err := NewMailboxes(context.Background(), nc, MailConfig{Node: node})
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	router := NewRouter(nc, RouteConfig{})
	hcfg.Mailboxes, hcfg.Router = mail, router
	h := rooms.New(hcfg)
	if err := h.LoadMailboxes(context.Background()); err != nil {
		nc.Close()
		t.Fatalf("node %s: %v", node, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	wg.Go(func() { _ = router.Run(ctx, h) })
	var once sync.Once
	n := &dmHub{nc: nc, mail: mail, hub: h, stop: func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			nc.Close()
		})
	}}
	t.Cleanup(n.stop)
	return n
}

// connect registers a connection of user on n, and waits until the NATS
// server has n's subscription for the user, as a client's round trip
// after its welcome would.
func (n *dmHub) connect(t testing.TB, conn, user string) *member {
	t.Helper()
	m := &member{conn: conn, user: user}
	n.hub.Register(m)
	if err := n.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return m
}

// letters returns how many letters n's node keeps in the stream.
func (n *dmHub) letters(t testing.TB) int {
	t.Helper()
	return lettersOn(t, n.mail, n.mail.subject("*"))
}

// lettersOn returns how many letters the stream holds on subjects
// matching filter.
func lettersOn(t testing.TB, m *Mailboxes, filter string) int {
	t.Helper()
	info, err := m.stream.Info(context.Background(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, c := range info.State.Subjects {
		total += int(c)
	}
	return total
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two nodes on one NATS server, started at once: both load their
// mailboxes (each its own position and letters). A direct message from a
// user on node A to a user connected only to node B reaches B's
// connection, once, numbered in B's epoch with increasing seqs, and the
// ack says so (not queued); a user with connections on both gets it on
// both; a message to a user connected nowhere waits on A and goes to B,
// exactly once, when the user connects there, leaving A's mailbox; a
// restarted node keeps its epoch and its letters, and hands them over too.
func TestDirectMessagesAcrossNodes(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	var a, b *dmHub
	var wg sync.WaitGroup
	wg.Go(func() { a = startDMHub(t, emb, "a", rooms.Config{}) })
	wg.Go(func() { b = startDMHub(t, emb, "b", rooms.Config{}) })
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}

	alice := a.connect(t, "a1", "alice")
	bob := b.connect(t, "b1", "bob")
	// B's own epoch, from a direct message sent on B.
	bobby := b.connect(t, "b2", "bobby")
	local, err := dm(b.hub, bobby, "bob", "from b", "")
	if err != nil || local.Queued || local.Delivered != 1 {
		t.Fatalf("a direct message on B: %+v, %v", local, err)
	}
	epochB := local.Epoch
	last := local.Seq
	var acked []uint64
	for i := range 5 {
		d, err := dm(a.hub, alice, "bob", fmt.Sprintf("hi %d", i), fmt.Sprintf("m%d", i))
		if err != nil || d.Queued || d.Delivered != 1 || d.Epoch != epochB || d.Seq <= last {
			t.Fatalf("message %d from A to bob on B: %+v, %v; want delivered in %s past %d", i, d, err, epochB, last)
		}
		last = d.Seq
		acked = append(acked, d.Seq)
	}
	// A resend is a duplicate on the sender's node, and on the node that
	// delivered it: alice, now on B too, resends there.
	if d, err := dm(a.hub, alice, "bob", "hi 4", "m4"); err != nil || !d.Duplicate || d.Seq != last {
		t.Fatalf("resend: %+v, %v", d, err)
	}
	aliceB := b.connect(t, "b9", "alice")
	if d, err := dm(b.hub, aliceB, "bob", "hi 3", "m3"); err != nil || !d.Duplicate || d.Seq != acked[3] || d.Epoch != epochB {
		t.Fatalf("resend through B: %+v, %v; want the duplicate of seq %d", d, err, acked[3])
	}
	got := bob.dms(t)
	if len(got) != 6 {
		t.Fatalf("bob got %+v, want 6 messages", got)
	}
	for i, g := range got[1:] {
		if g.Text != fmt.Sprintf("hi %d", i) || g.Epoch != epochB || g.Seq <= got[i].Seq {
			t.Fatalf("bob's message %d: %+v after %+v", i+1, g, got[i])
		}
	}

	// bob on both nodes: each connection gets it once, the one on A
	// numbered by A.
	bobA := a.connect(t, "a2", "bob")
	d, err := dm(a.hub, alice, "bob", "both", "")
	if err != nil || d.Queued || d.Delivered != 1 {
		t.Fatalf("to bob on both nodes: %+v, %v", d, err)
	}
	epochA := d.Epoch
	waitFor(t, "bob's copy on B", func() bool { return len(bob.dms(t)) == 7 })
	if g := bob.dms(t)[6]; g.Text != "both" || g.Epoch != epochB || g.Seq <= last {
		t.Fatalf("bob on B got %+v", g)
	}
	if g := bobA.dms(t); len(g) != 1 || g[0].Text != "both" || g[0].Epoch != epochA {
		t.Fatalf("bob on A got %+v", g)
	}
	if epochA == epochB {
		t.Fatal("both nodes have one epoch")
	}

	// carol is nowhere: the message waits on A; she connects to B and
	// gets it there, once, and A's store lets it go.
	q, err := dm(a.hub, alice, "carol", "waiting", "w1")
	if err != nil || !q.Queued || q.Epoch != epochA {
		t.Fatalf("to carol, connected nowhere: %+v, %v", q, err)
	}
	if n := a.letters(t); n != 1 {
		t.Fatalf("A keeps %d letters, want carol's", n)
	}
	carol := b.connect(t, "b3", "carol")
	waitFor(t, "carol's message on B", func() bool { return len(carol.dms(t)) > 0 })
	waitFor(t, "A's store to let carol's letter go", func() bool { return a.letters(t) == 0 })
	time.Sleep(100 * time.Millisecond) // nothing more comes
	if g := carol.dms(t); len(g) != 1 || g[0].Text != "waiting" || g[0].Epoch != epochB {
		t.Fatalf("carol got %+v, want the waiting message once, in B's epoch", g)
	}

	// A restarts with a letter for dave: same epoch, the letter kept, and
	// handed over when dave connects to B.
	if _, err := dm(a.hub, alice, "dave", "kept", ""); err != nil {
		t.Fatal(err)
	}
	a.stop()
	a = startDMHub(t, emb, "a", rooms.Config{})
	if n := a.letters(t); n != 1 {
		t.Fatalf("A keeps %d letters after its restart, want dave's", n)
	}
	alice = a.connect(t, "a3", "alice")
	d, err = dm(a.hub, alice, "erin", "later", "")
	if err != nil || !d.Queued || d.Epoch != epochA {
		t.Fatalf("after A's restart: %+v, %v; want queued in A's epoch %s", d, err, epochA)
	}
	dave := b.connect(t, "b4", "dave")
	waitFor(t, "dave's message on B", func() bool { return len(dave.dms(t)) == 1 })
	if g := dave.dms(t)[0]; g.Text != "kept" || g.Epoch != epochB {
		t.Fatalf("dave got %+v", g)
	}
	waitFor(t, "A's store to let dave's letter go", func() bool { return a.letters(t) == 1 })
}

// A node named for the first time on a NATS where ferry kept direct
// messages in the single-node layout takes that layout over: its epoch
// goes on and its letters are the node's; a second node does not get them.
func TestMailNodeAdoptsSingleLayout(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	old, err := NewMailboxes(context.Background(), emb.Conn(), MailConfig{})
	if err != nil {
		t.Fatal(err)
	}
	h := rooms.New(rooms.Config{Mailboxes: old})
	if err := h.LoadMailboxes(context.Background()); err != nil {
		t.Fatal(err)
	}
	alice := &member{conn: "a1", user: "alice"}
	h.Register(alice)
	first, err := dm(h, alice, "bob", "before", "")
	if err != nil || !first.Queued {
		t.Fatalf("%+v, %v", first, err)
	}

	// b starts first: it adopts the layout, a does not.
	b := startDMHub(t, emb, "b", rooms.Config{})
	a := startDMHub(t, emb, "a", rooms.Config{})
	other := a.connect(t, "a1", "olga")
	if d, err := dm(a.hub, other, "zed", "elsewhere", ""); err != nil || !d.Queued || d.Epoch == first.Epoch {
		t.Fatalf("on the node that did not adopt: %+v, %v; want its own epoch", d, err)
	}
	bob := b.connect(t, "b1", "bob")
	if g := bob.dms(t); len(g) != 1 || g[0].Text != "before" || g[0].Epoch != first.Epoch || g[0].Seq != first.Seq {
		t.Fatalf("bob on the adopting node got %+v, want %+v", g, first)
	}
	sender := b.connect(t, "b2", "alice")
	d, err := dm(b.hub, sender, "carol", "after", "")
	if err != nil || d.Epoch != first.Epoch || d.Seq <= first.Seq {
		t.Fatalf("after the adoption: %+v, %v; want %s past %d", d, err, first.Epoch, first.Seq)
	}
	// The letter goes once delivered, from the single-node subject too.
	waitFor(t, "the single-node letter to go", func() bool {
		return lettersOn(t, b.mail, DefaultMailSubjectPrefix+".*") == 0
	})
}

// A node that has the user but does not answer (stalled) makes the emit
// fail with storage_unavailable within JournalTimeout; nothing waits on
// the sender's node, so the client's resend is the only copy.
func TestDirectMessageToStalledNode(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(t, emb) })
	a := startDMHub(t, emb, "a", rooms.Config{JournalTimeout: 200 * time.Millisecond})
	stalled, err := emb.Conn().Subscribe(DefaultRouteSubjectPrefix+".user.bob", func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stalled.Unsubscribe() }()
	if err := emb.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	alice := a.connect(t, "a1", "alice")
	start := time.Now()
	d, err := dm(a.hub, alice, "bob", "hello", "m1")
	if !errors.Is(err, &protocol.Error{Code: protocol.CodeStorageUnavailable}) {
		t.Fatalf("%+v, %v; want storage_unavailable", d, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
	if n := a.letters(t); n != 0 {
		t.Fatalf("A keeps %d letters", n)
	}
	// The resend, once the stalled node is gone, waits on A.
	_ = stalled.Unsubscribe()
	if err := emb.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if d, err := dm(a.hub, alice, "bob", "hello", "m1"); err != nil || !d.Queued || d.Duplicate {
		t.Fatalf("resend: %+v, %v; want queued", d, err)
	}
}
