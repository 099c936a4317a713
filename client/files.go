package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/ferryhq/ferry/protocol"
)

// File is a file stored by the server and announced to its room: what
// Upload returns, and the data of the "file" events every member gets.
type File = protocol.File

// FileEvent is the name of the event that announces a stored file; its
// data is a File.
const FileEvent = "file"

// FileLink returns the file's record with a fresh download link. Only
// members of the file's room may ask.
func (c *Client) FileLink(ctx context.Context, id string) (File, error) {
	var f File
	data, err := c.request(ctx, protocol.Request{T: protocol.TypeFileLink, File: id}, nil)
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, errDecode("file.link", err)
	}
	return f, nil
}

// Files lists one page of the files announced to a room this client is
// in, newest first, with fresh download links: up to limit
// (protocol.DefaultFilesPage when 0, at most protocol.MaxFilesPage)
// older than before ("" for the newest). The page's Next, when set, is
// the before of the next page. A room's files stay listed after their
// announcements left its history.
func (c *Client) Files(ctx context.Context, room, before string, limit int) (protocol.RoomFiles, error) {
	var page protocol.RoomFiles
	data, err := c.request(ctx, protocol.Request{T: protocol.TypeFiles, Room: room, Before: before, Limit: limit}, nil)
	if err != nil {
		return page, err
	}
	if err := json.Unmarshal(data, &page); err != nil {
		return page, errDecode("files", err)
	}
	return page, nil
}

// DownloadError reports a download the server refused.
type DownloadError struct {
	StatusCode int
	// Message is the start of the response body.
	Message string
}

func (e *DownloadError) Error() string {
	return fmt.Sprintf("client: download refused: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// ErrChecksum reports downloaded bytes that do not match the file's size or
// SHA-256.
var ErrChecksum = errors.New("client: the downloaded bytes do not match the file")

// Download writes the content of f to w and returns how many bytes it
// wrote. It uses f's signed link, or asks for a fresh one (FileLink) when
// that has expired, and checks the bytes against f.Size and f.SHA256. They
// are written as they come: on an error (ErrChecksum included) w may hold
// part or all of them, so write to a temporary file and keep it only when
// Download returns nil.
func (c *Client) Download(ctx context.Context, f File, w io.Writer) (int64, error) {
	link := f.URL
	if link == "" {
		fresh, err := c.FileLink(ctx, f.ID)
		if err != nil {
			return 0, err
		}
		link = fresh.URL
	}
	n, err := c.fetch(ctx, link, f, w)
	var de *DownloadError
	if n == 0 && errors.As(err, &de) && de.StatusCode == http.StatusForbidden && f.URL != "" {
		// The link expired: members get a new one.
		fresh, ferr := c.FileLink(ctx, f.ID)
		if ferr != nil {
			return 0, fmt.Errorf("%w (and no fresh link: %w)", err, ferr)
		}
		return c.fetch(ctx, fresh.URL, f, w)
	}
	return n, err
}

// fetch GETs link and copies the body to w, checking it against f.
func (c *Client) fetch(ctx context.Context, link string, f File, w io.Writer) (int64, error) {
	u, err := c.fileURL(link)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, fmt.Errorf("client: download: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: download: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, &DownloadError{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(body))}
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
	if err != nil {
		return n, fmt.Errorf("client: download: %w", err)
	}
	if f.Size != n {
		return n, fmt.Errorf("%w: %d bytes, not %d", ErrChecksum, n, f.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); f.SHA256 != "" && !strings.EqualFold(sum, f.SHA256) {
		return n, fmt.Errorf("%w: SHA-256 %s, not %s", ErrChecksum, sum, f.SHA256)
	}
	return n, nil
}

// fileURL resolves a link the server gave (a path and query, such as
// "/files/f_1/cat.jpg?exp=..&sig=..") against the server's HTTP address:
// the WebSocket URL with its scheme turned to http(s) and "/ws" taken off.
// FileURL is f's signed download link as an absolute URL on the server
// the client talks to (the server gives it relative to itself), for a
// browser or another program to open while it is valid.
func (c *Client) FileURL(f File) (string, error) { return c.fileURL(f.URL) }

func (c *Client) fileURL(link string) (string, error) {
	ref, err := url.Parse(link)
	if err != nil || ref.Scheme != "" || ref.Host != "" || !strings.HasPrefix(ref.Path, "/") {
		return "", fmt.Errorf("client: the server gave an unusable file link %q", link)
	}
	u := *c.url
	if u.Scheme == "wss" {
		u.Scheme = "https"
	} else {
		u.Scheme = "http"
	}
	u.Path = strings.TrimSuffix(u.Path, "/ws") + ref.Path
	u.RawPath = ""
	u.RawQuery = ref.RawQuery
	return u.String(), nil
}
