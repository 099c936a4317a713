package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/rooms"
	"github.com/ferryhq/ferry/transfer"
)

// wireFile is a file record as clients see it: without its storage keys
// (where a file lives is not the client's business), with a download link
// valid for LinkTTL, and one to its thumbnail when it has one.
func (s *Server) wireFile(f transfer.File) protocol.File {
	exp := time.Now().Add(s.cfg.LinkTTL).Unix()
	signed := "?exp=" + strconv.FormatInt(exp, 10) + "&sig="
	w := protocol.File{
		ID: f.ID, Room: f.Room, Name: f.Name, Size: f.Size, Type: f.Type, SHA256: f.SHA256,
		SentSHA256: f.SentSHA256, SentSize: f.SentSize,
		User: f.User, UserName: f.UserName, Time: f.Time,
		URL:    "/files/" + url.PathEscape(f.ID) + "/" + url.PathEscape(f.Name) + signed + s.linkSig(linkFile, f.ID, exp),
		Inline: inlineType(f.Type),
		Width:  f.Width, Height: f.Height,
	}
	if f.ThumbKey != "" {
		w.Thumb = "/files/" + url.PathEscape(f.ID) + "/thumb/" + url.PathEscape(thumbName(f)) + signed + s.linkSig(linkThumb, f.ID, exp)
	}
	return w
}

// wireFilePtr is wireFile of an optional file.
func (s *Server) wireFilePtr(f *transfer.File) *protocol.File {
	if f == nil {
		return nil
	}
	w := s.wireFile(*f)
	return &w
}

// thumbName is the name people see for f's thumbnail: "cat.png" has
// "cat.thumb.jpg" (or ".png" for a PNG thumbnail).
func thumbName(f transfer.File) string {
	ext := ".jpg"
	if f.ThumbType == "image/png" {
		ext = ".png"
	}
	return strings.TrimSuffix(f.Name, path.Ext(f.Name)) + ".thumb" + ext
}

// What a signed link opens: a file, or its thumbnail. Each is signed with
// its own name, so that one link never opens the other.
const (
	linkFile  = "file"
	linkThumb = "thumb"
)

func (s *Server) linkSig(what, id string, exp int64) string {
	mac := hmac.New(sha256.New, s.linkKey)
	fmt.Fprintf(mac, "%s\n%s\n%d", what, id, exp)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Announce publishes a finished file to its room as an event "file" that
// asks for receipts, so the uploader sees who has it. It implements
// transfer.Events. The file enters the room's file index first, so that a
// member who hears of it finds it in a listing.
func (s *Server) Announce(ctx context.Context, f transfer.File) {
	s.indexFile(ctx, f)
	data, err := json.Marshal(s.wireFile(f))
	if err != nil {
		s.cfg.Log.Error("encode announcement", "err", err)
		return
	}
	d, _ := s.hub.Publish(f.Room, rooms.FileEvent, data, protocol.From{User: f.User, Name: f.UserName}, true)
	s.cfg.Log.Info("file announced", "file", f.ID, "room", f.Room, "size", f.Size, "type", f.Type, "delivered", d.Delivered)
}

func (s *Server) routeFiles() {
	s.mux.HandleFunc("GET /files/{id}/{name}", s.serveFile)
	s.mux.HandleFunc("HEAD /files/{id}/{name}", s.serveFile)
	s.mux.HandleFunc("GET /files/{id}", s.serveFile)
	// A path with one more element than a file's: no file name reaches
	// it, since names have no slash.
	s.mux.HandleFunc("GET /files/{id}/thumb/{name}", s.serveThumb)
	s.mux.HandleFunc("HEAD /files/{id}/thumb/{name}", s.serveThumb)
}

// serveFile streams a file with Range support to a member of its room or to
// the holder of a signed link.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	s.serveStored(w, r, linkFile)
}

// serveThumb streams a file's thumbnail, under the same rules as the file
// but with a link signed for the thumbnail.
func (s *Server) serveThumb(w http.ResponseWriter, r *http.Request) {
	s.serveStored(w, r, linkThumb)
}

// serveStored serves what of a file: the file itself or its thumbnail.
func (s *Server) serveStored(w http.ResponseWriter, r *http.Request, what string) {
	t := s.cfg.Transfer
	if t == nil {
		http.NotFound(w, r)
		return
	}
	id := r.PathValue("id")
	if rg := r.Header.Get("Range"); rg != "" && strings.Count(rg, ",") >= maxRanges {
		// Every range is a storage request; players and browsers ask for one.
		http.Error(w, fmt.Sprintf("at most %d ranges per request", maxRanges), http.StatusRequestedRangeNotSatisfiable)
		return
	}
	// Who asks is checked before any storage request; room membership,
	// which needs the file's record, after.
	user, status, msg := s.downloader(r, what, id)
	if status != 0 {
		http.Error(w, msg, status)
		return
	}
	open := t.OpenFile
	if what == linkThumb {
		open = t.OpenThumb
	}
	obj, f, err := open(r.Context(), id)
	if err != nil {
		var te *transfer.Error
		if errors.As(err, &te) && (te.Code == transfer.CodeNotFound || te.Code == transfer.CodeUnknownUpload) {
			http.Error(w, "no such file", http.StatusNotFound)
			return
		}
		s.cfg.Log.Error("open file", "file", id, "what", what, "err", err)
		http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
		return
	}
	defer obj.Close()
	if user != "" && !s.hub.IsMember(user, f.Room) {
		// As for an unknown id: which room a file is in is for its
		// members to know.
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	ctype, name, etag := f.Type, f.Name, f.SHA256
	if what == linkThumb {
		// A thumbnail is a JPEG or a PNG made by the server, always
		// inline; its name says what it is.
		ctype, name, etag = f.ThumbType, thumbName(f), ""
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	// Even an allowed type must not run scripts in ferry's origin.
	h.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox")
	h.Set("Cache-Control", "private, max-age=3600")
	if etag != "" {
		h.Set("ETag", `"`+etag+`"`)
	}
	disp := "attachment"
	if inlineType(ctype) {
		disp = "inline"
	}
	h.Set("Content-Disposition", mime.FormatMediaType(disp, map[string]string{"filename": name}))
	http.ServeContent(w, r, name, f.Time, &deadlineReader{ReadSeeker: obj, rc: http.NewResponseController(w), idle: s.cfg.DownloadIdle})
}

// maxRanges is how many ranges one download request may ask for.
const maxRanges = 8

// deadlineReader moves the response's write deadline idle ahead at every
// read of the object: a client that stops reading is cut off after that,
// however large the file, and its storage connection is given back; one
// that keeps reading never is.
type deadlineReader struct {
	io.ReadSeeker
	rc   *http.ResponseController
	idle time.Duration
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	_ = r.rc.SetWriteDeadline(time.Now().Add(r.idle))
	return r.ReadSeeker.Read(p)
}

// downloader checks who asks for what of file id: the holder of a valid
// link signed for it (user "": no membership needed), or a user with a
// token, who must then be a member of the file's room. A non-zero status
// refuses r.
func (s *Server) downloader(r *http.Request, what, id string) (user string, status int, msg string) {
	q := r.URL.Query()
	if sig, exp := q.Get("sig"), q.Get("exp"); sig != "" {
		e, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || !hmac.Equal([]byte(sig), []byte(s.linkSig(what, id, e))) {
			return "", http.StatusForbidden, "bad link signature"
		}
		if time.Now().Unix() > e {
			return "", http.StatusForbidden, "link expired: ask the room for a new one"
		}
		return "", 0, ""
	}
	if bearer(r) == "" {
		return "", http.StatusUnauthorized, "a signed link or a token of a member of the room is required"
	}
	who, err := s.identify(r)
	if err != nil {
		return "", http.StatusForbidden, "only members of the file's room may download it"
	}
	return who.user, 0, ""
}

// inlineType reports whether a type may be shown by browsers in the page:
// images, audio, video and PDF. SVG and HTML are never inline: they can
// carry scripts.
func inlineType(t string) bool {
	switch {
	case t == "application/pdf":
		return true
	case t == "image/svg+xml":
		return false
	case strings.HasPrefix(t, "image/"), strings.HasPrefix(t, "audio/"), strings.HasPrefix(t, "video/"):
		return true
	}
	return false
}
