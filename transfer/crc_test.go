package transfer

import (
	"bytes"
	"context"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestCRC32Combine(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, cut := range []int{0, 1, 7, 4096, 5 << 17, len(data) - 1, len(data)} {
		a, b := data[:cut], data[cut:]
		got := crc32Combine(crc32.Checksum(a, castagnoli), crc32.Checksum(b, castagnoli), int64(len(b)))
		if want := crc32.Checksum(data, castagnoli); got != want {
			t.Errorf("cut at %d: %08x, want %08x", cut, got, want)
		}
	}
	// The check value of CRC32C: "123456789" → e3069283.
	if got := crcHex(crc32Combine(crc32.Checksum([]byte("1234"), castagnoli), crc32.Checksum([]byte("56789"), castagnoli), 5)); got != "e3069283" {
		t.Errorf("crc32c of 123456789 = %s, want e3069283", got)
	}
}

func crcOf(b []byte) string { return crcHex(crc32.Checksum(b, castagnoli)) }

// With CRC32CLater the client gives the file's CRC32C after the last byte;
// the upload completes only then and only if it matches, and the file is
// still known by the SHA-256 the server computed.
func TestCRC32CLater(t *testing.T) {
	f := newFixture(t, nil)
	sink := newSink()
	data := payload(2*partSize + 1234)
	_, err := f.m.Open(context.Background(), OpenRequest{Owner: owner("alice"), Room: "lobby", Name: "x.bin", Size: 9, SHA256Later: true, CRC32CLater: true}, newSink())
	wantCode(t, err, CodeBadRequest)

	g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), CRC32CLater: true})
	if g.Later != "crc32c" {
		t.Errorf("grant says it waits for %q, want crc32c", g.Later)
	}
	send(t, f.m, sink, g, "alice", data, 0, int64(len(data)), 1<<20)
	sink.wait(t, "all stored", func() bool { return sink.durable(g.Upload) == int64(len(data)) })
	time.Sleep(20 * time.Millisecond)
	if len(sink.files(g.Upload)) != 0 {
		t.Fatal("completed before the CRC32C was given")
	}
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "alice", Digest{SHA256: sum(data)}), CodeBadRequest) // it needs the CRC32C
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: "xyz"}), CodeBadRequest)
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "bob", Digest{CRC32C: crcOf(data)}), CodeForbidden)
	if err := f.m.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: strings.ToUpper(crcOf(data))}); err != nil {
		t.Fatal(err)
	}
	checkLaterStored(t, f, sink.waitCompleted(t, g.Upload), data)
	// Again, after completion: the same CRC32C is fine, another is not.
	if err := f.m.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: crcOf(data)}); err != nil {
		t.Errorf("Finish again: %v", err)
	}
	wantCode(t, f.m.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: crcOf([]byte("other"))}), CodeChecksumMismatch)

	// A wrong CRC32C ends the upload, and nothing is announced.
	g2 := f.open(f.m, sink, OpenRequest{Name: "y.bin", Size: int64(len(data)), CRC32CLater: true})
	send(t, f.m, sink, g2, "alice", data, 0, int64(len(data)), 1<<20)
	if err := f.m.Finish(context.Background(), g2.Upload, "alice", Digest{CRC32C: crcOf(data[1:])}); err != nil {
		t.Fatal(err)
	}
	sink.waitFailed(t, g2.Upload, CodeChecksumMismatch)
	if n := len(f.announcedFiles()); n != 1 {
		t.Errorf("%d files announced, want 1", n)
	}

	// An upload opened with sha256_later is not given a CRC32C.
	g3 := f.open(f.m, sink, OpenRequest{Name: "z.bin", Size: int64(len(data)), SHA256Later: true})
	if g3.Later != "sha256" {
		t.Errorf("grant says it waits for %q, want sha256", g3.Later)
	}
	wantCode(t, f.m.Finish(context.Background(), g3.Upload, "alice", Digest{CRC32C: crcOf(data)}), CodeBadRequest)

	// A digest may be repeated, not added to, once given.
	g4 := f.open(f.m, sink, OpenRequest{Name: "w.bin", Size: int64(len(data)), CRC32CLater: true})
	if err := f.m.Finish(context.Background(), g4.Upload, "alice", Digest{CRC32C: crcOf(data)}); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Finish(context.Background(), g4.Upload, "alice", Digest{CRC32C: crcOf(data)}); err != nil {
		t.Errorf("the same CRC32C again: %v", err)
	}
	wantCode(t, f.m.Finish(context.Background(), g4.Upload, "alice", Digest{CRC32C: crcOf(data), SHA256: sum(data)}), CodeBadRequest)
}

// The CRC32C of the stored parts outlives a restart in the manifest: an
// upload resumed by another process is checked over all of its bytes, and
// a wrong byte among the ones stored before the restart is caught.
func TestCRC32CLaterSurvivesRestart(t *testing.T) {
	for _, tt := range []struct {
		name    string
		corrupt bool
	}{{"whole", false}, {"first part corrupt", true}} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			sink := newSink()
			data := payload(3*partSize + 77)
			sent := bytes.Clone(data)
			if tt.corrupt {
				sent[100] ^= 1
			}
			g := f.open(f.m, sink, OpenRequest{Name: "x.bin", Size: int64(len(data)), CRC32CLater: true})
			send(t, f.m, sink, g, "alice", sent, 0, partSize, 1<<20)
			sink.wait(t, "first part", func() bool { return sink.durable(g.Upload) == partSize })
			// The manifest is of version 2, which servers before
			// crc32c_later refuse, and holds the first part's CRC32C.
			mf, err := f.m.loadManifest(context.Background(), g.Upload)
			if err != nil {
				t.Fatal(err)
			}
			if mf.Version != 2 || !mf.CRCLater || crcHex(mf.FileCRC) != crcOf(sent[:partSize]) {
				t.Fatalf("manifest version %d, crc32c_later %v, CRC32C %s; want 2, true, %s", mf.Version, mf.CRCLater, crcHex(mf.FileCRC), crcOf(sent[:partSize]))
			}

			m2 := f.manager(nil)
			sink2 := newSink()
			g2, err := m2.Open(context.Background(), OpenRequest{Owner: owner("alice"), Resume: g.Upload}, sink2)
			if err != nil {
				t.Fatal(err)
			}
			if g2.Offset != partSize {
				t.Fatalf("resumed at %d, want %d", g2.Offset, partSize)
			}
			send(t, m2, sink2, g2, "alice", data, g2.Offset, int64(len(data)), 1<<20)
			if err := m2.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: crcOf(data)}); err != nil {
				t.Fatalf("Finish after a restart: %v", err)
			}
			if tt.corrupt {
				sink2.waitFailed(t, g.Upload, CodeChecksumMismatch)
				return
			}
			checkLaterStored(t, f, sink2.waitCompleted(t, g.Upload), data)
			// A third process, after completion, still knows the CRC32C.
			m3 := f.manager(nil)
			if err := m3.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: crcOf(data)}); err != nil {
				t.Errorf("Finish after completion, from the manifest: %v", err)
			}
			wantCode(t, m3.Finish(context.Background(), g.Upload, "alice", Digest{CRC32C: crcOf(data[1:])}), CodeChecksumMismatch)
		})
	}
}

// checkLaterStored checks an upload whose digest came after its bytes:
// the object holds them, the file is known by their SHA-256, and the
// object's metadata lacks it (adding it would have copied the object).
func checkLaterStored(t *testing.T, f *fixture, file File, data []byte) {
	t.Helper()
	stored, info, _ := f.store.object(file.Key)
	if !bytes.Equal(stored, data) || file.SHA256 != sum(data) {
		t.Fatalf("stored %d bytes (want %d) with SHA-256 %s (want %s)", len(stored), len(data), file.SHA256, sum(data))
	}
	if got := info.Meta.User["sha256"]; got != "" {
		t.Errorf("object metadata sha256 %q: the object was copied to add it", got)
	}
}
