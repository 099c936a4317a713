package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/internal/testenv"
	"github.com/ferryhq/ferry/protocol"
)

// These tests hold the page to what a daily messenger does: the timeline's
// scroll, how messages and files look, errors in words, the storage
// banner, the room picker, confirmations, contrast in both themes, and a
// page of another origin built on ferry.js. Screenshots of the main states
// go to test-artifacts/browser.

// is evaluates a JavaScript condition now.
func (b *browser) is(expr string) bool {
	b.t.Helper()
	return b.eval("String(!!("+expr+"))") == "true"
}

// viewport sets the window size: "1280" for 1280x800, "390" for a phone.
func (b *browser) viewport(size string) {
	b.t.Helper()
	w, h := int64(1280), int64(800)
	if size == "390" {
		w, h = 390, 844
	}
	b.do("viewport "+size, chromedp.EmulateViewport(w, h))
}

// scheme makes the page see prefers-color-scheme: light or dark.
func (b *browser) scheme(s string) {
	b.t.Helper()
	b.do("colour scheme "+s, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: s}},
		})
		return err
	}))
}

// pick gives files to the page's file input, as Attach does.
func (b *browser) pick(paths ...string) {
	b.t.Helper()
	b.do("pick files", chromedp.SetUploadFiles("#file-input", paths))
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pngFile writes a w×h PNG named name.
func pngFile(t *testing.T, name string, w, h int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 160, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return writeTemp(t, name, buf.Bytes())
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// cardImage is the image of the file card of name, in JavaScript.
func cardImage(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('.file-card')].find(c => c.querySelector('[data-testid=file-name]')?.textContent === %q)?.querySelector('img')`, name)
}

func imageLoaded(name string) string {
	return fmt.Sprintf(`(() => { const i = %s; return !!i && i.complete && i.naturalWidth > 0; })()`, cardImage(name))
}

// newestInView is the empty string when the bottom edge of the newest message of the room
// shown is within the visible part of the timeline, else what is wrong.
const newestInView = `(() => {
	const m = document.querySelector('#messages');
	const last = [...m.querySelectorAll('.message-list:not([hidden]) > .message')].at(-1);
	if (!last) return 'no message';
	const c = m.getBoundingClientRect(), r = last.getBoundingClientRect();
	return r.bottom <= c.bottom + 1 && r.bottom >= c.top ? '' : 'newest message ends at ' + Math.round(r.bottom) + ', the timeline shows ' + Math.round(c.top) + '-' + Math.round(c.bottom);
})()`

func (b *browser) newestShown(what string) {
	b.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		why := b.eval(newestInView)
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			b.screenshot("failed-" + b.name)
			b.t.Fatalf("%s: %s: %s", b.name, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The timeline sticks to the bottom while its reader is there, through five
// images of different shapes in a row, for the uploader and a reader; a
// reader scrolled up is not moved and gets a "New messages" button; one's
// own message always comes into view; an image announced with its size has
// its box reserved before it loads, shows its preview, and fetches the
// original only when opened.
func TestBrowserChatScroll(t *testing.T) {
	addr, _ := startServe(t)
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "alice", "bob")
	alice, bob := bs[0], bs[1]
	alice.enter(base, "scroll")
	bob.enter(base, "scroll")
	for i := range 12 {
		alice.fill("#message", fmt.Sprintf("line %d", i), "#send")
	}
	bob.wait("the lines", seesText("line 11"), 10*time.Second)

	jpg, _ := testJPEG(t)
	images := []string{jpg, pngFile(t, "wide.png", 1200, 300), pngFile(t, "tall.png", 300, 900),
		pngFile(t, "square.png", 800, 800), pngFile(t, "tiny.png", 64, 48)}
	for _, img := range images {
		name := filepath.Base(img)
		alice.pick(img)
		for _, b := range bs {
			b.wait(name+" loaded", imageLoaded(name), 20*time.Second)
			b.newestShown(name + " in view")
		}
	}
	bob.viewport("1280")
	bob.newestShown("the newest in view at 1280x800")
	bob.screenshot("chat-images-1280")
	bob.viewport("390")
	bob.newestShown("the newest in view on a phone")
	bob.screenshot("chat-images-390")
	bob.viewport("1280")

	// A reader scrolled up stays where it is.
	bob.eval(`document.querySelector('#messages').scrollTop = 0, 'ok'`)
	time.Sleep(200 * time.Millisecond) // the scroll event
	alice.fill("#message", "are you there?", "#send")
	bob.wait("the New messages button", `!document.querySelector('#new-below').hidden`, 10*time.Second)
	alice.pick(pngFile(t, "later.png", 500, 400))
	bob.wait("the later image's card", "!!"+cardImage("later.png"), 20*time.Second)
	time.Sleep(300 * time.Millisecond) // time to move the reader, were the page to
	if top := bob.eval(`String(document.querySelector('#messages').scrollTop)`); top != "0" {
		t.Errorf("bob, scrolled to the top, was moved to %s", top)
	}
	if bob.eval(newestInView) == "" {
		t.Error("bob, scrolled up, sees the newest message: the page moved him")
	}
	if got := bob.eval(`document.querySelector('#new-below').textContent`); got != "New messages ↓" {
		t.Errorf("the button says %q", got)
	}
	bob.screenshot("new-messages-button")
	bob.do("click New messages", chromedp.Click(chromedp.ID("new-below")))
	bob.wait("the later image", imageLoaded("later.png"), 20*time.Second) // lazy: loaded once in view
	bob.newestShown("the newest after the button")
	bob.wait("the button gone", `document.querySelector('#new-below').hidden`, 3*time.Second)

	// One's own message comes into view from anywhere.
	bob.eval(`document.querySelector('#messages').scrollTop = 0, 'ok'`)
	time.Sleep(200 * time.Millisecond)
	bob.fill("#message", "my own words", "#send")
	bob.newestShown("bob's own message")
	bob.eval(`document.querySelector('#messages').scrollTop = 0, 'ok'`)
	time.Sleep(200 * time.Millisecond)
	bob.pick(pngFile(t, "mine.png", 400, 300))
	bob.wait("bob's own image", imageLoaded("mine.png"), 20*time.Second)
	bob.newestShown("bob's own image")

	// An announcement with the image's size and a preview (thumb, width,
	// height): the box is there before anything loads, the preview is
	// shown, and the original is fetched only when the image is opened.
	// The announcement is made up and given to the page as ferry.js
	// would pass it on, so that its size is known in advance (the
	// server's own: browser_thumb_test.go).
	got := bob.eval(`(() => {
		const href = (name) => [...document.querySelectorAll('.file-card')].find(c => c.querySelector('[data-testid=file-name]').textContent === name).querySelector('[data-testid=file-download]').href;
		window.originalURL = href('wide.png') + '&copy=original';
		window.thumbURL = href('sunset.jpg');
		ferry._emit('event', {t: 'event', room: 'scroll', event: 'file', ts: Date.now(), seq: 1e9,
			from: {user: 'u_carol', name: 'carol'},
			data: {id: 'f_sized', room: 'scroll', name: 'panorama.png', size: 123456, type: 'image/png', inline: true,
				user: 'u_carol', user_name: 'carol', time: new Date().toISOString(),
				url: window.originalURL, thumb: window.thumbURL, width: 1200, height: 300}});
		const img = document.querySelector('[data-file-id=f_sized] img');
		const r = img.getBoundingClientRect();
		return JSON.stringify({w: Math.round(r.width), h: Math.round(r.height), loaded: img.complete && img.naturalWidth > 0, src: img.src === window.thumbURL});
	})()`)
	var box struct {
		W, H        int
		Loaded, Src bool
	}
	if err := json.Unmarshal([]byte(got), &box); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if box.W != 320 || box.H < 79 || box.H > 81 || !box.Src {
		t.Errorf("the announced image's box before loading: %+v; want 320×80, showing the thumb", box)
	}
	bob.wait("the preview", `(() => { const i = document.querySelector('[data-file-id=f_sized] img'); return i.complete && i.naturalWidth > 0; })()`, 10*time.Second)
	bob.newestShown("the sized image in view")
	if bob.is(`performance.getEntriesByType('resource').some(e => e.name === window.originalURL)`) {
		t.Error("the original was fetched before the image was opened")
	}
	bob.do("open the image", chromedp.Click(`[data-file-id=f_sized] a.open`))
	bob.wait("the original in the lightbox", `document.querySelector('#lightbox').open && document.querySelector('#lightbox-img').src === window.originalURL && document.querySelector('#lightbox-img').complete`, 10*time.Second)
	bob.screenshot("lightbox")
	bob.do("close the lightbox", chromedp.Click(chromedp.ID("lightbox-close")))
}

// How messages and files look: bubbles as wide as what they hold, one
// header per run of messages, avatars, safe links, file types and sizes in
// words, one delivery language, and the page's small-screen manners.
func TestBrowserChatLooks(t *testing.T) {
	addr, stop := startServe(t)
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "Ada Lovelace", "bob")
	ada, bob := bs[0], bs[1]

	// Signed out: no connection state to speak of, and on a phone no
	// Rooms button that leads nowhere.
	bob.do("open the page", chromedp.Navigate(base), chromedp.WaitVisible("#name"))
	if bob.is(`document.querySelector('#conn-state').offsetParent`) {
		t.Error("the connection state shows before signing in")
	}
	bob.viewport("390")
	if bob.is(`document.querySelector('#toggle-rooms').offsetParent`) {
		t.Error("the Rooms button shows on the phone's sign-in page")
	}
	bob.screenshot("signed-out-390")
	bob.viewport("1280")
	bob.screenshot("signed-out-1280")

	ada.enter(base, "looks")
	bob.enter(base, "looks")
	ada.wait("bob", seesMember("bob"), 10*time.Second)
	link := "see https://example.com/docs_(v2). or javascript:alert(1) <b>not bold</b>"
	for _, text := range []string{"👍", link, "third"} {
		ada.fill("#message", text, "#send")
	}
	bob.wait("ada's messages", seesText("third"), 10*time.Second)

	msgs := fmt.Sprintf(`[...document.querySelectorAll('.message[data-user=%q]')]`, ada.eval(`ferry.user`))
	if w := bob.eval(`String(Math.round(` + msgs + `[0].querySelector('.bubble').getBoundingClientRect().width))`); len(w) > 2 {
		t.Errorf("the 👍 bubble is %s px wide", w)
	}
	if !bob.is(msgs + `[0].classList.contains('emoji-only')`) {
		t.Error("a lone emoji is not shown large")
	}
	// One header for the run: name and avatar on the first message only.
	heads := bob.eval(msgs + `.map(m => (m.classList.contains('cont') ? 'cont' : 'head') + ':' + Number(m.querySelector('.meta').getBoundingClientRect().width > 1) + ':' + getComputedStyle(m.querySelector('.avatar')).visibility).join(' ')`)
	if heads != "head:1:visible cont:0:hidden cont:0:hidden" {
		t.Errorf("headers of ada's three messages: %s", heads)
	}
	if got := bob.eval(msgs + `[0].querySelector('.avatar').textContent`); got != "AL" {
		t.Errorf("ada's initials: %q", got)
	}
	// Her colour is hers wherever she is shown.
	colour := `getComputedStyle(document.querySelector(%q)).backgroundColor`
	mine, seen := ada.eval(fmt.Sprintf(colour, "#account-name .avatar")), bob.eval(fmt.Sprintf(colour, ".message:not(.own) .avatar"))
	if mine != seen || mine == "" {
		t.Errorf("ada's colour: %s on her page, %s on bob's", mine, seen)
	}
	// Links: http(s) only, opened apart, built as elements, never markup.
	got := bob.eval(msgs + `[1].querySelector('.text').innerHTML`)
	want := `see <a href="https://example.com/docs_(v2)" target="_blank" rel="noopener noreferrer" data-testid="message-link">https://example.com/docs_(v2)</a>. or javascript:alert(1) &lt;b&gt;not bold&lt;/b&gt;`
	if got != want {
		t.Errorf("the link message renders as\n%s\nwant\n%s", got, want)
	}

	// Files: types and sizes in words.
	pdf := writeTemp(t, "report.pdf", []byte("%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"))
	bin := writeTemp(t, "data.bin", randomBytes(1258291, 7))
	jpg, _ := testJPEG(t)
	ada.pick(pdf, bin, jpg)
	bob.wait("the three files", imageLoaded("sunset.jpg")+` && document.querySelectorAll('.file-card').length === 3`, 20*time.Second)
	cards := bob.eval(`[...document.querySelectorAll('.file-card')].map(c => c.querySelector('[data-testid=file-name]').textContent + ': ' + c.querySelector('.file-detail').textContent).sort().join('; ')`)
	if cards != "data.bin: File · 1.2 MiB; report.pdf: PDF document · 48 B; sunset.jpg: JPEG image · 4.5 KiB" {
		t.Errorf("file cards: %s", cards)
	}
	// One delivery language for messages and files.
	ada.wait("everything delivered", `(() => { const s = [...document.querySelectorAll('.message.own [data-testid=send-state]')].map(e => e.textContent); return s.length === 6 && s.every(x => x === 'Delivered to 1'); })()`, 15*time.Second)
	ada.viewport("1280")
	ada.newestShown("ada's newest")
	ada.screenshot("chat-1280")

	// A phone: the people panel opens over the room and closes again, by
	// its button, by a tap beside it, or with Escape.
	bob.viewport("390")
	panelOpen := `document.querySelector('#members-panel').offsetParent !== null`
	for _, closeBy := range []string{"button", "scrim", "escape"} {
		bob.do("open People", chromedp.Click(chromedp.ID("toggle-members")))
		bob.wait("the people panel", panelOpen+` && document.querySelector('#members-panel').getBoundingClientRect().right <= innerWidth && document.querySelector('#close-members').offsetParent !== null`, 5*time.Second)
		if closeBy == "button" {
			bob.screenshot("people-panel-390")
		}
		switch closeBy {
		case "button":
			bob.do("close it", chromedp.Click(chromedp.ID("close-members")))
		case "scrim":
			bob.do("tap beside it", chromedp.MouseClickXY(40, 400))
		case "escape":
			bob.do("press Escape", chromedp.KeyEvent("\u001b"))
		}
		bob.wait("the panel closed by "+closeBy, "!("+panelOpen+")", 5*time.Second)
	}
	ada.viewport("1280")
	ada.screenshot("people-panel-1280")

	// The connection's state fits, whole, on a phone.
	stop()
	bob.wait("reconnecting", `document.querySelector('#conn-state').dataset.state === 'reconnecting'`, 15*time.Second)
	fits := bob.eval(`(() => { const s = document.querySelector('#conn-state'); const r = s.getBoundingClientRect();
		return s.textContent + ' ' + (s.scrollWidth <= s.clientWidth && r.right <= innerWidth && document.documentElement.scrollWidth <= innerWidth); })()`)
	if fits != "Reconnecting… true" {
		t.Errorf("the state on a phone: %s", fits)
	}
	bob.screenshot("reconnecting-390")
}

// Refused uploads say why in a sentence (protocol/words.go's, with the
// server's numbers), show no empty progress bar, and go together with one
// "Dismiss all".
func TestBrowserUploadRefusals(t *testing.T) {
	addr, _ := startServe(t, "--max-file-size", "64KiB")
	base := "http://" + addr + "/"
	b := newBrowsers(t, "alice")[0]
	b.viewport("1280")
	b.enter(base, "refusals")
	var pngBytes bytes.Buffer
	_ = png.Encode(&pngBytes, image.NewRGBA(image.Rect(0, 0, 8, 8)))
	b.pick(writeTemp(t, "setup.exe", []byte("MZ\x90\x00 not really a program")),
		writeTemp(t, "photo.jpg", pngBytes.Bytes()),
		writeTemp(t, "big.bin", randomBytes(100<<10, 3)))
	b.wait("three refusals", `document.querySelectorAll('[data-testid=upload][data-state=failed]').length === 3`, 20*time.Second)
	want := map[string]string{
		"setup.exe": protocol.Sentence(protocol.CodeTypeRefused),
		"photo.jpg": protocol.Sentence(protocol.CodeTypeMismatch),
		"big.bin":   strings.TrimSuffix(protocol.Sentence(protocol.CodeTooLarge), ".") + " (limit 64 KiB).",
	}
	for name, sentence := range want {
		row := fmt.Sprintf(`document.querySelector('[data-testid=upload][data-name=%q]')`, name)
		if got := b.eval(row + `.querySelector('[data-testid=upload-status]').textContent`); got != sentence {
			t.Errorf("%s: %q, want %q", name, got, sentence)
		}
		if b.is(row + `.querySelector('progress').offsetParent`) {
			t.Errorf("%s: a refused upload shows a progress bar", name)
		}
	}
	if got := b.eval(`document.querySelector('[data-testid=uploads-bar]')?.textContent`); got != "3 files could not be sharedDismiss all" {
		t.Errorf("the bar over the refusals: %q", got)
	}
	b.screenshot("errors-1280")
	b.viewport("390")
	b.wait("the phone layout", `document.documentElement.scrollWidth <= innerWidth && document.querySelector('[data-testid=dismiss-all]').getBoundingClientRect().right <= innerWidth`, 5*time.Second)
	b.screenshot("errors-390")
	b.do("dismiss all", chromedp.Click(`[data-testid=dismiss-all]`))
	b.wait("the rows gone", `!document.querySelector('[data-testid=upload]') && document.querySelector('#uploads').hidden`, 5*time.Second)
}

// When the storage goes away in the middle of an upload, the page says so
// once, in a banner, until the upload moves again.
func TestBrowserStorageBanner(t *testing.T) {
	m := testenv.StartMinIO(t)
	addr, _ := startServe(t, "--s3-endpoint", m.Endpoint, "--s3-access-key", m.AccessKey, "--s3-secret-key", m.SecretKey,
		"--s3-bucket", "banner", "--part-size", "5MiB", "--big-part-size", "5MiB")
	base := "http://" + throttle(t, addr, 4<<20) + "/"
	b := newBrowsers(t, "erin")[0]
	b.viewport("1280")
	b.enter(base, "storage")
	b.pick(writeTemp(t, "backup.bin", randomBytes(40<<20, 5)))
	b.wait("the upload under way", `(document.querySelector('[data-testid=upload] progress')?.value || 0) > 6 * 1048576`, 30*time.Second)
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	b.wait("the banner", `!document.querySelector('#storage-banner').hidden`, 40*time.Second)
	if got := b.eval(`document.querySelector('#storage-banner').textContent`); got != "File storage is not reachable — uploads are paused and will resume" {
		t.Errorf("the banner says %q", got)
	}
	b.screenshot("storage-banner-1280")
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	b.wait("the banner gone", `document.querySelector('#storage-banner').hidden`, 90*time.Second)
	b.wait("the file", `[...document.querySelectorAll('[data-testid=file-name]')].some(e => e.textContent === 'backup.bin')`, 90*time.Second)
}

// The room picker makes a room name of what people type; leaving a room
// and signing out ask first.
func TestBrowserRoomPickerAndConfirmations(t *testing.T) {
	addr, _ := startServe(t)
	base := "http://" + addr + "/"
	b := newBrowsers(t, "alice")[0]
	b.viewport("1280")
	b.signIn(base)
	b.eval(`(() => { const f = document.querySelector('#room-name'); f.focus(); f.value = 'Design Team'; f.dispatchEvent(new Event('input', {bubbles: true})); return 'ok'; })()`)
	if got := b.eval(`document.querySelector('#room-hint').textContent`); got != "Joins the room “design-team”." {
		t.Errorf("the hint: %q", got)
	}
	b.do("join", chromedp.Click(chromedp.ID("join-room")))
	b.wait("design-team", `document.querySelector('.room-item[data-room="design-team"]')?.dataset.joined === 'true' && document.querySelector('#room-title').textContent === 'design-team'`, 10*time.Second)
	if got := b.eval(`document.querySelector('#join-error').textContent`); got != "" {
		t.Errorf("a join error: %q", got)
	}

	confirmOpen := `document.querySelector('#confirm').open`
	b.do("Leave", chromedp.Click(chromedp.ID("leave-room")))
	b.wait("the question", confirmOpen+` && document.querySelector('#confirm-title').textContent === 'Leave design-team?'`, 5*time.Second)
	b.screenshot("confirm-leave-1280")
	b.do("Cancel", chromedp.Click(chromedp.ID("confirm-cancel")))
	b.wait("still in the room", `!`+confirmOpen+` && !!document.querySelector('.room-item[data-room="design-team"]')`, 5*time.Second)
	b.do("Leave", chromedp.Click(chromedp.ID("leave-room")))
	b.wait("the question", confirmOpen, 5*time.Second)
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	b.wait("out of the room", `!document.querySelector('.room-item[data-room="design-team"]') && !(localStorage.getItem('ferry.rooms') || '').includes('design-team')`, 5*time.Second)

	b.do("Sign out", chromedp.Click(chromedp.ID("sign-out")))
	b.wait("the question", confirmOpen, 5*time.Second)
	b.do("press Escape", chromedp.KeyEvent("\u001b"))
	b.wait("still signed in", `!`+confirmOpen+` && document.querySelector('#login').hidden`, 5*time.Second)
	b.do("Sign out", chromedp.Click(chromedp.ID("sign-out")))
	b.wait("the question", confirmOpen, 5*time.Second)
	b.do("confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	b.wait("signed out", `!document.querySelector('#login').hidden && document.querySelector('#conn-state').hidden && localStorage.getItem('ferry.token') === null`, 5*time.Second)
}

// contrastJS defines window.contrast: colours, luminance and the effective
// background of an element (its own over its ancestors').
const contrastJS = `window.contrast = (() => {
	const parse = (s) => {
		let m = /^rgba?\(([^)]+)\)$/.exec(s);
		if (m) { const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; }
		m = /^color\(srgb ([^)]+)\)$/.exec(s);
		if (m) { const p = m[1].split(/[\s\/]+/).filter(Boolean).map(Number); return {r: p[0] * 255, g: p[1] * 255, b: p[2] * 255, a: p.length > 3 ? p[3] : 1}; }
		return null;
	};
	const over = (top, under) => ({r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a), b: top.b * top.a + under.b * (1 - top.a), a: 1});
	const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
	const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
	const bgOf = (el) => {
		const layers = [];
		for (let e = el; e; e = e.parentElement) {
			const c = parse(getComputedStyle(e).backgroundColor);
			if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
		}
		let bg = {r: 255, g: 255, b: 255, a: 1};
		for (const c of layers.reverse()) bg = over(c, bg);
		return bg;
	};
	const opacity = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
	const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : '') + ' "' + (e.textContent || e.value || e.placeholder || '').trim().slice(0, 30) + '"';
	const shown = (e) => { const r = e.getBoundingClientRect(); return e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) && r.width > 1 && r.height > 1; };
	const large = (s) => parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && Number(s.fontWeight) >= 700);
	const textFailure = (e, colour, s, what) => {
		const bg = bgOf(e);
		const fg = parse(colour);
		if (!fg) return null;
		const r = ratio(over({...fg, a: fg.a * opacity(e)}, bg), bg);
		const need = large(s) ? 3 : 4.5;
		return r < need ? name(e) + ': ' + what + ' ' + r.toFixed(2) + ':1 < ' + need : null;
	};
	// walk checks every visible text and every enabled control's edge.
	const walk = () => {
		const out = [];
		for (const e of document.body.querySelectorAll('*')) {
			if (['SCRIPT', 'STYLE', 'TEMPLATE', 'IMG', 'PROGRESS', 'VIDEO', 'AUDIO', 'OPTION'].includes(e.tagName) || !shown(e)) continue;
			if (e.closest(':disabled')) continue; // inactive controls are exempt (WCAG 1.4.3)
			const s = getComputedStyle(e);
			const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
			const field = e.matches('input:not([type=file]), textarea');
			if (own || (field && e.value)) out.push(textFailure(e, s.color, s, 'text'));
			if (field && !e.value && e.placeholder) out.push(textFailure(e, getComputedStyle(e, '::placeholder').color, s, 'placeholder'));
			if (field || e.matches('button')) {
				const outer = bgOf(e.parentElement);
				const fill = ratio(bgOf(e), outer);
				const bc = parse(s.borderTopColor);
				const border = parseFloat(s.borderTopWidth) > 0 && s.borderTopStyle !== 'none' && bc && bc.a > 0 ? ratio(over(bc, outer), outer) : 0;
				const edge = Math.max(fill, border);
				// A button drawn as text alone (no border, no fill of its own) has no edge to see.
				if ((field || border > 0 || fill > 1.05) && edge < 3) out.push(name(e) + ': edge ' + edge.toFixed(2) + ':1 < 3');
			}
		}
		return out.filter(Boolean);
	};
	// focus checks the focus ring of the focused element.
	const focus = () => {
		const e = document.activeElement;
		if (!e || e === document.body || e === document.documentElement) return '';
		const s = getComputedStyle(e);
		if (s.outlineStyle === 'none' || parseFloat(s.outlineWidth) < 2) return name(e) + ': no focus ring';
		const behind = parseFloat(s.outlineOffset) < 0 ? bgOf(e) : bgOf(e.parentElement);
		const r = ratio(over(parse(s.outlineColor), behind), behind);
		return r < 3 ? name(e) + ': focus ring ' + r.toFixed(2) + ':1 < 3' : '';
	};
	return {walk, focus};
})(), 'ok'`

// contrastFailures walks the page as it is and tabs through it.
func (b *browser) contrastFailures(state string, tabs int) []string {
	b.t.Helper()
	b.eval(contrastJS)
	var out []string
	if err := json.Unmarshal([]byte(b.eval(`JSON.stringify(contrast.walk())`)), &out); err != nil {
		b.t.Fatal(err)
	}
	seen := map[string]bool{}
	b.eval(`document.activeElement?.blur(), 'ok'`)
	for range tabs {
		b.do("Tab", chromedp.KeyEvent("\t"))
		if f := b.eval(`contrast.focus()`); f != "" && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for i := range out {
		out[i] = state + ": " + out[i]
	}
	return out
}

// Every text, control edge and focus ring of the page's main states meets
// WCAG AA, in the light and the dark theme.
func TestBrowserContrast(t *testing.T) {
	addr, _ := startServe(t, "--max-file-size", "64KiB")
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "Ada Lovelace", "bob", "carol")
	ada, bob, carol := bs[0], bs[1], bs[2]
	carol.do("open the page", chromedp.Navigate(base), chromedp.WaitVisible("#name"))
	ada.enter(base, "palette")
	bob.enter(base, "palette")
	bob.fill("#message", "read https://example.com first", "#send")
	ada.fill("#message", "done", "#send")
	jpg, _ := testJPEG(t)
	ada.pick(jpg, writeTemp(t, "notes.pdf", []byte("%PDF-1.4\n%%EOF\n")), writeTemp(t, "setup.exe", []byte("MZ")), writeTemp(t, "big.bin", randomBytes(100<<10, 9)))
	ada.wait("the files and refusals", imageLoaded("sunset.jpg")+` && document.querySelectorAll('.file-card').length === 2 && !!document.querySelector('[data-testid=dismiss-all]')`, 20*time.Second)
	ada.wait("delivered", `[...document.querySelectorAll('.message.own [data-testid=send-state]')].some(e => e.textContent === 'Delivered to 1')`, 10*time.Second)
	// States that come and go, shown at once: a room name being typed,
	// both banners.
	ada.eval(`(() => {
		const f = document.querySelector('#room-name'); f.value = 'Design Team'; f.dispatchEvent(new Event('input', {bubbles: true}));
		for (const [id, text] of [['#storage-banner', 'File storage is not reachable — uploads are paused and will resume'], ['#conn-banner', 'The server does not let this page connect.']]) {
			const e = document.querySelector(id); e.textContent = text; e.hidden = false;
		}
		return 'ok';
	})()`)

	var failures []string
	for _, scheme := range []string{"light", "dark"} {
		for _, b := range bs {
			b.scheme(scheme)
			b.viewport("1280")
		}
		failures = append(failures, carol.contrastFailures(scheme+" signed out", 6)...)
		failures = append(failures, ada.contrastFailures(scheme+" room", 30)...)
		ada.screenshot("contrast-" + scheme + "-1280")
		ada.viewport("390")
		ada.do("open People", chromedp.Click(chromedp.ID("toggle-members")))
		failures = append(failures, ada.contrastFailures(scheme+" phone, people", 0)...)
		ada.screenshot("contrast-" + scheme + "-people-390")
		ada.do("close People", chromedp.Click(chromedp.ID("close-members")))
		ada.do("open Rooms", chromedp.Click(chromedp.ID("toggle-rooms")))
		failures = append(failures, ada.contrastFailures(scheme+" phone, rooms", 0)...)
		ada.do("close Rooms", chromedp.Click(chromedp.ID("close-rooms")))
		ada.viewport("1280")
		ada.do("Leave", chromedp.Click(chromedp.ID("leave-room")))
		ada.wait("the question", `document.querySelector('#confirm').open`, 5*time.Second)
		failures = append(failures, ada.contrastFailures(scheme+" confirmation", 2)...)
		ada.do("Cancel", chromedp.Click(chromedp.ID("confirm-cancel")))
	}
	// A private room's invite panel, on the room's own colour.
	ada.do("New private room", chromedp.Click(chromedp.ID("new-private")))
	ada.wait("the invite link", `document.querySelector('#invite-link').value.includes('#join=')`, 10*time.Second)
	for _, scheme := range []string{"light", "dark"} {
		ada.scheme(scheme)
		failures = append(failures, ada.contrastFailures(scheme+" invite", 0)...)
	}
	for _, f := range failures {
		t.Error(f)
	}
}

// corsFront stands in front of a ferry server and passes everything on as
// it is (the CORS headers are the server's own), counting WebSocket
// handshakes.
type corsFront struct {
	proxy      *httputil.ReverseProxy
	handshakes atomic.Int32
}

func newCORSFront(t *testing.T, upstream string) (*corsFront, string) {
	t.Helper()
	u, _ := url.Parse("http://" + upstream)
	f := &corsFront{proxy: httputil.NewSingleHostReverseProxy(u)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *corsFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ws" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		f.handshakes.Add(1)
	}
	f.proxy.ServeHTTP(w, r)
}

// docsExample is the page of docs/web-client.md's "A page you can copy".
func docsExample(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "web-client.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)## A page you can copy.*?```html\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("no html example under \"A page you can copy\" in docs/web-client.md")
	}
	if !bytes.Contains(m[1], []byte("https://ferry.example.com/ferry.js")) || !bytes.Contains(m[1], []byte("url: 'https://ferry.example.com'")) {
		t.Fatal("the example does not load ferry.js from the server and name the server in url")
	}
	return string(m[1])
}

// The documentation's example page, served from another origin, loads
// ferry.js from the server and chats; refused for its origin or for want of
// a token, ferry.js says so and stops, rather than retry for ever.
func TestBrowserCrossOriginPage(t *testing.T) {
	example := docsExample(t)
	fronts := map[string]string{} // page path → the ferry server (its front) it uses
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		server, ok := fronts[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, strings.ReplaceAll(example, "https://ferry.example.com", server))
	}))
	t.Cleanup(page.Close)

	counts := map[string]*corsFront{}
	for name, args := range map[string][]string{
		"allowed": {"--allowed-origins", page.URL},
		"refused": nil,
		"locked":  {"--auth-secret", "0123456789abcdef0123456789abcdef", "--allowed-origins", page.URL},
	} {
		addr, _ := startServe(t, args...)
		counts[name], fronts["/"+name] = newCORSFront(t, addr)
	}

	bs := newBrowsers(t, "allowed", "refused", "locked")
	logs := `[...document.querySelectorAll('#log li')].map(l => l.textContent).join(' | ')`
	ok := bs[0]
	ok.do("open the example", chromedp.Navigate(page.URL+"/allowed"))
	ok.wait("in the lobby", `document.querySelector('#state').textContent === 'connected' && `+logs+`.includes('in lobby with alice')`, 15*time.Second)
	ok.fill("#text", "from afar", "#f button")
	ok.wait("the message back", logs+`.includes('alice: from afar')`, 10*time.Second)

	for _, c := range []struct {
		b    *browser
		code string
	}{{bs[1], "forbidden"}, {bs[2], "unauthorized"}} {
		c.b.do("open the example", chromedp.Navigate(page.URL+"/"+c.b.name))
		c.b.wait("the refusal", fmt.Sprintf(`document.querySelector('#state').textContent === 'offline' && %s.includes('gave up: %s')`, logs, c.code), 15*time.Second)
		tried := counts[c.b.name].handshakes.Load()
		time.Sleep(3 * time.Second) // longer than the reconnection backoff
		if got := c.b.eval(`document.querySelector('#state').textContent`); got != "offline" {
			t.Errorf("%s: the state went on to %q", c.b.name, got)
		}
		if n := counts[c.b.name].handshakes.Load(); n != tried || n > 2 {
			t.Errorf("%s: %d handshakes before giving up, %d after", c.b.name, tried, n)
		}
		c.b.screenshot("cross-origin-" + c.b.name)
	}
}
