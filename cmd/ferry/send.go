package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
)

// connFlags are the flags send and listen share: which server, which room,
// and who is talking.
type connFlags struct {
	server string
	room   string
	name   string
	token  string
}

func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "ws://127.0.0.1:8080", "server URL (ws, wss, http or https)")
	fs.StringVar(&f.room, "room", "", "room to join (required)")
	fs.StringVar(&f.name, "name", "", "display name (default: the server picks one)")
	fs.StringVar(&f.token, "token", "", "token from 'ferry token', needed when the server runs with --auth-secret")
}

// config is the client configuration for these flags. Client diagnostics
// worth a person's attention go to stderr.
func (f *connFlags) config(stderr io.Writer) client.Config {
	return client.Config{
		URL:   f.server,
		Name:  f.name,
		Token: f.token,
		Log:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// sendRetryDelay is the wait before the one retry a text send allows itself.
const sendRetryDelay = time.Second

// textTimeout is how long a text send may take by default; uploads take as
// long as they need.
const textTimeout = 30 * time.Second

// uploadBackoff is how an upload reconnects: forever (within --timeout),
// since it resumes where it stopped.
var uploadBackoff = client.Backoff{Initial: 250 * time.Millisecond, Max: 5 * time.Second}

func runSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f connFlags
	fs := newFlagSet("send", "send --room ROOM (--text TEXT | FILE...) [flags]", stderr)
	f.register(fs)
	text := fs.String("text", "", "text to send as {\"text\": TEXT}")
	event := fs.String("event", "chat", "event name of the text")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: 30s for --text, no limit for files)")
	asJSON := fs.Bool("json", false, "print each stored file's record as one JSON line")
	b64 := fs.Bool("base64", false, "send file chunks as base64 in text frames instead of binary frames")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if f.room == "" {
		return errors.New("send: --room is required")
	}
	if *text == "" && len(files) == 0 {
		return errors.New("send: nothing to send: give --text or files")
	}
	if *timeout == 0 && len(files) == 0 {
		*timeout = textTimeout
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	uploads, err := openFiles(files)
	if err != nil {
		return err
	}
	defer func() {
		for _, u := range uploads {
			u.file.Close()
		}
	}()

	// The client's goroutines log here too.
	stderr = &lockedWriter{w: stderr}
	cfg := f.config(stderr)
	if len(uploads) > 0 {
		cfg.Reconnect = uploadBackoff
	} else {
		// One reconnection at most: enough to ride out a server restart,
		// and a text send is quick to give up on otherwise.
		cfg.Reconnect = client.Backoff{Initial: sendRetryDelay, Attempts: 1}
	}
	c, err := dialOnceMore(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeClient(c)
	if err := onceMore(ctx, stderr, func() error { _, err := c.Join(ctx, f.room); return err }); err != nil {
		return err
	}
	if len(uploads) > 0 {
		if err := sendFiles(ctx, c, f.room, uploads, sendOptions{json: *asJSON, base64: *b64}, stdout, stderr); err != nil {
			return err
		}
	}
	if *text != "" {
		// Emit sends again, under the same message id, when the connection
		// drops before the ack: the room gets the text once.
		if err := c.Emit(ctx, f.room, *event, map[string]string{"text": *text}); err != nil {
			return err
		}
	}
	return nil
}

// closeClient closes c and waits for its handlers, so that nothing writes
// to the command's output once it has returned.
func closeClient(c *client.Client) {
	_ = c.Close()
	<-c.Done()
}

// dialOnceMore dials, and dials again once after a failure that may pass
// (anything but a refused token or origin).
func dialOnceMore(ctx context.Context, cfg client.Config, stderr io.Writer) (*client.Client, error) {
	c, err := client.Dial(ctx, cfg)
	var he *client.HandshakeError
	if err == nil || ctx.Err() != nil || errors.As(err, &he) && he.StatusCode < http.StatusInternalServerError {
		return c, err
	}
	fmt.Fprintf(stderr, "ferry: %v; trying again in %v\n", err, sendRetryDelay)
	select {
	case <-time.After(sendRetryDelay):
	case <-ctx.Done():
		return nil, err
	}
	return client.Dial(ctx, cfg)
}

// onceMore runs fn, and again once when the connection dropped under it (the
// client reconnects and joins its rooms in between).
func onceMore(ctx context.Context, stderr io.Writer, fn func() error) error {
	err := fn()
	if !errors.Is(err, client.ErrConnectionLost) || ctx.Err() != nil {
		return err
	}
	fmt.Fprintf(stderr, "ferry: %v; trying again\n", err)
	return fn()
}

// fileUpload is one file named on the command line, open for reading.
type fileUpload struct {
	path string
	name string
	size int64
	file *os.File
}

// openFiles opens every file before anything is sent, so that a typo does
// not leave half the files sent.
func openFiles(paths []string) ([]fileUpload, error) {
	var ups []fileUpload
	for _, p := range paths {
		f, err := os.Open(p)
		if err == nil {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
				err = errors.New("not a regular file")
			}
			if err == nil {
				ups = append(ups, fileUpload{path: p, name: filepath.Base(p), size: fi.Size(), file: f})
				continue
			}
			f.Close()
		}
		for _, u := range ups {
			u.file.Close()
		}
		return nil, fmt.Errorf("send: %s: %w", p, err)
	}
	return ups, nil
}

type sendOptions struct {
	json   bool
	base64 bool
}

// sendFiles uploads files to room over c, one after the other, and reports
// each on stdout: a line, or the file's record as JSON. A file the server
// refuses does not stop the others; the error names every file not sent.
func sendFiles(ctx context.Context, c *client.Client, room string, files []fileUpload, o sendOptions, stdout, stderr io.Writer) error {
	var failed []error
	for _, u := range files {
		bar := newProgress(stderr, u.name, u.size)
		bar.note("computing the SHA-256")
		f, err := c.Upload(ctx, room, u.file, u.size, client.UploadOptions{
			Name:       u.name,
			Base64:     o.base64,
			OnProgress: bar.update,
			OnWait:     bar.wait,
		})
		bar.finish(err)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("send: %s: %w", u.path, err)
			}
			failed = append(failed, fmt.Errorf("%s: %w", u.path, err))
			continue
		}
		if o.json {
			if err := json.NewEncoder(stdout).Encode(f); err != nil {
				return fmt.Errorf("send: writing to stdout: %w", err)
			}
			continue
		}
		if _, err := fmt.Fprintf(stdout, "%s: stored as %s (%s, %s, sha256 %s)\n", u.path, f.ID, sizeString(f.Size), f.Type, f.SHA256); err != nil {
			return fmt.Errorf("send: writing to stdout: %w", err)
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		if len(files) == 1 {
			return failed[0]
		}
	}
	return fmt.Errorf("%d of %d files not sent: %w", len(failed), len(files), errors.Join(failed...))
}

// progress shows an upload's progress on stderr: a bar redrawn in place on
// a terminal, otherwise a line now and then.
type progress struct {
	w     io.Writer
	tty   bool
	name  string
	size  int64
	start time.Time
	last  time.Time // of the last line or redraw
	sent  int64
	done  int64
	drawn bool
}

// Progress redraw and print intervals.
const (
	ttyRedraw   = 100 * time.Millisecond
	plainReport = 2 * time.Second
)

func newProgress(w io.Writer, name string, size int64) *progress {
	return &progress{w: w, tty: isTerminal(w), name: name, size: size, start: time.Now()}
}

// isTerminal reports whether w is a terminal (a character device, such as
// a tty; /dev/null is one too, which does no harm) that can take a
// redrawn line.
func isTerminal(w io.Writer) bool {
	if lw, ok := w.(*lockedWriter); ok {
		w = lw.w
	}
	f, ok := w.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(sent, durable int64) {
	p.sent, p.done = sent, durable
	now := time.Now()
	switch {
	case p.tty && now.Sub(p.last) >= ttyRedraw:
		p.last = now
		p.drawn = true
		fmt.Fprintf(p.w, "\r\033[K%s", p.bar(now))
	case !p.tty && now.Sub(p.last) >= plainReport && durable < p.size:
		if p.last.IsZero() {
			p.last = now // nothing to say yet for the first two seconds
			return
		}
		p.last = now
		fmt.Fprintf(p.w, "ferry: %s: %s\n", p.name, p.counts(now))
	}
}

// note shows what happens before the upload starts, on a terminal.
func (p *progress) note(what string) {
	if p.tty {
		p.drawn = true
		fmt.Fprintf(p.w, "\r\033[K%s: %s", p.name, what)
	}
}

// wait reports why the upload pauses.
func (p *progress) wait(reason error) {
	p.clear()
	var perr *protocol.Error
	if errors.As(reason, &perr) {
		fmt.Fprintf(p.w, "ferry: %s: waiting: %s\n", p.name, perr.Message)
		return
	}
	fmt.Fprintf(p.w, "ferry: %s: connection lost; the upload resumes once reconnected\n", p.name)
}

func (p *progress) finish(err error) {
	p.clear()
	if err == nil {
		el := time.Since(p.start)
		fmt.Fprintf(p.w, "ferry: %s: sent %s in %v\n", p.name, sizeString(p.size), el.Round(time.Millisecond))
	}
}

func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
		p.last = time.Time{}
	}
}

func (p *progress) bar(now time.Time) string {
	const width = 30
	filled := width
	if p.size > 0 {
		filled = int(p.done * width / p.size)
	}
	return fmt.Sprintf("%s [%s%s] %s", p.name, strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.counts(now))
}

func (p *progress) counts(now time.Time) string {
	pct := 100.0
	if p.size > 0 {
		pct = float64(p.done) * 100 / float64(p.size)
	}
	rate := ""
	if el := now.Sub(p.start).Seconds(); el > 0.5 {
		rate = ", " + sizeString(int64(float64(p.sent)/el)) + "/s"
	}
	return fmt.Sprintf("%3.0f%% stored, %s of %s%s", pct, sizeString(p.done), sizeString(p.size), rate)
}

// sizeString formats a byte count for people.
func sizeString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
