package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
)

func runListen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f connFlags
	fs := newFlagSet("listen", "listen --room ROOM [--out DIR] [--state FILE] [flags]", stderr)
	f.register(fs)
	out := fs.String("out", "", "download every file announced in the room into this folder (checked against its SHA-256)")
	statePath := fs.String("state", "", "keep the room's position in this file, and resume from it: a later run with the same file gets what was missed meanwhile")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.room == "" {
		return errors.New("listen: --room is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("listen: unexpected arguments %q", fs.Args())
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return fmt.Errorf("listen: --out: %w", err)
		}
	}
	var state *listenState
	if *statePath != "" {
		var err error
		if state, err = loadState(*statePath); err != nil {
			return fmt.Errorf("listen: --state: %w", err)
		}
	}
	// Status lines come from the client's goroutines and from this one.
	stderr = &lockedWriter{w: stderr}

	cfg, err := f.config(stderr)
	if err != nil {
		return err
	}
	c, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer closeClient(c)
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	l := &listener{room: f.room, out: stdout, status: stderr, c: c, fail: stop, ctx: ctx, dir: *out, state: state}
	l.register()
	if err := c.Connect(ctx); err != nil {
		return err
	}
	if pos, ok := state.position(f.room); ok {
		fmt.Fprintf(stderr, "ferry: resuming room %q after event %d\n", f.room, pos.Seq)
		if _, err := c.JoinFrom(ctx, f.room, pos); err != nil {
			return joinFailed(f.room, err, c.Limits())
		}
	} else if _, err := c.Join(ctx, f.room); err != nil {
		return joinFailed(f.room, err, c.Limits())
	}
	fmt.Fprintf(stderr, "ferry: listening to room %q as %s (user %s); interrupt to stop\n", f.room, c.Name(), c.User())

	select {
	case <-ctx.Done():
		if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
			return err // stdout or the state file went away
		}
		return nil
	case <-c.Done():
		return fmt.Errorf("listen: %w", told(c.Err(), c.Limits()))
	}
}

// recoveryString says how a catch-up went.
func recoveryString(j protocol.Joined) string {
	switch j.Recovery {
	case "ok":
		return plural(j.Replayed, "missed event") + " replayed"
	case "history":
		return "some missed events are gone; " + plural(j.Replayed, "event") + " still kept replayed"
	case "epoch":
		return "the room's history was lost (server restart?); " + plural(j.Replayed, "event") + " kept replayed"
	}
	return "joined"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// listener prints a room's frames as JSON lines, downloads its files, keeps
// its position and reports the connection's ups and downs. Its methods run
// on the client's handler goroutine, one at a time, in the order the frames
// came.
type listener struct {
	room   string
	out    io.Writer
	status io.Writer
	c      *client.Client
	fail   context.CancelCauseFunc
	ctx    context.Context
	dir    string       // where files go; "" for nowhere
	state  *listenState // nil without --state
}

func (l *listener) register() {
	l.c.OnAny(func(e client.Event) {
		if e.Room != l.room {
			return
		}
		l.print(e.Raw)
		if e.Name == client.FileEvent && l.dir != "" {
			if !l.download(e) {
				return // stopping: the next run fetches it again
			}
		}
		l.save(e.Position())
	})
	l.c.OnGap(func(g protocol.Gap) {
		if g.Room != l.room {
			return
		}
		if raw, err := json.Marshal(g); err == nil {
			l.print(raw)
		}
		if g.Reason == "history" {
			fmt.Fprintf(l.status, "ferry: events %d to %d of room %q are gone: the server no longer keeps them\n", g.From, g.To, g.Room)
		} else {
			fmt.Fprintf(l.status, "ferry: the history of room %q was lost (server restart?); events missed meanwhile are gone\n", g.Room)
		}
		l.savePosition()
	})
	l.c.OnJoined(func(j protocol.Joined) {
		if j.Room != l.room {
			return
		}
		if j.Recovery != "" {
			fmt.Fprintf(l.status, "ferry: caught up on room %q: %s\n", j.Room, recoveryString(j))
		}
		l.savePosition()
	})
	l.c.OnPresence(func(p client.Presence) {
		if p.Room == l.room {
			l.print(p.Raw)
		}
	})
	l.c.OnLifecycle(client.LifecycleDisconnect, func(e client.Lifecycle) {
		if e.Reason != client.ReasonClientClose {
			fmt.Fprintf(l.status, "ferry: disconnected (%s: %v)\n", e.Reason, e.Err)
		}
	})
	l.c.OnLifecycle(client.LifecycleConnectError, func(e client.Lifecycle) {
		fmt.Fprintf(l.status, "ferry: reconnection attempt %d failed: %v\n", e.Attempt, e.Err)
	})
	l.c.OnLifecycle(client.LifecycleReconnect, func(e client.Lifecycle) {
		fmt.Fprintf(l.status, "ferry: reconnected as connection %s; listening to room %q again\n", l.c.ID(), l.room)
	})
	l.c.OnLifecycle(client.LifecycleReconnectFailed, func(e client.Lifecycle) {
		fmt.Fprintf(l.status, "ferry: giving up: %v\n", e.Err)
	})
}

// print writes one frame as one line. The frame is compacted: data a sender
// formatted over several lines must not split it.
func (l *listener) print(raw json.RawMessage) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		b.Reset()
		b.Write(raw)
	}
	b.WriteByte('\n')
	if _, err := l.out.Write(b.Bytes()); err != nil {
		l.fail(fmt.Errorf("listen: writing to stdout: %w", err))
	}
}

// savePosition records where the client stands in the room.
func (l *listener) savePosition() {
	if pos, ok := l.c.Position(l.room); ok {
		l.save(pos)
	}
}

func (l *listener) save(pos protocol.Position) {
	if l.state == nil || pos.Epoch == "" {
		return
	}
	if err := l.state.save(l.room, pos); err != nil {
		l.fail(fmt.Errorf("listen: saving the position: %w", err))
	}
}

// download fetches the announced file into the output folder under a safe
// name, keeping it only if its bytes match the SHA-256 of the server's
// record. It reports false when listen is stopping.
func (l *listener) download(e client.Event) bool {
	var f client.File
	if err := e.Decode(&f); err != nil || f.ID == "" {
		fmt.Fprintf(l.status, "ferry: a file event without a file: %s\n", e.Data)
		return true
	}
	// Any member may emit an event named "file": the server's record of
	// the file, with a fresh link, is what counts.
	rec, err := l.c.FileLink(l.ctx, f.ID)
	if err == nil && (rec.SHA256 != f.SHA256 || rec.Size != f.Size) {
		err = fmt.Errorf("the announcement does not match the server's record of file %s", f.ID)
	}
	var path string
	start := time.Now()
	if err == nil {
		// The sender chose the name: on a terminal, only its safe form.
		bar := newDownloadProgress(l.status, safeName(rec.Name, rec.ID), rec.Size)
		path, err = saveFile(l.ctx, l.c, rec, l.dir, bar)
		bar.finish()
	}
	switch {
	case l.ctx.Err() != nil:
		return false
	case err != nil:
		fmt.Fprintf(l.status, "ferry: %s from %s not saved: %v\n", f.Name, f.UserName, told(err, l.c.Limits()))
	default:
		el := time.Since(start).Round(time.Millisecond)
		fmt.Fprintf(l.status, "ferry: saved %s (%s from %s) in %v\n", path, sizeString(rec.Size), rec.UserName, el)
	}
	return true
}

// saveFile downloads f into dir and returns the path it got, writing the
// bytes to bar too as they come. They go to a temporary file first,
// renamed once they are verified, so that a partial or corrupt file never
// bears the final name.
func saveFile(ctx context.Context, c *client.Client, f client.File, dir string, bar io.Writer) (string, error) {
	tmp, err := os.CreateTemp(dir, ".ferry-*.part")
	if err != nil {
		return "", err
	}
	_, err = c.Download(ctx, f, io.MultiWriter(tmp, bar))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	var path string
	if err == nil {
		path, err = claimName(dir, safeName(f.Name, f.ID))
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		if path != "" {
			_ = os.Remove(path)
		}
		return "", err
	}
	return path, nil
}

// maxNameBytes bounds a saved file's name, below every common file system's
// limit of 255 bytes, leaving room for a " (n)" suffix.
const maxNameBytes = 200

// safeName turns the name a sender chose into a plain file name: no folder
// (whatever the separator), no control or invisible characters, no leading
// dot, not "." or "..", not too long. When nothing is left: "file-<id>".
func safeName(name, id string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r):
			return -1
		case strings.ContainsRune(`<>:"|?*`, r):
			return '_' // not allowed in names on some systems
		}
		return r
	}, name)
	name = strings.TrimSpace(strings.TrimLeft(name, ". "))
	if len(name) > maxNameBytes {
		ext := filepath.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		stem := name[:maxNameBytes-len(ext)]
		for !utf8.ValidString(stem) {
			stem = stem[:len(stem)-1]
		}
		name = stem + ext
	}
	if name == "" {
		name = "file-" + strings.Map(func(r rune) rune {
			if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-') {
				return r
			}
			return -1
		}, id)
	}
	return name
}

// maxSuffix bounds the " (n)" suffixes tried for a name taken already.
const maxSuffix = 10000

// claimName creates an empty file named name in dir, or "stem (n).ext" when
// that exists, and returns its path. Creating it exclusively means no file
// is ever overwritten, nor a link followed.
func claimName(dir, name string) (string, error) {
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	if stem == "" {
		stem, ext = name, ""
	}
	for n := 0; n < maxSuffix; n++ {
		candidate := name
		if n > 0 {
			candidate = fmt.Sprintf("%s (%d)%s", stem, n, ext)
		}
		path := filepath.Join(dir, candidate)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		return path, f.Close()
	}
	return "", fmt.Errorf("%d files named like %s already", maxSuffix, name)
}

// listenState is the --state file: each room's position, written anew
// (to a temporary file renamed over it) after every event.
type listenState struct {
	path  string
	mu    sync.Mutex
	Rooms map[string]protocol.Position `json:"rooms"`
}

func loadState(path string) (*listenState, error) {
	s := &listenState{path: path, Rooms: make(map[string]protocol.Position)}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.Rooms == nil {
		s.Rooms = make(map[string]protocol.Position)
	}
	return s, nil
}

func (s *listenState) position(room string) (protocol.Position, bool) {
	if s == nil {
		return protocol.Position{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.Rooms[room]
	return p, ok && p.Epoch != ""
}

func (s *listenState) save(room string, pos protocol.Position) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Rooms[room] == pos {
		return nil
	}
	s.Rooms[room] = pos
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

// lockedWriter serializes writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
