package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Uploads in these tests go through a link slowed down to this many bytes a
// second, so that a page reload lands in the middle of one.
const reloadTestRate = 2 << 20

// A page reloaded in the middle of an upload lists it as unfinished; picking
// the same file again resumes it where the server stands, and the file
// arrives whole.
func TestBrowserUploadResumesAfterReload(t *testing.T) {
	const (
		// Large enough that the upload still runs when the page reloads,
		// even on a loaded machine where the waits before it take seconds.
		size   = 32 << 20
		window = 10 << 20 // --part-buffers (2) × --part-size
		// The reload comes once the server holds more than a window:
		// starting over would then cost more than size + window bytes.
		reloadAt = 12 << 20
	)
	r := uploadThenReload(t, size, reloadAt)
	b := r.b
	b.screenshot("resume-pending")

	// On a phone the row fits, its buttons within reach.
	b.do("phone viewport", chromedp.EmulateViewport(390, 844))
	b.wait("the phone layout", `document.documentElement.scrollWidth <= window.innerWidth && document.querySelector('[data-testid=pending-upload] .cancel').getBoundingClientRect().right <= window.innerWidth`, 10*time.Second)
	b.screenshot("resume-pending-phone")
	b.do("desktop viewport", chromedp.EmulateViewport(1100, 800))

	b.do("pick the same file again", chromedp.SetUploadFiles("#file-input", []string{r.file}))
	b.wait("the pending row to go", `!document.querySelector('[data-testid=pending-upload]')`, 10*time.Second)
	b.wait("the file card", `[...document.querySelectorAll('[data-testid=file-name]')].some(e => e.textContent === 'archive.bin')`, 60*time.Second)
	got := uploadBytes(t, r.metrics) - r.before
	t.Logf("the server received %.1f MiB in chunks for a file of %d MiB", float64(got)/(1<<20), size>>20)
	if got >= size+window {
		t.Errorf("the server received %d bytes for a file of %d: the upload started over", got, size)
	}
	href := b.eval(`document.querySelector('[data-testid=file-download]').href`)
	if got := get(t, href); sha256.Sum256(got) != sha256.Sum256(r.payload) {
		t.Fatalf("downloaded %d bytes, not the %d uploaded", len(got), len(r.payload))
	}
	if v := b.eval(`String(localStorage.getItem('ferry.uploads'))`); v != "null" {
		t.Errorf("the finished upload is still remembered: %s", v)
	}
}

// Dismissing an unfinished upload cancels it on the server and forgets it.
func TestBrowserUploadDismissAfterReload(t *testing.T) {
	// A large file: the upload must still run when the page reloads, even
	// on a loaded machine where the waits before the reload take seconds.
	r := uploadThenReload(t, 48<<20, 4<<20)
	b := r.b
	id := b.eval(`document.querySelector('[data-testid=pending-upload]').dataset.upload`)
	b.do("dismiss", chromedp.Click(`[data-testid=pending-upload] .cancel`))
	b.wait("the row to go", `!document.querySelector('[data-testid=pending-upload]') && localStorage.getItem('ferry.uploads') === null`, 10*time.Second)
	b.eval(fmt.Sprintf(`ferry.uploadStatus(%q).then((st) => { window.statusAfter = st.status; }, (err) => { window.statusAfter = err.code; }), 'asked'`, id))
	b.wait("the status", `!!window.statusAfter`, 10*time.Second)
	if st := b.eval(`window.statusAfter`); st == "uploading" {
		t.Errorf("the dismissed upload %s is still open on the server", id)
	}
	b.do("reload the page", chromedp.Reload(), chromedp.WaitVisible("#conn-state"))
	b.wait("connected again", `document.querySelector('#conn-state')?.dataset.state === 'connected'`, 15*time.Second)
	time.Sleep(500 * time.Millisecond) // what would show an unfinished upload has run
	if n := b.eval(`String(document.querySelectorAll('[data-testid=pending-upload]').length)`); n != "0" {
		t.Errorf("%s unfinished uploads shown after dismissing", n)
	}
}

type reloaded struct {
	b       *browser
	file    string
	payload []byte
	metrics string // the server's base URL, for uploadBytes
	before  int64  // its upload byte count before the upload
}

// uploadThenReload starts the upload of a file of size random bytes from the
// page, reloads the page once the server has reloadAt bytes of it, and
// waits for the page to list it as unfinished. uploadBytes is
// send_resume_test.go's reader of /metrics.
func uploadThenReload(t *testing.T, size, reloadAt int64) reloaded {
	t.Helper()
	addr, _ := startServe(t, "--part-size", "5242880", "--big-part-size", "5242880")
	base := "http://" + throttle(t, addr, reloadTestRate) + "/"
	b := newBrowsers(t, "erin")[0]
	b.enter(base, "resume")

	r := reloaded{b: b, payload: make([]byte, size), metrics: "http://" + addr}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range r.payload {
		r.payload[i] = byte(rng.Uint32())
	}
	r.file = filepath.Join(t.TempDir(), "archive.bin")
	if err := os.WriteFile(r.file, r.payload, 0o644); err != nil {
		t.Fatal(err)
	}
	r.before = uploadBytes(t, r.metrics)
	b.do("pick the file", chromedp.SetUploadFiles("#file-input", []string{r.file}))
	deadline := time.Now().Add(30 * time.Second)
	for uploadBytes(t, r.metrics)-r.before < reloadAt {
		if time.Now().After(deadline) {
			b.screenshot("failed-resume-start")
			t.Fatalf("the server got %d bytes in 30 s", uploadBytes(t, r.metrics)-r.before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sizeText := fmt.Sprintf("%d MiB", size>>20)
	b.wait("progress in binary units", fmt.Sprintf(`/iB of %s · stored /.test(document.querySelector('[data-testid=upload] [data-testid=upload-status]')?.textContent)`, sizeText), 5*time.Second)
	b.screenshot("resume-before-reload")

	b.do("reload the page", chromedp.Reload(), chromedp.WaitVisible("#conn-state"))
	b.wait("connected again", `document.querySelector('#conn-state')?.dataset.state === 'connected'`, 15*time.Second)
	b.wait("the unfinished upload", fmt.Sprintf(`/^archive\.bin — [0-9.]+ MiB of %s sent\. Pick the file again to resume\.$/.test(document.querySelector('[data-testid=pending-upload] [data-testid=upload-status]')?.textContent)`, sizeText), 15*time.Second)
	return r
}

// throttle forwards connections to addr, passing at most rate bytes a second
// from each client to the server (the way up of an upload), and returns its
// own address. Everything ends with the test.
func throttle(t *testing.T, addr string, rate int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				slowCopy(s, c, rate)
				s.Close()
			}()
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, s)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// slowCopy copies src to dst at no more than rate bytes a second.
func slowCopy(dst io.Writer, src io.Reader, rate int) {
	buf := make([]byte, 32<<10)
	start := time.Now()
	var n int64
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				return
			}
			n += int64(k)
			if ahead := time.Duration(float64(n)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err != nil {
			return
		}
	}
}
