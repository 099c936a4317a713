package disk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/ferryhq/ferry/storage"
)

// Complete joins the parts where they lie instead of copying them into a new
// file, so that a disk holding an upload needs room for one part more, not
// for the file a second time: part 1 is renamed to joined.data, and each
// following part is appended to it and then removed. Since the parts are
// consumed, the join keeps a journal in the upload's folder, and a Complete
// cut short, by an error or a crash, is taken up again by the next one, in
// any process:
//
//	complete.json  the parts being joined, listed once when the join starts;
//	               from then on Parts reports them and PutPart is refused
//	progress.json  how many of them joined.data holds, and its length then
//	joined.data    the object being assembled
//
// Each step is durable before the next begins: a part is appended and
// synced, then progress.json replaced, then the part removed. A retry cuts
// joined.data back to the recorded length, dropping a part half-appended,
// and goes on from the first part not recorded.
const (
	planFile     = "complete.json"
	progressFile = "progress.json"
	joinedFile   = "joined.data"
)

// Steps of a completion at which Store.testHook can stop it.
const (
	stepRenamed  = "renamed"  // part 1 is joined.data, not yet recorded
	stepAppended = "appended" // a part is appended and synced, not yet recorded
	stepRecorded = "recorded" // recorded, its file not yet removed
	stepJoined   = "joined"   // every part is in joined.data
	stepPlaced   = "placed"   // the object is in place, the upload not yet gone
)

// planRecord is the JSON form of complete.json.
type planRecord struct {
	Parts []partRecord `json:"parts"`
}

type partRecord struct {
	Number int   `json:"number"`
	Size   int64 `json:"size"`
}

// progressRecord is the JSON form of progress.json: joined.data holds the
// first Joined parts of the plan, which are Length bytes.
type progressRecord struct {
	Joined int   `json:"joined"`
	Length int64 `json:"length"`
}

// Complete joins the parts into the object, renames it to the key with meta
// and removes the upload. No parts at all make an empty object, as
// storage/s3 does. A part under storage.MinPartSize other than the last is
// refused before anything is touched. Once joining has begun, a failed
// Complete leaves the upload in the journal's hands: calling Complete again,
// also after a restart, finishes it; Abort discards it.
//
// Two Completes of one upload at once are taken in turn within a process;
// across processes sharing Dir they must not overlap.
func (m *multipart) Complete(ctx context.Context, meta storage.Meta) (storage.Info, error) {
	unlock, err := m.s.completing.lock(ctx, m.id)
	if err != nil {
		return storage.Info{}, err
	}
	defer unlock()
	if _, err := m.record(); err != nil {
		return storage.Info{}, fmt.Errorf("storage/disk: complete: %w", err)
	}
	plan, err := m.readPlan()
	if isNotExist(err) {
		// Parts S3 would refuse leave the upload as it was.
		if plan, err = m.Parts(ctx); err != nil {
			return storage.Info{}, err
		}
		if err := storage.CheckPartSizes(plan); err != nil {
			return storage.Info{}, fmt.Errorf("storage/disk: complete %q: %w", m.key, err)
		}
		if len(plan) == 0 {
			return m.completeEmpty(ctx, meta)
		}
		err = m.writePlan(plan)
	}
	if err != nil {
		return storage.Info{}, m.completeError(err)
	}
	placed, err := m.join(ctx, plan)
	if err != nil {
		return storage.Info{}, m.completeError(err)
	}
	if !placed {
		if err := m.place(filepath.Join(m.dir, joinedFile), meta); err != nil {
			return storage.Info{}, m.completeError(err)
		}
	}
	return m.finish(ctx)
}

// join brings joined.data to hold every part of plan. placed reports that
// an earlier Complete got as far as moving it to the key.
func (m *multipart) join(ctx context.Context, plan []storage.Part) (placed bool, err error) {
	var prog progressRecord
	if err := m.readJSON(progressFile, &prog); err != nil && !isNotExist(err) {
		return false, err
	}
	joined := filepath.Join(m.dir, joinedFile)
	if prog.Joined == 0 {
		// Part 1 starts the object as it is: a rename copies nothing.
		err := os.Rename(m.partPath(plan[0].Number), joined)
		if isNotExist(err) {
			// Renamed by an attempt that stopped before recording it.
			_, err = os.Stat(joined)
		}
		if err == nil {
			err = m.s.crashPoint(stepRenamed, plan[0].Number)
		}
		if err != nil {
			return false, err
		}
		prog = progressRecord{Joined: 1, Length: plan[0].Size}
		if err := m.replaceFile(progressFile, prog); err != nil {
			return false, err
		}
	}
	f, err := os.OpenFile(joined, os.O_WRONLY, 0)
	if isNotExist(err) && prog.Joined == len(plan) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := resumeAt(f, prog.Length); err != nil {
		return false, err
	}
	for _, p := range plan[prog.Joined:] {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if err := m.appendPart(f, p, prog.Length); err != nil {
			return false, err
		}
		if err := m.s.crashPoint(stepAppended, p.Number); err != nil {
			return false, err
		}
		prog.Joined++
		prog.Length += p.Size
		if err := m.replaceFile(progressFile, prog); err != nil {
			return false, err
		}
		if err := m.s.crashPoint(stepRecorded, p.Number); err != nil {
			return false, err
		}
		if err := os.Remove(m.partPath(p.Number)); err != nil && !isNotExist(err) {
			return false, err
		}
	}
	if err := f.Close(); err != nil {
		return false, err
	}
	return false, m.s.crashPoint(stepJoined, 0)
}

// resumeAt positions f, joined.data, at the recorded length. Bytes past it
// are a part whose append did not finish; fewer mean the file was tampered
// with, and no retry can mend that.
func resumeAt(f *os.File, length int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < length {
		return fmt.Errorf("%s holds %d bytes, fewer than the %d recorded in %s", joinedFile, fi.Size(), length, progressFile)
	}
	if err := f.Truncate(length); err != nil {
		return err
	}
	_, err = f.Seek(length, io.SeekStart)
	return err
}

// appendPart copies part p to the end of f, which is at offset at, and syncs
// it. io.Copy between two files lets the kernel copy without passing through
// user space. A failed copy is cut off again at once: a full disk gets its
// room back without waiting for a retry.
func (m *multipart) appendPart(f *os.File, p storage.Part, at int64) error {
	src, err := os.Open(m.partPath(p.Number))
	if err != nil {
		return err
	}
	defer src.Close()
	n, err := io.Copy(f, src)
	if err == nil && n != p.Size {
		err = fmt.Errorf("part %d changed while completing: %d bytes, listed %d", p.Number, n, p.Size)
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		if terr := f.Truncate(at); terr != nil {
			m.s.log.Warn("storage/disk: cannot cut off a failed append", "key", m.key, "upload", m.id, "err", terr)
		}
		return err
	}
	return nil
}

// completeEmpty stores an empty object: there is nothing to join.
func (m *multipart) completeEmpty(ctx context.Context, meta storage.Meta) (storage.Info, error) {
	tmp, err := m.s.writeTemp("complete-", func(*os.File) error { return nil })
	if err == nil {
		if err = m.place(tmp, meta); err != nil {
			m.s.remove(tmp)
		}
	}
	if err != nil {
		return storage.Info{}, m.completeError(err)
	}
	return m.finish(ctx)
}

// place moves the finished file src to the key, metadata first as Put does.
func (m *multipart) place(src string, meta storage.Meta) error {
	if err := m.s.writeMeta(m.key, meta); err != nil {
		return err
	}
	if err := renameInto(src, m.s.objectPath(m.key)); err != nil {
		return err
	}
	return m.s.crashPoint(stepPlaced, 0)
}

// finish removes the upload once its object is in place, and describes the
// object. Failing to tidy up only leaves a folder that ListMultipart shows
// for cleanup and that a later Complete or Abort removes.
func (m *multipart) finish(ctx context.Context) (storage.Info, error) {
	if err := m.discard(); err != nil {
		m.s.log.Warn("storage/disk: cannot remove completed upload", "key", m.key, "upload", m.id, "err", err)
	}
	return m.s.Stat(context.WithoutCancel(ctx), m.key)
}

// completeError tells an upload that vanished (aborted, or completed by
// another handle) from one whose files do not match its journal.
func (m *multipart) completeError(err error) error {
	if isNotExist(err) {
		if _, rerr := m.record(); errors.Is(rerr, storage.ErrNotFound) {
			return m.notFound("complete")
		}
		return fmt.Errorf("storage/disk: complete %q: upload %s lacks a file its journal needs: %w", m.key, m.id, err)
	}
	return fmt.Errorf("storage/disk: complete %q: %w", m.key, noRoom(err))
}

// writePlan starts the join of parts: from now on they are consumed.
func (m *multipart) writePlan(parts []storage.Part) error {
	rec := planRecord{Parts: make([]partRecord, len(parts))}
	for i, p := range parts {
		rec.Parts[i] = partRecord(p)
	}
	return m.replaceFile(planFile, rec)
}

// readPlan returns the parts of complete.json; an error that isNotExist
// means Complete has not begun.
func (m *multipart) readPlan() ([]storage.Part, error) {
	var rec planRecord
	if err := m.readJSON(planFile, &rec); err != nil {
		return nil, err
	}
	if len(rec.Parts) == 0 {
		// Never written so: an upload without parts needs no join.
		return nil, fmt.Errorf("upload %s: %s lists no parts", m.id, planFile)
	}
	parts := make([]storage.Part, len(rec.Parts))
	for i, p := range rec.Parts {
		parts[i] = storage.Part(p)
	}
	return parts, nil
}

func (m *multipart) readJSON(name string, v any) error {
	b, err := os.ReadFile(filepath.Join(m.dir, name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("upload %s: %s: %w", m.id, name, err)
	}
	return nil
}

// replaceFile makes the upload's file name hold v as JSON, whole or not at
// all, durably: the folder is synced too, so that the parts removed after
// this step cannot outlive it in a crash.
func (m *multipart) replaceFile(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := m.s.writeTemp("journal-", func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	// No MkdirAll: an aborted upload must stay gone.
	if err := os.Rename(tmp, filepath.Join(m.dir, name)); err != nil {
		m.s.remove(tmp)
		return err
	}
	return syncDir(m.dir)
}

func (m *multipart) partPath(n int) string { return filepath.Join(m.dir, partName(n)) }

// crashPoint calls the test hook, if any, at a step of a completion.
func (s *Store) crashPoint(step string, part int) error {
	if s.testHook == nil {
		return nil
	}
	return s.testHook(step, part)
}

// uploadLocks serializes work on one upload within a process. The zero
// value is ready to use.
type uploadLocks struct {
	mu   sync.Mutex
	busy map[string]chan struct{}
}

// lock waits until no one else holds id, or ctx ends, and returns the
// function that lets the next one in.
func (l *uploadLocks) lock(ctx context.Context, id string) (unlock func(), err error) {
	for {
		l.mu.Lock()
		held, ok := l.busy[id]
		if !ok {
			if l.busy == nil {
				l.busy = make(map[string]chan struct{})
			}
			done := make(chan struct{})
			l.busy[id] = done
			l.mu.Unlock()
			return func() {
				l.mu.Lock()
				delete(l.busy, id)
				l.mu.Unlock()
				close(done)
			}, nil
		}
		l.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
