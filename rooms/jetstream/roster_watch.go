package jetstream

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// watch follows the bucket and keeps what the other nodes wrote: their
// figures, and when each was last heard of. One goroutine (run) owns it.
type watch struct {
	r    *Roster
	sink PresenceSink

	seen    map[string]time.Time        // node → when its heartbeat was last seen
	gone    map[string]bool             // nodes past Timeout: their figures left the hub
	entries map[string]map[string]entry // node → key → figure
	n       int                         // figures in entries
	// cleaned is when this node last asked for a gone node's keys to be
	// purged, so it asks once while the purge goes on.
	cleaned map[string]time.Time
	clean   chan []string
	full    bool // a figure was refused for MaxEntries (logged once)
}

func newWatch(r *Roster, sink PresenceSink) *watch {
	return &watch{r: r, sink: sink, seen: make(map[string]time.Time), gone: make(map[string]bool),
		entries: make(map[string]map[string]entry), cleaned: make(map[string]time.Time),
		clean: make(chan []string, 1)}
}

// run watches the bucket until ctx ends, watching again a second after
// the watch fails.
func (w *watch) run(ctx context.Context) {
	for {
		kw, err := w.r.kv.WatchAll(ctx)
		if err == nil {
			w.follow(ctx, kw)
			_ = kw.Stop()
		} else if ctx.Err() == nil {
			w.r.cfg.Log.Warn("presence: watch the other nodes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// follow applies kw's initial values once they are all in (a watch
// started again drops what is no longer there), then each update, and
// checks the nodes' heartbeats every Heartbeat/2.
func (w *watch) follow(ctx context.Context, kw jetstream.KeyWatcher) {
	t := time.NewTicker(w.r.cfg.Heartbeat / 2)
	defer t.Stop()
	initial := make(map[string]bool) // keys in the initial values
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if initial == nil {
				w.check(time.Now())
			}
		case e, ok := <-kw.Updates():
			switch {
			case !ok:
				return
			case e == nil && initial != nil:
				w.settle(initial)
				initial = nil
			case e != nil:
				if initial != nil {
					initial[e.Key()] = true
				}
				w.update(e, initial != nil)
			}
		}
	}
}

// settle drops the figures that were not in a new watch's initial values,
// then applies the live nodes'.
func (w *watch) settle(initial map[string]bool) {
	for node, keys := range w.entries {
		for k, e := range keys {
			if !initial[k] {
				w.drop(node, k, e)
			}
		}
	}
	w.check(time.Now())
	for node, keys := range w.entries {
		if !w.gone[node] {
			for _, e := range keys {
				w.sink.ApplyPresence(node, e.Room, e.User, e.Name, e.Conns)
			}
		}
	}
}

// update takes in one key's change; while loading, figures are kept, not
// applied yet.
func (w *watch) update(e jetstream.KeyValueEntry, loading bool) {
	kind, node, ok := parseKey(e.Key())
	if !ok {
		return
	}
	del := e.Operation() != jetstream.KeyValuePut
	if node == w.r.cfg.Node {
		if kind == "n" && del && !loading {
			// Another node took this one for gone and purged its keys.
			w.r.cfg.Log.Warn("presence: this node's keys were purged by another; writing them again")
			w.r.mu.Lock()
			w.r.resync = true
			w.r.mu.Unlock()
			w.r.wake()
		}
		return
	}
	if kind == "n" {
		w.heartbeat(node, e, del, loading)
		return
	}
	old, had := w.entries[node][e.Key()]
	if del {
		if had {
			w.drop(node, e.Key(), old)
		}
		return
	}
	var v entry
	if json.Unmarshal(e.Value(), &v) != nil || v.Conns <= 0 || v.Conns > 1<<20 ||
		v.User == "" || entryKey(node, v.Room, v.User) != e.Key() {
		return // not a figure of ours
	}
	if !had {
		_, known := w.seen[node]
		if w.n >= w.r.cfg.MaxEntries || (!known && len(w.seen) >= w.r.cfg.MaxEntries) {
			if !w.full {
				w.r.cfg.Log.Warn("presence: too many figures from other nodes; ignoring more", "max", w.r.cfg.MaxEntries)
				w.full = true
			}
			return
		}
		if w.entries[node] == nil {
			w.entries[node] = make(map[string]entry)
		}
		w.n++
		if !known {
			// A figure before any heartbeat: the node has Timeout to show one.
			w.seen[node] = time.Now()
		}
	}
	w.entries[node][e.Key()] = v
	if !loading && !w.gone[node] {
		w.sink.ApplyPresence(node, v.Room, v.User, v.Name, v.Conns)
	}
}

// heartbeat notes a node's heartbeat, or its purge; check acts on it.
func (w *watch) heartbeat(node string, e jetstream.KeyValueEntry, del, loading bool) {
	if del {
		if len(w.entries[node]) == 0 {
			delete(w.seen, node)
			delete(w.gone, node)
			delete(w.cleaned, node)
		} else {
			w.seen[node] = time.Time{} // gone at the next check
		}
		return
	}
	if _, known := w.seen[node]; !known && len(w.seen) >= w.r.cfg.MaxEntries {
		return
	}
	at := time.Now()
	if loading && e.Created().Before(at) {
		// An old heartbeat in the bucket: its node may be long dead.
		at = e.Created()
	}
	w.seen[node] = at
}

// drop forgets a figure, and takes it out of the hub if it was applied.
func (w *watch) drop(node, key string, e entry) {
	delete(w.entries[node], key)
	if len(w.entries[node]) == 0 {
		delete(w.entries, node)
	}
	w.n--
	if !w.gone[node] {
		w.sink.ApplyPresence(node, e.Room, e.User, e.Name, 0)
	}
}

// check takes the figures of nodes not heard of for Timeout out of the
// hub, and applies again those of nodes heard of again; the live node with
// the smallest name purges the gone ones' keys.
func (w *watch) check(now time.Time) {
	live := []string{w.r.cfg.Node}
	var dead []string
	for node, at := range w.seen {
		if now.Sub(at) <= w.r.cfg.Timeout {
			live = append(live, node)
			if w.gone[node] {
				delete(w.gone, node)
				for _, e := range w.entries[node] {
					w.sink.ApplyPresence(node, e.Room, e.User, e.Name, e.Conns)
				}
			}
			continue
		}
		dead = append(dead, node)
		if w.gone[node] {
			continue
		}
		w.gone[node] = true
		for _, e := range w.entries[node] {
			w.sink.ApplyPresence(node, e.Room, e.User, e.Name, 0)
		}
	}
	if slices.Min(live) != w.r.cfg.Node {
		return
	}
	for _, node := range dead {
		if now.Sub(w.cleaned[node]) < 5*w.r.cfg.Timeout {
			continue
		}
		keys := make([]string, 0, len(w.entries[node])+1)
		for k := range w.entries[node] {
			keys = append(keys, k)
		}
		keys = append(keys, "n."+node) // last: the figures go first
		select {
		case w.clean <- keys:
			w.cleaned[node] = now
		default: // a purge is going on; the next check asks again
		}
	}
}

// cleanLoop purges the keys check hands it, until ctx ends.
func (w *watch) cleanLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case keys := <-w.clean:
			figures := make(map[string]entry, len(keys))
			for _, k := range keys[:len(keys)-1] {
				figures[k] = entry{}
			}
			_, err := w.r.write(ctx, figures)
			if err == nil {
				err = w.r.purge(ctx, keys[len(keys)-1])
			}
			if err != nil && ctx.Err() == nil {
				w.r.cfg.Log.Warn("presence: purge a gone node's keys", "err", err)
			}
		}
	}
}

// parseKey splits n.<node> and p.<node>.<hash>.
func parseKey(key string) (kind, node string, ok bool) {
	parts := strings.Split(key, ".")
	switch {
	case len(parts) == 2 && parts[0] == "n" && parts[1] != "":
		return "n", parts[1], true
	case len(parts) == 3 && parts[0] == "p" && parts[1] != "" && parts[2] != "":
		return "p", parts[1], true
	}
	return "", "", false
}
