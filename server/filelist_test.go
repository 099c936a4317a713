package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/transfer"
)

// listNames asks for a page of room's files and returns their names and
// the next cursor ("" on the last page).
func listNames(p *peer, req frame) (names []string, next string, files []map[string]any) {
	p.t.Helper()
	req["t"] = "files"
	d := p.mustAck(req)["data"].(map[string]any)
	for _, f := range d["files"].([]any) {
		m := f.(map[string]any)
		names = append(names, m["name"].(string))
		files = append(files, m)
	}
	next, _ = d["next"].(string)
	return names, next, files
}

// The files request lists a room's files newest first, in pages, with
// links signed when listed, to members only; bad input gets a code.
func TestFilesRequest(t *testing.T) {
	e := newFileEnv(t, stores(t)["disk"](t), transfer.Config{}, server.Config{LinkTTL: time.Second})
	p := dial(t, e.WS)
	p.mustAck(frame{"t": "join", "room": "r"})
	p.mustAck(frame{"t": "join", "room": "other"})
	// An upload under way is not listed: a file is, once announced.
	if cut, errf := p.upload("r", randomBytes(100_000), uploadOpts{name: "partial.bin", cutAfter: 1000}); errf != nil || cut == nil {
		t.Fatalf("a partial upload: %v", errf)
	}
	if names, next, _ := listNames(p, frame{"room": "r"}); len(names) != 0 || next != "" {
		t.Fatalf("files before any finished: %v, next %q", names, next)
	}
	contents := map[string][]byte{}
	var announced string
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("n%d.bin", i)
		contents[name] = randomBytes(1000 + i)
		done, errf := p.upload("r", contents[name], uploadOpts{name: name})
		if errf != nil {
			t.Fatal(errf)
		}
		announced = done["file"].(map[string]any)["url"].(string)
	}
	if _, errf := p.upload("other", []byte("elsewhere"), uploadOpts{name: "o.bin"}); errf != nil {
		t.Fatal(errf)
	}

	names, next, _ := listNames(p, frame{"room": "r"})
	if fmt.Sprint(names) != "[n5.bin n4.bin n3.bin n2.bin n1.bin]" || next != "" {
		t.Fatalf("files: %v, next %q; want n5 to n1 and no next", names, next)
	}
	var paged []string
	pages := 0
	for cursor := ""; ; pages++ {
		req := frame{"room": "r", "limit": 2}
		if cursor != "" {
			req["before"] = cursor
		}
		names, next, _ := listNames(p, req)
		if len(names) > 2 {
			t.Fatalf("limit 2: %v", names)
		}
		paged = append(paged, names...)
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(paged) != "[n5.bin n4.bin n3.bin n2.bin n1.bin]" || pages != 2 {
		t.Fatalf("in pages of 2: %v after %d cursors", paged, pages)
	}
	if names, _, _ := listNames(p, frame{"room": "other"}); fmt.Sprint(names) != "[o.bin]" {
		t.Fatalf("room other: %v", names)
	}

	// The announcement's link expires; a listing's is signed anew.
	exp, _ := url.Parse(announced)
	e1, _ := strconv.ParseInt(exp.Query().Get("exp"), 10, 64)
	time.Sleep(time.Until(time.Unix(e1+1, 0)) + 50*time.Millisecond)
	if resp, _ := e.download(t, announced, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("announced link after its expiry: %d, want 403", resp.StatusCode)
	}
	_, _, files := listNames(p, frame{"room": "r", "limit": 1})
	resp, got := e.download(t, files[0]["url"].(string), nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, contents["n5.bin"]) {
		t.Fatalf("listed link: %d, %d bytes", resp.StatusCode, len(got))
	}
	if files[0]["room"] != "r" || files[0]["sha256"] != sha(contents["n5.bin"]) || files[0]["size"] != float64(1005) {
		t.Fatalf("listed file %v", files[0])
	}

	outsider := dial(t, e.WS)
	for _, c := range []struct {
		who  *peer
		req  frame
		code string
	}{
		{outsider, frame{"room": "r"}, protocol.CodeNotMember},
		{outsider, frame{"room": "no room!"}, protocol.CodeInvalidRoom},
		{p, frame{"room": "r", "limit": -1}, protocol.CodeBadRequest},
		{p, frame{"room": "r", "limit": protocol.MaxFilesPage + 1}, protocol.CodeBadRequest},
		{p, frame{"room": "r", "before": "x1"}, protocol.CodeBadRequest},
		{p, frame{"room": "r", "before": "0"}, protocol.CodeBadRequest},
	} {
		c.req["t"] = "files"
		c.who.mustError(c.req, c.code)
	}
	// The connections go on.
	if names, _, _ := listNames(p, frame{"room": "r", "limit": protocol.MaxFilesPage}); len(names) != 5 {
		t.Fatalf("after the errors: %v", names)
	}
	outsider.mustAck(frame{"t": "join", "room": "r"})
	if names, _, _ := listNames(outsider, frame{"room": "r", "limit": 1}); fmt.Sprint(names) != "[n5.bin]" {
		t.Fatalf("a new member: %v", names)
	}
}

// Without uploads there are no files to list.
func TestFilesRequestUploadsOff(t *testing.T) {
	_, url := startServer(t, server.Config{})
	p := dial(t, url)
	p.mustAck(frame{"t": "join", "room": "r"})
	p.mustError(frame{"t": "files", "room": "r"}, protocol.CodeNotImplemented)
}
