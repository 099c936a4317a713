package transfer

import (
	"context"
	"time"
)

// Owner is who uploads: the user and display name, and the connection whose
// Sink hears about progress.
type Owner struct {
	User string
	Name string
	Conn string
}

// OpenRequest opens a new upload, or resumes one when Resume is set.
type OpenRequest struct {
	Owner Owner
	Room  string
	// Name is the file's name as the user sees it (no path).
	Name string
	Size int64
	// Type is the content type the client declares; it is checked against the
	// sniffed bytes and the name's extension.
	Type string
	// SHA256 is the hex SHA-256 of the whole file, optional.
	SHA256 string
	// SHA256Later says the client gives the SHA-256 with Finish once it
	// has sent the last byte; the upload completes only then.
	SHA256Later bool
	// CRC32CLater says the client gives the file's CRC32C with Finish
	// instead (S3's own end-to-end check, hashed at memory speed); the
	// upload completes only then, and the server still computes the
	// SHA-256 the file is known by. At most one of the two Later.
	CRC32CLater bool
	// ChunkSize is the chunk size the client would like; the grant may differ.
	ChunkSize int
	// Resume is the id of an upload to resume. Its owner must be Owner.User.
	Resume string
}

// Grant is the server's answer to OpenRequest.
type Grant struct {
	Upload    string
	Offset    int64
	ChunkSize int
	Window    int64
	Size      int64
	// Later is the digest the upload waits for with Finish: "sha256",
	// "crc32c", or "" for none.
	Later string
	// File is set when the upload is already complete (an empty file, or a
	// resumed upload whose completion the client missed): there is nothing
	// to send.
	File *File
}

// File is a stored, announced file: the record kept with it in the store
// (its manifest, whose JSON it is). Clients see protocol.File. Records
// written before a field existed load with its zero value.
type File struct {
	ID   string `json:"id"`
	Room string `json:"room"`
	Name string `json:"name"`
	// Size and SHA256 are the stored bytes'.
	Size     int64     `json:"size"`
	Type     string    `json:"type"`
	SHA256   string    `json:"sha256"`
	User     string    `json:"user"`
	UserName string    `json:"user_name"`
	Time     time.Time `json:"time"`
	// Key is where the object lives in the store.
	Key string `json:"key"`
	// SentSize and SentSHA256 are set when the stored bytes are not the
	// ones the client sent: a JPEG whose metadata was stripped. They are
	// what the client sent, and verified.
	SentSize   int64  `json:"sent_size,omitempty"`
	SentSHA256 string `json:"sent_sha256,omitempty"`
	// ThumbKey is where the file's thumbnail lives in the store, of type
	// ThumbType (image/jpeg or image/png); empty when it has none.
	ThumbKey  string `json:"thumb_key,omitempty"`
	ThumbType string `json:"thumb_type,omitempty"`
	// Width and Height are an image's displayed size, in pixels, after
	// its EXIF orientation; 0 when unknown (not an image, or no thumbnail
	// could be made).
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// sentSHA256 is the SHA-256 of the bytes the client sent.
func (f *File) sentSHA256() string {
	if f.SentSHA256 != "" {
		return f.SentSHA256
	}
	return f.SHA256
}

// State is an upload's state as Status reports it.
type State struct {
	Upload string
	Room   string
	Name   string
	Size   int64
	// Offset is where the client must continue from.
	Offset int64
	// Durable is how much is safely in storage.
	Durable int64
	// Status is protocol.UploadUploading, UploadComplete or UploadFailed.
	Status string
	// File is set once Status is complete.
	File *File
	// Error is the code that ended the upload when Status is failed.
	Error string
}

// Sink hears about an upload's progress. The manager calls it from its own
// goroutines and from Write; implementations must not block (queue and
// return).
type Sink interface {
	// Progress reports how far the upload got: received bytes are held by
	// the server (where a resume continues), durable ones are stored. It
	// comes after every stored part and, while chunks arrive, at most every
	// ProgressInterval.
	Progress(upload string, received, durable int64)
	// Completed reports that the upload is stored, verified and announced.
	Completed(upload string, f File)
	// Failed reports a problem. When the error's code is
	// CodeStorageUnavailable the upload stays resumable; otherwise it is over.
	Failed(upload string, err error)
}

// Interrupter is an optional capability of a Sink: a sink that can make a
// chunk it is still reading fail at once. The manager interrupts the old
// sink when an upload is resumed by another one while a chunk of it is
// being read, so that a connection the client abandoned mid-chunk (a dead
// mobile link) does not hold the upload until its reads time out.
type Interrupter interface {
	Interrupt(upload string)
}

// Events hears what the manager does that the rest of the service acts on:
// the one way the manager reports up. The composition root wires it
// (Manager.Notify); the manager calls it from its own goroutines.
type Events interface {
	// Announce publishes a finished file to its room. It is called once
	// per file, after the object is complete and verified, and before the
	// uploader's Sink hears Completed.
	Announce(ctx context.Context, f File)
	// PartStored reports how long storing one part took.
	PartStored(d time.Duration)
}
