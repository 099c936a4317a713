// Package transfer receives files that clients upload in chunks over a
// connection and stores them, one multipart upload per file, in a
// storage.Store.
//
// The connection edge parses frames and calls a Manager: Open starts or
// resumes an upload and answers with a Grant, Write copies one chunk into the
// upload's part buffers without waiting for storage, and a goroutine per busy
// upload stores full parts, keeps a small manifest next to them so that an
// upload survives a restart, and finally completes, verifies and announces
// the file. Memory per upload is bounded by Config.Parts part buffers,
// whatever the file's size: the client may run at most one window
// (Parts*PartSize bytes) ahead of what is durably stored.
package transfer
