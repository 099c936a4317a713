package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"

	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/transfer/preview"
)

// What completion does to images, between storing the object and writing
// its record (see complete):
//
//  1. A JPEG loses its metadata (strip): it is read twice as a stream, once
//     to learn the stripped copy's size and SHA-256 (Store.Put needs the
//     size first), once to store that copy next to the file; each pass is
//     one storage attempt, retried like every step of completion. The
//     record, written after, names the copy; only then is the original
//     deleted. The record is the source of truth: a completion cut short
//     before it starts over from the original, and one cut short after it
//     finds the record (see complete) and deletes the original.
//  2. An image gets a thumbnail (thumbnail), within PreviewTimeout and one
//     of Config.Previews turns; past the deadline, or on any failure, the
//     file is announced without one. Thumbnails are never fatal.

// previewable reports whether package preview makes thumbnails of type t.
func previewable(t string) bool {
	switch t {
	case "image/jpeg", "image/png", "image/gif", "image/webp":
		return true
	}
	return false
}

// stripped is a copy of a file without its metadata.
type stripped struct {
	key  string
	size int64
	sum  string
}

// strip stores, when the upload is a JPEG with metadata to remove, a copy
// of its object without it, and returns it; ok is false when the file is
// to be kept as it was sent: stripping is off, the file is not a JPEG, is
// over StripMaxSize, has nothing to remove, or has a header StripJPEG
// cannot read (logged). Storage failures are retried; an error ends the
// upload as any failure to store it would.
func (u *upload) strip(ctype string) (s stripped, ok bool, err error) {
	if !u.m.stripEXIF || ctype != "image/jpeg" {
		return stripped{}, false, nil
	}
	if u.size > u.m.stripMaxSize {
		u.log.Info("JPEG stored with its metadata: larger than the strip bound", "size", u.size, "bound", u.m.stripMaxSize)
		return stripped{}, false, nil
	}
	var changed bool
	var skip error
	err = u.retry("measure the stripped copy", false, func(ctx context.Context) error {
		obj, err := u.m.store.Get(ctx, u.key)
		if err != nil {
			return err
		}
		defer obj.Close()
		out := newDigest(io.Discard)
		changed, err = preview.StripJPEG(out, &ctxReader{ctx: ctx, r: obj})
		if skip = previewError(err); skip != nil {
			return nil
		}
		if err != nil {
			return err
		}
		s.size, s.sum = out.n, out.sum()
		return nil
	})
	if err != nil {
		return stripped{}, false, err
	}
	if skip != nil {
		u.log.Warn("JPEG stored with its metadata: its header does not parse", "err", skip)
		return stripped{}, false, nil
	}
	if !changed {
		return stripped{}, false, nil
	}

	s.key = strippedKey(u.key)
	u.mu.Lock()
	meta := u.metaLocked(s.sum)
	u.mu.Unlock()
	err = u.retry("store the stripped copy", false, func(ctx context.Context) error {
		skip = nil
		obj, err := u.m.store.Get(ctx, u.key)
		if err != nil {
			return err
		}
		defer obj.Close()
		return u.putStripped(ctx, obj, s, meta, &skip)
	})
	if err != nil {
		return stripped{}, false, err
	}
	if skip != nil {
		u.log.Error("JPEG stored with its metadata: stripping it failed", "err", skip)
		return stripped{}, false, nil
	}
	u.log.Info("JPEG metadata stripped", "size", u.size, "stored_size", s.size)
	return s, true, nil
}

// putStripped stores s.key, the stripped copy of src, streaming: StripJPEG
// writes into a pipe that Put reads, through the digest. A copy that does
// not come out as measured is deleted and reported in skip, not retried: the
// original stays.
func (u *upload) putStripped(ctx context.Context, src io.Reader, s stripped, meta storage.Meta, skip *error) error {
	pr, pw := io.Pipe()
	out := newDigest(pw)
	written := make(chan error, 1)
	go func() {
		_, err := preview.StripJPEG(out, &ctxReader{ctx: ctx, r: src})
		pw.CloseWithError(err) // nil: EOF
		written <- err
	}()
	err := u.m.store.Put(ctx, s.key, pr, s.size, meta)
	// A Put that stopped reading must not leave the writer blocked.
	pr.CloseWithError(errors.New("the store stopped reading"))
	werr := <-written
	if err != nil {
		if *skip = previewError(werr); *skip != nil {
			return nil
		}
		return err
	}
	if out.n != s.size || out.sum() != s.sum || werr != nil {
		*skip = fmt.Errorf("the copy came out as %d bytes, SHA-256 %s (measured %d, %s): %v", out.n, out.sum(), s.size, s.sum, werr)
		if err := u.m.store.Delete(ctx, s.key); err != nil {
			u.log.Warn("cannot delete a bad stripped copy", "key", s.key, "err", err)
		}
	}
	return nil
}

// previewError returns err when it says the content cannot be handled, as
// opposed to a failure of the storage worth retrying; nil otherwise.
func previewError(err error) error {
	if errors.Is(err, preview.ErrUnsupported) || errors.Is(err, preview.ErrCorrupt) || errors.Is(err, preview.ErrTooLarge) {
		return err
	}
	return nil
}

// thumb is a stored thumbnail and the displayed size of its image.
type thumb struct {
	key, ctype    string
	width, height int
}

// thumbnail makes and stores the thumbnail of f, an image as stored, and
// sets f's thumbnail and size (the size alone when the thumbnail could not
// be stored). It waits at most PreviewTimeout: the work
// runs on a goroutine of its own, since a decoder does not stop when asked,
// and one that outlives the wait is left to finish (it holds its turn until
// then, so that no more decodes than Config.Previews hold memory at once)
// and has its result dropped. Failures are logged, never returned.
func (u *upload) thumbnail(f *File) {
	m := u.m
	if !m.thumbnails || !previewable(f.Type) {
		return
	}
	ctx, cancel := context.WithTimeout(u.ctx, m.previewWait)
	defer cancel()
	type result struct {
		t   thumb
		err error
	}
	done := make(chan result, 1)
	m.previews.Add(1) // before Shutdown waits: this runs on a worker
	go func() {
		defer m.previews.Done()
		t, err := m.makeThumb(ctx, f.Key, u.key, f.Type, u.log)
		done <- result{t, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		select {
		case r = <-done: // done at the same moment: take it
		default:
			u.log.Warn("announced without a thumbnail: not made in time", "wait", m.previewWait)
			return
		}
	}
	// The size is known once the image decoded, even if its thumbnail
	// could not be stored.
	f.Width, f.Height = r.t.width, r.t.height
	switch {
	case previewError(r.err) != nil:
		u.log.Info("no thumbnail", "type", f.Type, "reason", r.err)
	case r.err != nil:
		u.log.Warn("no thumbnail", "type", f.Type, "err", r.err)
	default:
		f.ThumbKey, f.ThumbType = r.t.key, r.t.ctype
	}
}

// makeThumb waits for a turn, reads the object at key, makes its
// thumbnail and stores it next to the original upload's key, orig. Every
// storage call has the storage deadline, within ctx's.
func (m *Manager) makeThumb(ctx context.Context, key, orig, ctype string, log *slog.Logger) (thumb, error) {
	select {
	case m.previewTurns <- struct{}{}:
	case <-ctx.Done():
		return thumb{}, fmt.Errorf("waiting for a turn: %w", ctx.Err())
	}
	defer func() { <-m.previewTurns }()

	getCtx, cancel := context.WithTimeout(ctx, m.storageWait)
	defer cancel()
	obj, err := m.store.Get(getCtx, key)
	if err != nil {
		return thumb{}, err
	}
	defer obj.Close()
	img, err := preview.Make(&ctxReader{ctx: getCtx, r: obj}, ctype, preview.Config{MaxPixels: m.previewMax})
	if err != nil {
		return thumb{}, err
	}
	t := thumb{key: thumbKey(orig, img.ContentType), ctype: img.ContentType, width: img.Width, height: img.Height}
	putCtx, cancel := context.WithTimeout(ctx, m.storageWait)
	defer cancel()
	meta := storage.Meta{ContentType: img.ContentType, User: map[string]string{"thumbnail-of": metaValue(key)}}
	if err := m.store.Put(putCtx, t.key, bytes.NewReader(img.Thumb), int64(len(img.Thumb)), meta); err != nil {
		return thumb{width: t.width, height: t.height}, fmt.Errorf("store the thumbnail: %w", err)
	}
	log.Debug("thumbnail stored", "key", t.key, "bytes", len(img.Thumb), "width", t.width, "height", t.height)
	return t, nil
}

// ctxReader fails once ctx ends: a store's object may not watch the
// context it was opened with once it is open (a file on disk does not),
// and a decoder must stop at the deadline.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// digest counts and hashes what goes through it to w.
type digest struct {
	w io.Writer
	h hash.Hash
	n int64
}

func newDigest(w io.Writer) *digest { return &digest{w: w, h: sha256.New()} }

func (d *digest) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	return n, err
}

func (d *digest) sum() string { return hex.EncodeToString(d.h.Sum(nil)) }
