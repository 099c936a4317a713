package main

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// signIn opens url and picks a display name; it returns once connected.
func (b *browser) signIn(url string) {
	b.t.Helper()
	b.do("open the page", chromedp.Navigate(url), chromedp.WaitVisible("#name"))
	b.fill("#name", b.name, "#name-submit")
	b.wait("connected", `document.querySelector('#conn-state').dataset.state === 'connected'`, 10*time.Second)
}

// inPrivateRoom is true once the page shows room, joined, and has taken
// the invite out of its address.
func inPrivateRoom(room string) string {
	return fmt.Sprintf(`(() => {
		const item = document.querySelector('.room-item[data-room=%q]');
		return item?.dataset.joined === 'true' && item.dataset.private === 'true'
			&& document.querySelector('#room-title').textContent.includes('Private room')
			&& document.querySelector('#room-title').title === %q
			&& location.hash === '';
	})()`, room, room)
}

func seesText(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[data-testid=message-text]')].some(e => e.textContent === %q)`, text)
}

func seesMember(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('[data-testid=member]')].some(m => m.textContent.includes(%q))`, name)
}

// A private room from the page: alice makes one and copies an invite link;
// bob (signed in already) and dave (new, from the link) get in with it;
// carol, with only the room's name or an altered invite, does not; bob's
// page is back in the room after a reload.
func TestBrowserPrivateRoom(t *testing.T) {
	addr, _ := startServe(t)
	base := "http://" + addr + "/"
	bs := newBrowsers(t, "alice", "bob", "carol", "dave")
	alice, bob, carol, dave := bs[0], bs[1], bs[2], bs[3]

	alice.signIn(base)
	alice.do("click New private room", chromedp.Click(chromedp.ID("new-private")))
	alice.wait("the new private room", `document.querySelector('.room-item[data-private=true]')?.dataset.joined === 'true'`, 10*time.Second)
	room := alice.eval(`document.querySelector('.room-item[data-private=true]').dataset.room`)
	if !strings.HasPrefix(room, "private:") {
		t.Fatalf("new room %q is not private", room)
	}
	alice.wait("the room shown", inPrivateRoom(room), 10*time.Second)
	alice.wait("the first invite link", `document.querySelector('#invite-link').value.includes('#join=')`, 10*time.Second)

	// Another invite, from the Invite button: copied, or else shown
	// selected (headless Chromium may refuse the clipboard).
	alice.do("click Invite", chromedp.Click(chromedp.ID("invite")))
	alice.wait("the invite confirmation", `/^(Invite link copied|Copy this invite link) — valid 7 days/.test(document.querySelector('#invite-status').textContent)`, 10*time.Second)
	link := alice.eval(`document.querySelector('#invite-link').value`)
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	frag, err := url.ParseQuery(u.EscapedFragment())
	if err != nil {
		t.Fatalf("invite link %q: %v", link, err)
	}
	invite := frag.Get("invite")
	if !strings.HasPrefix(link, base+"#join=") || frag.Get("join") != room || invite == "" {
		t.Fatalf("invite link %q: want %s#join=%s&invite=…", link, base, room)
	}
	alice.screenshot("private-invite")

	// bob has a name already and follows the link.
	bob.signIn(base)
	bob.eval(fmt.Sprintf(`location.href = %q, 'ok'`, link))
	bob.wait("the private room", inPrivateRoom(room), 10*time.Second)
	alice.wait("bob's arrival", seesMember("bob"), 10*time.Second)

	alice.fill("#message", "secret plans", "#send")
	bob.wait("alice's message", seesText("secret plans"), 10*time.Second)

	// dave opens the link first and picks a name after.
	dave.do("open the invite link", chromedp.Navigate(link), chromedp.WaitVisible("#name"))
	dave.fill("#name", dave.name, "#name-submit")
	dave.wait("the private room", inPrivateRoom(room), 10*time.Second)
	dave.wait("the room's history", seesText("secret plans"), 10*time.Second)

	// carol knows the room's name but has no invite.
	carol.signIn(base)
	carol.fill("#room-name", room, "#join-room")
	carol.wait("a refusal", `document.querySelector('#join-error').textContent.includes('private')`, 10*time.Second)
	refusal := carol.eval(`document.querySelector('#join-error').textContent`)
	if strings.Contains(refusal, "forbidden") || strings.Contains(refusal, room) {
		t.Errorf("carol's refusal %q is not in plain words", refusal)
	}
	if got := carol.eval(fmt.Sprintf(`String(!!document.querySelector('.room-item[data-room=%q]') || (localStorage.getItem('ferry.rooms') || '').includes(%q))`, room, room)); got != "false" {
		t.Error("carol's page keeps the room she was refused")
	}
	carol.screenshot("private-refused")

	// An altered invite is refused as well, in words about the link.
	sig := strings.LastIndex(invite, ".") + 10
	flip := "A"
	if invite[sig] == 'A' {
		flip = "B"
	}
	altered := base + "#" + url.Values{"join": {room}, "invite": {invite[:sig] + flip + invite[sig+1:]}}.Encode()
	carol.eval(fmt.Sprintf(`location.href = %q, 'ok'`, altered))
	carol.wait("the link's refusal", `document.querySelector('#join-error').textContent.includes('invite link has expired or is not valid')`, 10*time.Second)
	if got := carol.eval(`location.hash`); got != "" {
		t.Errorf("the altered invite stays in carol's address: %q", got)
	}
	if carol.eval("String("+seesText("secret plans")+")") != "false" {
		t.Fatal("carol sees the private room's messages")
	}

	// A reload: bob's page is back in the room, and rejoins it on its own.
	bob.do("reload", chromedp.Reload())
	bob.wait("connected again", `document.querySelector('#conn-state').dataset.state === 'connected'`, 10*time.Second)
	bob.wait("the private room after the reload", inPrivateRoom(room), 10*time.Second)
	bob.wait("the room's history", seesText("secret plans"), 10*time.Second)
	bob.wait("alice in the room", seesMember("alice"), 10*time.Second)
	alice.fill("#message", "welcome back", "#send")
	bob.wait("a message after the reload", seesText("welcome back"), 10*time.Second)
	bob.screenshot("private-reloaded")

	// Any member invites. Without a clipboard the link is selected, to copy
	// by hand.
	bob.eval(`navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError')), 'ok'`)
	bob.do("click Invite", chromedp.Click(chromedp.ID("invite")))
	bob.wait("the link to copy by hand", fmt.Sprintf(`(() => {
		const f = document.querySelector('#invite-link');
		return document.querySelector('#invite-status').textContent.startsWith('Copy this invite link — valid 7 days')
			&& document.activeElement === f && f.selectionStart === 0 && f.selectionEnd === f.value.length
			&& f.value.startsWith(%q + '#join=' + encodeURIComponent(%q) + '&invite=');
	})()`, base, room), 10*time.Second)

	// On a phone the room's head, with Invite, and the link still fit.
	alice.do("phone viewport", chromedp.EmulateViewport(390, 844))
	alice.wait("the phone layout", `document.documentElement.scrollWidth <= window.innerWidth && !document.querySelector('#invite-box').hidden && document.querySelector('#invite').getBoundingClientRect().right <= window.innerWidth`, 10*time.Second)
	alice.screenshot("private-phone")
}
