package jetstream

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
)

// Defaults of RouteConfig.
const (
	DefaultRouteSubjectPrefix = "ferry.dm"
	DefaultRouteWorkers       = 4
	DefaultRouteQueue         = 1024
)

// RouteConfig configures a Router. Zero values mean the documented
// defaults.
type RouteConfig struct {
	// SubjectPrefix starts the router's core NATS subjects: <prefix>.user.<id>
	// for a user's direct messages, <prefix>.here for the announcements.
	// Default DefaultRouteSubjectPrefix.
	SubjectPrefix string
	// Workers is how many direct messages from other nodes are delivered
	// at once; one user's always by the same worker, in order. Default
	// DefaultRouteWorkers.
	Workers int
	// Queue is how many may wait per worker; past it NATS drops them (the
	// sender's request times out: storage_unavailable, and the client
	// resends). Default DefaultRouteQueue.
	Queue int
	// Log receives the router's diagnostics. Default: discard.
	Log *slog.Logger
}

func (c *RouteConfig) applyDefaults() {
	if c.SubjectPrefix == "" {
		c.SubjectPrefix = DefaultRouteSubjectPrefix
	}
	if c.Workers <= 0 {
		c.Workers = DefaultRouteWorkers
	}
	if c.Queue <= 0 {
		c.Queue = DefaultRouteQueue
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// hdrNode names the router that published a copy, which ignores its own.
const hdrNode = "Ferry-Node"

// Router carries direct messages between the ferry nodes on one NATS, over
// core NATS (nothing is stored: what waits for a user is the Mailboxes').
// A node subscribes to a user's subject while it has connections of the
// user, so that a request to it reaches exactly the nodes that have the
// user, and NATS answers "no responders" when none has. Subscriptions are
// one per user connected to the node.
type Router struct {
	cfg RouteConfig
	nc  *nats.Conn
	id  string
	in  []chan *nats.Msg // per worker

	mu   sync.Mutex
	subs map[string]*nats.Subscription // by user
}

var _ rooms.Router = (*Router)(nil)

// NewRouter returns a Router over nc. Messages for the node's users wait
// (Queue per worker) until Run delivers them.
func NewRouter(nc *nats.Conn, cfg RouteConfig) *Router {
	cfg.applyDefaults()
	r := &Router{cfg: cfg, nc: nc, id: rand.Text(), subs: make(map[string]*nats.Subscription)}
	for range cfg.Workers {
		r.in = append(r.in, make(chan *nats.Msg, cfg.Queue))
	}
	return r
}

// Receiver is the hub as a Router serves it.
type Receiver interface {
	Receive(user string, frame []byte, queue bool) (protocol.Delivered, error)
	HandOver(user string)
}

var _ Receiver = (*rooms.Hub)(nil)

// Run hands hub the direct messages other nodes send its users and the
// announcements of users connecting elsewhere, until ctx ends.
func (r *Router) Run(ctx context.Context, hub Receiver) error {
	here, err := r.nc.Subscribe(r.cfg.SubjectPrefix+".here", func(m *nats.Msg) {
		hub.HandOver(string(m.Data))
	})
	if err != nil {
		return fmt.Errorf("jetstream: route direct messages: %w", err)
	}
	var wg sync.WaitGroup
	for _, in := range r.in {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case m := <-in:
					r.receive(hub, m)
				}
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	_ = here.Unsubscribe()
	return ctx.Err()
}

// answer is a reply to a Send.
type answer struct {
	Ack     *protocol.Delivered `json:"ack,omitempty"`
	Code    string              `json:"code,omitempty"`
	Message string              `json:"message,omitempty"`
}

func (r *Router) receive(hub Receiver, m *nats.Msg) {
	user := m.Header.Get(hdrTo)
	if m.Reply == "" {
		if m.Header.Get(hdrNode) != r.id {
			_, _ = hub.Receive(user, m.Data, false)
		}
		return
	}
	var a answer
	d, err := hub.Receive(user, m.Data, true)
	var perr *protocol.Error
	switch {
	case err == nil:
		a.Ack = &d
	case errors.As(err, &perr):
		a.Code, a.Message = perr.Code, perr.Message
	default:
		a.Code, a.Message = protocol.CodeInternal, err.Error()
	}
	b, _ := json.Marshal(a)
	if err := m.Respond(b); err != nil {
		r.cfg.Log.Debug("jetstream: answer a routed direct message", "user", user, "err", err)
	}
}

// Online subscribes to user's direct messages and announces user to the
// other nodes. Publishing after subscribing on one connection, the
// subscription is in place before any node hears of the announcement.
// Neither waits for NATS: the client buffers both (and, disconnected,
// sends them once it is back, subscriptions first); it writes to the
// socket inline only when its 32 KiB buffer is full, as every NATS write
// of the node does.
func (r *Router) Online(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.subs[user] != nil {
		return
	}
	sub, err := r.nc.ChanSubscribe(r.userSubject(user), r.in[r.worker(user)])
	if err != nil {
		r.cfg.Log.Warn("jetstream: take the direct messages of a user", "user", user, "err", err)
		return
	}
	r.subs[user] = sub
	if err := r.nc.Publish(r.cfg.SubjectPrefix+".here", []byte(user)); err != nil {
		r.cfg.Log.Warn("jetstream: announce a user", "user", user, "err", err)
	}
}

// Offline ends the subscription Online made.
func (r *Router) Offline(user string) {
	r.mu.Lock()
	sub := r.subs[user]
	delete(r.subs, user)
	r.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}

// Send makes frame a request to the nodes that have user.
func (r *Router) Send(ctx context.Context, user string, frame []byte) (protocol.Delivered, error) {
	msg := &nats.Msg{Subject: r.userSubject(user), Data: frame, Header: nats.Header{hdrTo: {user}, hdrNode: {r.id}}}
	reply, err := r.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return protocol.Delivered{}, rooms.ErrNoRoute
	}
	if err != nil {
		return protocol.Delivered{}, fmt.Errorf("jetstream: route a direct message to %s: %w", user, err)
	}
	var a answer
	if err := json.Unmarshal(reply.Data, &a); err != nil {
		return protocol.Delivered{}, fmt.Errorf("jetstream: the answer for a direct message to %s: %w", user, err)
	}
	if a.Ack == nil {
		return protocol.Delivered{}, protocol.Errorf(a.Code, "%s", a.Message)
	}
	return *a.Ack, nil
}

// Publish sends frame to the nodes that have user, which ignore the copy
// if they no longer do.
func (r *Router) Publish(user string, frame []byte) {
	msg := &nats.Msg{Subject: r.userSubject(user), Data: frame, Header: nats.Header{hdrTo: {user}, hdrNode: {r.id}}}
	if err := r.nc.PublishMsg(msg); err != nil {
		r.cfg.Log.Warn("jetstream: copy a direct message to other nodes", "user", user, "err", err)
	}
}

func (r *Router) userSubject(user string) string {
	// User ids are printable ASCII: the rooms' encoding makes them one
	// token.
	return r.cfg.SubjectPrefix + ".user." + encodeRoom(user)
}

// worker picks user's worker, so that one user's messages keep their
// order.
func (r *Router) worker(user string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(user))
	return int(h.Sum32() % uint32(len(r.in)))
}
