// A room's timeline: messages grouped by sender, files, notices, delivery
// states, and the scroll model of a messenger.
import { el, h, S, rooms } from './dom.js';
import {
  avatarColor, dateTimeFmt, fileExt, fileTypeName, fitBox, fmtBytes, fmtTime, initials, linkParts, sameGroup,
} from './format.js';
import { sentence } from './words.js';

// --- scrolling ---
//
// While the reader is at the bottom, the timeline stays there, whatever
// grows (a message, an image loading, the composer or the uploads list
// taking room). A reader scrolled up is never moved: a "New messages"
// button appears instead. One's own messages always come into view.

const STICK_PX = 48; // this close to the bottom counts as at the bottom
let stuck = true;
let lastTop = 0; // scrollTop at the last scroll event
let unseen = 0;

function distanceToBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight;
}

// stick scrolls to the newest message and keeps the timeline there.
export function stick() {
  const m = el.messages;
  m.scrollTop = m.scrollHeight;
  lastTop = m.scrollTop;
  stuck = true;
  unseen = 0;
  el.newBelow.hidden = true;
}

el.messages.addEventListener('scroll', () => {
  const top = el.messages.scrollTop;
  const up = top < lastTop - 1;
  lastTop = top;
  // At the bottom, only a scroll up leaves it. A scroll down is the page's
  // own, or the browser keeping what is on screen in place while content
  // grows (scroll anchoring); either may land after more has grown, and
  // the resize observer takes the timeline to the bottom again.
  if (stuck && !up) return;
  stuck = distanceToBottom() < STICK_PX;
  if (stuck) { unseen = 0; el.newBelow.hidden = true; }
}, { passive: true });

const grown = new ResizeObserver(() => { if (stuck && S.current) stick(); });
grown.observe(el.messages);

// watchList follows the size of a room's list, so that an image loading at
// the bottom keeps the newest message in view.
export function watchList(list) { grown.observe(list); }

el.newBelow.addEventListener('click', () => {
  stick();
  el.messages.focus({ preventScroll: true });
});

function showNewBelow() {
  unseen++;
  el.newBelow.hidden = false;
  el.newBelow.setAttribute('aria-label', `${unseen} new message${unseen === 1 ? '' : 's'}: go to the newest`);
}

// atBottom says whether the reader is at the bottom (for tests and for
// choosing how to show a new message).
export function atBottom() { return stuck; }

// maxItems bounds what a room's list keeps, so that a page left open for
// days does not grow without end; the oldest items go first.
const maxItems = 1000;

// appendTo adds an item to a room's list. own: the reader just sent it, so
// it comes into view wherever the reader was.
export function appendTo(room, li, { own = false } = {}) {
  const r = rooms.get(room);
  if (!r) return;
  r.list.append(li);
  while (r.list.children.length > maxItems) {
    const old = r.list.firstElementChild;
    if (old.dataset.mid) r.mids.delete(old.dataset.mid);
    if (old.dataset.fileId) r.files.delete(old.dataset.fileId);
    old.remove();
    r.list.firstElementChild?.classList.remove('cont');
  }
  if (room === S.current) {
    if (own || stuck) stick();
    else if (li.classList.contains('message')) showNewBelow();
  } else if (li.classList.contains('message')) {
    r.unread++;
    r.badge.hidden = false;
    r.badge.textContent = String(r.unread);
    r.badge.setAttribute('aria-label', `${r.unread} unread`);
  }
}

export function notice(room, text) {
  appendTo(room, h('li', { class: 'notice', 'data-testid': 'notice', text }));
}

// avatar is a person's initials on their colour (the same for every page:
// it comes from the user id).
export function avatar(user, name) {
  const a = h('span', { class: 'avatar', 'aria-hidden': 'true', text: initials(name) });
  a.style.backgroundColor = avatarColor(user);
  return a;
}

// messageShell is a message without its content: the sender's avatar and
// name (shown once for consecutive messages of one person), a bubble, and
// a foot with the time and, for one's own, the delivery state.
function messageShell({ room, mid, fromUser, fromName, ts, own }) {
  const li = h('li', {
    class: 'message' + (own ? ' own' : ''), 'data-testid': 'message', 'data-room': room,
    'data-user': fromUser || '', 'data-mid': mid || '', 'data-ts': String(ts),
  });
  const prev = rooms.get(room)?.list.lastElementChild;
  if (prev?.classList.contains('message') && sameGroup({ user: prev.dataset.user, ts: Number(prev.dataset.ts) }, { user: fromUser, ts })) {
    li.classList.add('cont');
  }
  const time = h('time', { class: 'time', 'data-testid': 'message-time', datetime: new Date(ts).toISOString(), text: fmtTime(ts) });
  time.title = dateTimeFmt.format(new Date(ts));
  const bubble = h('div', { class: 'bubble' },
    h('div', { class: 'meta' }, h('span', { class: 'sender', 'data-testid': 'message-sender', text: fromName || 'someone' })),
    h('div', { class: 'foot' }, time));
  if (!own) li.append(avatar(fromUser, fromName));
  li.append(bubble);
  return li;
}

function content(li, node) {
  li.querySelector('.foot').before(node);
}

// EMOJI_ONLY: a message of one to three emoji is shown large, without a bubble.
const EMOJI_ONLY = /^(?:\p{Extended_Pictographic}(?:\uFE0F|\u200D\p{Extended_Pictographic}|\p{Emoji_Modifier})*\s*){1,3}$/u;

// textNode renders a message's text, its http(s) addresses as links that
// open apart from the page and tell it nothing (rel noopener noreferrer).
function textNode(text) {
  const p = h('p', { class: 'text', 'data-testid': 'message-text' });
  for (const part of linkParts(text)) {
    if (!part.href) { p.append(part.text); continue; }
    p.append(h('a', { href: part.href, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'message-link', text: part.text }));
  }
  return p;
}

// addChat shows a chat message once (by its msg_id) and returns its item.
export function addChat(room, { mid, text, fromUser, fromName, ts, own, state, local = false }) {
  const r = rooms.get(room);
  if (!r) return null;
  if (mid && r.mids.has(mid)) return null;
  if (mid) r.mids.add(mid);
  const li = messageShell({ room, mid, fromUser, fromName, ts, own });
  if (EMOJI_ONLY.test(text.trim())) li.classList.add('emoji-only');
  content(li, textNode(text));
  if (state) setSendState(li, state);
  appendTo(room, li, { own: local });
  return li;
}

// --- delivery ---
//
// One language for messages and files: "Sending…", "Sent", "Delivered to
// N" (N people's pages have it: the protocol's receipts), "Not sent".

const pendingSends = new Map(); // mid → {room, text, li}
const earlyReceipts = new Map(); // "room/seq" → count, for a receipt ahead of its ack
const EARLY_MAX = 200;

export function setSendState(li, state, detail) {
  li.dataset.state = state;
  let s = li.querySelector('.send-state');
  if (!s) {
    s = h('span', { class: 'send-state', 'data-testid': 'send-state' });
    li.querySelector('.foot').append(s);
  }
  const n = Number(li.dataset.delivered || 0);
  const labels = { pending: 'Sending…', sent: n > 0 ? `Delivered to ${n}` : 'Sent', failed: 'Not sent' };
  s.textContent = labels[state] + (detail ? ` — ${detail}` : '');
  li.querySelector('.retry')?.remove();
  if (state === 'failed') {
    li.querySelector('.bubble').append(h('button', {
      type: 'button', class: 'retry', 'data-testid': 'retry', text: 'Retry',
      onclick: () => { const p = pendingSends.get(li.dataset.mid); if (p) sendChat(p.room, p.text, li.dataset.mid); },
    }));
  }
}

// setSeq places an own message in its room's stream (from the ack), where
// receipts find it.
function setSeq(room, li, seq) {
  if (!seq || li.dataset.seq) return;
  li.dataset.seq = String(seq);
  const key = `${room}/${seq}`;
  if (earlyReceipts.has(key)) {
    setDelivered(li, earlyReceipts.get(key));
    earlyReceipts.delete(key);
  }
}

function setDelivered(li, count) {
  if (!(count > Number(li.dataset.delivered || 0))) return;
  li.dataset.delivered = String(count);
  if (li.dataset.state === 'sent') setSendState(li, 'sent');
}

// onReceipt: one more person's page has an own message or file.
export function onReceipt(rc) {
  const li = rooms.get(rc.room)?.list.querySelector(`.message.own[data-seq="${rc.seq}"]`);
  if (li) {
    setDelivered(li, rc.count);
    li.querySelector('.send-state').title = `last: ${rc.name}`;
    return;
  }
  earlyReceipts.set(`${rc.room}/${rc.seq}`, rc.count);
  if (earlyReceipts.size > EARLY_MAX) earlyReceipts.delete(earlyReceipts.keys().next().value);
}

export function newMid() {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return 'm_' + [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

export async function sendChat(room, text, mid = newMid()) {
  const c = S.client;
  let p = pendingSends.get(mid);
  if (!p) {
    const li = addChat(room, { mid, text, fromUser: c.user, fromName: c.name, ts: Date.now(), own: true, state: 'pending', local: true });
    p = { room, text, li };
    pendingSends.set(mid, p);
  }
  setSendState(p.li, 'pending');
  try {
    // The mid is the msg_id: ferry.js resends across reconnects until the
    // ack, and the server publishes it once. Receipts tell who has it.
    const ack = await c.emit(room, 'chat', { text }, { exceptSelf: true, msgId: mid, receipt: true });
    pendingSends.delete(mid);
    setSendState(p.li, 'sent');
    setSeq(room, p.li, ack?.seq);
  } catch (err) {
    setSendState(p.li, 'failed', err.code === 'rate_limited' ? 'too fast, try again' : sentence(err.code));
  }
}

export function onEvent(ev) {
  if (!rooms.has(ev.room)) return;
  const own = ev.from?.user === S.client.user;
  if (ev.event === 'chat' && ev.data && typeof ev.data.text === 'string') {
    const li = addChat(ev.room, {
      mid: ev.msg_id || null,
      text: ev.data.text, fromUser: ev.from?.user, fromName: ev.from?.name, ts: ev.ts || Date.now(), own,
      state: own ? 'sent' : undefined,
    });
    if (li && ev.seq) li.dataset.seq = String(ev.seq);
  } else if (ev.event === 'file' && ev.data && ev.data.id) {
    addFile(ev.room, ev.data, { ts: ev.ts, seq: ev.seq });
  }
}

// --- files ---

// Shown in the page when the server does not say (file.inline); SVG never:
// it can carry scripts.
const INLINE_IMAGE = /^image\/(png|jpeg|gif|webp|avif|bmp)$/;
// The largest box an image preview takes in the timeline, in CSS pixels.
const PREVIEW_W = 320;
const PREVIEW_H = 320;

// addFile shows a file once. local: the reader just uploaded it.
export function addFile(room, file, { ts, seq, local = false } = {}) {
  const r = rooms.get(room);
  if (!r) return;
  if (r.files.has(file.id)) {
    // Shown already: the announcement came before upload.done, or after.
    // Learn its seq, for receipts; one's own upload comes into view.
    const li = r.list.querySelector(`[data-file-id="${CSS.escape(file.id)}"]`);
    if (li) setSeq(room, li, seq);
    if (local && room === S.current) stick();
    return;
  }
  r.files.add(file.id);
  const own = file.user === S.client.user;
  const li = messageShell({
    room, fromUser: file.user, fromName: file.user_name, ts: ts || Date.parse(file.time) || Date.now(), own,
  });
  li.classList.add('file-message');
  li.dataset.fileId = file.id;
  const card = fileCard(file);
  li.classList.toggle('media', card.dataset.kind !== 'file');
  content(li, card);
  if (own) setSendState(li, 'sent');
  if (seq) setSeq(room, li, seq);
  appendTo(room, li, { own: local });
}

function fileCard(file) {
  const c = S.client;
  const url = c.fileURL(file);
  const type = file.type || 'application/octet-stream';
  const card = h('figure', { class: 'file-card', 'data-testid': 'file-card', 'data-file-id': file.id, 'data-type': type });
  const download = h('a', {
    class: 'download', 'data-testid': 'file-download', href: url, download: file.name, text: 'Download',
  });
  download.setAttribute('aria-label', `Download ${file.name}`);
  const typeName = h('span', { class: 'file-type', 'data-testid': 'file-type', text: fileTypeName(type) });
  typeName.title = type;
  const caption = h('figcaption', {},
    h('span', { class: 'file-ext', 'aria-hidden': 'true', text: fileExt(file.name, type) }),
    h('span', { class: 'file-info' },
      h('span', { class: 'file-name', 'data-testid': 'file-name', text: file.name }),
      h('span', { class: 'file-detail' },
        typeName, ' · ', h('span', { class: 'file-size', 'data-testid': 'file-size', text: fmtBytes(file.size) }))),
    download);
  let media = null;
  let refreshed = false;
  // A media element that fails to load may hold an expired link: ask for a
  // fresh one once, then show the file as a plain card.
  const onError = async () => {
    if (!refreshed && S.client && file.id) {
      refreshed = true;
      try {
        const fresh = await S.client.fileLink(file.id);
        const freshURL = S.client.fileURL(fresh);
        download.href = freshURL;
        for (const e of card.querySelectorAll('[src]')) e.src = e.dataset.thumb && fresh.thumb ? S.client.fileURL(fresh.thumb) : freshURL;
        for (const e of card.querySelectorAll('a.open')) e.href = freshURL;
        return;
      } catch { /* fall through */ }
    }
    media?.remove();
    card.dataset.kind = 'file';
    card.closest('.message')?.classList.remove('media');
  };
  const inline = file.inline ?? (INLINE_IMAGE.test(type) || /^(audio|video)\//.test(type));
  if (inline && /^image\//.test(type) && type !== 'image/svg+xml') {
    card.dataset.kind = 'image';
    media = imagePreview(file, url, onError);
  } else if (inline && /^audio\//.test(type)) {
    card.dataset.kind = 'audio';
    media = h('audio', { class: 'player', 'data-testid': 'audio', controls: true, preload: 'metadata', src: url });
    media.setAttribute('aria-label', file.name);
    media.addEventListener('error', onError);
  } else if (inline && /^video\//.test(type)) {
    card.dataset.kind = 'video';
    media = h('video', { class: 'player', 'data-testid': 'video', controls: true, preload: 'metadata', playsInline: true, src: url });
    media.setAttribute('aria-label', file.name);
    media.addEventListener('error', onError);
  } else {
    card.dataset.kind = 'file';
  }
  if (media) card.append(media);
  card.append(caption);
  return card;
}

// imagePreview shows an image in the timeline. When the announcement gives
// the image's size (width, height), its box is reserved before anything
// loads, so that nothing below moves, and the preview (thumb) is shown
// rather than the original; the original is fetched only when opened.
// Without them the original is shown as it comes.
function imagePreview(file, url, onError) {
  const box = fitBox(Number(file.width), Number(file.height), PREVIEW_W, PREVIEW_H);
  const thumb = box && typeof file.thumb === 'string' && file.thumb ? S.client.fileURL(file.thumb) : null;
  // Lazy: a room's history of photos is fetched as it is scrolled to. At
  // the bottom they are in view, and load at once.
  const img = h('img', { class: 'preview', 'data-testid': 'preview', alt: file.name, loading: 'lazy', decoding: 'async' });
  if (box) {
    img.classList.add('sized');
    img.width = box.width;
    img.height = box.height;
    img.style.aspectRatio = `${file.width} / ${file.height}`;
    img.style.width = `${box.width}px`;
  }
  if (thumb) img.dataset.thumb = 'true';
  img.src = thumb || url;
  img.addEventListener('error', onError);
  return h('a', {
    class: 'open', href: url, target: '_blank', rel: 'noopener noreferrer', title: `Open ${file.name}`,
    onclick: (e) => {
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button === 1) return;
      e.preventDefault();
      openLightbox(e.currentTarget.href, file.name);
    },
  }, img);
}

function openLightbox(url, name) {
  el.lightboxImg.src = url;
  el.lightboxImg.alt = name;
  el.lightboxOpen.href = url;
  el.lightbox.setAttribute('aria-label', name);
  el.lightbox.showModal();
}
el.lightbox.addEventListener('click', (e) => { if (e.target === el.lightbox || e.target === el.lightboxImg) el.lightbox.close(); });
el.lightbox.addEventListener('close', () => { el.lightboxImg.removeAttribute('src'); });
