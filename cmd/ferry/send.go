package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/ferryhq/ferry/client"
)

// connFlags are the flags send and listen share: which server, which room,
// and who is talking.
type connFlags struct {
	server string
	room   string
	name   string
	token  string
	caFile string
}

func (f *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "ws://127.0.0.1:8080", "server URL (ws, wss, http or https)")
	fs.StringVar(&f.room, "room", "", "room to join (required)")
	fs.StringVar(&f.name, "name", "", "display name (default: the server picks one)")
	fs.StringVar(&f.token, "token", "", "token from 'ferry token', needed when the server runs with --auth-secret")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM certificates to trust for wss:// and https:// besides the system's (a private authority or a self-signed server)")
}

// config is the client configuration for these flags. Client diagnostics
// worth a person's attention go to stderr.
func (f *connFlags) config(stderr io.Writer) (client.Config, error) {
	tc, err := clientTLS(f.caFile)
	return client.Config{
		URL:   f.server,
		Name:  f.name,
		Token: f.token,
		TLS:   tc,
		Log:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}, err
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
	checksum := fs.String("checksum", client.ChecksumCRC32C, "what the server checks the file against, computed while sending: crc32c (as S3 clients check uploads) or sha256 (five times the CPU; the SHA-256 the file is known by is then checked here too)")
	resume := fs.Bool("resume", true, "remember unfinished uploads (interrupted, killed, cut off) so that the same command run again resumes them")
	cacheDir := fs.String("cache-dir", "", "folder where unfinished uploads are remembered (default: ferry in the user's cache folder)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if *checksum != client.ChecksumCRC32C && *checksum != client.ChecksumSHA256 {
		return fmt.Errorf("send: --checksum %q is neither %s nor %s", *checksum, client.ChecksumCRC32C, client.ChecksumSHA256)
	}
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
	uploads, err := openFiles(files, f.server, f.room)
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
	cfg, err := f.config(stderr)
	if err != nil {
		return err
	}
	var state *resumeState
	if *resume && len(uploads) > 0 {
		state = openResumeState(*cacheDir)
		if cfg.Token == "" {
			// Uploads belong to users: resuming one takes the anonymous
			// user that started it.
			cfg.Token = state.token(uploads)
		}
	}
	if len(uploads) > 0 {
		cfg.Reconnect = uploadBackoff
	} else {
		// One reconnection at most: enough to ride out a server restart,
		// and a text send is quick to give up on otherwise.
		cfg.Reconnect = client.Backoff{Initial: sendRetryDelay, Attempts: 1}
	}
	c, err := dialOnceMore(ctx, cfg, stderr)
	if err != nil {
		return interruptedOr(ctx, err)
	}
	defer closeClient(c)
	if err := onceMore(ctx, stderr, func() error { _, err := c.Join(ctx, f.room); return err }); err != nil {
		return interruptedOr(ctx, joinFailed(f.room, err, c.Limits()))
	}
	if len(uploads) > 0 {
		o := sendOptions{json: *asJSON, base64: *b64, checksum: *checksum, state: state, ownToken: f.token != "", start: time.Now()}
		if len(uploads) > 1 {
			o.batch = batchOf(uploads)
		}
		if err := sendFiles(ctx, c, f.room, uploads, o, stdout, stderr); err != nil {
			return err
		}
	}
	if *text != "" {
		// Emit sends again, under the same message id, when the connection
		// drops before the ack: the room gets the text once.
		if err := c.Emit(ctx, f.room, *event, map[string]string{"text": *text}); err != nil {
			return interruptedOr(ctx, told(err, c.Limits()))
		}
		fmt.Fprintf(stderr, "ferry: sent to %s\n", f.room)
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
	if err == nil || ctx.Err() != nil || errors.Is(err, client.ErrBadURL) || errors.As(err, &he) && he.StatusCode < http.StatusInternalServerError {
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
