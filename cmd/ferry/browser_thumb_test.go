package main

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// A large photo through the page: the room shows the server's thumbnail
// in a box of the photo's shape, and the original is fetched only when the
// photo is opened.
func TestBrowserThumb(t *testing.T) {
	addr, _ := startServe(t)
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "alice", "bob")
	alice, bob := bs[0], bs[1]
	alice.enter(base, "album")
	bob.enter(base, "album")

	const w, h = 3000, 2000
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x / 12), uint8(y / 8), uint8((x ^ y) / 16), 255})
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	alice.pick(writeTemp(t, "landscape.jpg", buf.Bytes()))

	for _, b := range bs {
		b.wait("the preview", imageLoaded("landscape.jpg"), 30*time.Second)
		got := b.eval(`(() => {
			const card = [...document.querySelectorAll('.file-card')].find(c => c.querySelector('[data-testid=file-name]')?.textContent === 'landscape.jpg');
			const img = card.querySelector('img');
			window.originalURL = card.querySelector('a.open').href;
			const fetched = performance.getEntriesByType('resource').map(e => e.name);
			const r = img.getBoundingClientRect();
			return JSON.stringify({src: img.src, original: window.originalURL, natural: [img.naturalWidth, img.naturalHeight],
				box: [Math.round(r.width), Math.round(r.height)], sized: img.classList.contains('sized'),
				thumbFetched: fetched.includes(img.src), originalFetched: fetched.includes(window.originalURL)});
		})()`)
		var shown struct {
			Src, Original                 string
			Natural, Box                  []int
			Sized                         bool
			ThumbFetched, OriginalFetched bool
		}
		if err := json.Unmarshal([]byte(got), &shown); err != nil {
			t.Fatalf("%s: %s: %v", b.name, got, err)
		}
		if !strings.Contains(shown.Src, "/thumb/") || shown.Src == shown.Original || !shown.ThumbFetched {
			t.Errorf("%s: the image shows %s (fetched: %v), not the thumbnail; the original is %s", b.name, shown.Src, shown.ThumbFetched, shown.Original)
		}
		if len(shown.Natural) != 2 || shown.Natural[0] != 640 || shown.Natural[1] != 427 {
			t.Errorf("%s: the shown image is %v pixels, want the 640×427 thumbnail", b.name, shown.Natural)
		}
		// The box has the photo's shape, known from the announcement.
		if !shown.Sized || len(shown.Box) != 2 || shown.Box[1] == 0 || abs(shown.Box[0]*h-shown.Box[1]*w) > w {
			t.Errorf("%s: box %v (sized %v), want the 3:2 of the photo", b.name, shown.Box, shown.Sized)
		}
		if shown.OriginalFetched {
			t.Errorf("%s: the original was fetched before the photo was opened", b.name)
		}
	}
	if bob.is(`performance.getEntriesByType('resource').some(e => e.name === window.originalURL)`) {
		t.Error("bob's page fetched the original before he opened it")
	}
	bob.screenshot("thumb")

	bob.do("open the photo", chromedp.Click(`.file-card[data-file-id] a.open`))
	bob.wait("the original in the lightbox", `(() => { const i = document.querySelector('#lightbox-img'); return document.querySelector('#lightbox').open && i.src === window.originalURL && i.complete && i.naturalWidth === 3000; })()`, 20*time.Second)
	if !bob.is(`performance.getEntriesByType('resource').some(e => e.name === window.originalURL)`) {
		t.Error("the original was not fetched when the photo was opened")
	}
	bob.screenshot("thumb-opened")
	bob.do("close the lightbox", chromedp.Click(chromedp.ID("lightbox-close")))
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
