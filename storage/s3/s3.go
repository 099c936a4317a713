// Package s3 is the storage.Store for S3-compatible services: MinIO, AWS S3,
// and the like, through the minio-go client.
//
// Objects map one to one to S3 objects in one bucket; storage.Meta maps to the
// Content-Type and X-Amz-Meta-* headers. Multipart uploads are S3's own, so an
// upload started by one ferry process can be resumed by another from the key
// and upload id alone.
//
// What S3 cannot do, and how this store copes:
//   - S3 cannot change an object's metadata in place. Complete replaces it, when
//     it differs from what the upload was created with, by copying the object
//     onto itself. That copy is limited to 5 GiB objects, and a crash between
//     the two steps leaves the object complete with its creation metadata.
//   - S3 cannot complete an upload without parts. Complete then stores an empty
//     object with Put and aborts the upload.
//   - MinIO lists multipart uploads only from memory: ListMultipart does not
//     see uploads started before the MinIO server last restarted. MinIO removes
//     abandoned uploads itself (MINIO_API_STALE_UPLOADS_EXPIRY).
package s3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/ferryhq/ferry/storage"
)

// Compile-time checks of what Store provides.
var (
	_ storage.Store           = (*Store)(nil)
	_ storage.Presigner       = (*Store)(nil)
	_ storage.MultipartLister = (*Store)(nil)
	_ io.Closer               = (*Store)(nil)
)

// defaultContentType is S3's own default, set explicitly so that storage/disk
// and this store agree.
const defaultContentType = "application/octet-stream"

// defaultRegion is the region used when Config.Region is empty; MinIO accepts
// it whatever its own setting.
const defaultRegion = "us-east-1"

// DefaultTimeout is Config.Timeout's default: long enough for a busy
// service, short enough that an upload learns of a dead one while its user
// still waits.
const DefaultTimeout = 30 * time.Second

// Config configures a Store.
type Config struct {
	// Endpoint is the URL of the S3 service, such as "http://127.0.0.1:9000"
	// or "https://s3.eu-west-1.amazonaws.com". Its scheme chooses between
	// plain HTTP and TLS. Required.
	Endpoint string
	// PublicEndpoint is the URL at which browsers reach the same service,
	// used in presigned URLs. It matters when ferry reaches storage at an
	// internal address (http://minio:9000 in docker-compose). Empty means
	// Endpoint.
	PublicEndpoint string
	// Bucket holds the objects. It is created if missing. Required.
	Bucket string
	// AccessKey and SecretKey are the credentials. Both empty means anonymous
	// requests.
	AccessKey, SecretKey string
	// Region is the bucket's region. Empty means "us-east-1".
	Region string
	// Transport carries the requests. Nil means minio-go's default transport
	// with Timeout applied, whose idle connections Close releases.
	Transport http.RoundTripper
	// Timeout bounds each wait on the service within a request: connecting,
	// the TLS handshake, and the response's headers once the request is
	// sent, so that a service that accepts connections but never answers
	// fails the call instead of holding it forever. It does not bound
	// bodies, which take as long as the file. Zero means DefaultTimeout.
	// Ignored with a Config.Transport, which sets its own.
	Timeout time.Duration
	// MaxRetries is how many times a request is tried. Default 2: callers
	// (ferry's uploads) retry on their own and must learn of an outage in
	// seconds, not after minio-go's default of ten tries with backoff.
	MaxRetries int
	// Log receives problems that do not fail a call. Nil means slog.Default().
	Log *slog.Logger
}

// Store keeps objects in an S3 bucket. It is safe for concurrent use.
type Store struct {
	api     s3API
	presign presigner
	bucket  string
	region  string
	log     *slog.Logger
	// transports are closed by Close; nil for a Config.Transport.
	transports []*http.Transport
}

// New connects to the service and creates the bucket if it does not exist.
func New(ctx context.Context, cfg Config) (*Store, error) {
	s, err := connect(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.ensureBucket(ctx, s.region); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// connect builds a Store from cfg, with its defaults applied, without a
// request yet.
func connect(cfg Config) (*Store, error) {
	if cfg.Region == "" {
		cfg.Region = defaultRegion
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Bucket == "" {
		return nil, errors.New("storage/s3: Config.Bucket is required")
	}
	s := &Store{bucket: cfg.Bucket, region: cfg.Region, log: cfg.Log.With("bucket", cfg.Bucket)}
	core, err := s.client(cfg, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	s.api = minioAPI{*core}
	s.presign = s.api
	if cfg.PublicEndpoint != "" && cfg.PublicEndpoint != cfg.Endpoint {
		// A client of its own signs for the public host. Presigning is
		// local (the region is known), so it never connects there.
		pub, err := s.client(cfg, cfg.PublicEndpoint)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.presign = pub
	}
	return s, nil
}

// newWithAPI builds a Store over any s3API; tests use it with fakes.
func newWithAPI(api s3API, bucket string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{api: api, presign: api, bucket: bucket, log: log}
}

// client makes a minio-go client for endpoint, a URL.
func (s *Store) client(cfg Config, endpoint string) (*minio.Core, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("storage/s3: endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("storage/s3: endpoint %q: want http:// or https:// and a host, nothing else", endpoint)
	}
	secure := u.Scheme == "https"
	tr := cfg.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("storage/s3: %w", err)
		}
		t.DialContext = sendDialer((&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext)
		t.TLSHandshakeTimeout = cfg.Timeout
		t.ResponseHeaderTimeout = cfg.Timeout
		s.transports = append(s.transports, t)
		tr = t
	}
	core, err := minio.NewCore(u.Host, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:     secure,
		Region:     cfg.Region,
		Transport:  tr,
		MaxRetries: cmp.Or(cfg.MaxRetries, 2),
	})
	if err != nil {
		return nil, fmt.Errorf("storage/s3: endpoint %q: %w", endpoint, err)
	}
	return core, nil
}

func (s *Store) ensureBucket(ctx context.Context, region string) error {
	ok, err := s.api.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("storage/s3: bucket %q: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.api.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: region})
	// Another ferry, or docker-compose's mc, may create it at the same time.
	switch {
	case err == nil:
		s.log.Info("storage/s3: created bucket")
	case minio.ToErrorResponse(err).Code != "BucketAlreadyOwnedByYou":
		return fmt.Errorf("storage/s3: creating bucket %q: %w", s.bucket, err)
	}
	return nil
}

// Close releases the idle connections of the transports New created.
// Calls made after Close still work, on new connections.
func (s *Store) Close() error {
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
	return nil
}

// Put stores an object with a single PUT of exactly size bytes, streamed
// from r.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, meta storage.Meta) error {
	if err := checkKey(key); err != nil {
		return err
	}
	// minio-go would accept -1 and buffer up to its maximum part size for
	// it, hundreds of MiB: a size is always required.
	if size < 0 {
		return fmt.Errorf("storage/s3: put %q: size %d: the size must be known", key, size)
	}
	b := body(r, size)
	_, err := s.api.PutObject(ctx, s.bucket, key, b, size, "", "", putOptions(meta))
	done(b)
	return wrap("put", key, err)
}

// Get opens key. The Object reads it with GET requests made with ctx: the
// first at once, then one after each Seek that moves, for the rest of the
// object from there.
func (s *Store) Get(ctx context.Context, key string) (storage.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	rc, oi, _, err := s.api.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, wrap("get", key, err)
	}
	return &object{ctx: ctx, s: s, key: key, etag: oi.ETag, info: toInfo(key, oi), body: rc}, nil
}

// Stat returns key's Info from a HEAD request.
func (s *Store) Stat(ctx context.Context, key string) (storage.Info, error) {
	if err := checkKey(key); err != nil {
		return storage.Info{}, err
	}
	oi, err := s.api.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return storage.Info{}, wrap("stat", key, err)
	}
	return toInfo(key, oi), nil
}

// Delete removes key; S3 itself does not mind a missing key.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	err := wrap("delete", key, s.api.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}))
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// List lists the objects under prefix in key order, S3's own order. Info.Meta
// is empty: S3 listings do not carry metadata, and a HEAD per object would
// make listing a room cost one request per file. Use Stat for metadata.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	// Leaving the loop early stops the listing; cancel ends any request
	// minio-go still has in flight.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for oi := range s.api.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return wrap("list", prefix, oi.Err)
		}
		if err := fn(storage.Info{Key: oi.Key, Size: oi.Size, Modified: oi.LastModified.UTC()}); err != nil {
			return err
		}
	}
	return nil
}

// PresignGet returns a URL that reads key without credentials until expires
// has passed (at most 7 days).
func (s *Store) PresignGet(ctx context.Context, key string, expires time.Duration) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	u, err := s.presign.PresignedGetObject(ctx, s.bucket, key, expires, nil)
	if err != nil {
		return "", wrap("presign", key, err)
	}
	return u.String(), nil
}

// putOptions turns meta into the headers S3 stores with an object.
func putOptions(meta storage.Meta) minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: contentType(meta), UserMetadata: userHeaders(meta.User)}
}

func contentType(meta storage.Meta) string {
	if meta.ContentType == "" {
		return defaultContentType
	}
	return meta.ContentType
}

// userHeaders prefixes each key with X-Amz-Meta- itself: minio-go sends keys
// that look like standard headers ("expires", "content-language") as those
// headers, which would turn ferry's metadata into something else.
func userHeaders(user map[string]string) map[string]string {
	h := make(map[string]string, len(user))
	for k, v := range user {
		h["X-Amz-Meta-"+k] = v
	}
	return h
}

// toInfo converts minio-go's ObjectInfo. S3 returns metadata keys in HTTP's
// canonical case ("Original-Name"); ferry's keys are lower case.
func toInfo(key string, oi minio.ObjectInfo) storage.Info {
	var user map[string]string
	if len(oi.UserMetadata) > 0 {
		user = make(map[string]string, len(oi.UserMetadata))
		for k, v := range oi.UserMetadata {
			user[strings.ToLower(k)] = v
		}
	}
	return storage.Info{
		Key:      key,
		Size:     oi.Size,
		Modified: oi.LastModified.UTC(),
		Meta:     storage.Meta{ContentType: oi.ContentType, User: user},
	}
}

// sameMeta reports whether stored metadata already is what meta asks for.
func sameMeta(stored, meta storage.Meta) bool {
	return stored.ContentType == contentType(meta) && maps.Equal(stored.User, meta.User)
}

// wrap adds context to an error from minio-go, and a sentinel when S3 says
// something callers act on: storage.ErrNotFound when the object or the
// upload does not exist, storage.ErrFull when the service has no room.
func wrap(op, key string, err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchUpload":
		return fmt.Errorf("storage/s3: %s %q: %w: %w", op, key, storage.ErrNotFound, err)
	case fullCodes[resp.Code] || resp.StatusCode == http.StatusInsufficientStorage:
		return fmt.Errorf("storage/s3: %s %q: %w: %w", op, key, storage.ErrFull, err)
	}
	return fmt.Errorf("storage/s3: %s %q: %w", op, key, err)
}

// fullCodes are the error codes with which S3 services say they have no
// room for a write, beyond HTTP's 507 Insufficient Storage. EntityTooLarge
// is not among them: it refuses one object, and a smaller one would go
// through.
var fullCodes = map[string]bool{
	"XMinioStorageFull":              true, // MinIO: its drives are at their free-space floor (507)
	"XMinioAdminBucketQuotaExceeded": true, // MinIO: the bucket's quota is spent
	"QuotaExceeded":                  true, // Ceph RGW and others: a user or bucket quota
}
