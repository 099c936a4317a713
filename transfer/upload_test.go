package transfer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"
)

func TestUploadSizes(t *testing.T) {
	tests := []struct {
		size  int
		chunk int
	}{
		{0, 0},
		{1, 0},
		{1000, 16 << 10},
		{300_000, 64 << 10}, // not a multiple of the chunk size
		{partSize, 1 << 20},
		{partSize + 1, 1 << 20},
		{2*partSize + 12345, 1000 << 10}, // three parts, the last one short
		{3 * partSize, 1 << 20},          // three full parts
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			f := newFixture(t, nil)
			sink := newSink()
			data := payload(tt.size)
			g := f.open(f.m, sink, OpenRequest{Name: "blob.bin", Size: int64(tt.size), SHA256: sum(data), ChunkSize: tt.chunk})
			if g.Offset != 0 || g.Size != int64(tt.size) || g.Window != 2*partSize {
				t.Fatalf("grant %+v", g)
			}
			if !strings.HasPrefix(g.Upload, "up_") || !validID(g.Upload, uploadPrefix) {
				t.Fatalf("upload id %q", g.Upload)
			}
			chunk := g.ChunkSize
			send(t, f.m, sink, g, "alice", data, 0, int64(tt.size), chunk)
			file := sink.waitCompleted(t, g.Upload)
			if tt.size == 0 && (g.File == nil || *g.File != file) {
				t.Errorf("grant of an empty file carries %v, want %v", g.File, file)
			}
			f.checkStored(file, data, octetStream)
			if got := f.announcedFiles(); len(got) != 1 || got[0] != file {
				t.Errorf("announced %v, want once %v", got, file)
			}
			if !strings.HasPrefix(file.ID, "f_") || file.Room != "lobby" || file.Name != "blob.bin" ||
				file.User != "alice" || file.UserName != "Name of alice" {
				t.Errorf("file %+v", file)
			}
			wantParts := (tt.size + partSize - 1) / partSize
			f.store.mu.Lock()
			putParts := f.store.putParts
			f.store.mu.Unlock()
			if putParts != wantParts {
				t.Errorf("stored %d parts, want %d", putParts, wantParts)
			}
			if tt.size > 0 {
				st, err := f.m.Status(context.Background(), g.Upload, "alice")
				if err != nil || st.Status != statusComplete || st.File == nil || *st.File != file ||
					st.Offset != int64(tt.size) {
					t.Errorf("Status = %+v, %v", st, err)
				}
				if p := sink.durable(g.Upload); p != int64(tt.size) {
					t.Errorf("last progress %d, want %d", p, tt.size)
				}
			}
			if n := f.m.pool.inUse.Load(); n != 0 {
				t.Errorf("%d part buffers still in use", n)
			}
			if n := f.store.multipartCount(); n != 0 {
				t.Errorf("%d multipart uploads left open", n)
			}
		})
	}
}

func TestGrantChunkSize(t *testing.T) {
	f := newFixture(t, nil)
	for _, tt := range []struct{ want, got int }{
		{0, DefaultChunkSize},
		{1, MinChunkSize},
		{100 << 10, 100 << 10},
		{64 << 20, DefaultMaxChunk},
	} {
		g := f.open(f.m, newSink(), OpenRequest{Name: "x", Size: 10, ChunkSize: tt.want})
		if g.ChunkSize != tt.got {
			t.Errorf("asked %d, granted %d, want %d", tt.want, g.ChunkSize, tt.got)
		}
	}
}

func TestKeyAndMetadata(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	name := "ünïcode notes #1.txt"
	data := []byte("hello wörld\n")
	g := f.open(f.m, sink, OpenRequest{Owner: Owner{User: "u_1", Name: "Zoë"}, Room: "user:u_1",
		Name: name, Size: int64(len(data)), Type: "text/plain; charset=utf-8"})
	send(t, f.m, sink, g, "u_1", data, 0, int64(len(data)), 1<<20)
	file := sink.waitCompleted(t, g.Upload)
	f.checkStored(file, data, "text/plain")

	want := path.Join("rooms/user_u_1/2026/11/25", file.ID, "ünïcode notes _1.txt")
	if file.Key != want {
		t.Errorf("key %q, want %q", file.Key, want)
	}
	_, info, _ := f.store.object(file.Key)
	for k, v := range map[string]string{
		"uploader": "u_1", "uploader-name": "Zoë", "room": "user:u_1", "original-name": name,
	} {
		if got := info.Meta.User[k]; got != url.PathEscape(v) {
			t.Errorf("metadata %s = %q, want %q", k, got, url.PathEscape(v))
		} else if back, _ := url.PathUnescape(got); back != v {
			t.Errorf("metadata %s does not unescape to %q", k, v)
		}
	}
}

func TestKeySegment(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"lobby", "lobby"},
		{"user:u_7hx", "user_u_7hx"},
		{".", "_."},
		{"..", "_.."},
		{".hidden", "_.hidden"},
		{"a/b\\c", "a_b_c"},
		{"  spaced  ", "spaced"},
		{"фото 1.jpg", "фото 1.jpg"},
		{"x\u202Egpj.exe", "x_gpj.exe"},
	} {
		if got := keySegment(tt.in); got != tt.want {
			t.Errorf("keySegment(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if err := checkKey(objectKey(tt.in, "f_x", tt.in, time.Now())); err != nil {
			t.Errorf("key from %q: %v", tt.in, err)
		}
	}
}

func TestOpenValidation(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxFileSize = 1 << 30 })
	ok := OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "a.bin", Size: 10}
	tests := []struct {
		name string
		edit func(r *OpenRequest)
		code string
	}{
		{"no room", func(r *OpenRequest) { r.Room = "" }, CodeBadRequest},
		{"room with newline", func(r *OpenRequest) { r.Room = "a\nb" }, CodeBadRequest},
		{"long room", func(r *OpenRequest) { r.Room = strings.Repeat("r", 256) }, CodeBadRequest},
		{"no user", func(r *OpenRequest) { r.Owner.User = "" }, CodeBadRequest},
		{"empty name", func(r *OpenRequest) { r.Name = "" }, CodeBadName},
		{"slash", func(r *OpenRequest) { r.Name = "a/b.txt" }, CodeBadName},
		{"backslash", func(r *OpenRequest) { r.Name = `a\b.txt` }, CodeBadName},
		{"dot", func(r *OpenRequest) { r.Name = "." }, CodeBadName},
		{"dotdot", func(r *OpenRequest) { r.Name = ".." }, CodeBadName},
		{"NUL", func(r *OpenRequest) { r.Name = "a\x00b" }, CodeBadName},
		{"newline", func(r *OpenRequest) { r.Name = "a\nb" }, CodeBadName},
		{"DEL", func(r *OpenRequest) { r.Name = "a\x7fb" }, CodeBadName},
		{"C1 control", func(r *OpenRequest) { r.Name = "a\u0085b" }, CodeBadName},
		{"bidi override", func(r *OpenRequest) { r.Name = "cat\u202Egpj.exe" }, CodeBadName},
		{"invalid UTF-8", func(r *OpenRequest) { r.Name = "a\xffb" }, CodeBadName},
		{"256 bytes", func(r *OpenRequest) { r.Name = strings.Repeat("é", 128) }, CodeBadName},
		{"negative size", func(r *OpenRequest) { r.Size = -1 }, CodeBadRequest},
		{"too large", func(r *OpenRequest) { r.Size = 1<<30 + 1 }, CodeTooLarge},
		{"short sha256", func(r *OpenRequest) { r.SHA256 = strings.Repeat("a", 63) }, CodeBadRequest},
		{"non-hex sha256", func(r *OpenRequest) { r.SHA256 = strings.Repeat("g", 64) }, CodeBadRequest},
		{"bad type", func(r *OpenRequest) { r.Type = "image/" }, CodeBadRequest},
		{"executable type", func(r *OpenRequest) { r.Type = "application/x-msdownload" }, CodeTypeRefused},
		{"shell type", func(r *OpenRequest) { r.Type = "application/x-sh" }, CodeTypeRefused},
		{"exe name", func(r *OpenRequest) { r.Name = "setup.EXE" }, CodeTypeRefused},
		{"unknown resume", func(r *OpenRequest) { r.Resume = "up_" + strings.Repeat("a", idLen) }, CodeUnknownUpload},
		{"malformed resume", func(r *OpenRequest) { r.Resume = "up_../../x" }, CodeUnknownUpload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := ok
			tt.edit(&req)
			_, err := f.m.Open(context.Background(), req, newSink())
			wantCode(t, err, tt.code)
		})
	}
	// The valid edges pass.
	for _, edit := range []func(r *OpenRequest){
		func(r *OpenRequest) { r.Name = strings.Repeat("é", 127) + "a" },
		func(r *OpenRequest) { r.Size = 1 << 30 },
		func(r *OpenRequest) { r.SHA256 = strings.Repeat("AbC0", 16) },
		func(r *OpenRequest) { r.Name = "..a" },
	} {
		req := ok
		edit(&req)
		if _, err := f.m.Open(context.Background(), req, newSink()); err != nil {
			t.Errorf("Open(%+v): %v", req, err)
		}
	}
	if keys := f.store.keys("rooms/"); len(keys) != 0 {
		t.Errorf("refused opens stored %v", keys)
	}
}

func TestNewConfig(t *testing.T) {
	store := newMemStore(time.Now)
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Store: store}, true},
		{"no store", Config{}, false},
		{"small parts", Config{Store: store, PartSize: partSize - 1}, false},
		{"negative parts", Config{Store: store, Parts: -1}, false},
		{"tiny chunk", Config{Store: store, MaxChunk: 1024}, false},
		{"chunk over max", Config{Store: store, ChunkSize: 2 << 20}, false},
		{"too many parts", Config{Store: store, PartSize: partSize, MaxFileSize: partSize*10000 + 1}, false},
		{"retry", Config{Store: store, RetryMin: time.Second, RetryMax: time.Millisecond}, false},
	}
	for _, tt := range tests {
		m, err := New(tt.cfg)
		if (err == nil) != tt.ok {
			t.Errorf("%s: New: %v", tt.name, err)
		}
		if m != nil {
			if m.partSize != DefaultPartSize || m.parts != DefaultParts || m.window(m.partSize) != 16<<20 ||
				m.maxChunk != DefaultMaxChunk || m.ttl != DefaultTTL || m.maxFileSize != DefaultMaxFileSize {
				t.Errorf("%s: defaults not applied: %+v", tt.name, m)
			}
			if err := m.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestManifestRecordsState(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(partSize + 100)
	g := f.open(f.m, sink, OpenRequest{Name: "m.bin", Size: int64(len(data))})
	var mf manifest
	if err := getJSON(context.Background(), f.store, manifestKey(g.Upload), &mf); err != nil {
		t.Fatalf("no manifest after Open: %v", err)
	}
	if mf.Status != statusUploading || mf.User != "alice" || mf.Durable != 0 || mf.Size != int64(len(data)) {
		t.Errorf("manifest after Open: %+v", mf)
	}
	send(t, f.m, sink, g, "alice", data, 0, partSize, 1<<20)
	sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
	if err := getJSON(context.Background(), f.store, manifestKey(g.Upload), &mf); err != nil {
		t.Fatal(err)
	}
	if mf.Durable != partSize || mf.Multipart == "" || mf.Type != octetStream || len(mf.Hash) == 0 || mf.PartSize != partSize {
		t.Errorf("manifest after a part: %+v", mf)
	}
	raw, _, _ := f.store.object(manifestKey(g.Upload))
	if !json.Valid(raw) {
		t.Errorf("manifest is not JSON: %q", raw)
	}
}
