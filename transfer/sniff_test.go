package transfer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// Leading bytes of a few formats, padded by sample to look like files.
var (
	elfHeader   = append([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 56)...) // 64-byte ELF64 header
	tinyELF     = []byte("\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00")
	peHeader    = append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), make([]byte, 50)...)
	machOHeader = []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01\x03\x00\x00\x00")
	shebang     = []byte("#!/bin/sh\nrm -rf \"$HOME\"\n")
	pngHeader   = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00")
	jpegHeader  = []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
	gifHeader   = []byte("GIF89a\x10\x00\x10\x00\x80\x00\x00")
	pdfHeader   = []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
	zipHeader   = []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00")
)

// sample pads head with filler up to n bytes.
func sample(head []byte, n int) []byte {
	b := bytes.Repeat([]byte{0xa5}, max(n, len(head)))
	copy(b, head)
	return b
}

func TestClassify(t *testing.T) {
	text := []byte("hello, wörld\nsecond line\n")
	// A two-byte character cut by the end of the sniffed bytes.
	cut := append(bytes.Repeat([]byte("a"), sniffLen-1), []byte("é and more text")...)
	tests := []struct {
		name, file, declared string
		head                 []byte
		whole                bool
		policy               Policy
		want, code           string
	}{
		{name: "ELF", file: "prog", head: sample(elfHeader, 300), code: CodeTypeRefused},
		{name: "tiny ELF", file: "prog", head: tinyELF, whole: true, code: CodeTypeRefused},
		{name: "PE", file: "tool", head: sample(peHeader, 300), code: CodeTypeRefused},
		{name: "Mach-O", file: "app", head: sample(machOHeader, 300), code: CodeTypeRefused},
		{name: "shebang declared text", file: "run", declared: "text/plain", head: shebang, whole: true, code: CodeTypeRefused},
		{name: "shebang named txt", file: "notes.txt", head: shebang, whole: true, code: CodeTypeRefused},
		{name: "declared shell", file: "x", declared: "text/x-shellscript", head: text, whole: true, code: CodeTypeRefused},
		{name: "PNG declared JPEG", file: "a.jpg", declared: "image/jpeg", head: sample(pngHeader, 300), code: CodeTypeMismatch},
		{name: "PNG declared JPEG, no ext", file: "a", declared: "image/jpeg", head: sample(pngHeader, 300), code: CodeTypeMismatch},
		{name: "ELF named cat.jpg", file: "cat.jpg", head: sample(elfHeader, 300), code: CodeTypeMismatch},
		{name: "ELF declared image", file: "cat", declared: "image/jpeg", head: sample(elfHeader, 300), code: CodeTypeMismatch},
		{name: "PDF named x.png", file: "x.png", head: sample(pdfHeader, 300), code: CodeTypeMismatch},
		{name: "PNG named notes.txt", file: "notes.txt", head: sample(pngHeader, 300), code: CodeTypeMismatch},
		{name: "PNG", file: "x.png", declared: "image/png", head: sample(pngHeader, 300), want: "image/png"},
		{name: "PNG, no claims", file: "photo", head: sample(pngHeader, 300), want: "image/png"},
		{name: "PNG declared octet-stream", file: "photo", declared: "application/octet-stream", head: sample(pngHeader, 300), want: "image/png"},
		{name: "JPEG aliases", file: "a.JPEG", declared: "image/jpg", head: sample(jpegHeader, 300), want: "image/jpeg"},
		{name: "GIF", file: "a.gif", head: sample(gifHeader, 300), want: "image/gif"},
		{name: "PDF", file: "doc.pdf", declared: "application/pdf", head: sample(pdfHeader, 300), want: "application/pdf"},
		{name: "docx sniffs as zip", file: "a.docx", head: sample(zipHeader, 300),
			want: "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
		{name: "zip", file: "a.zip", declared: "application/x-zip-compressed", head: sample(zipHeader, 300), want: "application/zip"},
		{name: "text", file: "notes.txt", declared: "text/plain; charset=utf-8", head: text, whole: true, want: "text/plain"},
		{name: "text by extension", file: "README.md", head: text, whole: true, want: "text/markdown"},
		{name: "text, no claims", file: "notes", head: text, whole: true, want: octetStream},
		{name: "text declared JSON", file: "a.json", declared: "application/json", head: text, whole: true, want: octetStream},
		{name: "text with NUL", file: "a.txt", declared: "text/plain", head: []byte("a\x00b"), whole: true, want: octetStream},
		{name: "invalid UTF-8", file: "a.csv", declared: "text/csv", head: []byte("a,b\n\xff\xfe"), whole: true, want: octetStream},
		{name: "character cut at the sniff limit", file: "a.txt", declared: "text/plain", head: cut[:sniffLen], want: "text/plain"},
		{name: "cut character in a whole file", file: "a.txt", declared: "text/plain", head: cut[:sniffLen], whole: true, want: octetStream},
		{name: "unknown binary", file: "a.png", declared: "image/png", head: payload(300), want: octetStream},
		{name: "empty", file: "empty.txt", declared: "text/plain", whole: true, want: "text/plain"},
		{name: "ELF allowed", file: "prog", head: sample(elfHeader, 300), policy: Policy{AllowExecutables: true}, want: "application/x-executable"},
		{name: "shebang allowed", file: "run.sh", declared: "text/plain", head: shebang, whole: true, policy: Policy{AllowExecutables: true}, want: "text/plain"},
		{name: "refused by pattern", file: "x.png", head: sample(pngHeader, 300), policy: Policy{Refuse: []string{"image/*"}}, code: CodeTypeRefused},
		{name: "refused declared", file: "x", declared: "application/pdf", head: sample(pdfHeader, 300), policy: Policy{Refuse: []string{"application/pdf"}}, code: CodeTypeRefused},
		{name: "allowed by pattern", file: "x.png", head: sample(pngHeader, 300), policy: Policy{Allow: []string{"image/*"}}, want: "image/png"},
		{name: "not allowed", file: "a.txt", declared: "text/plain", head: text, whole: true, policy: Policy{Allow: []string{"image/*"}}, code: CodeTypeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			declared, err := declaredType(tt.declared)
			if err != nil {
				t.Fatal(err)
			}
			head := tt.head[:min(len(tt.head), sniffLen)]
			got, err := tt.policy.classify(head, declared, tt.file, tt.whole)
			if tt.code != "" {
				wantCode(t, err, tt.code)
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("classify = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestTypeRefusalStoresNothing runs refused files through whole uploads,
// sniffing across chunks smaller than the sniffed length.
func TestTypeRefusalStoresNothing(t *testing.T) {
	tests := []struct {
		name, file, declared string
		data                 []byte
		code                 string
	}{
		{"ELF", "prog", "", sample(elfHeader, partSize+10), CodeTypeRefused},
		{"PE", "tool", "", sample(peHeader, 4000), CodeTypeRefused},
		{"shebang", "install", "text/plain", append(shebang, strings.Repeat("echo\n", 100)...), CodeTypeRefused},
		{"PNG declared JPEG", "a.jpg", "image/jpeg", sample(pngHeader, 1000), CodeTypeMismatch},
		{"ELF named cat.jpg", "cat.jpg", "", sample(elfHeader, 1000), CodeTypeMismatch},
		{"tiny ELF", "a", "", tinyELF, CodeTypeRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			sink := newSink()
			g := f.open(f.m, sink, OpenRequest{Name: tt.file, Size: int64(len(tt.data)), Type: tt.declared})
			var good int64
			var err error
			for good < int64(len(tt.data)) {
				end := min(good+100, int64(len(tt.data)))
				n, werr := f.m.Write(g.Upload, "alice", good, bytes.NewReader(tt.data[good:end]))
				if werr != nil {
					err = werr
					break
				}
				good = n
			}
			wantCode(t, err, tt.code)
			// Refused by the chunk that completes the sniffed bytes.
			if want := int64(min(sniffLen, len(tt.data))-1) / 100 * 100; good != want {
				t.Fatalf("refused after offset %d, want %d", good, want)
			}
			// Later chunks are refused too, with the same code until the
			// failure is recorded and the upload leaves memory.
			if code := ErrorCode(second(f.m.Write(g.Upload, "alice", good, bytes.NewReader([]byte("x"))))); code != tt.code && code != CodeUnknownUpload {
				t.Errorf("a chunk after the refusal: %s", code)
			}

			// The failure is recorded for a resume, nothing else is stored.
			sink.wait(t, "the failure recorded", func() bool {
				st, err := f.m.Status(context.Background(), g.Upload, "alice")
				return err == nil && st.Status == statusFailed && st.Error == tt.code &&
					f.m.pool.inUse.Load() == 0
			})
			var mf manifest
			sink.wait(t, "the upload leaves memory", func() bool {
				f.m.mu.Lock()
				defer f.m.mu.Unlock()
				return len(f.m.uploads) == 0
			})
			if err := getJSON(context.Background(), f.store, manifestKey(g.Upload), &mf); err != nil || mf.Status != statusFailed {
				t.Fatalf("manifest %+v, %v", mf, err)
			}
			_, err = f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink)
			wantCode(t, err, tt.code)
			if keys := f.store.keys("rooms/"); len(keys) != 0 || f.store.multipartCount() != 0 {
				t.Errorf("stored %v and %d multipart uploads", keys, f.store.multipartCount())
			}
			if len(sink.errors(g.Upload)) != 0 || len(f.announcedFiles()) != 0 {
				t.Errorf("sink heard %v; announced %v", sink.errors(g.Upload), f.announcedFiles())
			}
		})
	}
}

// Names are read the way Windows and browsers read them before the
// executable check.
func TestExecutableNames(t *testing.T) {
	var p Policy
	for _, name := range []string{
		"x.exe", "X.EXE", "x.bat.", "trail.exe ", "dots.cmd...", "x.exe. . ",
		"stream.exe::$DATA", "ads.exe:hidden", "full.ｅｘｅ", "app.js", "tool.jar",
		"keys.reg", "setup.msi", "launch.desktop", "link.url", "ps.ps1",
	} {
		if err := p.checkClaims("", name); !errors.Is(err, &Error{Code: CodeTypeRefused}) {
			t.Errorf("%q: %v, want type_refused", name, err)
		}
	}
	for _, name := range []string{"notes.txt", "photo.jpg", "report.exe.pdf", "archive.tar.gz", "exe", "a.jsx.txt"} {
		if err := p.checkClaims("", name); err != nil {
			t.Errorf("%q: %v, want accepted", name, err)
		}
	}
	if err := (Policy{AllowExecutables: true}).checkClaims("", "x.bat."); err != nil {
		t.Errorf("allowed executables: %v", err)
	}
}
