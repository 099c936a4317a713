package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/ferryhq/ferry/storage"
)

// Defaults and bounds of Config.
const (
	DefaultPartSize    = 8 << 20
	DefaultParts       = 2
	DefaultPartMemory  = 256 << 20
	DefaultChunkSize   = 256 << 10
	DefaultMaxChunk    = 1 << 20
	MinChunkSize       = 16 << 10
	DefaultMaxFileSize = 2 << 30
	DefaultTTL         = 24 * time.Hour
	DefaultMaxUploads  = 4
	// DefaultMaxUploadsPerUser bounds the uploads one user has in memory,
	// over all its connections.
	DefaultMaxUploadsPerUser = 16
	DefaultRetryMin          = 100 * time.Millisecond
	DefaultRetryMax          = 5 * time.Second
	DefaultIdle              = 2 * time.Minute
	// DefaultStorageTimeout bounds one storage request; DefaultSlowStorage
	// is how long one may take before the uploader hears that storage is
	// unavailable (it goes on waiting until the timeout meanwhile).
	DefaultStorageTimeout = 30 * time.Second
	DefaultSlowStorage    = 5 * time.Second
	// DefaultBusyRetry is when an upload refused for lack of part memory
	// may try again.
	DefaultBusyRetry = time.Second
	// DefaultPreviews is how many thumbnails are made at once, server-wide:
	// each holds a decoded image (see Config.Previews).
	DefaultPreviews = 1
	// DefaultPreviewMaxPixels admits the photos of most phones (12 to 24
	// MP, and 48 MP sensors save 12 MP by default) and bounds one decode
	// to about 680 MB at worst (a progressive JPEG without chroma
	// subsampling); a 12 MP phone photo takes about 50 MB.
	DefaultPreviewMaxPixels = 40_000_000
	// DefaultPreviewTimeout is how long a finished image waits for its
	// thumbnail before it is announced without one.
	DefaultPreviewTimeout = 10 * time.Second
	// DefaultStripMaxSize bounds the JPEGs whose metadata is stripped:
	// stripping reads the file twice and writes it again before it is
	// announced, each pass one storage request within StorageTimeout, and
	// photos are far smaller (a phone's are 2 to 20 MB).
	DefaultStripMaxSize = 64 << 20

	// maxPartSize keeps a single part buffer reasonable; S3 itself allows 5 GiB.
	maxPartSize = 256 << 20
	// cleanupTimeout bounds the storage calls that clean up after a failed
	// upload when no caller context is at hand.
	cleanupTimeout = 30 * time.Second
)

// Config configures a Manager. Zero values mean the documented defaults.
type Config struct {
	// Store keeps the files, the upload manifests and the file records.
	// Required.
	Store storage.Store
	// PartSize is the size of every multipart part but the last. Default
	// 8 MiB; at least storage.MinPartSize.
	PartSize int
	// BigPartSize, when larger than PartSize, is the part size given to a
	// new upload while the windows of all uploads in memory, its own
	// included, fit in BigPartMemory: fewer, larger requests store a lone
	// upload faster. Uploads opened beyond that get PartSize. Default:
	// PartSize (one size).
	BigPartSize int
	// PartMemory is a hard cap on the part buffers of all uploads
	// together. An upload holds its window (its part buffers × its part size) of it
	// from Open until it leaves memory: it ends, it is paused for
	// idleness, or its paused bytes are reclaimed for another upload. An
	// Open that finds no room is refused with CodeBusy. Default 256 MiB.
	PartMemory int64
	// PartMemoryPerUser caps the part memory of one user's uploads
	// together, so that one user's many connections cannot take it all.
	// Default PartMemory/4, but at least a window of big parts and a
	// window of PartSize parts beside it: a user sending a video can send
	// a photo meanwhile.
	PartMemoryPerUser int64
	// BigPartMemory bounds the windows within which new uploads get
	// BigPartSize parts. Default PartMemory/4: one upload at a time gets
	// big parts with the defaults. When not even one big window fits,
	// every upload gets PartSize parts.
	BigPartMemory int64
	// Idle is how long an upload keeps its buffers without a chunk: the
	// bytes of a part being filled survive a dropped connection that
	// long, and an upload whose connection sends it nothing for that long
	// lets go of its memory (it stays resumable from what is stored).
	// Default 2 minutes.
	Idle time.Duration
	// StorageTimeout bounds every storage request an upload makes; a
	// request that runs out is retried like any failure. Default 30s.
	StorageTimeout time.Duration
	// SlowStorage is how long a storage request may take before the
	// uploader hears CodeStorageUnavailable. Default 5s.
	SlowStorage time.Duration
	// Parts is how many part buffers an upload may hold: one being filled
	// while another is stored. The window a client may send ahead of what is
	// durable is Parts times the upload's part size, and so is its memory.
	// Default 2: 16 busy uploads hold at most PartMemory + 15*2*PartSize
	// (304 MiB) of buffers.
	Parts int
	// BigParts is Parts for an upload given BigPartSize parts: its window
	// is BigParts × BigPartSize. More, smaller parts keep more requests in
	// flight within the same memory, as minio-go's PutObject stores four
	// 16 MiB parts at once. Default Parts.
	BigParts int
	// ChunkSize is the chunk size granted when the client asks for none.
	// Default 256 KiB.
	ChunkSize int
	// MaxChunk is the largest chunk accepted. Default 1 MiB; at least
	// MinChunkSize, at most PartSize.
	MaxChunk int
	// Quota is how many bytes one user may upload per UTC day (counted
	// when an upload opens, given back when it is canceled); past it an
	// upload is refused with CodeOverQuota. Default 0: none.
	Quota int64
	// MaxFileSize is the largest file accepted. Default 2 GiB.
	MaxFileSize int64
	// MaxUploadsPerUser is how many uploads one user may have in memory
	// (running, or waiting for a client that dropped) over all its
	// connections. Default 16.
	MaxUploadsPerUser int
	// MaxUploads is how many uploads one Sink (connection) may have open at
	// once. Default 4.
	MaxUploads int
	// TTL is how long an upload may sit untouched before it expires, and how
	// long the result of a finished upload stays available to a resume.
	// Default 24h.
	TTL time.Duration
	// RetryMin and RetryMax bound the backoff between attempts when storage
	// fails. Defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// Policy decides which content types are accepted.
	Policy Policy
	// NoThumbnails turns thumbnails off. By default a finished JPEG, PNG,
	// GIF or WebP gets a thumbnail (package preview: at most 640 pixels
	// on its long side, upright) stored next to it, and its record the
	// image's displayed size, before the file is announced.
	NoThumbnails bool
	// Previews is how many thumbnails are made at once in all. Each one
	// holds a decoded image: about 3 bytes a pixel for a phone's JPEG, up
	// to 17 for a progressive JPEG without chroma subsampling (see package
	// preview). Default 1.
	Previews int
	// PreviewMaxPixels is the largest image, in width × height, that gets
	// a thumbnail; larger ones are refused from their header, before any
	// pixel is decoded, and have none. Default 40 MP.
	PreviewMaxPixels int64
	// PreviewTimeout bounds how long a finished image waits for its
	// thumbnail, its turn among Previews included. Past it the file is
	// announced without one. Default 10s.
	PreviewTimeout time.Duration
	// KeepEXIF turns metadata stripping off. By default the metadata of a
	// finished JPEG that can tell where, when and with what it was taken
	// (Exif with GPS, XMP, IPTC, comments; the orientation stays) is
	// removed from the stored file: it is rewritten without it, and its
	// record's SHA256 and Size are the stored bytes', SentSHA256 and
	// SentSize the ones the client sent.
	KeepEXIF bool
	// StripMaxSize is the largest JPEG stripped; larger ones are stored as
	// sent. Default 64 MiB.
	StripMaxSize int64
	// Locker, when set, makes the managers of several nodes sharing
	// Store take turns on each upload (see Locker). Default nil: one
	// node.
	Locker Locker
	// Log receives the manager's logs. Default: discarded.
	Log *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Manager receives uploads. It is safe for concurrent use.
type Manager struct {
	store          storage.Store
	partSize       int
	bigPartSize    int
	bigParts       int
	partMemory     int64
	bigMemory      int64
	idle           time.Duration
	storageWait    time.Duration
	slowStorage    time.Duration
	parts          int
	chunkSize      int
	maxChunk       int
	maxFileSize    int64
	maxUploads     int
	maxUserUploads int
	ttl            time.Duration
	retryMin       time.Duration
	retryMax       time.Duration
	policy         Policy
	locker         Locker // nil: one node
	log            *slog.Logger
	now            func() time.Time
	pool           *bufPool // of PartSize buffers
	bigPool        *bufPool // of BigPartSize buffers

	thumbnails   bool
	stripEXIF    bool
	stripMaxSize int64
	previewMax   int64 // pixels
	previewWait  time.Duration
	// previewTurns holds a token per thumbnail being made: its capacity
	// is Config.Previews, the decodes that may hold memory at once.
	previewTurns chan struct{}
	// previews counts the goroutines making thumbnails, which may outlive
	// the completion that gave up waiting for them; Shutdown waits.
	previews sync.WaitGroup

	// ctx parents every upload's context; cancel ends them all when
	// Shutdown runs out of time.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	uploads map[string]*upload       // open uploads, and those still storing
	claims  map[string]chan struct{} // ids being loaded from or removed in storage
	// reserved counts the windows of the uploads in memory and of those
	// being opened, against partMemory.
	reserved int64
	// byUser is reserved per owning user, within userMemory.
	byUser     map[string]int64
	userMemory int64
	quota      quota
	events     Events // see Notify
	closed     bool
	closing    chan struct{}

	// workersMu is a leaf lock, taken with an upload's lock held.
	workersMu sync.Mutex
	noWorkers bool
	workers   sync.WaitGroup
}

// Notify makes ev hear the manager's events (nil: nobody). The
// composition root calls it once, before Run and before any upload opens.
func (m *Manager) Notify(ev Events) {
	if ev == nil {
		ev = noEvents{}
	}
	m.events = ev
}

// noEvents is the Events of a manager nobody listens to.
type noEvents struct{}

func (noEvents) Announce(context.Context, File) {}
func (noEvents) PartStored(time.Duration)       {}

// New returns a Manager for cfg.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil {
		return nil, errors.New("transfer: Config.Store is required")
	}
	m := &Manager{
		store:          cfg.Store,
		partSize:       orDefault(cfg.PartSize, DefaultPartSize),
		parts:          orDefault(cfg.Parts, DefaultParts),
		partMemory:     orDefault(cfg.PartMemory, DefaultPartMemory),
		idle:           orDefault(cfg.Idle, DefaultIdle),
		storageWait:    orDefault(cfg.StorageTimeout, DefaultStorageTimeout),
		slowStorage:    orDefault(cfg.SlowStorage, DefaultSlowStorage),
		chunkSize:      orDefault(cfg.ChunkSize, DefaultChunkSize),
		maxChunk:       orDefault(cfg.MaxChunk, DefaultMaxChunk),
		maxFileSize:    orDefault(cfg.MaxFileSize, DefaultMaxFileSize),
		maxUploads:     orDefault(cfg.MaxUploads, DefaultMaxUploads),
		maxUserUploads: orDefault(cfg.MaxUploadsPerUser, DefaultMaxUploadsPerUser),
		ttl:            orDefault(cfg.TTL, DefaultTTL),
		retryMin:       orDefault(cfg.RetryMin, DefaultRetryMin),
		retryMax:       orDefault(cfg.RetryMax, DefaultRetryMax),
		policy:         cfg.Policy,
		locker:         cfg.Locker,
		thumbnails:     !cfg.NoThumbnails,
		stripEXIF:      !cfg.KeepEXIF,
		stripMaxSize:   orDefault(cfg.StripMaxSize, DefaultStripMaxSize),
		previewMax:     orDefault(cfg.PreviewMaxPixels, DefaultPreviewMaxPixels),
		previewWait:    orDefault(cfg.PreviewTimeout, DefaultPreviewTimeout),
		log:            cfg.Log,
		now:            cfg.Now,
		uploads:        make(map[string]*upload),
		claims:         make(map[string]chan struct{}),
		closing:        make(chan struct{}),
	}
	m.bigPartSize = orDefault(cfg.BigPartSize, m.partSize)
	m.bigParts = orDefault(cfg.BigParts, m.parts)
	m.bigMemory = orDefault(cfg.BigPartMemory, m.partMemory/4)
	m.userMemory = cfg.PartMemoryPerUser
	m.quota.limit = cfg.Quota
	m.events = noEvents{}
	m.byUser = make(map[string]int64)
	switch {
	case m.partSize < storage.MinPartSize || m.partSize > maxPartSize:
		return nil, fmt.Errorf("transfer: PartSize %d is outside [%d, %d]", m.partSize, storage.MinPartSize, maxPartSize)
	case m.bigPartSize < m.partSize || m.bigPartSize > maxPartSize:
		return nil, fmt.Errorf("transfer: BigPartSize %d is outside [PartSize, %d]", m.bigPartSize, maxPartSize)
	case m.parts < 1 || m.bigParts < 1:
		return nil, fmt.Errorf("transfer: Parts %d or BigParts %d is below 1", m.parts, m.bigParts)
	case m.window(m.partSize) > m.partMemory:
		return nil, fmt.Errorf("transfer: PartMemory %d is too small for one upload of Parts × PartSize (%d)", m.partMemory, m.window(m.partSize))
	case m.idle < 0, m.storageWait < 0, m.slowStorage < 0:
		return nil, errors.New("transfer: Idle, StorageTimeout and SlowStorage must not be negative")
	case m.maxChunk < MinChunkSize || m.maxChunk > m.partSize:
		return nil, fmt.Errorf("transfer: MaxChunk %d is outside [%d, PartSize]", m.maxChunk, MinChunkSize)
	case m.chunkSize < MinChunkSize || m.chunkSize > m.maxChunk:
		return nil, fmt.Errorf("transfer: ChunkSize %d is outside [%d, MaxChunk]", m.chunkSize, MinChunkSize)
	case m.maxFileSize < 0 || m.maxFileSize > int64(m.partSize)*storage.MaxParts:
		return nil, fmt.Errorf("transfer: MaxFileSize %d needs more than %d parts of %d bytes", m.maxFileSize, storage.MaxParts, m.partSize)
	case m.maxUploads < 1, m.ttl <= 0, m.retryMin <= 0, m.retryMax < m.retryMin:
		return nil, errors.New("transfer: MaxUploads, TTL, RetryMin and RetryMax must be positive, RetryMax >= RetryMin")
	case cfg.Previews < 0, m.previewMax < 0, m.previewWait < 0, m.stripMaxSize < 0:
		return nil, errors.New("transfer: Previews, PreviewMaxPixels, PreviewTimeout and StripMaxSize must not be negative")
	}
	m.previewTurns = make(chan struct{}, orDefault(cfg.Previews, DefaultPreviews))
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.bigPartSize > m.partSize && m.window(m.bigPartSize) > min(m.bigMemory, m.partMemory) {
		// A small memory cap has no room for big parts: one size, rather
		// than a configuration that cannot start.
		m.log.Info("no big parts: their window does not fit in the part memory for them",
			"big_part_size", m.bigPartSize, "big_part_memory", min(m.bigMemory, m.partMemory))
		m.bigPartSize = m.partSize
	}
	if m.userMemory == 0 {
		m.userMemory = min(m.partMemory, max(m.partMemory/4, m.window(m.bigPartSize)+m.window(m.partSize)))
	}
	if m.now == nil {
		m.now = time.Now
	}
	// The buffers of one upload stay at hand between its parts.
	m.pool = newBufPool(m.partSize, m.parts)
	m.bigPool = m.pool
	if m.bigPartSize != m.partSize {
		// No big buffer is kept idle for certain: they are for quiet times.
		m.bigPool = newBufPool(m.bigPartSize, 0)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// window is how far past its durable offset a client may send: the part
// buffers of an upload with parts of partSize.
func (m *Manager) window(partSize int) int64 {
	if partSize == m.bigPartSize && partSize != m.partSize {
		return int64(m.bigParts) * int64(partSize)
	}
	return int64(m.parts) * int64(partSize)
}

// poolFor returns the pool of buffers of partSize.
func (m *Manager) poolFor(partSize int) *bufPool {
	if partSize == m.bigPartSize {
		return m.bigPool
	}
	return m.pool
}

func errShuttingDown() *Error {
	return errorf(CodeStorageUnavailable, "the server is shutting down; resume the upload later")
}

// grantChunk clamps the chunk size a client asked for.
func (m *Manager) grantChunk(want int) int {
	if want <= 0 {
		return m.chunkSize
	}
	return max(MinChunkSize, min(want, m.maxChunk))
}

func (m *Manager) grant(u *upload, offset int64, chunk int) Grant {
	return Grant{Upload: u.id, Offset: offset, ChunkSize: m.grantChunk(chunk), Window: m.window(u.partSize), Size: u.size, Later: u.laterKind()}
}

// Open starts an upload, or resumes one when req.Resume is set. sink hears
// about the upload's progress until the upload ends or Detach(sink); sinks
// are compared with ==, so a sink is typically a pointer, one per
// connection. An empty file is stored at once: its grant carries the File.
func (m *Manager) Open(ctx context.Context, req OpenRequest, sink Sink) (Grant, error) {
	if sink == nil || req.Owner.User == "" {
		return Grant{}, errorf(CodeBadRequest, "an upload needs an owner and a sink")
	}
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return Grant{}, errShuttingDown()
	}
	if req.Resume != "" {
		return m.resume(ctx, req, sink)
	}
	u, err := m.newUpload(req)
	if err != nil {
		return Grant{}, err
	}
	if u.size == 0 {
		return m.openEmpty(ctx, u, req, sink)
	}
	if err := m.quota.take(req.Owner.User, u.size, m.now()); err != nil {
		u.cancel()
		return Grant{}, err
	}
	opened := false
	defer func() {
		if !opened {
			m.quota.give(req.Owner.User, u.size, m.now())
		}
	}()
	if err := m.checkNewLimits(sink, req.Owner.User); err != nil {
		u.cancel()
		return Grant{}, err
	}
	if err := m.checkSpace(ctx, u.size); err != nil {
		u.cancel()
		return Grant{}, err
	}
	if err := m.reserveNew(u); err != nil { // registered or given back by the time Open returns
		u.cancel()
		return Grant{}, err
	}
	// No other node knows the new id yet, but one may be asked to resume
	// it as soon as the client has it.
	l, err := m.lockUpload(ctx, u.id)
	if err != nil {
		u.abandon()
		return Grant{}, err
	}
	l.bind(u)
	u.mu.Lock()
	mf := u.manifestLocked(0, nil)
	u.mu.Unlock()
	if err := m.saveManifest(ctx, mf); err != nil {
		u.abandon()
		return Grant{}, storageError(err, "cannot start the upload")
	}
	if err := m.register(u, sink); err != nil {
		u.abandon()
		_ = m.store.Delete(ctx, manifestKey(u.id))
		return Grant{}, err
	}
	u.log.Debug("upload opened", "room", u.room, "size", u.size)
	opened = true
	return m.grant(u, 0, req.ChunkSize), nil
}

// newUpload validates a request for a new upload.
func (m *Manager) newUpload(req OpenRequest) (*upload, error) {
	if err := checkRoom(req.Room); err != nil {
		return nil, err
	}
	if err := checkName(req.Name); err != nil {
		return nil, err
	}
	switch {
	case req.Size < 0:
		return nil, errorf(CodeBadRequest, "the size is negative")
	case req.Size > m.maxFileSize:
		return nil, errorf(CodeTooLarge, "the file is larger than %d bytes", m.maxFileSize)
	}
	sum, err := checkSHA256(req.SHA256)
	if err != nil {
		return nil, err
	}
	if req.SHA256Later && req.CRC32CLater {
		return nil, errorf(CodeBadRequest, "give sha256_later or crc32c_later, not both")
	}
	declared, err := declaredType(req.Type)
	if err != nil {
		return nil, err
	}
	if err := m.policy.checkClaims(declared, req.Name); err != nil {
		return nil, err
	}
	now := m.now()
	fileID := newID(filePrefix)
	key := objectKey(req.Room, fileID, req.Name, now)
	if err := storage.CheckKey(key); err != nil {
		return nil, wrapf(err, CodeBadName, "the file cannot be stored under this name")
	}
	return m.makeUpload(&manifest{
		Version: manifestVersionFor(req.CRC32CLater), ID: newID(uploadPrefix), Status: statusUploading,
		User: req.Owner.User, UserName: req.Owner.Name, Room: req.Room, Name: req.Name,
		Size: req.Size, Declared: declared, SHA256: sum, FileID: fileID,
		Key: key, Later: req.SHA256Later || req.CRC32CLater, CRCLater: req.CRC32CLater, PartSize: m.partSize, // Open reserves the size it gets
		Created: now, Updated: now,
	}, req.Owner.Conn), nil
}

func checkSHA256(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if len(s) != 64 {
		return "", errorf(CodeBadRequest, "sha256 must be 64 hex digits")
	}
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			b[i] = c + 'a' - 'A'
		default:
			return "", errorf(CodeBadRequest, "sha256 must be 64 hex digits")
		}
	}
	return string(b), nil
}

// checkSinkLimit refuses an upload beyond MaxUploads for one sink.
func (m *Manager) checkSinkLimit(sink Sink) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sinkLimitLocked(sink)
}

func (m *Manager) sinkLimitLocked(sink Sink) error {
	if n, _ := m.countUploadingLocked(sink, ""); n >= m.maxUploads {
		return errorf(CodeTooManyUploads, "at most %d uploads at once per connection", m.maxUploads)
	}
	return nil
}

// checkNewLimits refuses a new upload beyond MaxUploads for sink or
// MaxUploadsPerUser in memory for user, whatever its connections.
func (m *Manager) checkNewLimits(sink Sink, user string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	onSink, ofUser := m.countUploadingLocked(sink, user)
	switch {
	case onSink >= m.maxUploads:
		return errorf(CodeTooManyUploads, "at most %d uploads at once per connection", m.maxUploads)
	case ofUser >= m.maxUserUploads:
		return errorf(CodeTooManyUploads, "at most %d uploads at once per user", m.maxUserUploads)
	}
	return nil
}

// countUploadingLocked counts, in one pass, the uploads running on sink
// and those of user. m.mu is held.
func (m *Manager) countUploadingLocked(sink Sink, user string) (onSink, ofUser int) {
	for _, u := range m.uploads {
		u.mu.Lock()
		if u.status == statusUploading {
			if u.sink == sink {
				onSink++
			}
			if u.owner.User == user {
				ofUser++
			}
		}
		u.mu.Unlock()
	}
	return onSink, ofUser
}

// register makes u an open upload attached to sink.
func (m *Manager) register(u *upload, sink Sink) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errShuttingDown()
	}
	if err := m.sinkLimitLocked(sink); err != nil {
		return err
	}
	u.mu.Lock()
	u.sink = sink
	u.touched = m.now()
	u.mu.Unlock()
	m.uploads[u.id] = u
	return nil
}

// lookup returns an open upload of user.
func (m *Manager) lookup(id, user string) (*upload, error) {
	m.mu.Lock()
	closed := m.closed
	u := m.uploads[id]
	m.mu.Unlock()
	switch {
	case closed:
		return nil, errShuttingDown()
	case u == nil:
		return nil, errorf(CodeUnknownUpload, "upload %q is not open; open it again with resume", id)
	case u.owner.User != user:
		return nil, errorf(CodeForbidden, "upload %s belongs to someone else", id)
	}
	return u, nil
}

// Write consumes one chunk of an upload at offset, reading the payload from
// r until EOF. It never waits for storage: it copies the bytes into the
// upload's part buffers and hands full parts to the upload's goroutine. It
// returns the new received offset. A refused chunk leaves the upload as it
// was; Write stops reading r at the first byte over a limit, so the caller
// discards the rest of the message.
func (m *Manager) Write(uploadID, user string, offset int64, r io.Reader) (int64, error) {
	u, err := m.lookup(uploadID, user)
	if err != nil {
		return 0, err
	}
	return u.write(offset, r)
}

// startWorker runs u's storage goroutine unless Shutdown began. u.mu is held.
func (m *Manager) startWorker(u *upload) bool {
	m.workersMu.Lock()
	defer m.workersMu.Unlock()
	if m.noWorkers {
		return false
	}
	m.workers.Add(1)
	done := make(chan struct{})
	u.working = true
	u.workerDone = done
	go u.work(done)
	return true
}

// Shutdown stops accepting uploads, lets the upload goroutines store the
// full parts they hold until ctx ends, then stops them. Every upload stays
// resumable from its manifest. It returns once no goroutine of the manager
// runs; calling it again is harmless.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.closing)
	}
	m.mu.Unlock()
	m.workersMu.Lock()
	m.noWorkers = true
	m.workersMu.Unlock()

	done := make(chan struct{})
	go func() {
		m.workers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	m.cancel()
	<-done
	// No worker runs, so no thumbnail starts; one a completion gave up
	// on ends by its deadline, or now that m.cancel ended its context.
	m.previews.Wait()
	return err
}
