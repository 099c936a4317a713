package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"

	"github.com/ferryhq/ferry/client"
	"github.com/ferryhq/ferry/server"
	"github.com/ferryhq/ferry/storage"
	"github.com/ferryhq/ferry/storage/disk"
	"github.com/ferryhq/ferry/transfer"
)

// startFileServer runs a ferry server that stores files in a temporary
// folder, in parts of the smallest size, as "ferry serve --part-size 5242880"
// would.
func startFileServer() (url string, stop func()) {
	dir, err := os.MkdirTemp("", "ferry-example-")
	if err != nil {
		log.Fatal(err)
	}
	store, err := disk.New(disk.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	tm, err := transfer.New(transfer.Config{Store: store, PartSize: storage.MinPartSize})
	if err != nil {
		log.Fatal(err)
	}
	srv, url, stopServer := serve(server.Config{Transfer: tm})
	tm.Notify(srv)
	return url, func() {
		stopServer()
		_ = tm.Shutdown(context.Background())
		os.RemoveAll(dir)
	}
}

// dialJoin connects to url and joins room.
func dialJoin(ctx context.Context, cfg client.Config, room string) *client.Client {
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Join(ctx, room); err != nil {
		log.Fatal(err)
	}
	return c
}

// Upload a file to a room; every member is told, and may download it.
func ExampleClient_Upload() {
	url, stop := startFileServer()
	defer stop()
	ctx := context.Background()
	c := dialJoin(ctx, client.Config{URL: url}, "share")
	defer c.Close()

	content := []byte("hello, ferry\n")
	f, err := c.Upload(ctx, "share", bytes.NewReader(content), int64(len(content)), client.UploadOptions{Name: "hello.txt"})
	if err != nil {
		log.Fatal(err)
	}
	var back bytes.Buffer
	if _, err := c.Download(ctx, f, &back); err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.Name, f.Size, f.Type, back.String() == string(content))
	// Output: hello.txt 13 text/plain true
}

// List a room's files, newest first, a page at a time: what a client
// shows of a room whose announcements have left its history.
func ExampleClient_Files() {
	url, stop := startFileServer()
	defer stop()
	ctx := context.Background()
	c := dialJoin(ctx, client.Config{URL: url}, "share")
	defer c.Close()
	for _, name := range []string{"a.txt", "b.txt", "c.txt"} {
		if _, err := c.Upload(ctx, "share", bytes.NewReader([]byte(name)), int64(len(name)), client.UploadOptions{Name: name}); err != nil {
			log.Fatal(err)
		}
	}
	for before := ""; ; {
		page, err := c.Files(ctx, "share", before, 2)
		if err != nil {
			log.Fatal(err)
		}
		for _, f := range page.Files {
			fmt.Println(f.Name, f.Size)
		}
		if page.Next == "" {
			break
		}
		before = page.Next
	}
	// Output:
	// c.txt 5
	// b.txt 5
	// a.txt 5
}

// An app that may die in the middle of an upload saves the upload's id
// when the server grants it (with the client's token, when the app has no
// token of its own: uploads belong to users), and keeps the upload on the
// server when it stops. Its next run resumes: only what the server does
// not hold is sent again.
func ExampleClient_Upload_resume() {
	url, stop := startFileServer()
	defer stop()
	content := bytes.Repeat([]byte("ferry\n"), 2<<20) // 12 MiB

	// The first run stops once the server has stored some of the file.
	var saved struct{ upload, token string }
	ctx, cancel := context.WithCancel(context.Background())
	c := dialJoin(ctx, client.Config{URL: url}, "share")
	_, err := c.Upload(ctx, "share", bytes.NewReader(content), int64(len(content)), client.UploadOptions{
		Name: "log.txt", KeepOnCancel: true,
		OnOpen: func(id string, _ int64) { saved.upload, saved.token = id, c.Token() },
		OnProgress: func(p client.Progress) {
			if p.Durable > 0 {
				cancel()
			}
		},
	})
	fmt.Println("first run:", err)
	c.Close()

	// The next run.
	ctx = context.Background()
	c = dialJoin(ctx, client.Config{URL: url, Token: saved.token}, "share")
	defer c.Close()
	f, err := c.Upload(ctx, "share", bytes.NewReader(content), int64(len(content)), client.UploadOptions{
		Name: "log.txt", Resume: saved.upload,
		OnOpen: func(id string, offset int64) {
			fmt.Println("resumed:", id == saved.upload, "at", offset >= storage.MinPartSize)
		},
		OnRestart: func(reason error) { fmt.Println("started over:", reason) },
	})
	if err != nil {
		log.Fatal(err)
	}
	sum := sha256.Sum256(content)
	fmt.Println(f.Name, f.Size, f.SHA256 == hex.EncodeToString(sum[:]))
	// Output:
	// first run: context canceled
	// resumed: true at true
	// log.txt 12582912 true
}

// OnProgress tells how far the bytes got: handed to the connection (Sent),
// held by the server (Received: where a resume would go on) and stored
// (Durable). A progress bar shows the last two.
func ExampleProgress() {
	url, stop := startFileServer()
	defer stop()
	ctx := context.Background()
	c := dialJoin(ctx, client.Config{URL: url}, "share")
	defer c.Close()

	content := make([]byte, 1<<20)
	var last client.Progress
	_, err := c.Upload(ctx, "share", bytes.NewReader(content), int64(len(content)), client.UploadOptions{
		Name: "zeros.bin",
		OnProgress: func(p client.Progress) {
			last = p // a terminal would redraw: "\r%d of %d received, %d stored"
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", last)
	// Output: {Size:1048576 Sent:1048576 Received:1048576 Durable:1048576}
}
