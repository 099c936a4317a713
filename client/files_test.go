package client

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/ferryhq/ferry/protocol"
)

// A server whose links can be expired on cue: Download asks for a fresh
// one, and checks what it gets against the file's size and SHA-256.
func TestDownloadChecks(t *testing.T) {
	ctx := testContext(t)
	content := []byte("the content of the file")
	var links atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/prefix/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.WriteJSON(welcomeFrame(1, 25000, 20000))
		for {
			var req protocol.Request
			if ws.ReadJSON(&req) != nil {
				return
			}
			if req.T == protocol.TypeFileLink {
				links.Add(1)
				_ = ws.WriteJSON(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: File{ID: req.File, URL: "/files/" + req.File + "/x?sig=fresh"}})
			}
		}
	})
	mux.HandleFunc("/prefix/files/{id}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("sig") != "fresh" {
			http.Error(w, "link expired", http.StatusForbidden)
			return
		}
		if r.PathValue("id") == "f_gone" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(content)
	})
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	c := dial(t, hs.URL+"/prefix", "x")

	good := File{ID: "f_1", Size: int64(len(content)), SHA256: hexSHA(content), URL: "/files/f_1/x?sig=old"}
	var buf bytes.Buffer
	if n, err := c.Download(ctx, good, &buf); err != nil || n != int64(len(content)) || !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("Download = %d, %v: %q", n, err, buf.Bytes())
	}
	if links.Load() != 1 {
		t.Errorf("%d fresh links asked for, want 1 (the link given had expired)", links.Load())
	}

	tests := []struct {
		name  string
		f     File
		check func(error) bool
	}{
		{"wrong checksum", File{ID: "f_1", Size: int64(len(content)), SHA256: hexSHA([]byte("other")), URL: "/files/f_1/x?sig=fresh"},
			func(err error) bool { return errors.Is(err, ErrChecksum) }},
		{"wrong size", File{ID: "f_1", Size: 3, URL: "/files/f_1/x?sig=fresh"},
			func(err error) bool { return errors.Is(err, ErrChecksum) }},
		{"gone", File{ID: "f_gone", URL: "/files/f_gone/x?sig=fresh"},
			func(err error) bool {
				var de *DownloadError
				return errors.As(err, &de) && de.StatusCode == http.StatusNotFound
			}},
		{"absolute link", File{ID: "f_1", URL: "http://elsewhere.example/files/f_1/x"},
			func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Download(ctx, tt.f, &bytes.Buffer{}); !tt.check(err) {
				t.Errorf("Download: %v", err)
			}
		})
	}
}
