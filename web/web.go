// Package web holds ferry's browser client, embedded in the binary.
//
// static/ferry.js is the client library (an ES module without dependencies,
// documented in docs/web-client.md); static/index.html, app.js and style.css
// are the page ferry serve shows at "/". Nothing is fetched from elsewhere, so
// the page works on a network without internet.
package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var files embed.FS

// FS returns the files to serve at "/" (index.html at the root).
func FS() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		// "static" is a valid path embedded at build time; Sub cannot fail.
		panic(err)
	}
	return sub
}
