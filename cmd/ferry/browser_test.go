package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/internal/testenv"
)

// browser is one person at the page: its own browser context (its own
// storage, so its own user).
type browser struct {
	t    *testing.T
	ctx  context.Context
	name string
}

// newBrowsers starts one headless Chromium and opens n separate contexts.
func newBrowsers(t *testing.T, names ...string) []*browser {
	t.Helper()
	return newBrowsersWith(t, nil, names...)
}

// newBrowsersWith is newBrowsers with more options for Chromium.
func newBrowsersWith(t *testing.T, extra []chromedp.ExecAllocatorOption, names ...string) []*browser {
	t.Helper()
	path := testenv.Chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 800),
	)
	opts = append(opts, extra...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	root, cancelRoot := chromedp.NewContext(alloc)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil { // starts the browser
		t.Fatalf("chromium: %v", err)
	}
	var out []*browser
	for _, n := range names {
		ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		// The first run opens the tab and ties it to the context it is
		// given: give it the long-lived one, not a per-step timeout.
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("chromium tab: %v", err)
		}
		out = append(out, &browser{t: t, ctx: ctx, name: n})
	}
	return out
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.screenshot("failed-" + b.name)
		b.t.Fatalf("%s: %s: %v", b.name, what, err)
	}
}

// wait polls a JavaScript condition until it is true.
func (b *browser) wait(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		b.screenshot("failed-" + b.name)
		b.t.Fatalf("%s: waiting for %s: %v", b.name, what, err)
	}
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("%s: %s: %v", b.name, expr, err)
	}
	return v
}

// screenshot saves the page under test-artifacts/browser (not committed).
func (b *browser) screenshot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return
	}
	dir := filepath.Join("..", "..", "test-artifacts", "browser")
	_ = os.MkdirAll(dir, 0o755)
	_ = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644)
}

// fill types text into a field the way the page sees typing (an input
// event), then presses the button, as a person would.
func (b *browser) fill(field, text, button string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`(() => {
		const f = document.querySelector(%q);
		f.focus();
		f.value = %q;
		f.dispatchEvent(new Event('input', {bubbles: true}));
		document.querySelector(%q).click();
		return 'ok';
	})()`, field, text, button))
}

// enter signs in with a display name and joins a room.
func (b *browser) enter(base, room string) {
	b.do("open the page", chromedp.Navigate(base), chromedp.WaitVisible("#name"))
	b.fill("#name", b.name, "#name-submit")
	b.wait("the room form", `!!document.querySelector('#room-name')?.offsetParent`, 10*time.Second)
	b.fill("#room-name", room, "#join-room")
	b.wait("the room", fmt.Sprintf(`document.querySelector('#room-title')?.textContent.includes(%q)`, room), 10*time.Second)
	b.wait("connected", `document.querySelector('#conn-state').dataset.state === 'connected'`, 10*time.Second)
}

// testJPEG writes a real JPEG image and returns its path and bytes.
func testJPEG(t *testing.T) (string, []byte) {
	img := image.NewRGBA(image.Rect(0, 0, 320, 200))
	for y := 0; y < 200; y++ {
		for x := 0; x < 320; x++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sunset.jpg")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

func TestBrowserChatAndImages(t *testing.T) {
	addr, _ := startServe(t)
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "alice", "bob")
	alice, bob := bs[0], bs[1]
	alice.enter(base, "photos")
	bob.enter(base, "photos")
	alice.wait("bob's arrival", `[...document.querySelectorAll('[data-testid=member]')].some(m => m.textContent.includes('bob'))`, 10*time.Second)

	// Chat both ways; the sender sees its message acknowledged.
	alice.fill("#message", "hello bob", "#send")
	bob.wait("alice's message", `[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === 'hello bob')`, 10*time.Second)
	alice.wait("the ack", `[...document.querySelectorAll('.message.own')].some(m => m.dataset.state === 'sent')`, 10*time.Second)
	bob.fill("#message", "hi alice", "#send")
	alice.wait("bob's reply", `[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === 'hi alice')`, 10*time.Second)
	alice.screenshot("chat")

	// An image through the file input: bob sees its preview (the server's
	// thumbnail, as large as the image here) and gets the same bytes.
	path, want := testJPEG(t)
	alice.do("pick a file", chromedp.SetUploadFiles("#file-input", []string{path}))
	bob.wait("the preview", `(() => { const i = document.querySelector('img[data-testid=preview]'); return i && i.complete && i.naturalWidth === 320; })()`, 20*time.Second)
	src := bob.eval(`document.querySelector('img[data-testid=preview]').src`)
	if !strings.Contains(src, "/thumb/") {
		t.Errorf("the preview shows %s, not the thumbnail", src)
	}
	if got, err := jpeg.DecodeConfig(bytes.NewReader(get(t, src))); err != nil || got.Width != 320 || got.Height != 200 {
		t.Errorf("the preview is %+v (%v), want a 320×200 JPEG", got, err)
	}
	href := bob.eval(`document.querySelector('[data-testid=file-download]').href`)
	if got := get(t, href); !bytes.Equal(got, want) {
		t.Fatal("download link gives other bytes")
	}
	bob.screenshot("image-preview")

	// The keyboard alone: typing and Enter send a message.
	bob.do("type and press Enter", chromedp.Focus("#message"), chromedp.SendKeys("#message", "sent with the keyboard\r"))
	alice.wait("the keyboard message", `[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === 'sent with the keyboard')`, 10*time.Second)

	// A phone-sized screen: nothing sticks out sideways, and the composer
	// is on screen.
	alice.do("phone viewport", chromedp.EmulateViewport(390, 844))
	alice.wait("the phone layout", `document.documentElement.scrollWidth <= window.innerWidth && document.querySelector('#message').getBoundingClientRect().bottom <= window.innerHeight`, 10*time.Second)
	alice.screenshot("phone")
}

// serveAt runs "ferry serve" on a fixed address and data folder until the
// returned stop is called.
func serveAt(t *testing.T, addr, data string) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr safeBuffer
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, []string{"serve", "--addr", addr, "--data", data, "--ping-interval", "2s", "--ping-timeout", "2s"}, io.Discard, &stderr)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !listening.MatchString(stderr.String()) {
		select {
		case err := <-errc:
			cancel()
			t.Fatalf("serve: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-errc
		}
	}
	t.Cleanup(stop)
	return stop
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The server restarts while a file is uploading: the page shows that it is
// reconnecting, comes back, and the upload completes by itself.
func TestBrowserUploadSurvivesRestart(t *testing.T) {
	addr, data := freePort(t), t.TempDir()
	stop := serveAt(t, addr, data)
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "carol", "dave")
	carol, dave := bs[0], bs[1]
	carol.enter(base, "backup")
	dave.enter(base, "backup")

	// Big enough to be caught mid-way: several parts of 8 MiB.
	payload := make([]byte, 48<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	file := filepath.Join(t.TempDir(), "archive.bin")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	carol.do("pick a file", chromedp.SetUploadFiles("#file-input", []string{file}))
	carol.wait("the upload to start", `(() => { const u = document.querySelector('[data-testid=upload]'); return u && ['uploading','queued'].includes(u.dataset.state) && (u.querySelector('progress')?.value || 0) > 0.05; })()`, 30*time.Second)
	stop()
	carol.wait("the reconnecting state", `document.querySelector('#conn-state').dataset.state === 'reconnecting'`, 10*time.Second)
	carol.screenshot("reconnecting")
	serveAt(t, addr, data)
	carol.wait("connected again", `document.querySelector('#conn-state').dataset.state === 'connected'`, 20*time.Second)
	carol.wait("the upload to finish", `document.querySelector('[data-testid=upload]')?.dataset.state === 'done'`, 90*time.Second)
	dave.wait("the file card", `[...document.querySelectorAll('[data-testid=file-name]')].some(e => e.textContent === 'archive.bin')`, 20*time.Second)
	href := dave.eval(`document.querySelector('[data-testid=file-download]').href`)
	got := get(t, href)
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		t.Fatalf("downloaded %d bytes, not the %d uploaded", len(got), len(payload))
	}
	dave.screenshot("file-card")
}
