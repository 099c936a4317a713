package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// Part sizes: every part but the last is at least storage.MinPartSize.
const (
	full  = storage.MinPartSize
	short = 1234
)

var (
	metaStart = storage.Meta{ContentType: "application/octet-stream", User: map[string]string{"uploader": "u_1", "state": "uploading"}}
	metaDone  = storage.Meta{ContentType: "image/jpeg", User: map[string]string{"uploader": "u_1", "sha256": strings.Repeat("ab", 32)}}
)

func (e *env) newMultipart(key string, meta storage.Meta) storage.Multipart {
	e.t.Helper()
	m, err := e.store.NewMultipart(e.ctx, key, meta)
	if err != nil {
		e.t.Fatalf("NewMultipart(%q): %v", key, err)
	}
	if m.ID() == "" {
		e.t.Fatal("NewMultipart: empty ID")
	}
	return m
}

func (e *env) complete(m storage.Multipart, meta storage.Meta) storage.Info {
	e.t.Helper()
	info, err := m.Complete(e.ctx, meta)
	if err != nil {
		e.t.Fatalf("Complete: %v", err)
	}
	return info
}

// checkGone checks that a finished upload is unknown everywhere.
func (e *env) checkGone(key string, m storage.Multipart) {
	e.t.Helper()
	_, err := e.store.ResumeMultipart(e.ctx, key, m.ID())
	e.wantNotFound("ResumeMultipart of a finished upload", err)
	_, err = m.Parts(e.ctx)
	e.wantNotFound("Parts of a finished upload", err)
	if err := m.Abort(e.ctx); err != nil {
		e.t.Errorf("Abort of a finished upload: %v, want nil (nothing left to discard)", err)
	}
	if l, ok := e.store.(storage.MultipartLister); ok {
		err := l.ListMultipart(e.ctx, key, func(k, id string, _ time.Time) error {
			if id == m.ID() {
				return fmt.Errorf("ListMultipart still lists %s", id)
			}
			return nil
		})
		if err != nil {
			e.t.Error(err)
		}
	}
}

func testMultipart(t *testing.T, e *env) {
	key := e.key("big.jpg")
	sizes := []int64{full, full, short}
	want := NewPattern(1, sum(sizes...))
	m := e.newMultipart(key, metaStart)
	e.uploadParts(m, want, sizes...)
	e.checkParts(m, storage.Part{Number: 1, Size: full}, storage.Part{Number: 2, Size: full}, storage.Part{Number: 3, Size: short})
	if _, err := e.stat(key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat before Complete: %v, want storage.ErrNotFound", err)
	}
	// metaDone differs from metaStart: Complete must replace it.
	info := e.complete(m, metaDone)
	e.checkInfo("Complete", info, key, want.Size(), metaDone)
	e.checkObject(key, want, metaDone)
	e.checkGone(key, m)
}

func testMultipartReplacePart(t *testing.T, e *env) {
	key := e.key("replaced")
	want := NewPattern(2, full+short)
	m := e.newMultipart(key, metaStart)
	// A first attempt at part 1 with other bytes and another size, as when a
	// client resends a part after a dropped connection.
	if err := m.PutPart(e.ctx, 1, NewPattern(99, full+10), full+10); err != nil {
		t.Fatalf("PutPart(1): %v", err)
	}
	e.checkParts(m, storage.Part{Number: 1, Size: full + 10})
	e.uploadParts(m, want, full, short)
	e.checkParts(m, storage.Part{Number: 1, Size: full}, storage.Part{Number: 2, Size: short})
	e.complete(m, metaDone)
	e.checkObject(key, want, metaDone)
}

func testMultipartOutOfOrder(t *testing.T, e *env) {
	key := e.key("shuffled")
	want := NewPattern(3, 2*full+short)
	m := e.newMultipart(key, metaStart)
	for _, p := range []struct{ n, off, size int64 }{{3, 2 * full, short}, {1, 0, full}, {2, full, full}} {
		if err := m.PutPart(e.ctx, int(p.n), want.Section(p.off, p.size), p.size); err != nil {
			t.Fatalf("PutPart(%d): %v", p.n, err)
		}
	}
	e.checkParts(m, storage.Part{Number: 1, Size: full}, storage.Part{Number: 2, Size: full}, storage.Part{Number: 3, Size: short})
	e.complete(m, metaDone)
	e.checkObject(key, want, metaDone)
}

func testMultipartResume(t *testing.T, e *env) {
	key := e.key("resumed.bin")
	want := NewPattern(4, full+short)
	m := e.newMultipart(key, metaStart)
	if err := m.PutPart(e.ctx, 1, want.Section(0, full), full); err != nil {
		t.Fatalf("PutPart(1): %v", err)
	}

	// A second store over the same storage, as ferry after a restart.
	other := e.newStore(t)
	for _, bad := range []struct{ key, id string }{
		{key, m.ID() + "x"},
		{key, "0123456789abcdef0123456789abcdef"},
		{e.key("another-key"), m.ID()},
	} {
		_, err := other.ResumeMultipart(e.ctx, bad.key, bad.id)
		e.wantNotFound(fmt.Sprintf("ResumeMultipart(%q, %q)", bad.key, bad.id), err)
	}
	r, err := other.ResumeMultipart(e.ctx, key, m.ID())
	if err != nil {
		t.Fatalf("ResumeMultipart: %v", err)
	}
	if r.ID() != m.ID() {
		t.Errorf("resumed ID = %q, want %q", r.ID(), m.ID())
	}
	e.checkParts(r, storage.Part{Number: 1, Size: full})
	if err := r.PutPart(e.ctx, 2, want.Section(full, short), short); err != nil {
		t.Fatalf("PutPart(2) after resume: %v", err)
	}
	// The first handle sees the second's part: state lives in storage.
	e.checkParts(m, storage.Part{Number: 1, Size: full}, storage.Part{Number: 2, Size: short})
	e.complete(r, metaDone)
	e.checkObject(key, want, metaDone)
	e.checkGone(key, m)
}

func testMultipartKeepMeta(t *testing.T, e *env) {
	key := e.key("same-meta")
	want := NewPattern(5, short)
	m := e.newMultipart(key, metaDone)
	e.uploadParts(m, want, short)
	e.complete(m, metaDone)
	e.checkObject(key, want, metaDone)
}

func testMultipartAbort(t *testing.T, e *env) {
	key := e.key("aborted")
	m := e.newMultipart(key, metaStart)
	e.uploadParts(m, NewPattern(6, full+short), full, short)
	if err := m.Abort(e.ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	e.checkGone(key, m)
	err := m.PutPart(e.ctx, 3, strings.NewReader("late"), 4)
	e.wantNotFound("PutPart after Abort", err)
	_, err = m.Complete(e.ctx, metaDone)
	e.wantNotFound("Complete after Abort", err)
	_, err = e.stat(key)
	e.wantNotFound("Stat of an aborted upload's key", err)
}

func testMultipartEmpty(t *testing.T, e *env) {
	tests := []struct {
		name  string
		parts []int64
	}{
		{"no-parts", nil},
		{"one-empty-part", []int64{0}},
	}
	for _, tc := range tests {
		key := e.key(tc.name)
		m := e.newMultipart(key, metaStart)
		e.uploadParts(m, NewPattern(7, 0), tc.parts...)
		info := e.complete(m, metaDone)
		e.checkInfo("Complete", info, key, 0, metaDone)
		e.checkObject(key, NewPattern(7, 0), metaDone)
		e.checkGone(key, m)
	}
}

func testMultipartPartTooSmall(t *testing.T, e *env) {
	key := e.key("too-small")
	want := NewPattern(8, full+short)
	m := e.newMultipart(key, metaStart)
	e.uploadParts(m, NewPattern(9, 2*short), short, short)
	_, err := m.Complete(e.ctx, metaDone)
	if err == nil {
		t.Fatal("Complete with a first part below MinPartSize succeeded")
	}
	if errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Complete with a small part: %v; want another error than ErrNotFound", err)
	}
	if _, err := e.stat(key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after refused Complete: %v, want storage.ErrNotFound", err)
	}
	// The upload survives the refusal and can be put right.
	e.uploadParts(m, want, full, short)
	e.complete(m, metaDone)
	e.checkObject(key, want, metaDone)
}

func testMultipartBadPart(t *testing.T, e *env) {
	key := e.key("bad-parts")
	m := e.newMultipart(key, metaStart)
	defer m.Abort(context.WithoutCancel(e.ctx))
	tests := []struct {
		name    string
		n       int
		content string
		size    int64
	}{
		{"number 0", 0, "x", 1},
		{"number -1", -1, "x", 1},
		{"number past MaxParts", storage.MaxParts + 1, "x", 1},
		{"negative size", 1, "x", -1},
		{"reader shorter than size", 1, "only 12 byte", 100},
	}
	for _, tc := range tests {
		if err := m.PutPart(e.ctx, tc.n, strings.NewReader(tc.content), tc.size); err == nil {
			t.Errorf("PutPart %s succeeded", tc.name)
		}
	}
	e.checkParts(m)
	// The highest part number is fine.
	if err := m.PutPart(e.ctx, storage.MaxParts, strings.NewReader("last"), 4); err != nil {
		t.Fatalf("PutPart(MaxParts): %v", err)
	}
	e.checkParts(m, storage.Part{Number: storage.MaxParts, Size: 4})
}

func testMultipartConcurrent(t *testing.T, e *env) {
	const uploads = 4
	type upload struct {
		key  string
		m    storage.Multipart
		want *Pattern
	}
	ups := make([]upload, uploads)
	for i := range ups {
		key := e.key(fmt.Sprintf("concurrent-%d", i))
		ups[i] = upload{key, e.newMultipart(key, metaStart), NewPattern(uint64(100+i), full+short+int64(i))}
	}
	// Every part of every upload at once, then every Complete at once.
	errs := make(chan error, 3*uploads)
	var wg sync.WaitGroup
	for _, u := range ups {
		for n, sec := range [][2]int64{{0, full}, {full, u.want.Size() - full}} {
			wg.Go(func() {
				if err := u.m.PutPart(e.ctx, n+1, u.want.Section(sec[0], sec[1]), sec[1]); err != nil {
					errs <- fmt.Errorf("%s: PutPart(%d): %w", u.key, n+1, err)
				}
			})
		}
	}
	wg.Wait()
	for _, u := range ups {
		wg.Go(func() {
			if _, err := u.m.Complete(e.ctx, metaDone); err != nil {
				errs <- fmt.Errorf("%s: Complete: %w", u.key, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	for _, u := range ups {
		e.checkObject(u.key, u.want, metaDone)
	}
}

// testMultipartManyParts joins more parts than the other cases, stored last
// first, and checks that the object is exactly them, in number order, and
// that no part is left behind: not as an object, not as an upload.
func testMultipartManyParts(t *testing.T, e *env) {
	const count = 8
	key := e.key("many/parts.bin")
	sizes := make([]int64, count)
	for i := range sizes {
		sizes[i] = full
	}
	sizes[count-1] = short
	want := NewPattern(11, sum(sizes...))
	m := e.newMultipart(key, metaStart)
	parts := make([]storage.Part, count)
	for i := count - 1; i >= 0; i-- {
		off := sum(sizes[:i]...)
		if err := m.PutPart(e.ctx, i+1, want.Section(off, sizes[i]), sizes[i]); err != nil {
			t.Fatalf("PutPart(%d): %v", i+1, err)
		}
		parts[i] = storage.Part{Number: i + 1, Size: sizes[i]}
	}
	e.checkParts(m, parts...)
	info := e.complete(m, metaDone)
	e.checkInfo("Complete", info, key, want.Size(), metaDone)
	e.checkObject(key, want, metaDone)
	if keys := e.keys(e.prefix); !slices.Equal(keys, []string{key}) {
		t.Errorf("List after Complete = %q, want only %q", keys, key)
	}
	e.checkGone(key, m)
}

func testListMultipart(t *testing.T, e *env) {
	l, ok := e.store.(storage.MultipartLister)
	if !ok {
		t.Skip("store does not implement storage.MultipartLister")
	}
	start := time.Now()
	names := []string{"p/b", "p/a", "p/a", "q/c"}
	ids := map[string][]string{}
	var ms []storage.Multipart
	for _, name := range names {
		m := e.newMultipart(e.key(name), metaStart)
		ms = append(ms, m)
		ids[e.key(name)] = append(ids[e.key(name)], m.ID())
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.Abort(context.Background())
		}
	})
	list := func(prefix string) (keys []string, byKey map[string][]string) {
		t.Helper()
		byKey = map[string][]string{}
		err := l.ListMultipart(e.ctx, prefix, func(key, id string, started time.Time) error {
			keys = append(keys, key)
			byKey[key] = append(byKey[key], id)
			if started.Before(start.Add(-time.Minute)) || started.After(time.Now().Add(time.Minute)) {
				t.Errorf("ListMultipart: %s started %v, not near now", id, started)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("ListMultipart(%q): %v", prefix, err)
		}
		return keys, byKey
	}
	sameIDs := func(got, want []string) bool {
		return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
	}

	keys, byKey := list(e.key("p/"))
	if want := []string{e.key("p/a"), e.key("p/a"), e.key("p/b")}; !slices.Equal(keys, want) {
		t.Errorf("ListMultipart(p/) keys = %q, want %q", keys, want)
	}
	for _, k := range []string{e.key("p/a"), e.key("p/b")} {
		if !sameIDs(byKey[k], ids[k]) {
			t.Errorf("ListMultipart(p/): ids of %q = %q, want %q", k, byKey[k], ids[k])
		}
	}
	if keys, _ := list(e.prefix); len(keys) != 4 {
		t.Errorf("ListMultipart(prefix) = %q, want the 4 uploads", keys)
	}

	// Finished uploads drop out.
	e.complete(ms[0], metaDone) // p/b
	if err := ms[1].Abort(e.ctx); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if keys, byKey := list(e.key("p/")); !slices.Equal(keys, []string{e.key("p/a")}) || byKey[e.key("p/a")][0] != ms[2].ID() {
		t.Errorf("ListMultipart(p/) after Complete and Abort = %q %q, want only %s", keys, byKey, ms[2].ID())
	}

	stop := errors.New("enough")
	calls := 0
	err := l.ListMultipart(e.ctx, e.prefix, func(string, string, time.Time) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ListMultipart with a failing callback = %v after %d calls, want its error after 1", err, calls)
	}
}
