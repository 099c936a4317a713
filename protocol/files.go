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
	// SHA256 is the hex SHA-256 of the stored bytes.
	SHA256   string    `json:"sha256"`
	User     string    `json:"user"`
	UserName string    `json:"user_name"`
	Time     time.Time `json:"time"`
	// URL is a signed download link, relative to the server, valid for a
	// while (24 hours by default); file.link gets a fresh one.
	URL string `json:"url"`
	// Inline tells whether browsers may show the file in a page.
	Inline bool `json:"inline"`
}

// Grant is the ack data of upload.open: where to send from and how much.
type Grant struct {
	Upload    string `json:"upload"`
	Offset    int64  `json:"offset"`
	ChunkSize int    `json:"chunk_size"`
	Window    int64  `json:"window"`
	Size      int64  `json:"size"`
	// File is set when the upload is already complete (an empty file, or a
	// resumed upload whose completion the client missed): there is nothing
	// to send.
	File *File `json:"file,omitempty"`
}

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
