package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/client"
)

// The page lists a room's files after their announcements left the
// history, and after the server was killed with SIGKILL and restarted
// (with its state embedded under --data): five files shared, then a
// thousand messages, which push the announcements out of the room's
// history; the page, reloaded after the restart, shows the chat and the
// five files, whose links open.
func TestBrowserFilesAfterRestart(t *testing.T) {
	data, addr := t.TempDir(), freePort(t)
	serve := func() *ferryProcess {
		p := startFerryProcess(t, nil, "serve", "--addr", addr, "--data", data, "--rate", "100000", "--rate-burst", "100000",
			"--ping-interval", "2s", "--ping-timeout", "2s")
		waitOutput(t, &p.stderr, "listening")
		return p
	}
	first := serve()
	base := "http://" + addr + "/"
	erin := newBrowsers(t, "erin")[0]
	erin.enter(base, "archive")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: "http://" + addr, Name: "frank"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, "archive"); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for i := 1; i <= 5; i++ {
		body := bytes.Repeat([]byte{byte('0' + i)}, 2000+i)
		if _, err := c.Upload(ctx, "archive", bytes.NewReader(body), int64(len(body)), client.UploadOptions{Name: fmt.Sprintf("report-%d.txt", i)}); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(body))
	}
	for i := 1; i <= 1000; i++ {
		if err := c.Emit(ctx, "archive", "chat", map[string]any{"text": fmt.Sprintf("message %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	erin.wait("the last message", `[...document.querySelectorAll('[data-testid=message]')].some(e => e.textContent.includes('message 1000'))`, 30*time.Second)
	c.Close()

	if err := first.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-first.done
	serve()
	erin.wait("connected again", `document.querySelector('#conn-state').dataset.state === 'connected'`, 30*time.Second)
	erin.do("reload the page", chromedp.Reload())
	erin.wait("the room again", `document.querySelector('#room-title')?.textContent.includes('archive') && document.querySelector('#conn-state').dataset.state === 'connected'`, 20*time.Second)
	erin.wait("the chat", `[...document.querySelectorAll('[data-testid=message]')].some(e => e.textContent.includes('message 1000'))`, 20*time.Second)
	// The history kept the thousand messages, not the announcements.
	if n := erin.eval(`String(document.querySelectorAll('.message-list:not([hidden]) [data-file-id]').length)`); n != "0" {
		t.Fatalf("%s file cards in the timeline: the announcements should have left the history", n)
	}
	erin.wait("the five files", `document.querySelectorAll('[data-testid=room-file]').length === 5`, 20*time.Second)
	names := erin.eval(`[...document.querySelectorAll('[data-testid=room-file] a')].map(a => a.textContent).join(' ')`)
	if names != "report-5.txt report-4.txt report-3.txt report-2.txt report-1.txt" {
		t.Fatalf("files listed: %q", names)
	}
	erin.screenshot("files-after-restart")
	for i := range 5 {
		href := erin.eval(fmt.Sprintf(`document.querySelectorAll('[data-testid=room-file] a')[%d].href`, i))
		if got := get(t, href); len(got) != sizes[4-i] {
			t.Errorf("file %d by the page's link: %d bytes, want %d", 5-i, len(got), sizes[4-i])
		}
	}
}
