package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/transfer"
)

var (
	_ transfer.Sink        = (*conn)(nil)
	_ transfer.Interrupter = (*conn)(nil)
)

// maxRequestTimeout bounds the storage work one upload request may cause.
// Such requests run off the reader (see offReader); the timeout is kept
// within half the ping timeout all the same, so that a client waiting for
// the answer hears within its own heartbeat that storage is unavailable.
const maxRequestTimeout = 30 * time.Second

func transferLimits(t *transfer.Manager) (int, int64) { return t.MaxChunk(), t.MaxFileSize() }

// maxBinary is the largest binary frame: a chunk and its header.
func maxBinary(t *transfer.Manager) int {
	if t == nil {
		return 1 << 20
	}
	return t.MaxChunk() + 2 + protocol.MaxUploadIDLen + 8
}

var errUploadsOff = protocol.Errorf(protocol.CodeNotImplemented, "uploads are not enabled on this server")

func (c *conn) dispatchUpload(req *protocol.Request) (any, error) {
	t := c.s.cfg.Transfer
	if t == nil {
		return nil, errUploadsOff
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.s.requestTimeout)
	defer cancel()
	switch req.T {
	case protocol.TypeUploadOpen:
		if req.Room != "" || req.Resume == "" {
			if err := c.s.hub.CheckMember(c, req.Room); err != nil {
				return nil, err
			}
		}
		g, err := t.Open(ctx, transfer.OpenRequest{
			Owner: transfer.Owner{User: c.user, Name: c.name, Conn: c.id},
			Room:  req.Room, Name: req.Name, Size: req.Size, Type: req.Type,
			SHA256: req.SHA256, SHA256Later: req.SHA256Later, CRC32CLater: req.CRC32CLater, ChunkSize: req.ChunkSize, Resume: req.Resume,
		}, c)
		if err != nil {
			return nil, uploadErr(req.Resume, err)
		}
		c.uploaded.Store(true)
		return protocol.Grant{Upload: g.Upload, Offset: g.Offset, ChunkSize: g.ChunkSize, Window: g.Window,
			Size: g.Size, Later: g.Later, File: c.s.wireFilePtr(g.File)}, nil
	case protocol.TypeUploadChunk:
		c.writeBase64Request(req)
		return answeredItself{}, nil
	case protocol.TypeUploadStatus:
		st, err := t.Status(ctx, req.Upload, c.user)
		if err != nil {
			return nil, uploadErr(req.Upload, err)
		}
		return protocol.UploadState{Upload: st.Upload, Room: st.Room, Name: st.Name, Size: st.Size,
			Offset: st.Offset, Durable: st.Durable, Status: st.Status, File: c.s.wireFilePtr(st.File),
			Error: st.Error}, nil
	case protocol.TypeUploadFinish:
		if err := t.Finish(ctx, req.Upload, c.user, transfer.Digest{SHA256: req.SHA256, CRC32C: req.CRC32C}); err != nil {
			return nil, uploadErr(req.Upload, err)
		}
		return map[string]string{"upload": req.Upload}, nil
	case protocol.TypeUploadCancel:
		if err := t.Cancel(ctx, req.Upload, c.user); err != nil {
			return nil, uploadErr(req.Upload, err)
		}
		return map[string]string{"upload": req.Upload}, nil
	case protocol.TypeFileLink:
		f, err := t.File(ctx, req.File)
		if err != nil {
			return nil, err
		}
		if c.s.hub.CheckMember(c, f.Room) != nil {
			// As for an unknown id: which room a file is in is for its
			// members to know.
			return nil, protocol.Errorf(protocol.CodeNotFound, "no file %q", req.File)
		}
		return c.s.wireFile(f), nil
	case protocol.TypeFiles:
		return c.listFiles(ctx, req)
	}
	return nil, protocol.Errorf(protocol.CodeUnknownType, "unknown frame type %q", req.T)
}

// uploadErr names the upload an error is about; errorFrame puts the name
// in the frame.
func uploadErr(id string, err error) error { return &aboutUpload{id: id, err: err} }

type aboutUpload struct {
	id  string
	err error
}

func (e *aboutUpload) Error() string { return e.id + ": " + e.err.Error() }
func (e *aboutUpload) Unwrap() error { return e.err }

// readBinary handles a binary frame: a chunk header, then the payload,
// which is read straight from the socket into the upload's part buffer.
func (c *conn) readBinary(m *message) {
	t := c.s.cfg.Transfer
	if t == nil {
		c.sendError(0, errUploadsOff)
		return
	}
	hdr := c.hdr[:2]
	if _, err := io.ReadFull(m, hdr); err != nil {
		c.badFrame(0, protocol.Errorf(protocol.CodeBadFrame, "binary frame shorter than a chunk header"))
		return
	}
	n := int(hdr[1])
	if hdr[0] != protocol.ChunkKind || n == 0 || n > protocol.MaxUploadIDLen {
		c.badFrame(0, protocol.Errorf(protocol.CodeBadFrame, "binary frames must start with kind 0x01 and an upload id of 1 to %d bytes", protocol.MaxUploadIDLen))
		return
	}
	full := c.hdr[:2+n+8]
	if _, err := io.ReadFull(m, full[2:]); err != nil {
		c.badFrame(0, protocol.Errorf(protocol.CodeBadFrame, "binary frame shorter than its chunk header"))
		return
	}
	h, _, err := protocol.ParseChunkHeader(full)
	if err != nil {
		c.badFrame(0, protocol.Errorf(protocol.CodeBadFrame, "bad chunk header: %v", err))
		return
	}
	c.writeChunk(0, h.Upload, h.Offset, m, nil)
}

// writeBase64Request handles an upload.chunk frame that took the general
// decoding path.
func (c *conn) writeBase64Request(req *protocol.Request) {
	var s []byte
	if len(req.Data) >= 2 && req.Data[0] == '"' && bytes.IndexByte(req.Data, '\\') < 0 {
		s = req.Data[1 : len(req.Data)-1]
	} else {
		var str string
		if err := json.Unmarshal(req.Data, &str); err != nil {
			c.sendError(req.ID, &protocol.Error{Code: protocol.CodeBadChunk, Message: "data must be a base64 string", Upload: req.Upload})
			return
		}
		s = []byte(str)
	}
	c.writeBase64(req.ID, req.Upload, req.Offset, s)
}

// writeBase64 writes a chunk given in standard base64, decoding it straight
// into the upload's part buffer.
func (c *conn) writeBase64(id uint64, upload string, offset int64, s []byte) {
	d := &base64Reader{src: s}
	c.writeChunk(id, upload, offset, d, &d.err)
}

// base64Reader decodes standard base64 (with padding) as it is read.
type base64Reader struct {
	src  []byte
	pend [3]byte // a decoded quantum not yet read
	p, n int
	err  error
}

func (d *base64Reader) Read(p []byte) (int, error) {
	if d.p < d.n {
		k := copy(p, d.pend[d.p:d.n])
		d.p += k
		return k, nil
	}
	if len(d.src) == 0 {
		return 0, io.EOF
	}
	if len(p) < 3 {
		// Too small for a quantum: decode one aside.
		k := min(4, len(d.src))
		n, err := base64.StdEncoding.Decode(d.pend[:], d.src[:k])
		d.src = d.src[k:]
		if err != nil {
			d.err = err
			return 0, err
		}
		d.n, d.p = n, 0
		return d.Read(p)
	}
	k := min(len(d.src), len(p)/3*4)
	n, err := base64.StdEncoding.Decode(p, d.src[:k])
	d.src = d.src[k:]
	if err != nil {
		d.err = err
		return n, err
	}
	return n, nil
}

func (c *conn) writeChunk(reqID uint64, id string, offset int64, r io.Reader, decodeErr *error) {
	t := c.s.cfg.Transfer
	if t == nil {
		c.sendError(reqID, errUploadsOff)
		return
	}
	counted := &countReader{r: r}
	_, err := t.Write(id, c.user, offset, counted)
	c.s.metrics.uploadBytes.Add(uint64(counted.n))
	if err == nil {
		return
	}
	if decodeErr != nil && *decodeErr != nil {
		err = &protocol.Error{Code: protocol.CodeBadChunk, Message: "data is not valid base64: " + (*decodeErr).Error(), Upload: id}
	}
	// Accepted chunks are paced by the upload window; a refused one (an
	// unknown upload, a wrong offset) costs a request, so that refused
	// chunks cannot be sent, and answered, at any rate.
	if !c.limiter.allow(time.Now()) {
		if c.limiter.flooding() {
			c.closeWith(protocol.CloseFlood, "flooding")
		}
		return
	}
	c.sendError(reqID, uploadErr(id, err))
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// detachUploads pauses the connection's uploads: they stay resumable.
func (c *conn) detachUploads() {
	if c.uploaded.Load() && c.s.cfg.Transfer != nil {
		c.s.cfg.Transfer.Detach(c)
	}
}

// Interrupt implements transfer.Interrupter: the upload moved to another
// connection while this one was reading a chunk of it, so the client left
// this one. Reads fail from now on, which ends the connection.
func (c *conn) Interrupt(upload string) {
	c.logger().Info("upload resumed elsewhere while a chunk of it was read here", "upload", upload)
	c.interrupted.Store(true)
	c.tr.readBy(time.Now())
}

// Progress implements transfer.Sink.
func (c *conn) Progress(upload string, received, durable int64) {
	c.send(protocol.UploadProgress{T: protocol.TypeUploadProgress, Upload: upload, Offset: durable, Received: received})
}

// Completed implements transfer.Sink.
func (c *conn) Completed(upload string, f transfer.File) {
	c.s.metrics.uploadsDone.Add(1)
	c.send(protocol.UploadDone{T: protocol.TypeUploadDone, Upload: upload, File: c.s.wireFile(f)})
}

// Failed implements transfer.Sink.
func (c *conn) Failed(upload string, err error) {
	c.sendError(0, uploadErr(upload, err))
}
