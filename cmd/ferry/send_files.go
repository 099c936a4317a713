package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/protocol"
)

// fileUpload is one file named on the command line, open for reading.
type fileUpload struct {
	path string
	name string
	size int64
	file *os.File
	key  resumeKey
}

// openFiles opens every file before anything is sent, so that a typo does
// not leave half the files sent.
func openFiles(paths []string, server, room string) ([]fileUpload, error) {
	var ups []fileUpload
	for _, p := range paths {
		f, err := os.Open(p)
		if err == nil {
			var fi os.FileInfo
			if fi, err = f.Stat(); err == nil && !fi.Mode().IsRegular() {
				err = errors.New("not a regular file")
				if fi.IsDir() {
					err = errors.New("is a folder: name the files in it")
				}
			}
			var key resumeKey
			if err == nil {
				key, err = fileKey(server, room, p, fi)
			}
			if err == nil {
				ups = append(ups, fileUpload{path: p, name: filepath.Base(p), size: fi.Size(), file: f, key: key})
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
	json     bool
	base64   bool
	checksum string // UploadOptions.Checksum
	// state remembers unfinished uploads; nil when resuming is off.
	state *resumeState
	// ownToken: the sender gave a token, so the state need not keep the
	// anonymous one the server handed out.
	ownToken bool
	// batch names this command when it sends several files (batchOf), so
	// that running it again after a stop skips the files already stored.
	batch string
	// start is when this run began.
	start time.Time
}

// sendFiles uploads files to room over c, one after the other, and reports
// each stored file once, on stdout: a line with the time it took, or the
// file's record as JSON. A file the server refuses does not stop the
// others; the error names every file not sent.
func sendFiles(ctx context.Context, c *client.Client, room string, files []fileUpload, o sendOptions, stdout, stderr io.Writer) error {
	var failed []error
	through := true // every file stored or refused: none left to resume
	for _, u := range files {
		start := time.Now()
		f, earlier, err := sendFile(ctx, c, room, u, o, stderr)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			var perr *protocol.Error
			through = through && errors.As(err, &perr) && perr.Code != protocol.CodeStorageUnavailable
			failed = append(failed, fmt.Errorf("%s: %w", u.path, err))
			continue
		}
		if o.json {
			// The link as one can open it, not relative to the server.
			if abs, err := c.FileURL(f); err == nil {
				f.URL = abs
			}
			if err := json.NewEncoder(stdout).Encode(f); err != nil {
				return fmt.Errorf("send: writing to stdout: %w", err)
			}
			continue
		}
		when := "in " + time.Since(start).Round(time.Millisecond).String()
		if earlier {
			when = "by the run that was stopped"
		}
		if _, err := fmt.Fprintf(stdout, "%s: stored as %s (%s, %s, sha256 %s) %s\n", u.path, f.ID, sizeString(f.Size), f.Type, f.SHA256, when); err != nil {
			return fmt.Errorf("send: writing to stdout: %w", err)
		}
	}
	// Every file stored or refused: a run of this command from now on
	// sends them all again. Otherwise (the connection lost for good, a
	// token gone stale) running it again resumes, and skips what is stored.
	if through {
		if err := o.state.removeBatch(o.batch); err != nil {
			fmt.Fprintf(stderr, "ferry: cannot update the unfinished uploads: %v\n", err)
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

// sendFile uploads one file, going on with the upload an earlier run left
// unfinished if the state knows one, and keeps the state up to date: the
// upload is remembered once the server grants it, and forgotten once it
// is over (stored, or refused). In a command of several files, a stored
// file is remembered until the command is through, and earlier reports
// that a run of the same command stored it before it was stopped: the
// file is not sent twice.
func sendFile(ctx context.Context, c *client.Client, room string, u fileUpload, o sendOptions, stderr io.Writer) (f client.File, earlier bool, err error) {
	// Stored by a run of this command before this one (not by this run,
	// which may name a file twice): still there, with a fresh link, or
	// gone since, and sent again.
	known := o.state.known(u.key, o.batch)
	if done := known.stored; done != nil && done.Updated.Before(o.start) {
		f, err := c.FileLink(ctx, done.File)
		if !errors.Is(err, &protocol.Error{Code: protocol.CodeNotFound}) {
			if err != nil && ctx.Err() != nil {
				return f, false, interrupted("interrupted: run the same command again to go on")
			}
			return f, err == nil, told(err, c.Limits())
		}
	}
	prev, resuming := known.unfinished, known.unfinished != nil
	bar := newProgress(stderr, u.name, u.size)
	if !resuming {
		// The file changed since a stopped run began its upload: resuming
		// that would store old bytes and new ones mixed.
		if old := known.changed; old != nil {
			bar.say("%s changed since the run that was stopped: sending it from the start", u.name)
			// One already complete (its file stored before the state knew)
			// answers bad_request: nothing lingers then.
			if err := c.CancelUpload(ctx, old.Upload); err != nil && ctx.Err() == nil && !errors.Is(err, &protocol.Error{Code: protocol.CodeBadRequest}) {
				bar.say("%s: the earlier upload stays on the server until it expires: %v", u.name, err)
			}
			if err := o.state.remove(old.resumeKey); err != nil {
				bar.say("%s: cannot update the unfinished uploads: %v", u.name, err)
			}
		}
	}
	opts := client.UploadOptions{
		Name:         u.name,
		Base64:       o.base64,
		Checksum:     o.checksum,
		KeepOnCancel: o.state != nil,
		OnProgress:   bar.update,
		OnWait:       bar.wait,
	}
	if resuming {
		opts.Resume = prev.Upload
	}
	var granted string
	opts.OnOpen = func(id string, offset int64) {
		if resuming {
			bar.say("resuming %s at %s", u.name, sizeString(offset))
			resuming = false
		}
		if granted == "" {
			bar.opened()
		}
		if id != granted {
			granted = id
			e := resumeEntry{resumeKey: u.key, Upload: id, Name: u.name}
			if !o.ownToken {
				e.Token = c.Token()
			}
			if err := o.state.put(e); err != nil {
				bar.say("%s: cannot remember the upload to resume it later: %v", u.name, err)
			}
		}
	}
	opts.OnRestart = func(reason error) {
		resuming = false
		bar.say("%s: cannot resume the upload (%v); sending it from the start", u.name, reason)
	}
	f, err = c.Upload(ctx, room, u.file, u.size, opts)
	bar.finish()
	var perr *protocol.Error
	switch {
	case err == nil && o.batch != "":
		e := resumeEntry{resumeKey: u.key, Upload: granted, Name: u.name, File: f.ID, Batch: o.batch}
		if err := o.state.put(e); err != nil {
			fmt.Fprintf(stderr, "ferry: %s: cannot update the unfinished uploads: %v\n", u.name, err)
		}
	case err == nil || errors.As(err, &perr):
		if err := o.state.remove(u.key); err != nil {
			fmt.Fprintf(stderr, "ferry: %s: cannot update the unfinished uploads: %v\n", u.name, err)
		}
	}
	if err != nil && ctx.Err() != nil {
		return f, false, stopped(ctx, u, bar.p, granted != "" && opts.KeepOnCancel)
	}
	return f, false, told(err, c.Limits())
}

// stopped is the error of a send whose context ended during u's upload
// (which stands at p): how to go on, when the upload was kept.
func stopped(ctx context.Context, u fileUpload, p client.Progress, kept bool) error {
	next := u.path + " not sent"
	if kept {
		next = fmt.Sprintf("run the same command again to resume %s (at least %s of %s received)", u.name, sizeString(p.Received), sizeString(u.size))
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("send: %s: %w; %s", u.path, ctx.Err(), next)
	}
	return interrupted("interrupted: " + next)
}

// interrupted ends a send that a signal (Ctrl-C) stopped: main prints it
// instead of "context canceled" and exits with 130, as shells report a
// command that SIGINT ended.
type interrupted string

func (e interrupted) Error() string   { return string(e) }
func (e interrupted) Unwrap() []error { return []error{exitCode(130), context.Canceled} }

// interruptedOr is err, or interrupted when ctx was canceled (by a signal)
// under it.
func interruptedOr(ctx context.Context, err error) error {
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return interrupted("interrupted")
	}
	return err
}
