// The ferry page: signing in, rooms, people, invites and the composer, on
// top of ferry.js. The timeline is messages.js, uploads are uploads.js.
import { Ferry } from './ferry.js';
import { el, h, rooms, S, store } from './dom.js';
import { fmtValidity, isPrivate, roomLabel, roomSuggestion, ROOM_RE, validRoom } from './format.js';
import { avatar, notice, onEvent, onReceipt, sendChat, stick, watchList } from './messages.js';
import {
  clearUploads, dropRoomUploads, PENDING_RECHECK_MS, renderUploads, setRoomSelector, showPending,
} from './uploads.js';
import { sentence } from './words.js';
import { fileAnnounced, loadFiles, renderFiles } from './roomfiles.js';

const KEY_NAME = 'ferry.name';
const KEY_ROOMS = 'ferry.rooms';
const KEY_CURRENT = 'ferry.current';
// room → {invite, expires, at}: ferry.js keeps a private room's pass in
// memory only, so the page keeps an invite to get back in after a reload.
const KEY_INVITES = 'ferry.invites';
// An invite is a JWT: a few hundred characters of base64url and dots.
const INVITE_RE = /^[A-Za-z0-9._-]{1,4096}$/;

const firstJoins = new Set(); // rooms whose history is being loaded
let offlineSince = null;

// roomHeading is a room's label, with a lock for a private room (the word
// "private" already says it to a screen reader).
function roomHeading(room) {
  if (!isPrivate(room)) return [room];
  return [h('span', { class: 'lock', 'aria-hidden': 'true' }), roomLabel(room)];
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

// showLogin shows the sign-in form: nothing of the app around it, not even
// a connection state (there is no connection to speak of yet).
function showLogin(error) {
  document.body.dataset.view = 'login';
  el.app.hidden = true;
  el.login.hidden = false;
  el.connState.hidden = true;
  el.connBanner.hidden = true;
  el.reconnect.hidden = true;
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
  document.body.dataset.view = 'app';
  el.login.hidden = true;
  el.app.hidden = false;
  el.connState.hidden = false;
  const client = new Ferry({ name, token: token || undefined });
  S.client = client;
  window.ferry = client; // for the console and for browser tests
  client.on('state', renderState);
  client.on('connect', onConnect);
  client.on('disconnect', () => { offlineSince ??= Date.now(); });
  client.on('connect_error', (err) => {
    if (err.code === 'unauthorized' && client.state === 'offline') {
      // The server wants a (valid) token: ask for one.
      S.client = null;
      client.close();
      for (const r of [...rooms.keys()]) dropRoom(r, { keep: true });
      renderState('offline');
      showLogin(err.message === 'the server needs a token'
        ? 'This server needs an access token.'
        : 'The server refused this access token.');
    }
  });
  client.on('reconnect_failed', (err) => {
    if (S.client !== client) return;
    el.connBanner.textContent = err.code === 'forbidden'
      ? 'The server does not let this page connect (it is not on its list of allowed sites).'
      : `${sentence(err.code)} Use “Retry now” to try again.`;
    el.connBanner.hidden = false;
  });
  client.on('connect', () => { el.connBanner.hidden = true; });
  client.on('welcome', (w) => {
    el.accountName.replaceChildren(avatar(w.user, w.name), h('span', { text: w.name }));
    el.accountName.title = `${w.name}: user ${w.user}, connection ${w.conn}`;
    if (w.name) store.set(KEY_NAME, w.name);
  });
  client.on('event', onEvent);
  client.on('event:file', (file, ev) => fileAnnounced(ev.room, file));
  client.on('presence', onPresence);
  client.on('gap', onGap);
  client.on('receipt', onReceipt);
  client.on('error', (err) => {
    if (err.room && rooms.has(err.room)) {
      // A re-join after a reconnection failed.
      dropRoom(err.room);
      showJoinError(err.code === 'forbidden' && isPrivate(err.room) ? joinFailure(err.room, err, 'saved') : `Could not join ${roomLabel(err.room)} again: ${sentence(err.code)}`);
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
  if (S.current) el.message.focus();
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
  if (!validRoom(room) || (invite && !INVITE_RE.test(invite))) {
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
  if (!S.client) return;
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
  if (!S.client || !isPrivate(room)) return;
  const saved = savedInvites()[room];
  if (saved?.at && saved.expires && Date.now() < saved.at + (saved.expires - saved.at) / 2) return;
  S.client.invite(room).then((inv) => {
    if (rooms.has(room)) rememberInvite(room, inv);
  }, (err) => console.warn('ferry: invite', room, err.code));
}

// INVITE_CHECK_MS is how often an open page looks for kept invites due for
// refreshInvite (it asks the server only for those).
const INVITE_CHECK_MS = 10 * 60 * 1000;
setInterval(() => {
  for (const [name, r] of rooms) if (r.item.dataset.joined === 'true') refreshInvite(name);
}, INVITE_CHECK_MS);

// --- confirming ---

// confirmAction asks before something that cannot be taken back; it
// resolves true when the person confirms.
function confirmAction({ title, text, ok }) {
  el.confirmTitle.textContent = title;
  el.confirmText.textContent = text;
  el.confirmOk.textContent = ok;
  el.confirm.returnValue = '';
  el.confirm.showModal();
  return new Promise((resolve) => {
    el.confirm.addEventListener('close', () => resolve(el.confirm.returnValue === 'ok'), { once: true });
  });
}

el.signOut.addEventListener('click', async () => {
  const ok = await confirmAction({
    title: 'Sign out on this device?',
    text: 'This device forgets your name, your rooms and your invites to private rooms. Signing in again makes you a new person here.',
    ok: 'Sign out',
  });
  if (!ok) { el.signOut.focus(); return; }
  const c = S.client;
  S.client = null;
  c?.forgetToken();
  c?.close();
  store.del(KEY_NAME);
  store.del(KEY_ROOMS);
  store.del(KEY_CURRENT);
  store.del(KEY_INVITES);
  for (const r of [...rooms.keys()]) dropRoom(r);
  clearUploads();
  closePanels();
  showLogin();
});

el.reconnect.addEventListener('click', () => S.client?.reconnectNow());

// renderState shows the connection's state in a few words that always fit
// ("Reconnecting…"); the attempt goes in its tooltip, and a refusal that
// ends reconnection in the banner under the bar.
function renderState(state, info = {}) {
  const attempt = info.attempt ?? S.client?._attempt ?? 0;
  const labels = { connecting: 'Connecting…', connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };
  el.connState.dataset.state = state;
  el.connState.textContent = labels[state] || state;
  el.connState.title = state === 'reconnecting' && attempt ? `attempt ${attempt}` : '';
  el.reconnect.hidden = !(state === 'reconnecting' || (state === 'offline' && S.client));
  document.body.dataset.conn = state;
}

// onConnect runs after every (re)connection, once ferry.js has re-joined the
// rooms: it refreshes who is where and sends what is still pending.
// Missed events were replayed by the re-join (ferry.js asks for them).
async function onConnect() {
  const since = offlineSince;
  offlineSince = null;
  for (const [name, r] of rooms) {
    if (!S.client.joined.includes(name)) continue;
    try {
      const members = await S.client.members(name);
      const before = new Map(r.members);
      r.members = new Map(members.map((m) => [m.user, m]));
      r.count = members.count;
      if (since) {
        for (const [u, m] of r.members) if (!before.has(u) && u !== S.client.user) notice(name, `${m.name} joined`);
        for (const [u, m] of before) if (!r.members.has(u) && u !== S.client.user) notice(name, `${m.name} left`);
      }
      if (name === S.current) renderMembers();
    } catch (err) {
      console.warn('ferry: members', name, err.code);
    }
    loadFiles(name);
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

function onPresence(p) {
  const r = rooms.get(p.room);
  if (!r) return;
  const had = r.members.has(p.user);
  if (p.action === 'count') {
    // A large room tells its numbers, not each arrival.
    r.count = p.users;
  } else if (p.action === 'join') {
    r.members.set(p.user, { user: p.user, name: p.name, connections: p.connections });
    if (!had) r.count = (r.count ?? 0) + 1;
    if (!had && p.user !== S.client.user) notice(p.room, `${p.name} joined`);
  } else if (p.action === 'leave') {
    if (p.connections > 0) {
      r.members.set(p.user, { user: p.user, name: p.name, connections: p.connections });
    } else {
      r.members.delete(p.user);
      if (had) r.count = Math.max(0, (r.count ?? 1) - 1);
      if (had && p.user !== S.client.user) notice(p.room, `${p.name} left`);
    }
  }
  if (p.room === S.current) renderMembers();
}

// --- rooms ---

function roomState(name) {
  let r = rooms.get(name);
  if (r) return r;
  const list = h('ol', { class: 'message-list', 'data-room': name, hidden: true });
  el.messages.append(list);
  watchList(list);
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
    const members = await S.client.join(name, { history: true, token: inviteFor(name) });
    r.item.dataset.joined = 'true';
    r.members = new Map(members.map((m) => [m.user, m]));
    r.count = members.count;
    if (!quiet) notice(name, `You joined ${roomLabel(name)}`);
    if (name === S.current) renderRoom();
    loadFiles(name);
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
      S.client?.once('connect', () => { if (rooms.has(name)) joinRoom(name, { quiet: true, via }); });
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
  return `Could not join ${roomLabel(name)}. ${sentence(err.code, { limits: S.client?.limits })}`;
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
  dropRoomUploads(name);
  if (!keep) {
    saveRooms();
    forgetInvite(name);
  }
  el.noRooms.hidden = rooms.size > 0;
  if (S.current === name) selectRoom(rooms.keys().next().value || null);
}

function saveRooms() { store.set(KEY_ROOMS, [...rooms.keys()]); }

function selectRoom(name) {
  S.current = name && rooms.has(name) ? name : null;
  if (S.current) store.set(KEY_CURRENT, S.current);
  for (const r of rooms.values()) {
    const on = r.name === S.current;
    r.list.hidden = !on;
    if (on) r.button.setAttribute('aria-current', 'true');
    else r.button.removeAttribute('aria-current');
  }
  renderRoom();
  if (S.current) {
    const r = rooms.get(S.current);
    r.unread = 0;
    r.badge.hidden = true;
    stick();
  }
  renderUploads();
}
setRoomSelector(selectRoom);

function renderRoom() {
  const r = S.current && rooms.get(S.current);
  el.roomTitle.replaceChildren(...(r ? roomHeading(r.name) : ['No room']));
  el.roomTitle.title = r && isPrivate(r.name) ? r.name : '';
  el.empty.hidden = !!r;
  el.messages.hidden = !r;
  el.leave.disabled = !r;
  for (const c of [el.message, el.send, el.attach]) c.disabled = !r;
  // Only members get invites: the button waits for the join.
  el.invite.hidden = !(r && isPrivate(r.name));
  el.invite.disabled = !(r && r.item.dataset.joined === 'true');
  if (el.invitePanel.dataset.room !== (S.current || '')) closeInvite();
  document.title = r ? `${roomLabel(r.name)} · ferry` : 'ferry';
  renderMembers();
  renderFiles();
}

function renderMembers() {
  const r = S.current && rooms.get(S.current);
  const me = S.client?.user;
  const members = r ? [...r.members.values()] : [];
  members.sort((a, b) => (a.user === me ? -1 : b.user === me ? 1 : a.name.localeCompare(b.name)));
  el.members.replaceChildren(...members.map((m) => h('li', {
    class: 'member' + (m.user === me ? ' me' : ''), 'data-user': m.user, 'data-testid': 'member',
  }, avatar(m.user, m.name), h('span', { class: 'member-name' }, m.name,
    m.user === me ? h('span', { class: 'member-note', text: ' (you)' }) : null,
    m.connections > 1 ? h('span', { class: 'member-note', text: ` · ${m.connections} devices` }) : null))));
  const count = Math.max(r?.count ?? 0, members.length);
  if (count > members.length) {
    el.members.append(h('li', { class: 'member member-more', text: `and ${count - members.length} more` }));
  }
  el.memberCount.textContent = String(count);
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

// The room picker takes what people type ("Design Team") and says which
// room that is ("design-team") rather than refuse it.
function renderRoomHint() {
  const typed = el.roomName.value.trim();
  const name = roomSuggestion(typed);
  el.roomName.removeAttribute('aria-invalid');
  el.roomHint.textContent = typed && name && name !== typed ? `Joins the room “${name}”.` : '';
  el.roomHint.dataset.room = name && name !== typed ? name : '';
}
el.roomName.addEventListener('input', () => { el.joinError.textContent = ''; renderRoomHint(); });

el.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const typed = el.roomName.value.trim();
  const name = roomSuggestion(typed);
  el.joinError.textContent = '';
  if (!name) {
    el.joinError.textContent = typed
      ? 'Room names need at least one letter or digit.'
      : 'Type the name of a room to join or create.';
    el.roomName.setAttribute('aria-invalid', 'true');
    el.roomName.focus();
    return;
  }
  el.roomName.value = '';
  renderRoomHint();
  enterRoom(name, { via: 'form' });
});

// A new private room: the server makes it with a first invite, the page
// joins with that invite and shows the link to share.
el.newPrivate.addEventListener('click', async () => {
  if (!S.client) return;
  el.joinError.textContent = '';
  el.newPrivate.disabled = true;
  let inv;
  try {
    inv = await S.client.invite();
  } catch (err) {
    el.newPrivate.disabled = false;
    el.newPrivate.focus();
    showJoinError(err.code === 'forbidden'
      ? 'This server does not make private rooms: its access tokens say who may join which room.'
      : `Could not make a private room. ${sentence(err.code)}`);
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
  const room = S.current;
  // Busy rather than disabled meanwhile: a disabled button would drop the
  // keyboard focus.
  if (!S.client || !isPrivate(room) || el.invite.getAttribute('aria-busy') === 'true') return;
  el.invite.setAttribute('aria-busy', 'true');
  setInviteStatus(room, 'Making an invite link…');
  try {
    const inv = await S.client.invite(room);
    rememberInvite(room, inv); // the freshest serves this page's reloads too
    if (room === S.current) await showInvite(room, inv, { copy: true });
  } catch (err) {
    if (room === S.current) {
      setInviteStatus(room, err.code === 'not_member'
        ? 'You are not in this room any more, so you cannot invite anyone to it.'
        : `Could not make an invite link. ${sentence(err.code)}`);
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
  if (room !== S.current || el.inviteLink.value !== link) return;
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

// Leaving asks first: a private room takes a new invite to get back into.
el.leave.addEventListener('click', async () => {
  const name = S.current;
  if (!name) return;
  const ok = await confirmAction({
    title: `Leave ${roomLabel(name)}?`,
    text: isPrivate(name)
      ? 'You stop getting its messages. To come back you need a new invite link from someone in it.'
      : `You stop getting its messages. You can join again any time by its name, “${name}”.`,
    ok: 'Leave',
  });
  if (!ok || S.current !== name || !S.client) { el.leave.focus(); return; }
  el.leave.disabled = true;
  try {
    await S.client.leave(name);
  } catch (err) {
    if (err.code !== 'disconnected' && err.code !== 'offline') {
      notice(name, `Could not leave. ${sentence(err.code)}`);
      el.leave.disabled = false;
      return;
    }
  }
  dropRoom(name);
  if (el.roomName.offsetParent) el.roomName.focus();
  else el.toggleRooms.focus();
});

// --- composing ---

el.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  // Blank lines around a message are noise (and a Enter that moved focus
  // here from another form can leave one).
  const text = el.message.value.replace(/^\s*\n/, '').replace(/\s+$/, '');
  if (!text.trim() || !S.current) return;
  sendChat(S.current, text);
  el.message.value = '';
  autosize();
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

// --- side panels (behind buttons on small screens) ---

function togglePanel(panel, button, open) {
  const on = open ?? panel.dataset.open !== 'true';
  panel.dataset.open = String(on);
  button.setAttribute('aria-expanded', String(on));
  el.scrim.hidden = !(el.sidebar.dataset.open === 'true' || el.membersPanel.dataset.open === 'true');
  if (on) panel.querySelector('input, button:not(.panel-close), [tabindex]')?.focus();
}

function closePanels() {
  togglePanel(el.sidebar, el.toggleRooms, false);
  togglePanel(el.membersPanel, el.toggleMembers, false);
}

el.toggleRooms.addEventListener('click', () => togglePanel(el.sidebar, el.toggleRooms));
el.toggleMembers.addEventListener('click', () => togglePanel(el.membersPanel, el.toggleMembers));
el.closeRooms.addEventListener('click', () => { togglePanel(el.sidebar, el.toggleRooms, false); el.toggleRooms.focus(); });
el.closeMembers.addEventListener('click', () => { togglePanel(el.membersPanel, el.toggleMembers, false); el.toggleMembers.focus(); });
el.scrim.addEventListener('click', () => closePanels());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && (el.sidebar.dataset.open === 'true' || el.membersPanel.dataset.open === 'true')) {
    closePanels();
    el.message.focus();
  }
});

start();
