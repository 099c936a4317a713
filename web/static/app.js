// The ferry page: rooms, people, chat and file sharing on top of ferry.js.
import { Ferry } from './ferry.js';

const $ = (sel, root = document) => root.querySelector(sel);
const store = {
  get(k, d = null) { try { const v = localStorage.getItem(k); return v === null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* storage disabled */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* storage disabled */ } },
};
const KEY_NAME = 'ferry.name';
const KEY_ROOMS = 'ferry.rooms';
const KEY_CURRENT = 'ferry.current';
// room → {invite, expires, at}: ferry.js keeps a private room's pass in
// memory only, so the page keeps an invite to get back in after a reload.
const KEY_INVITES = 'ferry.invites';
const ROOM_RE = /^[A-Za-z0-9._:@-]{1,64}$/;
// Rooms that take an invite (protocol.md, "Who may join").
const PRIVATE_PREFIX = 'private:';
// An invite is a JWT: a few hundred characters of base64url and dots.
const INVITE_RE = /^[A-Za-z0-9._-]{1,4096}$/;
// Shown in the page when the server does not say (file.inline); SVG never:
// it can carry scripts.
const INLINE_IMAGE = /^image\/(png|jpeg|gif|webp|avif|bmp)$/;

const el = {
  connState: $('#conn-state'), reconnect: $('#reconnect'), me: $('#me'), signOut: $('#sign-out'),
  login: $('#login'), nameForm: $('#name-form'), name: $('#name'), nameError: $('#name-error'),
  tokenBox: $('#token-box'), token: $('#token'),
  app: $('#app'), sidebar: $('#sidebar'), toggleRooms: $('#toggle-rooms'),
  joinForm: $('#join-form'), roomName: $('#room-name'), joinError: $('#join-error'),
  newPrivate: $('#new-private'),
  rooms: $('#rooms'), noRooms: $('#no-rooms'),
  room: $('#room'), roomTitle: $('#room-title'), leave: $('#leave-room'), empty: $('#empty'),
  invite: $('#invite'), invitePanel: $('#invite-panel'), inviteStatus: $('#invite-status'),
  inviteBox: $('#invite-box'), inviteLink: $('#invite-link'), inviteCopy: $('#invite-copy'),
  inviteClose: $('#invite-close'),
  toggleMembers: $('#toggle-members'), memberCount: $('#member-count'),
  membersPanel: $('#members-panel'), members: $('#members'),
  messages: $('#messages'), uploads: $('#uploads'),
  composer: $('#composer'), message: $('#message'), send: $('#send'),
  attach: $('#attach'), fileInput: $('#file-input'), dropOverlay: $('#drop-overlay'),
  lightbox: $('#lightbox'), lightboxImg: $('#lightbox-img'), lightboxOpen: $('#lightbox-open'),
  uploadTemplate: $('#upload-template'),
};

let client = null;
let current = null;
/** @type {Map<string, {name, list, item, unread, members: Map, mids: Set, files: Set}>} */
const rooms = new Map();
const pendingSends = new Map(); // mid → {room, text, li}
const firstJoins = new Set(); // rooms whose history is being loaded
let offlineSince = null;

// --- formatting ---

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function fmtTime(ms) {
  const d = new Date(ms);
  return new Date().toDateString() === d.toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

// Sizes, transfers and speeds all in binary units (KiB, MiB, ...), so that
// they add up wherever they are shown.
function fmtBytes(n) {
  if (!(n >= 0)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

function fmtDuration(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

// How long an invite stays valid, from its expiry (ms since the epoch, the
// server's clock): "valid 7 days", "valid 5 hours", "valid 20 min".
function fmtValidity(expires) {
  const s = (expires - Date.now()) / 1000;
  if (!(s > 0)) return '';
  if (s >= 1.5 * 86400) return `valid ${Math.round(s / 86400)} days`;
  if (s >= 1.5 * 3600) return `valid ${Math.round(s / 3600)} hours`;
  return `valid ${fmtDuration(s)}`;
}

const isPrivate = (room) => typeof room === 'string' && room.startsWith(PRIVATE_PREFIX);

// roomLabel is what the page calls a room. A private room's name is random:
// it is shown as "Private room" and the start of that name, enough to tell
// two apart (the same for everyone in it).
function roomLabel(room) {
  return isPrivate(room) ? `Private room ${room.slice(PRIVATE_PREFIX.length, PRIVATE_PREFIX.length + 4)}` : room;
}

// roomHeading is a room's label, with a lock for a private room (the word
// "private" already says it to a screen reader).
function roomHeading(room) {
  if (!isPrivate(room)) return [room];
  return [h('span', { class: 'lock', 'aria-hidden': 'true' }), roomLabel(room)];
}

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k in e && !k.includes('-')) e[k] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function newMid() {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return 'm_' + [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

// --- start ---

function start() {
  const params = new URLSearchParams(location.search);
  const hash = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token') || hash.get('token');
  const roomParam = params.get('room');
  if (token || roomParam) {
    // Keep the token out of the address bar and the history.
    params.delete('token');
    params.delete('room');
    hash.delete('token');
    const qs = params.toString();
    history.replaceState(null, '', location.pathname + (qs ? '?' + qs : '') + (hash.toString() ? '#' + hash : ''));
  }
  if (roomParam && ROOM_RE.test(roomParam)) {
    const saved = store.get(KEY_ROOMS, []);
    if (!saved.includes(roomParam)) store.set(KEY_ROOMS, [...saved, roomParam]);
    store.set(KEY_CURRENT, roomParam);
  }
  const name = store.get(KEY_NAME, '');
  let stored = null;
  try { stored = localStorage.getItem('ferry.token'); } catch { /* storage disabled */ }
  if (token || name || stored) {
    connect(name, token);
  } else {
    showLogin();
  }
}

function showLogin(error) {
  el.app.hidden = true;
  el.login.hidden = false;
  el.me.hidden = el.signOut.hidden = true;
  el.name.value = store.get(KEY_NAME, '');
  el.nameError.textContent = error || '';
  if (error) el.tokenBox.open = true;
  (error ? el.token : el.name).focus();
}

el.nameForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = el.name.value.trim();
  if (!name && el.token.value.trim()) {
    // A token names its user; the name field may stay empty.
    el.nameError.textContent = '';
    connect('', el.token.value.trim());
    return;
  }
  if (!name || name.length > 64 || /[\u0000-\u001f\u007f]/.test(name)) {
    el.nameError.textContent = 'Pick a name of 1 to 64 printable characters.';
    el.name.setAttribute('aria-invalid', 'true');
    el.name.focus();
    return;
  }
  el.name.removeAttribute('aria-invalid');
  el.nameError.textContent = '';
  store.set(KEY_NAME, name);
  connect(name, el.token.value.trim() || null);
});

function connect(name, token) {
  el.login.hidden = true;
  el.app.hidden = false;
  el.signOut.hidden = false;
  client = new Ferry({ name, token: token || undefined });
  window.ferry = client; // for the console and for browser tests
  client.on('state', renderState);
  client.on('connect', onConnect);
  client.on('disconnect', () => { offlineSince ??= Date.now(); });
  client.on('connect_error', (err) => {
    if (err.code === 'unauthorized' && client.state === 'offline') {
      // The server wants a (valid) token: ask for one.
      const c = client;
      client = null;
      c.close();
      for (const r of [...rooms.keys()]) dropRoom(r, { keep: true });
      renderState('offline');
      el.reconnect.hidden = true;
      showLogin(err.message === 'the server needs a token'
        ? 'This server needs an access token.'
        : 'The server refused this access token.');
    } else if (err.code === 'forbidden') {
      renderState(client.state, { error: err.message });
    }
  });
  client.on('welcome', (w) => {
    el.me.hidden = false;
    el.me.textContent = w.name;
    el.me.title = `user ${w.user}, connection ${w.conn}`;
    if (w.name) store.set(KEY_NAME, w.name);
  });
  client.on('event', onEvent);
  client.on('presence', onPresence);
  client.on('gap', onGap);
  client.on('receipt', onReceipt);
  client.on('error', (err) => {
    if (err.room && rooms.has(err.room)) {
      // A re-join after a reconnection failed.
      dropRoom(err.room);
      showJoinError(err.code === 'forbidden' && isPrivate(err.room) ? joinFailure(err.room, err, 'saved') : err.message);
    } else {
      console.warn('ferry:', err.code, err.message);
    }
  });
  // An invite link's room is joined with its invite, also when the page
  // remembers the room with an older one.
  const link = takeInviteLink();
  for (const r of store.get(KEY_ROOMS, [])) if (r !== link) joinRoom(r, { quiet: true });
  client.connect();
  renderState(client.state);
  const cur = store.get(KEY_CURRENT, null);
  if (cur && rooms.has(cur)) selectRoom(cur);
  else if (rooms.size) selectRoom(rooms.keys().next().value);
  else renderRoom();
  // Keyboard users land where the next step is.
  if (current) el.message.focus();
  else if (getComputedStyle(el.roomName).display !== 'none' && el.roomName.offsetParent) el.roomName.focus();
  else el.toggleRooms.focus();
  if (link) enterRoom(link, { via: 'link' });
}

// --- invite links ---

// An invite link is the page's address with #join=<room>&invite=<invite>.
// The fragment never reaches a server; the page takes it out of the address
// bar and the history as soon as it has read it, since whoever holds the
// invite may join until it expires.

function inviteURL(room, invite) {
  return location.href.split('#')[0] + '#' + new URLSearchParams({ join: room, invite });
}

// takeInviteLink reads an invite link in the address, removes it from
// there, keeps its invite for the room and returns the room to enter (null
// when there is none, or when it is damaged: then it says so).
function takeInviteLink() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (!hash.has('join')) return null;
  el.joinError.textContent = '';
  const room = hash.get('join');
  const invite = hash.get('invite') || '';
  hash.delete('join');
  hash.delete('invite');
  const rest = hash.toString();
  history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  if (!ROOM_RE.test(room) || /^(conn|user):/.test(room) || (invite && !INVITE_RE.test(invite))) {
    showJoinError('This invite link is damaged: ask for it again, and copy all of it.');
    return null;
  }
  if (!invite && isPrivate(room) && !rooms.has(room) && !inviteFor(room)) {
    showJoinError('This link has no invite in it: ask someone in the room for an invite link.');
    return null;
  }
  // The page's own invite of a room it is in already is the one to keep.
  if (invite && rooms.get(room)?.item.dataset.joined !== 'true') rememberInvite(room, { invite });
  return room;
}

window.addEventListener('hashchange', () => {
  // Without a connection the link waits in the address bar: connect()
  // takes it once the person has a name.
  if (!client) return;
  const link = takeInviteLink();
  if (link) enterRoom(link, { via: 'link' });
});

function savedInvites() {
  const v = store.get(KEY_INVITES, {});
  return v && typeof v === 'object' ? v : {};
}

function inviteFor(room) {
  return isPrivate(room) ? savedInvites()[room]?.invite : undefined;
}

// rememberInvite keeps the latest invite to a private room: expires and at
// (when it was had) are unknown (0) for one read from a link.
function rememberInvite(room, { invite, expires = 0 }) {
  if (!isPrivate(room) || !invite) return;
  store.set(KEY_INVITES, { ...savedInvites(), [room]: { invite, expires, at: expires ? Date.now() : 0 } });
}

function forgetInvite(room) {
  const all = savedInvites();
  if (!(room in all)) return;
  delete all[room];
  store.set(KEY_INVITES, all);
}

// refreshInvite swaps the kept invite of a private room the page is in for
// a fresh one once half of its life is gone (or when its age is unknown):
// invites last a week (--invite-ttl), and a reload a month on must still get
// back in.
function refreshInvite(room) {
  if (!client || !isPrivate(room)) return;
  const saved = savedInvites()[room];
  if (saved?.at && saved.expires && Date.now() < saved.at + (saved.expires - saved.at) / 2) return;
  client.invite(room).then((inv) => {
    if (rooms.has(room)) rememberInvite(room, inv);
  }, (err) => console.warn('ferry: invite', room, err.code));
}

// INVITE_CHECK_MS is how often an open page looks for kept invites due for
// refreshInvite (it asks the server only for those).
const INVITE_CHECK_MS = 10 * 60 * 1000;
setInterval(() => {
  for (const [name, r] of rooms) if (r.item.dataset.joined === 'true') refreshInvite(name);
}, INVITE_CHECK_MS);

el.signOut.addEventListener('click', () => {
  client?.forgetToken();
  client?.close();
  client = null;
  store.del(KEY_NAME);
  store.del(KEY_ROOMS);
  store.del(KEY_CURRENT);
  store.del(KEY_INVITES);
  for (const r of [...rooms.keys()]) dropRoom(r);
  el.uploads.replaceChildren();
  pendingRows.clear();
  showLogin();
});

el.reconnect.addEventListener('click', () => client?.reconnectNow());

function renderState(state, info = {}) {
  const attempt = info.attempt ?? client?._attempt ?? 0;
  const labels = {
    connecting: 'connecting…',
    connected: 'connected',
    reconnecting: attempt ? `reconnecting (attempt ${attempt})` : 'reconnecting…',
    offline: 'offline',
  };
  el.connState.dataset.state = state;
  el.connState.textContent = labels[state] || state;
  el.connState.title = info.error || '';
  if (info.error) el.connState.textContent += ` — ${info.error}`;
  el.reconnect.hidden = !(state === 'reconnecting' || (state === 'offline' && client));
  document.body.dataset.conn = state;
}

// onConnect runs after every (re)connection, once ferry.js has re-joined the
// rooms: it refreshes who is where and sends what is still pending.
// Missed events were replayed by the re-join (ferry.js asks for them).
async function onConnect() {
  const since = offlineSince;
  offlineSince = null;
  for (const [name, r] of rooms) {
    if (!client.joined.includes(name)) continue;
    try {
      const members = await client.members(name);
      const before = new Map(r.members);
      r.members = new Map(members.map((m) => [m.user, m]));
      if (since) {
        for (const [u, m] of r.members) if (!before.has(u) && u !== client.user) notice(name, `${m.name} joined`);
        for (const [u, m] of before) if (!r.members.has(u) && u !== client.user) notice(name, `${m.name} left`);
      }
      if (name === current) renderMembers();
    } catch (err) {
      console.warn('ferry: members', name, err.code);
    }
    refreshInvite(name);
  }
}

// A gap: events the server no longer has. Said in the room, never hidden.
function onGap(g) {
  if (!rooms.has(g.room)) return;
  if (firstJoins.has(g.room)) {
    // Loading a room's recent history on arrival: older events being gone is expected.
    if (g.reason === 'history') notice(g.room, 'Older messages are no longer kept by the server.');
    return;
  }
  notice(g.room, g.reason === 'epoch'
    ? 'The server restarted: messages sent while you were away may be missing.'
    : `Some messages sent while you were away are no longer available (${g.to - g.from + 1}).`);
}

// --- rooms ---

function roomState(name) {
  let r = rooms.get(name);
  if (r) return r;
  const list = h('ol', { class: 'message-list', 'data-room': name, hidden: true });
  el.messages.append(list);
  const badge = h('span', { class: 'unread', 'data-testid': 'unread', hidden: true });
  const button = h('button', {
    type: 'button', class: 'room-button', 'data-room': name, 'data-testid': 'room',
    onclick: () => { selectRoom(name); closePanels(); el.message.focus(); },
  }, h('span', { class: 'room-label' }, ...roomHeading(name)), badge);
  if (isPrivate(name)) button.title = name;
  const item = h('li', {
    class: 'room-item', 'data-room': name, 'data-joined': 'false', 'data-private': isPrivate(name) ? 'true' : 'false',
  }, button);
  el.rooms.append(item);
  r = { name, list, item, button, badge, unread: 0, members: new Map(), mids: new Set(), files: new Set() };
  rooms.set(name, r);
  el.noRooms.hidden = true;
  return r;
}

// joinRoom joins a room and remembers it for the next page. via says where
// the name came from, for the words of a refusal: 'form' (typed), 'link'
// (an invite link), 'new' (a private room just made) or 'saved' (a room of
// an earlier page).
async function joinRoom(name, { quiet = false, via = 'saved' } = {}) {
  const r = roomState(name);
  r.item.dataset.joined = 'pending';
  saveRooms();
  firstJoins.add(name);
  try {
    // history: the server replays the room's recent events first. A
    // private room takes the invite the page keeps (ferry.js then uses the
    // pass the server answers with when it rejoins).
    const members = await client.join(name, { history: true, token: inviteFor(name) });
    r.item.dataset.joined = 'true';
    r.members = new Map(members.map((m) => [m.user, m]));
    if (!quiet) notice(name, `You joined ${roomLabel(name)}`);
    if (name === current) renderRoom();
    refreshInvite(name);
    showPending(name);
    // Right after a reload the page before may still hold its uploads'
    // locks for a moment, and pendingUploads leaves held ones out: look
    // again once they are surely released. showPending skips rows it shows.
    setTimeout(() => { if (rooms.has(name)) showPending(name); }, PENDING_RECHECK_MS);
    return true;
  } catch (err) {
    if (err.code === 'disconnected' || err.code === 'timeout' || err.code === 'offline') {
      // ferry.js re-joins on reconnect only rooms it got into; try again then.
      client.once('connect', () => { if (rooms.has(name)) joinRoom(name, { quiet: true, via }); });
      return false;
    }
    dropRoom(name);
    showJoinError(joinFailure(name, err, via));
    return false;
  } finally {
    firstJoins.delete(name);
  }
}

// joinFailure says why a join was refused, in words a person can act on.
// A private room refuses the same way whether the invite expired, was
// altered, or the room was never made (protocol.md): via tells which
// sentence fits best.
function joinFailure(name, err, via) {
  if (err.code === 'forbidden' && isPrivate(name)) {
    switch (via) {
      case 'link': return 'This invite link has expired or is not valid. Ask someone in the room for a new one.';
      case 'saved': return `You are no longer in ${roomLabel(name)}: your invite to it has expired. Ask someone in the room for a new invite link.`;
      default: return 'That room is private: only people with an invite link from someone in it can join.';
    }
  }
  return `Could not join ${roomLabel(name)}: ${err.message}`;
}

// showJoinError puts a message in the rooms panel's error line, opening
// the panel on a small screen, where it hides behind the Rooms button.
function showJoinError(text) {
  el.joinError.textContent = text;
  if (text && !el.app.hidden && !el.sidebar.offsetParent) togglePanel(el.sidebar, el.toggleRooms, true);
}

function dropRoom(name, { keep = false } = {}) {
  const r = rooms.get(name);
  if (!r) return;
  r.list.remove();
  r.item.remove();
  rooms.delete(name);
  for (const [id, p] of pendingRows) if (p.room === name) dropPending(id);
  if (!keep) {
    saveRooms();
    forgetInvite(name);
  }
  el.noRooms.hidden = rooms.size > 0;
  if (current === name) selectRoom(rooms.keys().next().value || null);
}

function saveRooms() { store.set(KEY_ROOMS, [...rooms.keys()]); }

function selectRoom(name) {
  current = name && rooms.has(name) ? name : null;
  if (current) store.set(KEY_CURRENT, current);
  for (const r of rooms.values()) {
    const on = r.name === current;
    r.list.hidden = !on;
    if (on) r.button.setAttribute('aria-current', 'true');
    else r.button.removeAttribute('aria-current');
  }
  if (current) {
    const r = rooms.get(current);
    r.unread = 0;
    r.badge.hidden = true;
    scrollToEnd(true);
  }
  renderRoom();
  renderUploads();
}

function renderRoom() {
  const r = current && rooms.get(current);
  el.roomTitle.replaceChildren(...(r ? roomHeading(r.name) : ['No room']));
  el.roomTitle.title = r && isPrivate(r.name) ? r.name : '';
  el.empty.hidden = !!r;
  el.messages.hidden = !r;
  el.leave.disabled = !r;
  for (const c of [el.message, el.send, el.attach]) c.disabled = !r;
  // Only members get invites: the button waits for the join.
  el.invite.hidden = !(r && isPrivate(r.name));
  el.invite.disabled = !(r && r.item.dataset.joined === 'true');
  if (el.invitePanel.dataset.room !== (current || '')) closeInvite();
  document.title = r ? `${roomLabel(r.name)} · ferry` : 'ferry';
  renderMembers();
}

function renderMembers() {
  const r = current && rooms.get(current);
  const members = r ? [...r.members.values()] : [];
  members.sort((a, b) => (a.user === client?.user ? -1 : b.user === client?.user ? 1 : a.name.localeCompare(b.name)));
  el.members.replaceChildren(...members.map((m) => h('li', {
    class: 'member' + (m.user === client?.user ? ' me' : ''), 'data-user': m.user, 'data-testid': 'member',
  }, h('span', { class: 'member-name', text: m.name }),
  m.user === client?.user ? h('span', { class: 'member-note', text: ' (you)' }) : null,
  m.connections > 1 ? h('span', { class: 'member-note', text: ` · ${m.connections} devices` }) : null)));
  el.memberCount.textContent = String(members.length);
}

// enterRoom joins a room when the page is not in it yet and shows it; it
// resolves with whether the page is in it.
async function enterRoom(name, opts = {}) {
  if (!rooms.has(name)) {
    roomState(name);
    selectRoom(name);
    await joinRoom(name, opts);
  } else {
    selectRoom(name);
  }
  if (!rooms.has(name)) return false;
  closePanels();
  el.message.focus();
  return rooms.get(name).item.dataset.joined === 'true';
}

el.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const name = el.roomName.value.trim();
  el.joinError.textContent = '';
  if (!ROOM_RE.test(name) || /^(conn|user):/.test(name)) {
    el.joinError.textContent = 'Room names are 1 to 64 letters, digits or . _ - : @ (not starting with conn: or user:).';
    el.roomName.setAttribute('aria-invalid', 'true');
    el.roomName.focus();
    return;
  }
  el.roomName.removeAttribute('aria-invalid');
  el.roomName.value = '';
  enterRoom(name, { via: 'form' });
});

// A new private room: the server makes it with a first invite, the page
// joins with that invite and shows the link to share.
el.newPrivate.addEventListener('click', async () => {
  if (!client) return;
  el.joinError.textContent = '';
  el.newPrivate.disabled = true;
  let inv;
  try {
    inv = await client.invite();
  } catch (err) {
    el.newPrivate.disabled = false;
    el.newPrivate.focus();
    showJoinError(err.code === 'forbidden'
      ? 'This server does not make private rooms: its access tokens say who may join which room.'
      : `Could not make a private room: ${err.message}`);
    return;
  }
  el.newPrivate.disabled = false;
  rememberInvite(inv.room, inv);
  if (!(await enterRoom(inv.room, { via: 'new', quiet: true }))) return;
  notice(inv.room, 'You made this private room. Only people with an invite link can join it.');
  showInvite(inv.room, inv, { copy: false });
});

// --- inviting ---

el.invite.addEventListener('click', async () => {
  const room = current;
  // Busy rather than disabled meanwhile: a disabled button would drop the
  // keyboard focus.
  if (!client || !isPrivate(room) || el.invite.getAttribute('aria-busy') === 'true') return;
  el.invite.setAttribute('aria-busy', 'true');
  setInviteStatus(room, 'Making an invite link…');
  try {
    const inv = await client.invite(room);
    rememberInvite(room, inv); // the freshest serves this page's reloads too
    if (room === current) await showInvite(room, inv, { copy: true });
  } catch (err) {
    if (room === current) {
      setInviteStatus(room, err.code === 'not_member'
        ? 'You are not in this room any more, so you cannot invite anyone to it.'
        : `Could not make an invite link: ${err.message}`);
    }
  } finally {
    el.invite.removeAttribute('aria-busy');
  }
});

function setInviteStatus(room, text) {
  el.invitePanel.dataset.room = room;
  el.invitePanel.dataset.open = 'true';
  el.inviteStatus.textContent = text;
}

// showInvite shows an invite link, and copies it to the clipboard when
// asked and allowed; otherwise the link is selected, to copy by hand.
async function showInvite(room, { invite, expires }, { copy }) {
  const link = inviteURL(room, invite);
  const valid = fmtValidity(expires);
  el.inviteLink.value = link;
  el.invitePanel.dataset.expires = String(expires || '');
  el.inviteBox.hidden = false;
  if (!copy) {
    setInviteStatus(room, `Private room ready. Invite people with this link${valid ? ` — ${valid}` : ''}.`);
    return;
  }
  setInviteStatus(room, '');
  await copyInvite();
}

// copyInvite copies the link shown. Clipboard access needs a secure page
// (https or localhost) and the browser's consent; without it the link is
// selected for Ctrl+C.
async function copyInvite() {
  const room = el.invitePanel.dataset.room;
  const valid = fmtValidity(Number(el.invitePanel.dataset.expires));
  const link = el.inviteLink.value;
  let copied = false;
  let timer;
  try {
    // A browser may leave the promise waiting on a permission prompt.
    await Promise.race([
      navigator.clipboard.writeText(link),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timeout')), 3000); }),
    ]);
    copied = true;
  } catch { /* no clipboard here: the person copies the selected link */ }
  clearTimeout(timer);
  if (room !== current || el.inviteLink.value !== link) return;
  el.invitePanel.dataset.copied = String(copied);
  if (copied) {
    setInviteStatus(room, `Invite link copied${valid ? ` — ${valid}` : ''}.`);
  } else {
    setInviteStatus(room, `Copy this invite link${valid ? ` — ${valid}` : ''}: it is selected, press Ctrl+C (⌘C on a Mac).`);
    el.inviteLink.focus();
    el.inviteLink.select();
  }
}

function closeInvite() {
  el.invitePanel.dataset.open = 'false';
  el.invitePanel.dataset.room = '';
  delete el.invitePanel.dataset.copied;
  el.inviteStatus.textContent = '';
  el.inviteLink.value = '';
  el.inviteBox.hidden = true;
}

el.inviteCopy.addEventListener('click', () => copyInvite());
el.inviteLink.addEventListener('focus', () => el.inviteLink.select());
el.inviteClose.addEventListener('click', () => {
  closeInvite();
  (el.invite.hidden ? el.message : el.invite).focus();
});
el.invitePanel.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') {
    e.stopPropagation();
    el.inviteClose.click();
  }
});

el.leave.addEventListener('click', async () => {
  const name = current;
  if (!name) return;
  el.leave.disabled = true;
  try {
    await client.leave(name);
  } catch (err) {
    if (err.code !== 'disconnected' && err.code !== 'offline') {
      notice(name, `Could not leave: ${err.message}`);
      el.leave.disabled = false;
      return;
    }
  }
  dropRoom(name);
  el.roomName.focus();
});

// --- messages ---

function listFor(room) { return rooms.get(room)?.list; }

function nearBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToEnd(force) {
  if (force || nearBottom()) requestAnimationFrame(() => { el.messages.scrollTop = el.messages.scrollHeight; });
}

// maxItems bounds what a room's list keeps, so that a page left open for
// days does not grow without end; the oldest items go first.
const maxItems = 1000;

function appendTo(room, li) {
  const r = rooms.get(room);
  if (!r) return;
  const stick = room === current && nearBottom();
  r.list.append(li);
  while (r.list.children.length > maxItems) {
    const old = r.list.firstElementChild;
    if (old.dataset.mid) r.mids.delete(old.dataset.mid);
    if (old.dataset.fileId) r.files.delete(old.dataset.fileId);
    old.remove();
  }
  if (room === current) {
    if (stick) scrollToEnd(true);
  } else if (li.classList.contains('message')) {
    r.unread++;
    r.badge.hidden = false;
    r.badge.textContent = String(r.unread);
    r.badge.setAttribute('aria-label', `${r.unread} unread`);
  }
}

function notice(room, text) {
  appendTo(room, h('li', { class: 'notice', 'data-testid': 'notice', text }));
}

function messageShell({ room, mid, fromUser, fromName, ts, own }) {
  const li = h('li', {
    class: 'message' + (own ? ' own' : ''), 'data-testid': 'message', 'data-room': room,
    'data-user': fromUser || '', 'data-mid': mid || '',
  });
  const time = h('time', { class: 'time', 'data-testid': 'message-time', datetime: new Date(ts).toISOString(), text: fmtTime(ts) });
  time.title = dateTimeFmt.format(new Date(ts));
  li.append(h('div', { class: 'meta' },
    h('span', { class: 'sender', 'data-testid': 'message-sender', text: fromName || 'someone' }), ' ', time));
  return li;
}

function addChat(room, { mid, text, fromUser, fromName, ts, own, state }) {
  const r = rooms.get(room);
  if (!r) return null;
  if (mid && r.mids.has(mid)) return null;
  if (mid) r.mids.add(mid);
  const li = messageShell({ room, mid, fromUser, fromName, ts, own });
  li.append(h('p', { class: 'text', 'data-testid': 'message-text', text }));
  if (state) setSendState(li, state);
  appendTo(room, li);
  return li;
}

function setSendState(li, state, detail) {
  li.dataset.state = state;
  let s = li.querySelector('.send-state');
  if (!s) {
    s = h('span', { class: 'send-state', 'data-testid': 'send-state' });
    li.querySelector('.meta').append(' ', s);
  }
  const labels = { pending: 'sending…', sent: 'sent', failed: 'not sent' };
  s.textContent = labels[state] + (detail ? ` (${detail})` : '');
  li.querySelector('.retry')?.remove();
  if (state === 'failed') {
    li.append(h('button', {
      type: 'button', class: 'retry', 'data-testid': 'retry', text: 'Retry',
      onclick: () => { const p = pendingSends.get(li.dataset.mid); if (p) sendChat(p.room, p.text, li.dataset.mid); },
    }));
  }
}

async function sendChat(room, text, mid = newMid()) {
  let p = pendingSends.get(mid);
  if (!p) {
    const li = addChat(room, { mid, text, fromUser: client.user, fromName: client.name, ts: Date.now(), own: true, state: 'pending' });
    p = { room, text, li };
    pendingSends.set(mid, p);
  }
  setSendState(p.li, 'pending');
  try {
    // The mid is the msg_id: ferry.js resends across reconnects until the
    // ack, and the server publishes it once.
    const ack = await client.emit(room, 'chat', { text }, { exceptSelf: true, msgId: mid });
    pendingSends.delete(mid);
    setSendState(p.li, 'sent');
    if (ack?.seq) p.li.dataset.seq = String(ack.seq);
  } catch (err) {
    setSendState(p.li, 'failed', err.code === 'rate_limited' ? 'too fast, try again' : err.message);
  }
}

el.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  // Blank lines around a message are noise (and a Enter that moved focus
  // here from another form can leave one).
  const text = el.message.value.replace(/^\s*\n/, '').replace(/\s+$/, '');
  if (!text.trim() || !current) return;
  sendChat(current, text);
  el.message.value = '';
  autosize();
  scrollToEnd(true);
});

el.message.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    el.composer.requestSubmit();
  }
});

function autosize() {
  el.message.style.height = 'auto';
  // border-box: scrollHeight leaves out the 2px of border.
  el.message.style.height = Math.min(el.message.scrollHeight + 2, 160) + 'px';
}
el.message.addEventListener('input', autosize);

function onEvent(ev) {
  if (!rooms.has(ev.room)) return;
  const own = ev.from?.user === client.user;
  if (ev.event === 'chat' && ev.data && typeof ev.data.text === 'string') {
    const li = addChat(ev.room, {
      mid: ev.msg_id || null,
      text: ev.data.text, fromUser: ev.from?.user, fromName: ev.from?.name, ts: ev.ts || Date.now(), own,
      state: own ? 'sent' : undefined,
    });
    if (li && ev.seq) li.dataset.seq = String(ev.seq);
  } else if (ev.event === 'file' && ev.data && ev.data.id) {
    addFile(ev.room, ev.data, ev.ts, ev.seq);
  }
}

// Receipts: file announcements ask for them, so the uploader sees how many
// people have the file.
function onReceipt(rc) {
  const li = rooms.get(rc.room)?.list.querySelector(`.message.own[data-seq="${rc.seq}"]`);
  if (!li) return;
  let span = li.querySelector('.receipts');
  if (!span) {
    span = h('span', { class: 'receipts', 'data-testid': 'receipts' });
    li.querySelector('.meta').append(' ', span);
  }
  span.dataset.count = String(rc.count);
  span.textContent = `received by ${rc.count}`;
  span.title = `last: ${rc.name}`;
}

function onPresence(p) {
  const r = rooms.get(p.room);
  if (!r) return;
  const had = r.members.has(p.user);
  if (p.action === 'join') {
    r.members.set(p.user, { user: p.user, name: p.name, connections: p.connections });
    if (!had && p.user !== client.user) notice(p.room, `${p.name} joined`);
  } else if (p.action === 'leave') {
    if (p.connections > 0) {
      r.members.set(p.user, { user: p.user, name: p.name, connections: p.connections });
    } else {
      r.members.delete(p.user);
      if (had && p.user !== client.user) notice(p.room, `${p.name} left`);
    }
  }
  if (p.room === current) renderMembers();
}

// --- files ---

function addFile(room, file, ts, seq) {
  const r = rooms.get(room);
  if (!r) return;
  if (r.files.has(file.id)) {
    // Shown already (from upload.done): learn its seq, for receipts.
    const li = r.list.querySelector(`[data-file-id="${CSS.escape(file.id)}"]`);
    if (li && seq && !li.dataset.seq) li.dataset.seq = String(seq);
    return;
  }
  r.files.add(file.id);
  const li = messageShell({
    room, fromUser: file.user, fromName: file.user_name, ts: ts || Date.parse(file.time) || Date.now(),
    own: file.user === client.user,
  });
  li.classList.add('file-message');
  li.dataset.fileId = file.id;
  if (seq) li.dataset.seq = String(seq);
  li.append(fileCard(file));
  appendTo(room, li);
}

function fileCard(file) {
  const url = client.fileURL(file);
  const type = file.type || 'application/octet-stream';
  const card = h('figure', { class: 'file-card', 'data-testid': 'file-card', 'data-file-id': file.id, 'data-type': type });
  const download = h('a', {
    class: 'download', 'data-testid': 'file-download', href: url, download: file.name, text: 'Download',
  });
  download.setAttribute('aria-label', `Download ${file.name}`);
  const ext = /\.([A-Za-z0-9]{1,5})$/.exec(file.name)?.[1] || type.split('/')[1]?.slice(0, 4) || 'file';
  const caption = h('figcaption', {},
    h('span', { class: 'file-ext', 'aria-hidden': 'true', text: ext.toUpperCase() }),
    h('span', { class: 'file-name', 'data-testid': 'file-name', text: file.name }),
    h('span', { class: 'file-size', 'data-testid': 'file-size', text: fmtBytes(file.size) }),
    h('span', { class: 'file-type', 'data-testid': 'file-type', text: type }),
    download);
  let media = null;
  let refreshed = false;
  // A media element that fails to load may hold an expired link: ask for a
  // fresh one once, then show the file as a plain card.
  const onError = async () => {
    if (!refreshed && client && file.id) {
      refreshed = true;
      try {
        const fresh = client.fileURL(await client.fileLink(file.id));
        download.href = fresh;
        for (const e of card.querySelectorAll('[src]')) e.src = fresh;
        for (const e of card.querySelectorAll('a.open')) e.href = fresh;
        return;
      } catch { /* fall through */ }
    }
    media?.remove();
    card.dataset.kind = 'file';
  };
  const inline = file.inline ?? (INLINE_IMAGE.test(type) || /^(audio|video)\//.test(type));
  if (inline && /^image\//.test(type) && type !== 'image/svg+xml') {
    card.dataset.kind = 'image';
    const img = h('img', { class: 'preview', 'data-testid': 'preview', src: url, alt: file.name, loading: 'lazy', decoding: 'async' });
    img.addEventListener('error', onError);
    img.addEventListener('load', () => scrollToEnd(false), { once: true });
    media = h('a', {
      class: 'open', href: url, target: '_blank', rel: 'noopener', title: `Open ${file.name}`,
      onclick: (e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey || e.button === 1) return;
        e.preventDefault();
        openLightbox(img.src, file.name);
      },
    }, img);
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

function openLightbox(url, name) {
  el.lightboxImg.src = url;
  el.lightboxImg.alt = name;
  el.lightboxOpen.href = url;
  el.lightbox.setAttribute('aria-label', name);
  el.lightbox.showModal();
}
el.lightbox.addEventListener('click', (e) => { if (e.target === el.lightbox || e.target === el.lightboxImg) el.lightbox.close(); });
el.lightbox.addEventListener('close', () => { el.lightboxImg.removeAttribute('src'); });

// --- uploads ---

const uploads = new Set();
// Unfinished uploads of earlier pages (ferry.js remembers them): upload id →
// {room, li, entry}. Picking the same file again resumes one.
const pendingRows = new Map();

const WAITING_TEXT = {
  storage_unavailable: 'paused, storage unavailable — retrying',
  busy: 'the server is busy — retrying shortly',
  too_many_uploads: 'waiting for another upload to end…',
  rate_limited: 'paused, retrying…',
};
const STATUS_TEXT = {
  queued: 'queued', hashing: 'checking…', opening: 'starting…', finishing: 'storing…', done: 'done',
};

// uploadText says where an upload stands: "12 MiB of 40 MiB · stored 8.0 MiB"
// and, apart, "1.2 MiB/s · 40 s left".
function uploadText(p) {
  let text = `${fmtBytes(p.sent)} of ${fmtBytes(p.size)}`;
  if (p.status !== 'done' && p.status !== 'queued' && p.stored < p.size) text += ` · stored ${fmtBytes(p.stored)}`;
  let note = STATUS_TEXT[p.status] || '';
  if (p.status === 'waiting') {
    note = WAITING_TEXT[p.reason] || (client?.state === 'connected' ? 'paused, retrying…' : 'waiting for the connection…');
  }
  if (note) text += ` · ${note}`;
  const speed = p.rate > 0 ? `${fmtBytes(p.rate)}/s` + (p.eta !== null ? ` · ${fmtDuration(p.eta)} left` : '') : '';
  return { text, speed };
}

// A final failure, said so that a person knows what to do.
function failureText(err) {
  switch (err.code) {
    case 'storage_full': return 'Not stored: the server has no room left for this file. Try again once space is freed.';
    case 'checksum_mismatch': return 'Not stored: the file changed while it was being sent. Pick it again.';
    case 'read_failed': return 'Not stored: the file could not be read any more. Pick it again.';
    default: return `failed: ${err.message}`;
  }
}

function uploadRow(room, name, size) {
  const li = el.uploadTemplate.content.firstElementChild.cloneNode(true);
  li.dataset.room = room;
  li.dataset.name = name;
  li.querySelector('.upload-name').textContent = name;
  li.querySelector('.upload-room').textContent = `to ${roomLabel(room)}`;
  const bar = li.querySelector('.progress');
  bar.max = size || 1;
  bar.setAttribute('aria-label', `Upload of ${name}`);
  return li;
}

function startUpload(room, file) {
  if (!room || !client) return;
  const ctl = new AbortController();
  const li = uploadRow(room, file.name, file.size);
  const bar = li.querySelector('.progress');
  const status = li.querySelector('.upload-status');
  const speed = li.querySelector('.speed');
  const cancel = li.querySelector('.cancel');
  li.dataset.state = 'queued';
  status.textContent = 'queued';
  cancel.setAttribute('aria-label', `Cancel upload of ${file.name}`);
  const u = { room, li, ctl, id: null };
  uploads.add(u);
  el.uploads.append(li);
  renderUploads();

  const onProgress = (p) => {
    if (p.upload && !u.id) {
      u.id = p.upload;
      li.dataset.upload = p.upload;
      // Picked again: this resumes (or replaces) the remembered upload.
      for (const [id, r] of pendingRows) {
        const e = r.entry;
        if (id === p.upload || (e.room === room && e.name === file.name && e.size === file.size && e.lastModified === file.lastModified)) dropPending(id);
      }
    }
    li.dataset.state = p.status;
    li.dataset.reason = p.reason || '';
    bar.value = p.sent;
    const t = uploadText(p);
    status.textContent = t.text;
    speed.textContent = t.speed;
  };
  const finish = () => { uploads.delete(u); renderUploads(); };
  cancel.addEventListener('click', () => ctl.abort());
  client.upload(room, file, { onProgress, signal: ctl.signal }).then((f) => {
    li.dataset.state = 'done';
    bar.value = bar.max;
    status.textContent = `${fmtBytes(file.size)} · done`;
    speed.textContent = '';
    cancel.hidden = true;
    addFile(room, f, Date.now());
    setTimeout(() => { li.remove(); finish(); }, 1500);
  }, (err) => {
    if (err.code === 'canceled') { li.remove(); finish(); return; }
    li.dataset.state = 'failed';
    li.dataset.reason = err.code || '';
    speed.textContent = '';
    status.textContent = failureText(err);
    status.setAttribute('role', 'alert');
    cancel.textContent = 'Dismiss';
    cancel.setAttribute('aria-label', `Dismiss failed upload of ${file.name}`);
    cancel.addEventListener('click', () => { li.remove(); finish(); }, { once: true });
  });
}

// PENDING_RECHECK_MS is when the unfinished uploads of a room are listed
// again after joining it (see joinRoom).
const PENDING_RECHECK_MS = 2000;

// showPending lists the unfinished uploads of earlier pages for a room, with
// a way to resume them (pick the file again) or drop them.
async function showPending(room) {
  let list;
  try {
    list = await client.pendingUploads(room);
  } catch {
    return;
  }
  for (const e of list) {
    if (pendingRows.has(e.upload) || [...uploads].some((u) => u.id === e.upload) || !rooms.has(room)) continue;
    const li = uploadRow(room, e.name, e.size);
    li.classList.add('pending');
    li.dataset.state = 'pending';
    li.dataset.upload = e.upload;
    li.dataset.testid = 'pending-upload';
    li.querySelector('.progress').value = e.received;
    li.querySelector('.upload-status').textContent =
      `${e.name} — ${fmtBytes(e.received)} of ${fmtBytes(e.size)} sent. Pick the file again to resume.`;
    const dismiss = li.querySelector('.cancel');
    dismiss.textContent = 'Dismiss';
    dismiss.setAttribute('aria-label', `Dismiss the unfinished upload of ${e.name}`);
    dismiss.addEventListener('click', () => {
      dropPending(e.upload);
      client?.cancelUpload(e.upload).catch(() => { /* gone already, or offline: it expires */ });
      (el.attach.disabled ? el.message : el.attach).focus();
    });
    const pick = h('button', {
      type: 'button', class: 'pick', 'data-testid': 'pending-pick', text: 'Pick file…',
      onclick: () => {
        if (current !== room) selectRoom(room);
        el.fileInput.click();
      },
    });
    pick.setAttribute('aria-label', `Pick ${e.name} again to resume its upload`);
    dismiss.before(pick);
    pendingRows.set(e.upload, { room, li, entry: e });
    el.uploads.append(li);
  }
  renderUploads();
}

function dropPending(id) {
  const r = pendingRows.get(id);
  if (!r) return;
  r.li.remove();
  pendingRows.delete(id);
  renderUploads();
}

function renderUploads() {
  for (const u of uploads) u.li.classList.toggle('other-room', u.room !== current);
  for (const r of pendingRows.values()) r.li.classList.toggle('other-room', r.room !== current);
  el.uploads.hidden = uploads.size === 0 && pendingRows.size === 0;
}

function shareFiles(files) {
  if (!current) return;
  for (const f of files) startUpload(current, f);
}

el.attach.addEventListener('click', () => el.fileInput.click());
el.fileInput.addEventListener('change', () => {
  shareFiles([...el.fileInput.files]);
  el.fileInput.value = '';
});

// Drag and drop onto the room.
let dragDepth = 0;
const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes('Files');
el.room.addEventListener('dragenter', (e) => {
  if (!hasFiles(e) || !current) return;
  e.preventDefault();
  dragDepth++;
  el.dropOverlay.hidden = false;
  el.dropOverlay.textContent = `Drop files to share them in ${roomLabel(current)}`;
});
el.room.addEventListener('dragover', (e) => {
  if (!hasFiles(e) || !current) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = 'copy';
});
el.room.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) { dragDepth = 0; el.dropOverlay.hidden = true; }
});
el.room.addEventListener('drop', (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  el.dropOverlay.hidden = true;
  shareFiles([...e.dataTransfer.files]);
});
// A file dropped beside the room must not make the browser navigate to it.
window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
window.addEventListener('drop', (e) => { if (hasFiles(e)) e.preventDefault(); });

// Paste an image (or any file) to share it.
document.addEventListener('paste', (e) => {
  if (!current || el.app.hidden) return;
  const files = [...(e.clipboardData?.files || [])];
  if (!files.length) return;
  e.preventDefault();
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  shareFiles(files.map((f, i) => {
    if (f.name && f.name !== 'image.png') return f;
    const ext = (f.type.split('/')[1] || 'bin').replace('jpeg', 'jpg').replace(/\+.*/, '');
    return new File([f], `pasted-${stamp}${i ? '-' + i : ''}.${ext}`, { type: f.type });
  }));
});

// --- small screens ---

function togglePanel(panel, button, open) {
  const on = open ?? panel.dataset.open !== 'true';
  panel.dataset.open = String(on);
  button.setAttribute('aria-expanded', String(on));
  if (on) panel.querySelector('input, button, [tabindex]')?.focus();
}

function closePanels() {
  togglePanel(el.sidebar, el.toggleRooms, false);
  togglePanel(el.membersPanel, el.toggleMembers, false);
}

el.toggleRooms.addEventListener('click', () => togglePanel(el.sidebar, el.toggleRooms));
el.toggleMembers.addEventListener('click', () => togglePanel(el.membersPanel, el.toggleMembers));
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && (el.sidebar.dataset.open === 'true' || el.membersPanel.dataset.open === 'true')) {
    closePanels();
    el.message.focus();
  }
});

start();
