package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/storage"
)

func testPutGet(t *testing.T, e *env) {
	tests := []struct {
		name string
		size int64
		meta storage.Meta
	}{
		{"empty", 0, storage.Meta{}},
		{"one-byte", 1, storage.Meta{ContentType: "application/octet-stream"}},
		{"small", 1000, storage.Meta{ContentType: "text/plain; charset=utf-8"}},
		{"chunky", 300<<10 + 7, storage.Meta{ContentType: "image/jpeg", User: map[string]string{"room": "lobby"}}},
	}
	for i, tc := range tests {
		key := e.key(tc.name)
		e.put(key, NewPattern(uint64(i), tc.size), tc.size, tc.meta)
		e.checkObject(key, NewPattern(uint64(i), tc.size), tc.meta)
	}
}

func testOverwrite(t *testing.T, e *env) {
	key := e.key("file")
	e.put(key, NewPattern(1, 5000), 5000, storage.Meta{
		ContentType: "text/plain",
		User:        map[string]string{"uploader": "u_1", "room": "lobby"},
	})
	// The second version is shorter, and drops a metadata key: nothing of
	// the first may survive.
	meta := storage.Meta{ContentType: "image/png", User: map[string]string{"uploader": "u_2"}}
	e.put(key, NewPattern(2, 1000), 1000, meta)
	e.checkObject(key, NewPattern(2, 1000), meta)
}

func testMetadata(t *testing.T, e *env) {
	tests := []struct {
		name string
		meta storage.Meta
	}{
		{"none", storage.Meta{}},
		{"empty-user", storage.Meta{ContentType: "text/csv", User: map[string]string{}}},
		{"ferry", storage.Meta{
			ContentType: "image/jpeg",
			User: map[string]string{
				"uploader":      "u_8f3a",
				"room":          "lobby",
				"original-name": "cat%20photo%C3%A9.jpg",
				"sha256":        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
			},
		}},
		// Named like HTTP headers: must stay user metadata, not become
		// the headers themselves.
		{"header-names", storage.Meta{
			ContentType: "text/plain",
			User:        map[string]string{"expires": "never", "content-language": "fr", "cache-control": "no-store", "x-amz-acl": "private"},
		}},
		{"punctuation", storage.Meta{
			ContentType: `multipart/mixed; boundary="x y"`,
			User:        map[string]string{"note": "a=b; c,d (e) [f] {g} <h> !#$&*+?@^_`|~"},
		}},
	}
	for _, tc := range tests {
		key := e.key(tc.name)
		e.putString(key, tc.name, tc.meta)
		info, err := e.stat(key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if !sameMeta(info.Meta, tc.meta) {
			t.Errorf("%s: Stat meta = %+v, want %+v", tc.name, info.Meta, normMeta(tc.meta))
		}
	}
}

func testValidKeys(t *testing.T, e *env) {
	// Unusual but valid: each must round-trip unchanged, and List must
	// return it exactly.
	names := []string{
		"with space/and more spaces.txt",
		"ünïcödé/ファイル.bin",
		"emoji-📦.zip",
		"query?x=1&y=2#frag",
		"percent%2Fslash%20",
		"plus+sign",
		"dots.../...tail",
		".hidden",
		"..double-dot-start",
		"trailing.",
		"~tilde/!bang'quote\"",
		"tabs-are-not-ok-but-these-are: ;,@$()[]{}",
	}
	for i, name := range names {
		key := e.key(name)
		content := fmt.Sprintf("object %d", i)
		e.putString(key, content, storage.Meta{})
		e.checkObject(key, strings.NewReader(content), storage.Meta{})
	}
	want := make([]string, len(names))
	for i, name := range names {
		want[i] = e.key(name)
	}
	slices.Sort(want)
	if got := e.keys(e.prefix); !slices.Equal(got, want) {
		t.Errorf("List = %q\nwant  %q", got, want)
	}
}

func testInvalidKeys(t *testing.T, e *env) {
	// Invalid wherever they are: the prefix is prepended only to keys that
	// are relative already.
	keys := []string{
		"",
		"/abs",
		"/",
		".",
		"..",
		"../up",
		e.key("../escape"),
		e.key("a/../b"),
		e.key("./a"),
		e.key("a/."),
		e.key("a//b"),
		e.key("dir/"),
		e.key(`back\slash`),
		e.key("nul\x00byte"),
		e.key("new\nline"),
		e.key("tab\t"),
		e.key("del\x7f"),
		e.key("bad-utf8-\xff"),
		e.key(strings.Repeat("k", 1100)),
	}
	ops := []struct {
		name string
		do   func(key string) error
	}{
		{"Put", func(key string) error { return e.store.Put(e.ctx, key, strings.NewReader("x"), 1, storage.Meta{}) }},
		{"Get", func(key string) error {
			obj, err := e.store.Get(e.ctx, key)
			if err == nil {
				obj.Close()
			}
			return err
		}},
		{"Stat", func(key string) error { _, err := e.store.Stat(e.ctx, key); return err }},
		{"Delete", func(key string) error { return e.store.Delete(e.ctx, key) }},
		{"NewMultipart", func(key string) error {
			m, err := e.store.NewMultipart(e.ctx, key, storage.Meta{})
			if err == nil {
				m.Abort(e.ctx)
			}
			return err
		}},
		{"ResumeMultipart", func(key string) error { _, err := e.store.ResumeMultipart(e.ctx, key, "some-id"); return err }},
	}
	for _, op := range ops {
		for _, key := range keys {
			if err := op.do(key); !errors.Is(err, storage.ErrInvalidKey) {
				t.Errorf("%s(%q): error %v, want storage.ErrInvalidKey", op.name, key, err)
			}
		}
	}
	if got := e.keys(e.prefix); len(got) != 0 {
		t.Errorf("invalid keys left objects behind: %q", got)
	}
}

func testNotFound(t *testing.T, e *env) {
	e.putString(e.key("dir/inside"), "x", storage.Meta{})
	// "dir" is only a prefix of another key, not an object.
	for _, name := range []string{"missing", "dir", "dir/inside/deeper", "dir/insid"} {
		key := e.key(name)
		_, err := e.store.Get(e.ctx, key)
		e.wantNotFound(fmt.Sprintf("Get(%q)", key), err)
		_, err = e.stat(key)
		e.wantNotFound(fmt.Sprintf("Stat(%q)", key), err)
		if err := e.store.Delete(e.ctx, key); err != nil {
			t.Errorf("Delete(%q) of a missing object: %v", key, err)
		}
	}
	// Deleting "dir" must not have touched what is under it.
	e.checkObject(e.key("dir/inside"), strings.NewReader("x"), storage.Meta{})
}

func testDelete(t *testing.T, e *env) {
	keep, gone := e.key("a/keep"), e.key("a/b/gone")
	e.putString(keep, "keep", storage.Meta{})
	e.putString(gone, "gone", storage.Meta{ContentType: "text/plain", User: map[string]string{"k": "v"}})
	if err := e.store.Delete(e.ctx, gone); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err := e.stat(gone)
	e.wantNotFound("Stat after Delete", err)
	if err := e.store.Delete(e.ctx, gone); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if got, want := e.keys(e.prefix), []string{keep}; !slices.Equal(got, want) {
		t.Errorf("List after Delete = %q, want %q", got, want)
	}
	// A new object at the same key must not inherit the old metadata.
	e.putString(gone, "again", storage.Meta{})
	e.checkObject(gone, strings.NewReader("again"), storage.Meta{})
}

func testList(t *testing.T, e *env) {
	// Chosen so that key order differs from a naive directory walk: '-' and
	// '.' sort before '/', and capitals before lower case.
	names := []string{"a.txt", "a/b", "a/c/d", "a-c", "ab/c", "B", "b", "z/y/x", "a/b0"}
	sizes := map[string]int64{}
	for i, name := range names {
		sizes[e.key(name)] = int64(i * 10)
		e.put(e.key(name), NewPattern(uint64(i), int64(i*10)), int64(i*10), storage.Meta{})
	}
	all := make([]string, 0, len(names))
	for _, name := range names {
		all = append(all, e.key(name))
	}
	slices.Sort(all)
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", []string{"a-c", "a.txt", "a/b", "a/b0", "a/c/d", "ab/c"}},
		{"a/", []string{"a/b", "a/b0", "a/c/d"}},
		{"a/b", []string{"a/b", "a/b0"}},
		{"a/c/", []string{"a/c/d"}},
		{"z/y/x", []string{"z/y/x"}},
		{"z/y/x/", nil},
		{"nothing", nil},
		{"A", nil},
	}
	for _, tc := range tests {
		var want []string
		if tc.prefix == "" {
			want = tc.want
		} else {
			for _, name := range tc.want {
				want = append(want, e.key(name))
			}
		}
		var got []string
		err := e.store.List(e.ctx, e.key(tc.prefix), func(info storage.Info) error {
			got = append(got, info.Key)
			if info.Size != sizes[info.Key] {
				t.Errorf("List: %q has Size %d, want %d", info.Key, info.Size, sizes[info.Key])
			}
			checkModified(t, "List", info.Modified)
			return nil
		})
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(prefix+%q) = %q\nwant %q", tc.prefix, got, want)
		}
	}
}

func testListStop(t *testing.T, e *env) {
	for i := range 5 {
		e.putString(e.key(fmt.Sprintf("k%d", i)), "x", storage.Meta{})
	}
	stop := errors.New("enough")
	calls := 0
	err := e.store.List(e.ctx, e.prefix, func(storage.Info) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("List returned %v, want the callback's error", err)
	}
	if calls != 2 {
		t.Errorf("callback called %d times after returning an error at the 2nd", calls)
	}
}

func testSeek(t *testing.T, e *env) {
	const size = 1<<20 + 123
	key := e.key("seekable")
	e.put(key, NewPattern(7, size), size, storage.Meta{})
	want := NewPattern(7, size)
	obj, err := e.store.Get(e.ctx, key)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer obj.Close()
	// Steps run in order on one Object, as http.ServeContent would use it.
	steps := []struct {
		offset  int64
		whence  int
		wantPos int64
		read    int
	}{
		{0, io.SeekStart, 0, 100},
		{500_000, io.SeekStart, 500_000, 4096},
		{-10, io.SeekEnd, size - 10, 10},
		{-size, io.SeekEnd, 0, 10},
		{1000, io.SeekCurrent, 1010, 70_000},
		{0, io.SeekCurrent, 71_010, 10},
		{size - 1, io.SeekStart, size - 1, 1},
		{3, io.SeekStart, 3, 5},
		{0, io.SeekEnd, size, 0},
	}
	for i, s := range steps {
		pos, err := obj.Seek(s.offset, s.whence)
		if err != nil || pos != s.wantPos {
			t.Fatalf("step %d: Seek(%d, %d) = %d, %v; want %d", i, s.offset, s.whence, pos, err, s.wantPos)
		}
		got := make([]byte, s.read)
		if _, err := io.ReadFull(obj, got); err != nil {
			t.Fatalf("step %d: reading %d bytes at %d: %v", i, s.read, pos, err)
		}
		exp := make([]byte, s.read)
		want.ReadAt(exp, pos)
		if !bytes.Equal(got, exp) {
			t.Fatalf("step %d: %d bytes at %d differ from what was stored", i, s.read, pos)
		}
	}
	// At the end: EOF, also after seeking past it.
	if n, err := obj.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read at end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := obj.Seek(size+100, io.SeekStart); err == nil {
		if n, err := obj.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Errorf("Read past end = %d, %v; want 0, EOF", n, err)
		}
	}
	if _, err := obj.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek to -1 succeeded")
	}
	// And the rest after a last seek back, to the end.
	if _, err := obj.Seek(900_000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if err := Compare(want.Section(900_000, size-900_000), obj); err != nil {
		t.Errorf("reading the tail: %v", err)
	}
}

func testPutShortReader(t *testing.T, e *env) {
	key := e.key("short")
	err := e.store.Put(e.ctx, key, strings.NewReader("only 12 byte"), 100, storage.Meta{})
	if err == nil {
		t.Fatal("Put of 100 bytes from a 12-byte reader succeeded")
	}
	_, err = e.stat(key)
	e.wantNotFound("Stat after failed Put", err)
}

func testPutCanceled(t *testing.T, e *env) {
	key := e.key("canceled")
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	// A stream, and bytes held in memory (as uploads hand their parts over,
	// which a store may write whole).
	for _, r := range []io.Reader{NewPattern(1, 1<<20), bytes.NewReader(make([]byte, 1<<20))} {
		if err := e.store.Put(ctx, key, r, 1<<20, storage.Meta{}); err == nil {
			t.Fatalf("Put of a %T with a canceled context succeeded", r)
		}
		_, err := e.stat(key)
		e.wantNotFound("Stat after canceled Put", err)
	}
}

func testPresign(t *testing.T, e *env) {
	p, ok := e.store.(storage.Presigner)
	if !ok {
		t.Skip("store does not implement storage.Presigner")
	}
	key := e.key("shared file.txt")
	e.putString(key, "presigned content", storage.Meta{ContentType: "text/plain"})
	e.putString(e.key("other.txt"), "not shared", storage.Meta{})
	u, err := p.PresignGet(e.ctx, key, time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatalf("PresignGet gave %q: %v", u, err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK || string(body) != "presigned content" {
		t.Errorf("GET %s = %d %q, want 200 %q", u, resp.StatusCode, body, "presigned content")
	}
	// The signature must not open another object.
	other := strings.Replace(u, "shared%20file.txt", "other.txt", 1)
	if other == u {
		t.Fatalf("presigned URL %q does not contain the escaped key", u)
	}
	resp2, err := client.Get(other)
	if err != nil {
		t.Fatalf("GET %s: %v", other, err)
	}
	resp2.Body.Close()
	if resp2.StatusCode == http.StatusOK {
		t.Errorf("a signature for one key opened another")
	}
}
