package protocol

import "time"

// File is a stored file as clients see it: in the room's "file" event, in
// upload.done, and in the answers to upload.open, upload.status and
// file.link.
type File struct {
	ID   string `json:"id"`
	Room string `json:"room"`
	// Name is the name the uploader gave. It is not a safe path: use its
	// base name, checked, to store the file.
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Type is the content type the server found in the bytes.
	Type string `json:"type"`
	// SHA256 is the hex SHA-256 of the stored bytes, and Size their
	// length: what a download gives.
	SHA256 string `json:"sha256"`
	// SentSHA256 and SentSize are set when the server stored other bytes
	// than the client sent (a JPEG whose location and camera metadata it
	// removed): they are the sent file's, as verified.
	SentSHA256 string    `json:"sent_sha256,omitempty"`
	SentSize   int64     `json:"sent_size,omitempty"`
	User       string    `json:"user"`
	UserName   string    `json:"user_name"`
	Time       time.Time `json:"time"`
	// URL is a signed download link, relative to the server, valid for a
	// while (24 hours by default); file.link gets a fresh one.
	URL string `json:"url"`
	// Inline tells whether browsers may show the file in a page.
	Inline bool `json:"inline"`
	// Thumb is a signed link, relative to the server and valid as long
	// as URL, to a preview of an image: a JPEG or PNG at most 640 pixels
	// on its longest side, upright. Absent when there is none.
	Thumb string `json:"thumb,omitempty"`
	// Width and Height are an image's size as displayed (after its EXIF
	// orientation), so that a client can lay it out before loading it;
	// absent when unknown.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
}

// Grant is the ack data of upload.open: where to send from and how much.
type Grant struct {
	Upload    string `json:"upload"`
	Offset    int64  `json:"offset"`
	ChunkSize int    `json:"chunk_size"`
	Window    int64  `json:"window"`
	Size      int64  `json:"size"`
	// Later is the digest the upload waits for with upload.finish:
	// "sha256" (opened with sha256_later), "crc32c" (crc32c_later), or
	// none. A client resuming an upload another run opened finishes it
	// with this one.
	Later string `json:"later,omitempty"`
	// File is set when the upload is already complete (an empty file, or a
	// resumed upload whose completion the client missed): there is nothing
	// to send.
	File *File `json:"file,omitempty"`
}

// Digests an upload waits for (Grant.Later).
const (
	LaterSHA256 = "sha256"
	LaterCRC32C = "crc32c"
)

// Upload states in UploadState.Status.
const (
	UploadUploading = "uploading"
	UploadComplete  = "complete"
	UploadFailed    = "failed"
)

// UploadState is the ack data of upload.status.
type UploadState struct {
	Upload string `json:"upload"`
	Room   string `json:"room"`
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	// Offset is where the client must continue from.
	Offset int64 `json:"offset"`
	// Durable is how much is safely in storage.
	Durable int64 `json:"durable"`
	// Status is UploadUploading, UploadComplete or UploadFailed.
	Status string `json:"status"`
	// File is set once Status is UploadComplete.
	File *File `json:"file,omitempty"`
	// Error is the code that ended the upload when Status is UploadFailed.
	Error string `json:"error,omitempty"`
}

// RoomFiles is the ack data of files: a page of the files announced to a
// room, newest first, each with fresh links. Next, when set, is the
// Before of the next (older) page; it is an opaque cursor.
type RoomFiles struct {
	Room  string `json:"room"`
	Files []File `json:"files"`
	Next  string `json:"next,omitempty"`
}

// Pages of files listings.
const (
	DefaultFilesPage = 50
	MaxFilesPage     = 200
)
