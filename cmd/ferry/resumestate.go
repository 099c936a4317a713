package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Bounds of the resume state. An upload left longer than the server's
// default upload TTL is gone from the server anyway.
const (
	resumeTTL        = 24 * time.Hour
	resumeMaxEntries = 1000
	resumeLockWait   = 5 * time.Second
)

// resumeState remembers the uploads "ferry send" left unfinished (stopped,
// killed, cut off), so that running the same command again resumes them.
// It is a small JSON file, read and rewritten whole on each change through
// a temporary file and a rename: a send killed at any moment leaves the
// old state or the new one, never half of one. A change is made under a
// lock (uploads.json.lock), so that two sends changing it at once both
// keep theirs. A lock held longer than resumeLockWait (a send suspended
// with Ctrl-Z while writing) is waited for no longer: the change is made
// anyway, and may lose the other's, whose upload then starts over on its
// next run instead of resuming. A nil *resumeState remembers nothing.
type resumeState struct {
	path     string
	now      func() time.Time
	lockWait time.Duration
}

// resumeKey names an upload: the same file (by path, size and modification
// time: a file changed since is another file) sent to the same room of the
// same server.
type resumeKey struct {
	Server  string `json:"server"`
	Room    string `json:"room"`
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
}

// resumeEntry is an unfinished upload. Token is the anonymous token the
// server gave the sender, when it had none of its own: uploads belong to
// users, and only the same user may resume one. It makes the file a
// credential, hence its mode 0600.
//
// File is set once the upload became that file while other files of the
// same command were still to go: Batch names that command (its server,
// room and files), and running it again skips the file instead of sending
// it twice. Such entries go once the command has been through all its
// files.
type resumeEntry struct {
	resumeKey
	Upload  string    `json:"upload"`
	Name    string    `json:"name"`
	Token   string    `json:"token,omitempty"`
	File    string    `json:"file,omitempty"`
	Batch   string    `json:"batch,omitempty"`
	Updated time.Time `json:"updated"`
}

type resumeFile struct {
	Uploads []resumeEntry `json:"uploads"`
}

// openResumeState returns the state kept in dir, or in the user's cache
// folder when dir is empty; nil when there is no such folder.
func openResumeState(dir string) *resumeState {
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil
		}
		dir = filepath.Join(cache, "ferry")
	}
	return &resumeState{path: filepath.Join(dir, "uploads.json"), now: time.Now, lockWait: resumeLockWait}
}

// knownFile is what the state knows of a file (a resumeKey) in one read.
type knownFile struct {
	// unfinished is the file's unfinished upload.
	unfinished *resumeEntry
	// stored is the file as the batch asked about stored it, in a run that
	// stopped before the batch's other files.
	stored *resumeEntry
	// changed is an unfinished upload of the file at the same path that
	// is no longer the same file (another size or modification time).
	changed *resumeEntry
}

// known returns, from one read of the state, what it knows of k, stored
// by batch ("" for none). Only fresh entries count.
func (s *resumeState) known(k resumeKey, batch string) knownFile {
	if s == nil {
		return knownFile{}
	}
	return s.knownIn(s.read(), k, batch)
}

// read returns the state's entries.
func (s *resumeState) read() []resumeEntry {
	// Read under the lock too: on Windows a file open for reading cannot
	// be renamed over, and a send's change would fail.
	defer s.lock()()
	return s.load()
}

// knownIn is known, from entries read before.
func (s *resumeState) knownIn(entries []resumeEntry, k resumeKey, batch string) (kf knownFile) {
	for _, e := range entries {
		switch {
		case !s.fresh(e):
		case e.resumeKey == k && e.File == "":
			kf.unfinished = &e
		case e.resumeKey == k && batch != "" && e.Batch == batch:
			kf.stored = &e
		case e.Server == k.Server && e.Room == k.Room && e.Path == k.Path && e.resumeKey != k && e.File == "":
			kf.changed = &e
		}
	}
	return kf
}

// put records e (stamped now). It replaces the unfinished upload of its
// key and, for a stored file, what the same batch knew of it; what other
// commands stored stays theirs.
func (s *resumeState) put(e resumeEntry) error {
	if s == nil {
		return nil
	}
	e.Updated = s.now()
	return s.update(func(es []resumeEntry) []resumeEntry {
		es = slices.DeleteFunc(es, func(o resumeEntry) bool {
			return o.resumeKey == e.resumeKey && (o.File == "" || e.File != "" && o.Batch == e.Batch)
		})
		return append(es, e)
	})
}

// remove forgets the unfinished upload of k.
func (s *resumeState) remove(k resumeKey) error {
	if s == nil {
		return nil
	}
	return s.update(func(es []resumeEntry) []resumeEntry {
		return slices.DeleteFunc(es, func(e resumeEntry) bool { return e.resumeKey == k && e.File == "" })
	})
}

// removeBatch forgets the files stored by batch, a command that has now
// been through all its files.
func (s *resumeState) removeBatch(batch string) error {
	if s == nil || batch == "" {
		return nil
	}
	return s.update(func(es []resumeEntry) []resumeEntry {
		return slices.DeleteFunc(es, func(e resumeEntry) bool { return e.Batch == batch && e.File != "" })
	})
}

// batchOf names the command that sends files: the same server, room and
// files (each as fileKey sees it) are the same command.
func batchOf(files []fileUpload) string {
	h := sha256.New()
	for _, u := range files {
		fmt.Fprintf(h, "%q %q %q %d %d\n", u.key.Server, u.key.Room, u.key.Path, u.key.Size, u.key.ModTime)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

func (s *resumeState) fresh(e resumeEntry) bool { return s.now().Sub(e.Updated) < resumeTTL }

// load reads the entries. A missing or unreadable file is an empty state:
// what it held can only make uploads resume, and they start over instead.
func (s *resumeState) load() []resumeEntry {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return nil
	}
	var f resumeFile
	if json.Unmarshal(b, &f) != nil {
		return nil
	}
	return f.Uploads
}

// update applies fn to the entries, drops the stale ones and the oldest
// beyond resumeMaxEntries, and writes the file again.
func (s *resumeState) update(fn func([]resumeEntry) []resumeEntry) error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	defer s.lock()()
	es := fn(s.load())
	es = slices.DeleteFunc(es, func(e resumeEntry) bool { return !s.fresh(e) })
	if len(es) > resumeMaxEntries {
		slices.SortStableFunc(es, func(a, b resumeEntry) int { return a.Updated.Compare(b.Updated) })
		es = es[len(es)-resumeMaxEntries:]
	}
	if es == nil {
		es = []resumeEntry{} // "uploads": [], not null
	}
	b, err := json.MarshalIndent(resumeFile{Uploads: es}, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.path, append(b, '\n'))
}

// lock waits up to s.lockWait for the state's lock and returns what
// lets it go. Without the lock (it could not be had, or the system refused
// it) the work goes ahead unlocked: the state only ever saves work.
func (s *resumeState) lock() (unlock func()) {
	f, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return func() {}
	}
	for deadline := time.Now().Add(s.lockWait); ; {
		ok, err := tryLock(f)
		if ok {
			return func() { unlockFile(f); f.Close() }
		}
		if err != nil || time.Now().After(deadline) {
			return func() { f.Close() }
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeAtomic replaces path, in a folder that exists, with data: written
// to a temporary file in the same folder, synced, then renamed over it.
func writeAtomic(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp") // mode 0600
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// fileKey is the key of the file at path, as it is now, sent to room on
// server.
func fileKey(server, room, path string, fi fs.FileInfo) (resumeKey, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return resumeKey{}, fmt.Errorf("send: %s: %w", path, err)
	}
	return resumeKey{Server: server, Room: room, Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}, nil
}

// token returns the anonymous token kept with the first of files that has
// an unfinished upload, if any, from one read of the state.
func (s *resumeState) token(files []fileUpload) string {
	if s == nil {
		return ""
	}
	entries := s.read()
	changed := "" // else the same user, to cancel the upload of a file that changed
	for _, u := range files {
		kf := s.knownIn(entries, u.key, "")
		if e := kf.unfinished; e != nil && e.Token != "" {
			return e.Token
		}
		if e := kf.changed; e != nil && changed == "" {
			changed = e.Token
		}
	}
	return changed
}
