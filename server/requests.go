package server

import (
	"github.com/ferryhq/ferry/protocol"
	"time"
)

// maxStorageRequests bounds the upload requests of one connection that wait on
// storage at once; one more is refused (rate_limited) rather than queued.
const maxStorageRequests = 8

// needsStorage reports whether a request of type t makes storage calls
// (upload.open, status, finish, cancel, file.link) or reads the file index
// (files). Those run off the
// connection's reader, so that chat and heartbeats on the connection never
// wait for storage. Chunks stay on the reader: they are read from the
// socket straight into part buffers and never wait for storage.
func needsStorage(t string) bool {
	switch t {
	case protocol.TypeUploadOpen, protocol.TypeUploadStatus, protocol.TypeUploadFinish,
		protocol.TypeUploadCancel, protocol.TypeFileLink, protocol.TypeFiles:
		return true
	}
	return false
}

// offReader runs an upload request on a goroutine of its own and
// answers it from there. Answers may so come out of order with other
// requests: clients match them by id. Server.Shutdown waits for these
// goroutines, which end with the request's storage deadline at the latest.
func (c *conn) offReader(req *protocol.Request) {
	if c.storageReqs.Add(1) > maxStorageRequests {
		c.storageReqs.Add(-1)
		c.sendError(req.ID, protocol.Errorf(protocol.CodeRateLimited, "at most %d upload requests at once per connection; request dropped", maxStorageRequests))
		return
	}
	c.s.storageReqs.Add(1)
	start := time.Now()
	go func() {
		defer c.s.storageReqs.Done()
		defer c.storageReqs.Add(-1)
		data, err := c.dispatchUpload(req)
		if err != nil {
			c.sendError(req.ID, err)
		} else if req.ID != 0 {
			c.send(protocol.Ack{T: protocol.TypeAck, ID: req.ID, Data: data})
		}
		c.s.observeRequest(req.T, start)
		// The connection may have ended while storage answered: an upload
		// it opened or resumed meanwhile must not wait for it.
		if c.ended.Load() {
			c.detachUploads()
		}
	}()
}
