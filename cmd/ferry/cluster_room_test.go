package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/internal/ferrytest"
	"github.com/ferryhq/ferry/protocol"
)

// errCut is a connection that dropped; the client comes back.
var errCut = errors.New("connection cut")

// comeback is a client written from docs/protocol.md that a flaky link
// keeps cutting: it reaches its node through a proxy of its own (which
// the test cuts, or moves to another node as a load balancer would), and
// comes back as the same user (the welcome's token) after every cut.
type comeback struct {
	proxy  *ferrytest.Proxy
	token  string
	user   string
	ws     *websocket.Conn
	frames chan map[string]any // the current connection's; closed when it fails
	id     uint64
	cuts   int
}

func newComeback(t *testing.T, node string) *comeback {
	return &comeback{proxy: ferrytest.NewProxy(t, node)}
}

// connect dials through the proxy and reads the welcome.
func (c *comeback) connect() error {
	if c.ws != nil {
		c.ws.Close()
		c.cuts++
	}
	c.ws = nil
	u := "ws://" + c.proxy.Addr + "/ws"
	if c.token != "" {
		u += "?token=" + url.QueryEscape(c.token)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(u, nil)
	if err != nil {
		return err
	}
	frames := make(chan map[string]any, 256)
	// The reader ends when the connection fails or is closed, and closes
	// frames.
	go func() {
		defer close(frames)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var f map[string]any
			if json.Unmarshal(b, &f) != nil {
				return
			}
			frames <- f
		}
	}()
	c.ws, c.frames = ws, frames
	f, err := c.next(10 * time.Second)
	if err != nil {
		return err
	}
	if f["t"] != protocol.TypeWelcome {
		return fmt.Errorf("first frame %v, want the welcome", f)
	}
	c.token, _ = f["token"].(string)
	c.user, _ = f["user"].(string)
	return nil
}

// next reads the current connection's next frame; errCut when it failed
// or sent nothing for wait.
func (c *comeback) next(wait time.Duration) (map[string]any, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return nil, errCut
		}
		return f, nil
	case <-time.After(wait):
		c.ws.Close()
		return nil, errCut
	}
}

// request sends req with a fresh id and hands every frame before its
// answer to seen. It returns the answer (an error frame included), or
// errCut.
func (c *comeback) request(req map[string]any, seen func(map[string]any) error) (map[string]any, error) {
	c.id++
	req["id"] = c.id
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := c.ws.WriteJSON(req); err != nil {
		return nil, errCut
	}
	for {
		f, err := c.next(20 * time.Second)
		if err != nil {
			return nil, err
		}
		if id, _ := f["id"].(float64); uint64(id) == c.id {
			return f, nil
		}
		if seen != nil {
			if err := seen(f); err != nil {
				return nil, err
			}
		}
	}
}

// retryable says whether an error frame asks to try again: the journal
// or the store busy for a moment (a node or a NATS leader changing).
func retryable(f map[string]any) bool {
	code, _ := f["code"].(string)
	return code == protocol.CodeStorageUnavailable || code == protocol.CodeBusy || code == protocol.CodeRateLimited
}

// receiver is one member's view of the room: the events it got, in
// order, checked as they come.
type receiver struct {
	*comeback
	epoch string
	last  uint64         // the last seq it got
	per   map[int]int    // sender → the last n it got from it
	msgs  map[string]int // msg_id → seq, for the check of no duplicates
}

// take checks one frame of the room: an event is the next seq of the
// epoch, and its sender's next one.
func (r *receiver) take(f map[string]any) error {
	switch f["t"] {
	case protocol.TypeGap:
		return fmt.Errorf("%s: gap %v after seq %d", r.user, f, r.last)
	case protocol.TypeEvent:
	default:
		return nil
	}
	if f["room"] != clusterRoom {
		return nil
	}
	epoch, _ := f["epoch"].(string)
	seq := uint64(f["seq"].(float64))
	if r.epoch == "" {
		r.epoch = epoch
	}
	if epoch != r.epoch || seq != r.last+1 {
		return fmt.Errorf("%s: event %s/%d after %s/%d", r.user, epoch, seq, r.epoch, r.last)
	}
	r.last = seq
	data, _ := f["data"].(map[string]any)
	s, n := int(data["s"].(float64)), int(data["n"].(float64))
	if n != r.per[s]+1 {
		return fmt.Errorf("%s: sender %d's event %d after its %d", r.user, s, n, r.per[s])
	}
	r.per[s] = n
	r.msgs[fmt.Sprintf("s%d-%d", s, n)] = int(seq)
	return nil
}

// rejoin joins the room from the receiver's last position: what it
// missed comes before the answer, which must say recovery ok.
func (r *receiver) rejoin() error {
	req := map[string]any{"t": "join", "room": clusterRoom}
	if r.epoch != "" {
		req["since"] = map[string]any{"epoch": r.epoch, "seq": r.last}
	}
	for {
		f, err := r.request(req, r.take)
		if err != nil {
			return err
		}
		if f["t"] == protocol.TypeError {
			if retryable(f) {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("%s: join answered %v", r.user, f)
		}
		d, _ := f["data"].(map[string]any)
		if r.epoch != "" && (d["recovery"] != "ok" || d["epoch"] != r.epoch) {
			return fmt.Errorf("%s: rejoin since %s/%d answered %v", r.user, r.epoch, r.last, d)
		}
		if r.epoch == "" {
			r.epoch, _ = d["epoch"].(string)
		}
		return nil
	}
}

const clusterRoom = "field"

// clusterEvents is how many events each sender sends:
// FERRY_CLUSTER_EVENTS, 2,500 by default.
func clusterEvents() int {
	if n, err := strconv.Atoi(os.Getenv("FERRY_CLUSTER_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 2500
}

// Three ferry nodes on a 3-node NATS cluster serve one room while its
// members' links drop: 4 senders send 2,500 events each with a msg_id,
// resending what was not acknowledged after every cut; 3 receivers, each
// first on a different node, come back after every cut with their last
// position. Midway one ferry node is killed with SIGKILL: its clients move
// to the others, as a load balancer would move them, and back once it is
// restarted. Every receiver gets all 10,000 events exactly once, in one
// order, each sender's in its order, and every sender's ack names the
// position its event has. Every node then lists the same members, paged,
// with the exact count; a direct message to a user on another node
// arrives once. Then a link signed by node 0 downloads from
// node 2, and a file uploaded through node 0, its connection moved to
// node 1 halfway, completes identical.
func TestClusterRoomUnderCuts(t *testing.T) {
	c := startFerryCluster(t, 3, "--part-size", "5MiB", "--big-part-size", "5MiB")
	perSender := clusterEvents()
	const senders, receivers = 4, 3
	total := senders * perSender

	var rs []*receiver
	for i := range receivers {
		r := &receiver{comeback: newComeback(t, c.nodes[i].addr), per: map[int]int{}, msgs: map[string]int{}}
		if err := r.connect(); err != nil {
			t.Fatal(err)
		}
		if err := r.rejoin(); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	var ss []*comeback
	for i := range senders {
		s := newComeback(t, c.nodes[i%len(c.nodes)].addr)
		ss = append(ss, s)
	}

	var (
		wg       sync.WaitGroup
		failed   = make(chan error, senders+receivers)
		sent     atomic.Int64
		acks     = make([]map[int]uint64, senders) // sender → n → acked seq
		finished = make(chan struct{})
	)
	for k, s := range ss {
		acks[k] = map[int]uint64{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sendEvents(s, k, perSender, acks[k], &sent); err != nil {
				failed <- err
			}
		}()
	}
	got := make([]atomic.Int64, receivers)
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := receiveEvents(r, total, &got[i]); err != nil {
				failed <- err
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	// The field: every 100-600 ms one client's link drops; once a third
	// of the events are sent, node 1 dies, its clients move to node 2, and
	// come back to node 1 when it has restarted.
	proxies := []*ferrytest.Proxy{}
	for _, r := range rs {
		proxies = append(proxies, r.proxy)
	}
	for _, s := range ss {
		proxies = append(proxies, s.proxy)
	}
	onNode1 := []*ferrytest.Proxy{rs[1].proxy, ss[1].proxy}
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	killed, back := false, false
	deadline := time.After(8 * time.Minute)
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	start := time.Now()
field:
	for {
		select {
		case <-allDone:
			break field
		case err := <-failed:
			close(finished)
			t.Fatal(err)
		case <-deadline:
			t.Fatalf("after 8 minutes: %d of %d events acknowledged, receivers at %d %d %d",
				sent.Load(), total, got[0].Load(), got[1].Load(), got[2].Load())
		case <-progress.C:
			t.Logf("%v: %d acknowledged, receivers at %d %d %d", time.Since(start).Round(time.Second),
				sent.Load(), got[0].Load(), got[1].Load(), got[2].Load())
		case <-time.After(time.Duration(100+rng.IntN(500)) * time.Millisecond):
			switch {
			case !killed && sent.Load() >= int64(total/3):
				killed = true
				c.kill(1)
				for _, p := range onNode1 {
					p.Retarget(c.nodes[2].addr)
					p.Cut()
				}
				t.Logf("node 1 killed at %d acknowledged", sent.Load())
			case killed && !back && sent.Load() >= int64(total/2):
				back = true
				c.restart(1)
				for _, p := range onNode1 {
					p.Retarget(c.nodes[1].addr)
					p.Cut()
				}
				t.Logf("node 1 back at %d acknowledged", sent.Load())
			default:
				proxies[rng.IntN(len(proxies))].Cut()
			}
		}
	}
	if !back {
		t.Fatalf("the events were all sent before node 1 came back (%d)", sent.Load())
	}
	cuts := 0
	for _, r := range rs {
		cuts += r.cuts
	}
	for _, s := range ss {
		cuts += s.cuts
	}
	t.Logf("%d events through 3 nodes in %v, %d connections cut and resumed", total, time.Since(start).Round(time.Millisecond), cuts)

	// Every ack names the event's position: the receivers saw each msg_id
	// at the seq its sender was told.
	for _, r := range rs {
		for k := range senders {
			for n, seq := range acks[k] {
				if got := r.msgs[fmt.Sprintf("s%d-%d", k, n)]; got != int(seq) {
					t.Fatalf("%s got s%d-%d at seq %d, acked at %d", r.user, k, n, got, seq)
				}
			}
		}
	}

	// Presence: every node lists the same members, exactly: the three
	// receivers and a checker per node (the senders have left).
	want := map[string]bool{}
	for _, r := range rs {
		want[r.user] = true
	}
	var checkers []*wire
	for i := range c.nodes {
		w := dialWire(t, c.nodes[i].addr, "")
		requestRetrying(t, w, map[string]any{"t": "join", "room": clusterRoom})
		checkers = append(checkers, w)
		want[w.user] = true
	}
	membersAgree(t, checkers, clusterRoom, want)

	// A direct message from a user on node 0 to one on node 2 arrives, once,
	// in node 2's user room; the sender's ack says delivered, not queued.
	to := checkers[2]
	_, ack := requestRetrying(t, checkers[0], map[string]any{"t": "emit", "user": to.user, "event": "dm",
		"data": map[string]any{"text": "across"}, "msg_id": "dm-1"})
	if ack["queued"] == true || ack["seq"] == nil {
		t.Fatalf("a direct message to a user on another node acked %v, want delivered", ack)
	}
	for {
		f := to.next()
		if f["t"] != protocol.TypeEvent || f["room"] != "user:"+to.user {
			continue
		}
		if d, _ := f["data"].(map[string]any); f["event"] != "dm" || d["text"] != "across" || f["seq"] != ack["seq"] || f["epoch"] != ack["epoch"] {
			t.Fatalf("%s got %v, want the direct message at %v/%v", to.user, f, ack["epoch"], ack["seq"])
		}
		break
	}
	// Sent again (its ack lost), it is a duplicate and not delivered twice.
	if _, again := requestRetrying(t, checkers[0], map[string]any{"t": "emit", "user": to.user, "event": "dm",
		"data": map[string]any{"text": "across"}, "msg_id": "dm-1"}); again["duplicate"] != true {
		t.Fatalf("the direct message resent acked %v, want a duplicate", again)
	}

	linkAndMovedUpload(t, c.nodes[0].addr, c.nodes[1].addr, c.nodes[2].addr)
}

// membersAgree waits until the members listing of room, asked through
// each of ws (one per node), is want on every node, with its exact count.
func membersAgree(t *testing.T, ws []*wire, room string, want map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i, w := range ws {
		for {
			got, count, _ := listMembers(w, room, 2)
			if fmt.Sprint(got) == fmt.Sprint(want) && count == len(want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d lists %d members %v, want %d: %v", i, count, got, len(want), want)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// listMembers pages through the members of room, limit per page, and
// returns the users listed and the room's numbers.
func listMembers(w *wire, room string, limit int) (users map[string]bool, count, conns int) {
	w.t.Helper()
	users = make(map[string]bool)
	for after := ""; ; {
		_, data := w.request(map[string]any{"t": "members", "room": room, "after": after, "limit": limit})
		count, conns = int(data["count"].(float64)), int(data["connections"].(float64))
		for _, m := range data["members"].([]any) {
			users[m.(map[string]any)["user"].(string)] = true
		}
		next, _ := data["next"].(string)
		if next == "" {
			return users, count, conns
		}
		after = next
	}
}

// sendEvents sends perSender events of sender k, each until acknowledged, with
// the same msg_id after a cut, and records each ack's seq.
func sendEvents(s *comeback, k, perSender int, acks map[int]uint64, sent *atomic.Int64) error {
	joined := false
	for n := 1; n <= perSender; {
		if !joined {
			if err := s.connect(); err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			f, err := s.request(map[string]any{"t": "join", "room": clusterRoom}, nil)
			if err != nil || f["t"] == protocol.TypeError {
				if err == nil && !retryable(f) {
					return fmt.Errorf("sender %d: join answered %v", k, f)
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			joined = true
		}
		f, err := s.request(map[string]any{"t": "emit", "room": clusterRoom, "event": "chat",
			"data": map[string]any{"s": k, "n": n}, "msg_id": fmt.Sprintf("s%d-%d", k, n)}, nil)
		if err != nil {
			joined = false
			continue
		}
		if f["t"] == protocol.TypeError {
			if !retryable(f) {
				return fmt.Errorf("sender %d: event %d answered %v", k, n, f)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		d, _ := f["data"].(map[string]any)
		acks[n] = uint64(d["seq"].(float64))
		sent.Add(1)
		n++
	}
	s.ws.Close()
	return nil
}

// receiveEvents reads r's room until it has total events, coming back after
// every cut.
func receiveEvents(r *receiver, total int, got *atomic.Int64) error {
	for r.last < uint64(total) {
		f, err := r.next(30 * time.Second)
		if err == nil {
			if err := r.take(f); err != nil {
				return err
			}
			got.Store(int64(r.last))
			continue
		}
		for {
			if err := r.connect(); err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err := r.rejoin(); err != nil {
				if errors.Is(err, errCut) {
					continue
				}
				return err
			}
			break
		}
	}
	return nil
}
