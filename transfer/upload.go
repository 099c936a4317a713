package transfer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ferryhq/ferry/protocol"
	"github.com/ferryhq/ferry/storage"
)

// upload is one file being received. Its fields under mu are shared by the
// Write that fills its parts, the goroutine that stores them (work) and the
// manager's other calls; mp and hash belong to whoever stores, which is the
// worker while one runs.
type upload struct {
	m     *Manager
	id    string
	log   *slog.Logger
	owner Owner
	room  string
	name  string
	size  int64
	// declared and sha are what the client declared (canonical, lower-case
	// hex); fileID and key are where the file will live.
	declared string
	fileID   string
	key      string
	partSize int
	created  time.Time
	// later: the client gives the SHA-256 with Finish, or the CRC32C when
	// crcLater; crc is the CRC32C it gave (8 lower-case hex digits).
	later    bool
	crcLater bool
	crc      string
	// finished: upload.finish was taken (in this process).
	finished bool
	// reserved is the part memory the upload holds (see need). It is
	// guarded by m.mu, not mu.
	reserved int64
	// lease is the upload's lock with a Locker (nil without): released
	// when the upload leaves memory. Guarded by m.mu once registered.
	lease *lease

	// ctx ends the upload's storage work: Cancel, expiry and Shutdown
	// cancel it.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sink     Sink // nil while detached
	status   string
	sha      string // declared digest, canonical; "" until known
	ctype    string // stored content type, "" until sniffed
	received int64
	durable  int64
	// parts holds the bytes between durable and received, in order. The
	// sealed ones (full, handed to the worker) come first; only the last may
	// be partly filled.
	parts   []*part
	writing bool // a Write is reading into the parts, outside mu
	// written is closed when that Write is over.
	written chan struct{}
	// discard asks the running Write to drop the chunk it reads, because
	// the upload was detached or moved to another sink meanwhile: that
	// sink was told to continue where the upload stood before the chunk.
	discard    bool
	working    bool // the worker goroutine runs
	workerDone chan struct{}
	// failure ends the upload; recordFailure says the worker must still
	// clean up storage for it, and notify that the sink must hear of it.
	failure       *Error
	recordFailure bool
	notify        bool
	storageDown   bool // the sink heard of the current storage outage
	settling      bool // the worker waits for parts stored ahead (settleEarlyLocked)
	// unrecorded: the failure could not be recorded in storage (a full
	// disk, an outage). The upload stays in memory, answering Status and
	// resumes with its failure, until recordFailures succeeds.
	unrecorded bool
	touched    time.Time
	reported   time.Time // when the sink last heard of received bytes
	file       *File

	mp      storage.Multipart
	hash    []byte // SHA-256 state after durable bytes
	fileCRC uint32 // CRC32C of the durable bytes
}

type part struct {
	num    int // 1-based part number
	buf    []byte
	sealed bool
	// crc is the CRC32C of buf, computed as its bytes arrived (write is
	// the only place buf grows), for storage that takes it
	// (storage.CRC32CPartPutter).
	crc uint32
	// early, when set, carries the result of storing this part ahead of
	// the worker (see storeAheadLocked).
	early chan stored
	// hashed, when set, carries the file's hash state after this part,
	// computed while the previous part's record was saved (see storePart).
	hashed chan stored
}

// stored is the result of storing a part: the file's hash state after it.
type stored struct {
	state []byte
	err   error
}

func (m *Manager) makeUpload(mf *manifest, conn string) *upload {
	u := &upload{
		m: m, id: mf.ID, owner: Owner{User: mf.User, Name: mf.UserName, Conn: conn},
		room: mf.Room, name: mf.Name, size: mf.Size, declared: mf.Declared, sha: mf.SHA256,
		fileID: mf.FileID, key: mf.Key, partSize: mf.PartSize, created: mf.Created,
		later: mf.Later, crcLater: mf.CRCLater, crc: mf.CRC32C, status: statusUploading, touched: m.now(),
	}
	u.log = m.log.With("upload", u.id, "conn", conn, "user", u.owner.User)
	u.ctx, u.cancel = context.WithCancel(m.ctx)
	return u
}

// abandon ends an upload that never made it into memory, or is leaving it
// outside the usual paths: its context ends and its window goes back.
func (u *upload) abandon() {
	u.cancel()
	u.m.mu.Lock()
	u.m.unreserveLocked(u)
	u.m.releaseLocked(u)
	u.m.mu.Unlock()
}

// getBuf returns an empty part buffer: one of the part size from the pool,
// or, for a file smaller than a part, one of exactly its size, so that a
// photo holds no more memory than itself.
func (u *upload) getBuf() []byte {
	if u.size < int64(u.partSize) {
		return make([]byte, 0, u.size)
	}
	return u.m.poolFor(u.partSize).get()
}

// putBuf gives back a buffer from getBuf.
func (u *upload) putBuf(b []byte) {
	if u.size >= int64(u.partSize) {
		u.m.poolFor(u.partSize).put(b)
	}
}

// partLen is the full length of part num.
func (u *upload) partLen(num int) int {
	start := int64(num-1) * int64(u.partSize)
	return int(min(int64(u.partSize), u.size-start))
}

// staleWriteWait bounds how long a chunk waits for one of an earlier
// connection to end.
const staleWriteWait = 10 * time.Second

func (u *upload) headLen() int { return int(min(sniffLen, u.size)) }

func (u *upload) write(offset int64, r io.Reader) (int64, error) {
	u.mu.Lock()
	for u.writing && u.discard {
		// The chunk being read belongs to a sink the upload left (it was
		// interrupted, see attach): it ends soon, and its bytes are dropped.
		written := u.written
		u.mu.Unlock()
		select {
		case <-written:
		case <-time.After(staleWriteWait):
			return 0, offsetError(CodeBadOffset, offset, "upload %s is still busy with a chunk from an earlier connection", u.id)
		}
		u.mu.Lock()
	}
	switch {
	case u.status == statusFailed:
		err := u.failure
		u.mu.Unlock()
		return 0, err
	case u.sink == nil:
		u.mu.Unlock()
		return 0, errorf(CodeUnknownUpload, "upload %s is paused; open it again with resume", u.id)
	case u.writing:
		received := u.received
		u.mu.Unlock()
		return 0, offsetError(CodeBadOffset, received, "another chunk of upload %s is being written", u.id)
	case offset != u.received:
		received := u.received
		u.mu.Unlock()
		return 0, offsetError(CodeBadOffset, received, "the upload continues at offset %d, not %d", received, offset)
	}
	start := u.received
	remaining := u.size - start
	ahead := u.durable + u.m.window(u.partSize) - start
	limit := min(int64(u.m.maxChunk), remaining, ahead)

	// Find room for limit bytes: the rest of the part being filled, then new
	// parts. Nothing changes until the chunk is known to be good.
	var segs [][]byte
	var tail *part
	var tailLen int
	need := limit
	if k := len(u.parts); k > 0 && !u.parts[k-1].sealed {
		tail = u.parts[k-1]
		tailLen = len(tail.buf)
		take := min(int64(u.partLen(tail.num)-tailLen), need)
		segs = append(segs, tail.buf[tailLen:tailLen+int(take)])
		need -= take
	}
	var added []*part
	for need > 0 {
		pos := start + limit - need
		p := &part{num: int(pos/int64(u.partSize)) + 1, buf: u.getBuf()}
		take := min(int64(u.partLen(p.num)), need)
		segs = append(segs, p.buf[:take])
		added = append(added, p)
		need -= take
	}
	u.writing = true
	u.written = make(chan struct{})
	u.mu.Unlock()

	n, lens, over, rerr := readChunk(r, segs)

	u.mu.Lock()
	u.writing = false
	close(u.written)
	// A refused chunk leaves nothing behind: the bytes it read into the
	// part being filled lie past that part's length, and its new parts go
	// back to the pool.
	fail := func(err error) (int64, error) {
		for _, p := range added {
			u.putBuf(p.buf)
		}
		u.discard = false
		if u.status != statusUploading {
			u.dropLocked(false)
		}
		u.mu.Unlock()
		u.m.evict(u)
		return 0, err
	}
	switch {
	case u.status == statusFailed:
		return fail(u.failure)
	case u.discard:
		return fail(errorf(CodeUnknownUpload, "upload %s was paused or moved while the chunk arrived", u.id))
	case over:
		return fail(u.limitError(start, limit, remaining))
	case rerr != nil:
		return fail(wrapf(rerr, CodeBadRequest, "cannot read the chunk"))
	}
	var first uint32
	if tail != nil {
		first = tail.crc
	}
	crcs := chunkCRCs(segs, lens, first)
	i := 0
	if tail != nil {
		tail.buf = tail.buf[:tailLen+lens[0]]
		tail.crc = crcs[0]
		i = 1
	}
	for _, p := range added {
		if lens[i] == 0 {
			u.putBuf(p.buf)
		} else {
			p.buf = p.buf[:lens[i]]
			p.crc = crcs[i]
			u.parts = append(u.parts, p)
		}
		i++
	}
	u.received += n
	u.touched = u.m.now()

	if u.ctype == "" && u.received >= int64(u.headLen()) {
		head := u.parts[0].buf[:u.headLen()]
		ctype, err := u.m.policy.classify(head, u.declared, u.name, u.size <= sniffLen)
		if err != nil {
			u.log.Info("upload refused", "err", err)
			u.failLocked(err.(*Error), false)
			// Recording the failure takes storage calls, which Write
			// never waits for: the worker does it.
			u.recordFailure = u.working || u.m.startWorker(u)
			u.mu.Unlock()
			u.m.evict(u)
			return 0, err
		}
		u.ctype = ctype
	}
	for _, p := range u.parts {
		if !p.sealed && len(p.buf) == u.partLen(p.num) {
			p.sealed = true
		}
	}
	if !u.working && (len(u.parts) > 0 && u.parts[0].sealed || u.finishableLocked()) {
		u.m.startWorker(u)
	} else {
		u.storeAheadLocked()
	}
	received, durable, sink := u.received, u.durable, u.sink
	report := sink != nil && (received == u.size || u.touched.Sub(u.reported) >= ProgressInterval)
	if report {
		u.reported = u.touched
	}
	u.mu.Unlock()
	if report {
		sink.Progress(u.id, received, durable)
	}
	return received, nil
}

// ProgressInterval is how often at most the sink hears of received bytes
// while chunks arrive.
const ProgressInterval = 250 * time.Millisecond

// laterKind names the digest the upload waits for, as grants say it.
func (u *upload) laterKind() string {
	switch {
	case u.crcLater:
		return protocol.LaterCRC32C
	case u.later:
		return protocol.LaterSHA256
	}
	return ""
}

// finishableLocked reports whether every byte is stored and only the
// completion is left: it waits for the digest when the client gives it
// with Finish.
func (u *upload) finishableLocked() bool {
	return u.received == u.size && u.durable == u.size && len(u.parts) == 0 && !(u.later && u.sha == "" && u.crc == "")
}

// readChunk reads r into segs until EOF. It returns the total read, the
// length read into each segment, and whether r had more bytes than segs
// hold.
func readChunk(r io.Reader, segs [][]byte) (n int64, lens []int, over bool, err error) {
	lens = make([]int, len(segs))
	for i, s := range segs {
		k, err := io.ReadFull(r, s)
		lens[i] = k
		n += int64(k)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return n, lens, false, nil
		}
		if err != nil {
			return n, lens, false, err
		}
	}
	var probe [1]byte
	k, err := io.ReadAtLeast(r, probe[:], 1)
	if k > 0 {
		return n, lens, true, nil
	}
	if err == io.EOF {
		err = nil
	}
	return n, lens, false, err
}

// limitError explains why a chunk at start went over limit bytes.
func (u *upload) limitError(start, limit, remaining int64) error {
	switch limit {
	case remaining:
		return offsetError(CodeBeyondSize, start, "the chunk goes beyond the declared size of %d bytes", u.size)
	case int64(u.m.maxChunk):
		return errorf(CodeTooLarge, "a chunk may hold at most %d bytes", u.m.maxChunk)
	}
	return offsetError(CodeWindowExceeded, start,
		"the chunk goes beyond the window: wait for progress past offset %d", u.durable)
}

// dropLocked lets go of the buffers nobody uses any more: the part being
// filled unless a Write is filling it, and, unless keepSealed or the worker
// is storing them, the sealed parts. received falls back to what is kept.
func (u *upload) dropLocked(keepSealed bool) {
	kept := u.parts[:0]
	received := u.durable
	for _, p := range u.parts {
		keep := (p.sealed && (keepSealed || u.working)) || (!p.sealed && u.writing)
		if keep {
			kept = append(kept, p)
			received += int64(len(p.buf))
		} else {
			u.putBuf(p.buf)
		}
	}
	clear(u.parts[len(kept):])
	u.parts = kept
	u.received = received
	if u.received < int64(u.headLen()) {
		// The sniffed bytes are gone: sniff again what the client resends.
		u.ctype = ""
	}
}

// detachLocked pauses the upload: a chunk being read is dropped, but every
// byte received whole stays, so that the client continues right after it.
// Idle and reclaimLocked decide how long the bytes of the part being
// filled wait for it.
func (u *upload) detachLocked() {
	if u.writing {
		u.discard = true
	}
}

// evictableLocked reports whether u has nothing left to do in memory: it is
// over, or detached with nothing kept, written or stored.
func (u *upload) evictableLocked() bool {
	if u.working || u.writing || u.unrecorded {
		return false
	}
	return u.status != statusUploading || u.sink == nil && len(u.parts) == 0
}

// failLocked ends the upload with e and drops its buffers.
func (u *upload) failLocked(e *Error, notify bool) {
	u.status = statusFailed
	u.failure = e
	u.notify = notify
	u.dropLocked(false)
}

func (u *upload) state() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := State{Upload: u.id, Room: u.room, Name: u.name, Size: u.size,
		Offset: u.received, Durable: u.durable, Status: u.status, File: u.file}
	if u.failure != nil {
		st.Error = u.failure.Code
	}
	return st
}

// manifestLocked describes the upload as stored after durable bytes whose
// hash state is hash.
func (u *upload) manifestLocked(durable int64, hash []byte) *manifest {
	mf := &manifest{
		Version: manifestVersionFor(u.crcLater), ID: u.id, Status: u.status,
		User: u.owner.User, UserName: u.owner.Name, Room: u.room, Name: u.name, Size: u.size,
		Declared: u.declared, Type: u.ctype, SHA256: u.sha, Later: u.later, CRCLater: u.crcLater, CRC32C: u.crc, FileID: u.fileID, Key: u.key,
		PartSize: u.partSize, Durable: durable, Hash: hash, FileCRC: u.fileCRC, Created: u.created, Updated: u.m.now(),
	}
	if u.mp != nil {
		mf.Multipart = u.mp.ID()
	}
	if u.failure != nil {
		mf.Error = &manifestError{Code: u.failure.Code, Message: u.failure.Message}
	}
	return mf
}

// stop ends an open upload with e (canceled or expired): it stops the
// worker, aborts the multipart upload and deletes the manifest. When the
// worker does not stop before ctx ends, the worker cleans up as it exits.
func (u *upload) stop(ctx context.Context, e *Error, notify bool) error {
	u.mu.Lock()
	switch u.status {
	case statusComplete:
		u.mu.Unlock()
		return errorf(CodeBadRequest, "upload %s is already complete", u.id)
	case statusFailed:
		u.mu.Unlock()
		return nil
	}
	sink := u.sink
	u.failLocked(e, false)
	u.cancel()
	done := u.workerDone
	if u.working {
		u.recordFailure = true
		u.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
	} else {
		u.mu.Unlock()
		u.cleanup(ctx)
	}
	if notify && sink != nil {
		sink.Failed(u.id, e)
	}
	u.m.evict(u)
	return nil
}

// cleanup removes from storage what a failed upload left: the multipart
// upload is aborted and the object deleted in case a completion got that
// far. The manifest is deleted when the upload was canceled or expired, and
// otherwise records the failure so that a resume learns what happened.
// Errors are only logged: the expiry sweep finds what is left.
func (u *upload) cleanup(ctx context.Context) {
	if u.mp != nil {
		if err := u.mp.Abort(ctx); err != nil && !errors.Is(err, storage.ErrNotFound) {
			u.log.Warn("cannot abort the multipart upload", "err", err)
		}
	}
	u.mu.Lock()
	mf := u.manifestLocked(0, nil)
	code := u.failure.Code
	ctype := u.ctype
	u.mu.Unlock()
	// A completion cut short may have left the object without its record,
	// and with the copies completion makes of an image.
	keys := []string{u.key}
	if previewable(ctype) {
		keys = append(keys, strippedKey(u.key), thumbKey(u.key, "image/jpeg"), thumbKey(u.key, "image/png"))
	}
	for _, key := range keys {
		if err := u.m.store.Delete(ctx, key); err != nil {
			u.log.Warn("cannot delete the object", "key", key, "err", err)
		}
	}
	var err error
	if code == CodeCanceled || code == CodeExpired {
		err = u.m.store.Delete(ctx, manifestKey(u.id))
	} else {
		err = u.m.saveManifest(ctx, mf)
	}
	if err != nil {
		u.log.Warn("cannot record the end of the upload; trying again later", "err", err)
	}
	u.mu.Lock()
	u.unrecorded = err != nil
	u.mu.Unlock()
	if err != nil {
		// It stays in memory to answer with its failure; it holds no
		// buffers, and its part memory goes to others.
		u.m.unreserve(u)
	}
}
