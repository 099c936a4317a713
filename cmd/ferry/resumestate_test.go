package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestResumeState(t *testing.T) {
	key := func(path string) resumeKey {
		return resumeKey{Server: "http://s", Room: "r", Path: path, Size: 10, ModTime: 1}
	}
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	// overfill writes 5 entries more than the state keeps, /0 the oldest.
	overfill := func(s *resumeState) {
		s.update(func(es []resumeEntry) []resumeEntry {
			for i := range resumeMaxEntries + 5 {
				es = append(es, resumeEntry{resumeKey: key(fmt.Sprint("/", i)), Upload: "up", Updated: now.Add(time.Duration(i-2000) * time.Second)})
			}
			return es
		})
	}
	tests := []struct {
		name string
		// before prepares the state (its clock at now unless it moves it).
		before func(s *resumeState)
		find   resumeKey
		want   string // upload found, "" for none
		left   int    // entries in the file after before
	}{
		{"empty", func(*resumeState) {}, key("/a"), "", 0},
		{"put", func(s *resumeState) {
			s.put(resumeEntry{resumeKey: key("/a"), Upload: "up_a"})
			s.put(resumeEntry{resumeKey: key("/b"), Upload: "up_b"})
		}, key("/a"), "up_a", 2},
		{"put again replaces", func(s *resumeState) {
			s.put(resumeEntry{resumeKey: key("/a"), Upload: "up_1"})
			s.put(resumeEntry{resumeKey: key("/a"), Upload: "up_2"})
		}, key("/a"), "up_2", 1},
		{"another mtime is another file", func(s *resumeState) {
			s.put(resumeEntry{resumeKey: key("/a"), Upload: "up_a"})
		}, resumeKey{Server: "http://s", Room: "r", Path: "/a", Size: 10, ModTime: 2}, "", 1},
		{"removed", func(s *resumeState) {
			s.put(resumeEntry{resumeKey: key("/a"), Upload: "up_a"})
			s.put(resumeEntry{resumeKey: key("/b"), Upload: "up_b"})
			s.remove(key("/a"))
		}, key("/a"), "", 1},
		{"stale entries go", func(s *resumeState) {
			s.now = func() time.Time { return now.Add(-resumeTTL - time.Minute) }
			s.put(resumeEntry{resumeKey: key("/a"), Upload: "up_a"})
			s.now = func() time.Time { return now }
			s.put(resumeEntry{resumeKey: key("/b"), Upload: "up_b"})
		}, key("/a"), "", 1},
		{"bounded, the oldest go", overfill, key("/5"), "up", resumeMaxEntries},
		{"bounded, the oldest went", overfill, key("/4"), "", resumeMaxEntries},
		{"a corrupt file is an empty one", func(s *resumeState) {
			os.MkdirAll(filepath.Dir(s.path), 0o700)
			os.WriteFile(s.path, []byte("{not json"), 0o600)
		}, key("/a"), "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ferry")
			s := openResumeState(dir)
			s.now = func() time.Time { return now }
			tt.before(s)
			s.now = func() time.Time { return now }
			e, ok := s.find(tt.find)
			if ok != (tt.want != "") || e.Upload != tt.want {
				t.Errorf("find = %+v, %v; want upload %q", e, ok, tt.want)
			}
			if n := len(s.load()); n != tt.left {
				t.Errorf("%d entries in the file, want %d", n, tt.left)
			}
			if tt.left == 0 {
				return
			}
			// No temporary file is left; the lock file stays, empty.
			if names := dirNames(t, dir); !slices.Equal(names, []string{"uploads.json", "uploads.json.lock"}) {
				t.Errorf("files in the state folder: %v, want uploads.json and its lock alone", names)
			}
			if fi, err := os.Stat(s.path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("state file: %v, %v; want mode 0600 (it may hold a token)", fi.Mode(), err)
			}
		})
	}
}

// Without a cache folder nothing is remembered, and nothing fails.
func TestResumeStateOff(t *testing.T) {
	var s *resumeState
	if err := s.put(resumeEntry{Upload: "up_a"}); err != nil {
		t.Error(err)
	}
	if _, ok := s.find(resumeKey{}); ok {
		t.Error("a nil state found an upload")
	}
	if err := s.remove(resumeKey{}); err != nil {
		t.Error(err)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "")
	if s := openResumeState(""); s != nil {
		t.Errorf("state at %s without a home folder", s.path)
	}
}

// Sends changing the state at once each keep their change: each of them
// opens the lock file of its own, as separate processes do.
func TestResumeStateConcurrentSends(t *testing.T) {
	dir := t.TempDir()
	const sends, files = 8, 25
	var wg sync.WaitGroup
	for i := range sends {
		wg.Go(func() {
			s := openResumeState(dir)
			s.lockWait = time.Minute // this test is about what is kept, not the wait
			for j := range files {
				k := resumeKey{Server: "http://s", Room: "r", Path: fmt.Sprintf("/%d/%d", i, j), Size: 1, ModTime: 1}
				if err := s.put(resumeEntry{resumeKey: k, Upload: "up"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := len(openResumeState(dir).load()); got != sends*files {
		t.Fatalf("%d entries in the state, want %d: changes made at once were lost", got, sends*files)
	}
}

// A lock held for good (a send suspended while writing) holds a change up
// for lockWait, not for ever.
func TestResumeStateLockHeld(t *testing.T) {
	s := openResumeState(t.TempDir())
	s.lockWait = 200 * time.Millisecond
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := tryLock(f); !ok || err != nil {
		t.Fatalf("tryLock = %v, %v", ok, err)
	}
	k := resumeKey{Server: "http://s", Room: "r", Path: "/a", Size: 1, ModTime: 1}
	start := time.Now()
	if err := s.put(resumeEntry{resumeKey: k, Upload: "up_a"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < s.lockWait || d > s.lockWait+5*time.Second {
		t.Errorf("put took %v with the lock held elsewhere, want about %v", d, s.lockWait)
	}
	if e, ok := s.find(k); !ok || e.Upload != "up_a" {
		t.Errorf("find = %+v, %v; want up_a", e, ok)
	}
}

// What a stopped command stored stays its own while other commands send
// the same file, until that command has been through its files.
func TestResumeStateStoredByBatch(t *testing.T) {
	s := openResumeState(t.TempDir())
	k := resumeKey{Server: "http://s", Room: "r", Path: "/a", Size: 1, ModTime: 1}
	if err := s.put(resumeEntry{resumeKey: k, Upload: "up_1", File: "f_1", Batch: "b1"}); err != nil {
		t.Fatal(err)
	}
	// Another command sends the same file: its upload, then its end.
	if err := s.put(resumeEntry{resumeKey: k, Upload: "up_2"}); err != nil {
		t.Fatal(err)
	}
	if e, ok := s.find(k); !ok || e.Upload != "up_2" {
		t.Errorf("find = %+v, %v; want the other command's upload up_2", e, ok)
	}
	if err := s.remove(k); err != nil {
		t.Fatal(err)
	}
	if e := s.known(k, "b1").stored; e == nil || e.File != "f_1" {
		t.Errorf("stored by b1 = %+v; want f_1, kept through another command's upload", e)
	}
	if e := s.known(k, "b2").stored; e != nil {
		t.Error("another batch finds b1's file")
	}
	if err := s.removeBatch("b1"); err != nil {
		t.Fatal(err)
	}
	if es := s.load(); len(es) != 0 {
		t.Errorf("left after the batch went through: %+v", es)
	}
}

// find returns the unfinished upload of k, if there is one still fresh.
func (s *resumeState) find(k resumeKey) (resumeEntry, bool) {
	if e := s.known(k, "").unfinished; e != nil {
		return *e, true
	}
	return resumeEntry{}, false
}
