// ferry.js — the browser client for ferry's WebSocket protocol
// (docs/protocol.md). An ES module without dependencies; usage and examples
// are in docs/web-client.md.
//
//   import { Ferry } from '/ferry.js';
//   const c = new Ferry({ name: 'alice' });
//   c.on('event', (ev) => console.log(ev.room, ev.event, ev.data));
//   c.connect();
//   await c.join('lobby');
//   await c.emit('lobby', 'chat', { text: 'hello' });

const DEFAULT_RECONNECTION = { delay: 1000, delayMax: 5000, randomization: 0.5, factor: 2, attempts: Infinity };
const DEFAULT_CHUNK = 256 * 1024;
const DEFAULT_MAX_UPLOADS = 4;
// How long to wait for the welcome frame after the socket opens.
const WELCOME_TIMEOUT_MS = 20000;
// How long the probe after a failed handshake waits for its answer, and the
// longest Retry-After it follows.
const PROBE_TIMEOUT_MS = 3000;
const RETRY_AFTER_MAX_MS = 60000;
// Upload chunks wait while the socket holds more than this many unsent bytes,
// so that a fast disk never piles megabytes up in the browser.
const BUFFER_HIGH_WATER = 2 * 1024 * 1024;
// While an upload waits for the server (window full, or every byte sent), it
// asks upload.status this often in case a progress or done frame went missing.
const UPLOAD_STALL_MS = 15000;
// maxOutbox bounds the frames waiting for a connection or a rate token.
const maxOutbox = 1000;
// Unfinished uploads remembered for a reloaded page: how many, and for how
// long after they last moved (the server's --upload-ttl default).
const REMEMBER_MAX = 50;
const REMEMBER_TTL_MS = 24 * 60 * 60 * 1000;
// The remembered progress is written at most this often (localStorage
// writes are synchronous).
const REMEMBER_WRITE_MS = 1000;
// A `busy` answer without retry_after_ms waits this long; any wait is kept
// within these bounds.
const BUSY_DEFAULT_MS = 1000;
const BUSY_MIN_MS = 50;
const BUSY_MAX_MS = 60000;
// The pass that hashes bytes sent before (by an earlier page) reads this much
// of the file at a time.
const HASH_STEP = 4 * 1024 * 1024;
// Close codes by name (docs/protocol.md), for the code of a FerryError.
const CLOSE_NAMES = {
  1000: 'normal',
  1001: 'going_away',
  1009: 'message_too_big',
  4000: 'slow',
  4001: 'heartbeat_timeout',
  4500: 'unauthorized',
  4502: 'flood',
  4503: 'protocol_violation',
};

// Disconnect reasons, as Socket.IO (and ferry's Go client) name them.
export const REASON_CLIENT_CLOSE = 'io client disconnect';
export const REASON_SERVER_CLOSE = 'io server disconnect'; // 4500-4999: no reconnection
export const REASON_PING_TIMEOUT = 'ping timeout';
export const REASON_TRANSPORT_CLOSE = 'transport close'; // any other close code
export const REASON_TRANSPORT_ERROR = 'transport error'; // no close frame (1006)

/** An error from the server or the client: `code` to branch on, `message` for people. */
// withCount returns a join's or members' answer as the array of members
// it lists, with the room's number of users as its count.
function withCount(data) {
  const members = data?.members || [];
  members.count = data?.count ?? members.length;
  return members;
}

export class FerryError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = code === 'canceled' ? 'AbortError' : 'FerryError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** Reports whether a client may reconnect after the server closed with code. */
export function reconnectable(code) {
  return !(code >= 4500 && code <= 4999);
}

/**
 * The wait in ms before reconnection attempt n (from 1): delay × factor^(n-1),
 * randomized by ±randomization of itself, at most delayMax.
 */
export function backoffDelay(attempt, { delay, delayMax, randomization, factor = 2 }, r = Math.random()) {
  const base = delay * factor ** Math.max(0, attempt - 1);
  const d = base + base * Math.min(1, Math.max(0, randomization)) * (2 * r - 1);
  return Number.isFinite(d) ? Math.max(0, Math.min(delayMax, Math.round(d))) : delayMax;
}

class Emitter {
  constructor() { this._listeners = new Map(); }

  /** Calls fn for every `event`; returns this. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  /** Removes fn, or every listener of `event` when fn is omitted. */
  off(event, fn) {
    if (fn === undefined) this._listeners.delete(event);
    else this._listeners.get(event)?.delete(fn);
    return this;
  }

  /** Calls fn for the next `event` only. */
  once(event, fn) {
    const wrap = (...args) => { this.off(event, wrap); fn(...args); };
    return this.on(event, wrap);
  }

  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) || [])]) {
      // A throwing listener must not break the connection's bookkeeping.
      try { fn(...args); } catch (err) { setTimeout(() => { throw err; }); }
    }
  }
}

function defaultURL() {
  if (typeof location === 'undefined') return 'ws://127.0.0.1:8080/ws';
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
}

function toWebSocketURL(url) {
  const base = typeof location !== 'undefined' ? location.href : 'http://127.0.0.1/';
  const u = new URL(url || defaultURL(), base);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  if (u.protocol === 'https:') u.protocol = 'wss:';
  // As the Go client: "/ws" is appended unless the path already ends with it.
  if (!u.pathname.endsWith('/ws')) u.pathname = u.pathname.replace(/\/$/, '') + '/ws';
  return u;
}

function defaultStorage() {
  try { return typeof localStorage !== 'undefined' ? localStorage : null; } catch { return null; }
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) { reject(abortError(signal)); return; }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    const onAbort = () => { clearTimeout(t); reject(abortError(signal)); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function outboxFull() {
  return new FerryError('queue_full', `${maxOutbox} frames already wait to be sent`);
}

function abortError(signal) {
  const r = signal?.reason;
  if (r instanceof FerryError) return r;
  // A reason given to abort(reason) is kept as the message; the default
  // reason (a DOMException) says nothing useful to a person.
  const custom = r !== undefined && !(r instanceof DOMException);
  return new FerryError('canceled', custom ? String(r?.message || r) : 'upload canceled', { cause: r });
}

/**
 * A connection to a ferry server that reconnects by itself.
 *
 * Lifecycle events (named as in Socket.IO v4): connect, connect_error(err),
 * disconnect(reason, code, message), reconnect_attempt(n, delayMs),
 * reconnect(n), reconnect_failed(err). Others: state(state, {attempt}),
 * welcome(frame), event(ev), `event:<name>`(data, ev), presence(p), gap(g),
 * receipt(r), error(err), pong({rtt}), token(token), upload.progress(frame),
 * upload.done(frame). docs/web-client.md describes each.
 */
export class Ferry extends Emitter {
  constructor(opts = {}) {
    super();
    this.url = toWebSocketURL(opts.url).href;
    this.name = opts.name || '';
    this.reconnection = opts.reconnection === false
      ? { ...DEFAULT_RECONNECTION, attempts: 0 }
      : { ...DEFAULT_RECONNECTION, ...(opts.reconnection || {}) };
    this._storage = opts.storage === undefined ? defaultStorage() : opts.storage;
    this._storageKey = opts.storageKey || 'ferry.token';
    this._memory = new UploadMemory(this._storage, { key: opts.uploadsKey });
    this._explicitToken = !!opts.token;
    this.token = opts.token || this._load() || '';
    this._WebSocket = opts.WebSocket || globalThis.WebSocket;

    /** 'connecting' | 'connected' | 'reconnecting' | 'offline' */
    this.state = 'offline';
    this.id = null;
    this.user = null;
    this.limits = {};
    this.welcome = null;
    this.rtt = null;

    this.ws = null;
    this._gen = 0; // bumped on every new socket; stale callbacks compare it
    this._ready = false; // welcome received and rooms re-joined
    this._everConnected = false;
    this._stopped = false;
    this._attempt = 0;
    this._timers = {};
    this._nextId = 1;
    this._pending = new Map(); // id → {resolve, reject} for requests on the wire
    this._outbox = []; // {frame, p} waiting for a connection or a rate token
    this._joined = new Set();
    this._pos = new Map(); // room → {epoch, seq}: the last event processed
    this._passes = new Map(); // room → the pass its join returned, for rejoins
    this._quietGaps = new Set(); // rooms joined for their history, without a position
    this._wire = 0; // bytes handed to the current socket
    this._uploads = new Set();
    this._readyWaiters = new Set();
    this._slotWaiters = [];
    this._activeUploads = 0;
    this._bucket = { tokens: Infinity, at: 0 };

    this._onOnline = () => this.reconnectNow();
    this._onVisible = () => {
      if (typeof document !== 'undefined' && document.visibilityState === 'visible') this._ping();
    };
  }

  /** Opens the connection (no-op when already open or opening). */
  connect() {
    if (this.state !== 'offline') return this;
    this._stopped = false;
    this._attempt = 0;
    if (typeof window !== 'undefined') {
      window.addEventListener('online', this._onOnline);
      document.addEventListener('visibilitychange', this._onVisible);
    }
    this._setState(this._everConnected ? 'reconnecting' : 'connecting');
    this._open();
    return this;
  }

  /** Closes the connection for good; queued requests and uploads fail with code "offline". */
  close() {
    const wasOpen = this.ws && this._ready;
    this._stopped = true;
    this._ready = false;
    this._clearTimers();
    if (this.ws) {
      const ws = this.ws;
      this._detach();
      try { ws.close(1000, 'client disconnect'); } catch { /* already closed */ }
    }
    this._failPending('offline', 'the client closed the connection');
    this._failOutbox();
    if (typeof window !== 'undefined') {
      window.removeEventListener('online', this._onOnline);
      document.removeEventListener('visibilitychange', this._onVisible);
    }
    this._setState('offline');
    if (wasOpen) this._emit('disconnect', REASON_CLIENT_CLOSE, 1000, '');
    this._wakeReady();
    for (const u of this._uploads) u._poke(); // one waiting for the server stops now
    return this;
  }

  /** Alias of close(), as in Socket.IO. */
  disconnect() { return this.close(); }

  /** Skips the backoff wait, or starts again after reconnect_failed. */
  reconnectNow() {
    if (this.state === 'reconnecting' && !this.ws) {
      clearTimeout(this._timers.reconnect);
      this._emit('reconnect_attempt', this._attempt);
      this._open();
    } else if (this.state === 'offline' && this._everConnected) {
      this.connect();
    }
  }

  /** The rooms this client is in (and re-joins after a reconnect). */
  get joined() { return [...this._joined]; }

  /**
   * Forgets the stored token, so the next connection gets a new identity,
   * and the unfinished uploads remembered for it (a new user cannot resume
   * them).
   */
  forgetToken() {
    this.token = '';
    this._explicitToken = false;
    try { this._storage?.removeItem(this._storageKey); } catch { /* storage disabled */ }
    this._memory.clear();
  }

  /**
   * Joins (creating if needed) a named room and resolves with its members
   * ([{user, name, connections}]: the first 100 by user id; the array's
   * count is how many users the room has, see membersPage for more). The client joins it again after every
   * reconnection, until leave(), and catches up on what it missed meanwhile.
   * opts.history asks for the events the server still keeps (replayed before
   * the promise resolves); opts.since ({epoch, seq}) for those after a
   * position saved earlier with position(). opts.token is an invite to a
   * private room (see invite()) or a room token from the application's
   * backend; the pass the server answers with is kept for rejoins.
   */
  async join(room, opts = {}) {
    const frame = { t: 'join', room };
    const token = opts.token || this._passes.get(room);
    if (token) frame.token = token;
    let since = opts.since;
    // Without a position there is no epoch to compare: the server's "epoch"
    // gap would say nothing, so it is not passed on.
    const quiet = !since && opts.history && !this._pos.has(room);
    if (!since && opts.history) since = { epoch: this._pos.get(room)?.epoch || '', seq: 0 };
    if (since) {
      frame.since = { epoch: String(since.epoch || ''), seq: Number(since.seq) || 0 };
      this._pos.set(room, { ...frame.since });
    }
    if (quiet) this._quietGaps.add(room);
    try {
      const data = await this._request(frame);
      this._joined.add(room);
      this._joinedAt(room, data);
      return withCount(data);
    } finally {
      if (quiet) this._quietGaps.delete(room);
    }
  }

  /** Leaves a named room. */
  async leave(room) {
    try {
      return await this._request({ t: 'leave', room });
    } catch (err) {
      if (err.code !== 'not_member') throw err;
    } finally {
      this._joined.delete(room);
      this._pos.delete(room);
      this._passes.delete(room);
    }
  }

  /**
   * Asks for an invite to a private room: without a room, a new private
   * room is made; with the name of one this connection is in, another
   * invite to it. Resolves with {room, invite, expires}; whoever gets it
   * joins with join(room, {token: invite}). Servers with --auth-secret make
   * none (forbidden).
   */
  invite(room) { return this._request(room ? { t: 'invite', room } : { t: 'invite' }); }

  /**
   * The position ({epoch, seq}) of the last event processed in a room, to
   * resume from with join(room, {since}) after a page reload; null if none.
   */
  position(room) {
    const p = this._pos.get(room);
    return p ? { ...p } : null;
  }

  _joinedAt(room, ack) {
    if (ack?.pass) this._passes.set(room, ack.pass);
    if (!ack || typeof ack.epoch !== 'string') return;
    const cur = this._pos.get(room);
    // Events up to ack.seq were replayed (with since) or are not ours to see.
    if (!cur || cur.epoch !== ack.epoch) this._pos.set(room, { epoch: ack.epoch, seq: ack.seq || 0 });
    else cur.seq = Math.max(cur.seq, ack.seq || 0);
  }

  /** Lists who confirmed an event that asked for receipts: {room, seq, count, users}. */
  receipts(room, seq) { return this._request({ t: 'receipts', room, seq }); }

  /** Resolves with a file's record and a fresh signed url (links expire). */
  fileLink(fileId) { return this._request({ t: 'file.link', file: fileId }); }

  /**
   * Resolves with one page of the files announced to a room this
   * connection is in, newest first, with fresh signed urls: {files, next};
   * pass next as before for the older page ('' on the last one; limit: 1
   * to 200, default 50). A room's files stay listed after their
   * announcements left its history.
   */
  async files(room, { before = '', limit = 50 } = {}) {
    const data = await this._request({ t: 'files', room, before: before || undefined, limit });
    return { files: data?.files || [], next: data?.next || '' };
  }

  /** Resolves with the names of the rooms the server has this connection in. */
  async rooms() {
    const data = await this._request({ t: 'rooms' });
    return data?.rooms || [];
  }

  /**
   * Resolves with the members of a room: [{user, name, connections}], the
   * first 100 by user id; the array's count is how many users the room has.
   */
  async members(room) {
    return withCount(await this._request({ t: 'members', room }));
  }

  /**
   * Resolves with one page of a room's members: {members, count,
   * connections, next}; pass next as after for the following page (limit:
   * at most 1000).
   */
  async membersPage(room, { after = '', limit = 100 } = {}) {
    const data = await this._request({ t: 'members', room, after, limit });
    return { members: data?.members || [], count: data?.count ?? 0, connections: data?.connections ?? 0, next: data?.next || '' };
  }

  /**
   * Sends an event to a room. With ack (the default) it resolves with the ack
   * data ({delivered, seq, epoch, duplicate?}) and rejects with a FerryError;
   * without, it resolves once the frame is handed to the socket.
   * An acked emit carries a msg_id (opts.msgId, or a random one): if the
   * connection drops before the ack, it is sent again after the reconnect
   * and the server publishes it once. opts: {ack, exceptSelf, receipt,
   * msgId, timeout}; msgId: false sends none (at most once).
   */
  emit(room, event, data, opts = {}) {
    return this._emitFrame({ room }, event, data, opts);
  }

  /** Sends an event to one user (all their connections) or one connection: target is {user} or {conn}. */
  emitTo(target, event, data, opts = {}) {
    const t = {};
    if (target?.user) t.user = target.user;
    if (target?.conn) t.conn = target.conn;
    return this._emitFrame(t, event, data, opts);
  }

  _emitFrame(target, event, data, { ack = true, exceptSelf = false, receipt = false, msgId, timeout } = {}) {
    const frame = { t: 'emit', ...target, event, data: data === undefined ? null : data };
    if (exceptSelf) frame.except_self = true;
    if (receipt) frame.receipt = true;
    if (typeof msgId === 'string' && msgId) frame.msg_id = msgId;
    else if (msgId === undefined && ack) frame.msg_id = newMsgId();
    if (ack) return this._request(frame, { timeout });
    return this._send(frame);
  }

  /** Asks where an upload stands: {upload, offset, durable, size, status, file}. */
  uploadStatus(upload) { return this._request({ t: 'upload.status', upload }); }

  /** Asks the server to drop an upload, and forgets it here. */
  cancelUpload(upload) {
    this._memory.forget(upload);
    return this._request({ t: 'upload.cancel', upload });
  }

  /**
   * Lists the unfinished uploads this browser remembers (from this page or
   * an earlier one) that can be resumed by picking the same file again:
   * [{upload, room, name, size, lastModified, received, durable, touched}],
   * the most recent first. With a room, only that room's. Unless
   * opts.check is false and while connected, it asks the server where each
   * one stands and forgets those that can no longer be resumed. Uploads
   * running in this page or another tab are left out.
   */
  async pendingUploads(room, { check = true } = {}) {
    const held = await heldUploadLocks();
    const running = new Set([...this._uploads].map((u) => u.id));
    const list = this._memory.list().filter((e) => (!room || e.room === room) &&
      (!this.user || e.user === this.user) && !running.has(e.upload) && !held.has(e.upload));
    const view = (e, st) => ({
      upload: e.upload, room: e.room, name: e.name, size: e.size, lastModified: e.lastModified,
      received: st ? st.offset : e.received, durable: st ? st.durable : null, touched: e.at,
    });
    if (!check || !this._ready) return list.map((e) => view(e));
    const out = await Promise.all(list.map(async (e) => {
      try {
        const st = await this.uploadStatus(e.upload);
        if (st.status === 'uploading') {
          this._memory.update(e.upload, { received: st.offset });
          return view(e, st);
        }
      } catch (err) {
        if (!UPLOAD_GONE_CODES.has(err.code)) return view(e); // could not ask: keep it
      }
      this._memory.forget(e.upload);
      return null;
    }));
    return out.filter(Boolean);
  }

  /** Resolves a file's url (relative to the server) to an absolute http(s) URL. */
  fileURL(file) {
    const u = new URL(this.url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    return new URL(file?.url || file, u).href;
  }

  /**
   * Uploads a File or Blob to a room and resolves with the stored file object
   * (the room's members get it as an event named "file"). Chunks are read
   * with blob.slice(), never the whole file at once, and hashed as they are
   * first sent; after a dropped connection the upload resumes from the
   * server's offset. An unfinished upload of the same File to the same room
   * (from an earlier page too) is resumed rather than started again.
   * opts: {onProgress(p), signal, base64, chunkSize, name, type, sha256, resume}.
   */
  upload(room, file, opts = {}) {
    return new Upload(this, room, file, opts).run();
  }

  // --- connection ---

  _open() {
    const gen = ++this._gen;
    this._ready = false;
    this._welcomed = false;
    const u = new URL(this.url);
    if (this.name) u.searchParams.set('name', this.name);
    if (this.token) u.searchParams.set('token', this.token);
    this._wire = 0;
    let ws;
    try {
      ws = new this._WebSocket(u.href);
    } catch (err) {
      this._connectFailed(gen, new FerryError('connect_failed', err.message || String(err)));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (e) => { if (gen === this._gen) this._onMessage(e.data); };
    ws.onclose = (e) => { if (gen === this._gen) this._lost(e.code, e.reason); };
    ws.onerror = () => { /* a close event follows with the details there are */ };
    this._timers.welcome = setTimeout(() => {
      if (gen === this._gen && !this._welcomed) this._lost(4001, 'no welcome frame');
    }, WELCOME_TIMEOUT_MS);
  }

  _detach() {
    const ws = this.ws;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    this.ws = null;
  }

  _clearTimers() {
    for (const k of Object.keys(this._timers)) {
      clearTimeout(this._timers[k]);
      clearInterval(this._timers[k]);
    }
    this._timers = {};
  }

  _setState(s) {
    const key = s + ':' + this._attempt;
    if (this._stateKey === key) return;
    this._stateKey = key;
    this.state = s;
    this._emit('state', s, { attempt: this._attempt });
  }

  // _lost handles the end of the current socket, whoever ended it.
  _lost(code, reason, clientReason) {
    const ws = this.ws;
    const welcomed = this._welcomed;
    const gen = this._gen;
    this._detach();
    this._clearTimers();
    if (ws && ws.readyState < 2) {
      try { ws.close(code >= 4000 && code < 5000 ? code : 1000, clientReason || ''); } catch { /* closing */ }
    }
    this._ready = false;
    this._failPending('disconnected', 'the connection was lost', true);
    for (const u of this._uploads) u._poke();
    if (this._stopped) return;

    if (!welcomed) {
      this._connectFailed(gen, new FerryError('connect_failed', reason || `connection closed (${code})`, { closeCode: code }));
      return;
    }
    let name = REASON_TRANSPORT_CLOSE;
    if (clientReason) name = clientReason;
    else if (!reconnectable(code)) name = REASON_SERVER_CLOSE;
    else if (code === 1006 || code === undefined) name = REASON_TRANSPORT_ERROR;
    if (!reconnectable(code)) {
      // The server said not to come back: this disconnect is the last event.
      this._stop(new FerryError(CLOSE_NAMES[code] || 'closed', reason || `closed by the server (${code})`, { closeCode: code }));
      this._emit('disconnect', name, code, reason || '');
      return;
    }
    this._emit('disconnect', name, code, reason || '');
    this._scheduleReconnect();
  }

  // _connectFailed runs when a socket ended before its welcome frame. A
  // browser cannot see the HTTP status of a refused upgrade, so it asks the
  // endpoint once with a plain GET (see _probe): 401 means the token is bad,
  // 403 that the server refuses this page (its origin, or the name it
  // reached the server by); both end reconnection.
  async _connectFailed(gen, err) {
    err.attempt = this._attempt;
    if (err.closeCode !== undefined && !reconnectable(err.closeCode)) {
      this._stop(err);
      this._emit('connect_error', err);
      this._emit('reconnect_failed', err);
      return;
    }
    const { status, retryAfter, reason } = await this._probe();
    if (gen !== this._gen || this._stopped) return;
    if (status === 401) {
      if (this.token && !this._explicitToken) {
        // A stored token the server refuses (expired, or signed with a key
        // it no longer has): try once without it rather than loop.
        this.forgetToken();
        this._emit('connect_error', new FerryError('unauthorized', 'the stored token was refused; trying without it', { status, reason }));
        this._scheduleReconnect(0);
        return;
      }
      const e = new FerryError('unauthorized', this.token ? 'the server refused the token' : 'the server needs a token', { status, reason });
      this._stop(e);
      this._emit('connect_error', e);
      this._emit('reconnect_failed', e);
      return;
    }
    if (status === 403) {
      const e = new FerryError('forbidden', 'the server refused this page (its origin, or the name it reached the server by)', { status, reason });
      this._stop(e);
      this._emit('connect_error', e);
      this._emit('reconnect_failed', e);
      return;
    }
    if (status === 0) err = new FerryError('unreachable', 'the server cannot be reached', { closeCode: err.closeCode });
    else if (status > 0) Object.assign(err, { status, reason });
    this._emit('connect_error', err);
    // A server at its connection caps (429, 503) says when to come back.
    const backoff = backoffDelay(this._attempt + 1, this.reconnection);
    this._scheduleReconnect(retryAfter > 0 ? Math.max(backoff, Math.min(RETRY_AFTER_MAX_MS, retryAfter * 1000)) : undefined);
  }

  // _probe asks the WebSocket endpoint with a plain GET, as the handshake
  // did, and resolves with {status, retryAfter, reason}: status is the
  // HTTP status, 0 when the server cannot be reached, -1 when it answers
  // without saying how (another origin, and no CORS headers on its answer).
  //
  // From another origin the status is readable only if the server's answer
  // to GET /ws carries Access-Control-Allow-Origin (this page's origin, or
  // *), also when it refuses the origin; Retry-After is readable with
  // Access-Control-Expose-Headers: Retry-After. No credentials and no
  // custom headers go with the probe, so no preflight is needed. Without
  // those headers the answer stays opaque and the client keeps retrying.
  async _probe() {
    if (typeof fetch === 'undefined') return { status: -1 };
    const u = new URL(this.url);
    u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
    if (this.token) u.searchParams.set('token', this.token);
    const sameOrigin = typeof location !== 'undefined' && location.host === u.host && location.protocol === u.protocol;
    const ask = async (mode) => {
      const ctl = typeof AbortController !== 'undefined' ? new AbortController() : null;
      const t = setTimeout(() => ctl?.abort(), PROBE_TIMEOUT_MS);
      try {
        const res = await fetch(u.href, { cache: 'no-store', credentials: sameOrigin ? 'same-origin' : 'omit', mode, signal: ctl?.signal });
        if (res.type === 'opaque') return { status: -1 };
        let reason = '';
        try { reason = (await res.text()).trim().slice(0, 200); } catch { /* no body */ }
        return { status: res.status, retryAfter: Number(res.headers.get('Retry-After')) || 0, reason };
      } finally {
        clearTimeout(t);
      }
    };
    try {
      return await ask(sameOrigin ? 'same-origin' : 'cors');
    } catch {
      if (sameOrigin) return { status: 0 };
    }
    // A CORS refusal looks like no answer at all: ask again without CORS,
    // whose opaque answer at least says that the server is there.
    try {
      return await ask('no-cors');
    } catch {
      return { status: 0 };
    }
  }

  _scheduleReconnect(delayMs) {
    const r = this.reconnection;
    if (this._attempt >= r.attempts) {
      const err = new FerryError('reconnect_failed', `gave up after ${this._attempt} attempts`);
      this._stop(err);
      this._emit('reconnect_failed', err);
      return;
    }
    this._attempt++;
    this._setState('reconnecting');
    const ms = delayMs ?? backoffDelay(this._attempt, r);
    this._timers.reconnect = setTimeout(() => {
      this._emit('reconnect_attempt', this._attempt, ms);
      this._open();
    }, ms);
  }

  _stop(err) {
    this._stopped = true;
    this._clearTimers();
    this._failOutbox(err);
    this._setState('offline');
    this._wakeReady();
    for (const u of this._uploads) u._poke();
  }

  _onMessage(raw) {
    this._lastFrame = Date.now();
    this._pingSince = 0;
    if (typeof raw !== 'string') return; // the server sends no binary frames
    let f;
    try { f = JSON.parse(raw); } catch { return; }
    if (!f || typeof f !== 'object') return;
    switch (f.t) {
      case 'welcome': this._onWelcome(f); break;
      case 'ack': {
        const e = this._pending.get(f.id);
        if (e) { this._pending.delete(f.id); e.p.resolve(f.data); }
        break;
      }
      case 'error': {
        const err = new FerryError(f.code, f.message, pick(f, ['upload', 'offset', 'id', 'retry_after_ms']));
        const e = f.id ? this._pending.get(f.id) : null;
        if (e) { this._pending.delete(f.id); e.p.reject(err); break; }
        const up = f.upload && this._uploadByID(f.upload);
        if (up) { up._onError(err); break; }
        this._emit('error', err);
        break;
      }
      case 'event': {
        if (!this._track(f)) break; // already processed (a replay overlap)
        if (f.receipt && typeof f.seq === 'number') {
          this._send({ t: 'received', room: f.room, seq: f.seq }).catch(() => {});
        }
        this._emit('event', f);
        if (typeof f.event === 'string') this._emit('event:' + f.event, f.data, f);
        break;
      }
      case 'gap': {
        const cur = this._pos.get(f.room);
        this._pos.set(f.room, {
          epoch: f.epoch,
          seq: f.reason === 'epoch' || !cur || cur.epoch !== f.epoch ? 0 : Math.max(cur.seq, f.to || 0),
        });
        if (!(f.reason === 'epoch' && this._quietGaps.has(f.room))) this._emit('gap', f);
        break;
      }
      case 'receipt': this._emit('receipt', f); break;
      case 'presence': this._emit('presence', f); break;
      case 'pong':
        if (typeof f.ts === 'number') this.rtt = Date.now() - f.ts;
        this._emit('pong', { rtt: this.rtt, serverTs: f.server_ts });
        break;
      case 'upload.progress':
        this._uploadByID(f.upload)?._onProgress(f);
        this._emit('upload.progress', f);
        break;
      case 'upload.done':
        this._uploadByID(f.upload)?._onDone(f.file);
        this._emit('upload.done', f);
        break;
      default:
        if (typeof f.t === 'string') this._emit(f.t, f);
    }
  }

  // _track advances a room's position past an event; false means the event
  // was processed already (seq not above the last one). Named rooms and the
  // user's own room are tracked (a direct message delivered again after a
  // server crash is dropped, as the Go client does); a connection's room
  // has no stream to track.
  _track(f) {
    if (typeof f.seq !== 'number' || typeof f.epoch !== 'string' || !f.room || f.room.startsWith('conn:')) return true;
    const cur = this._pos.get(f.room);
    if (cur && cur.epoch === f.epoch && f.seq <= cur.seq) return false;
    this._pos.set(f.room, { epoch: f.epoch, seq: f.seq });
    return true;
  }

  _onWelcome(w) {
    const gen = this._gen;
    this._welcomed = true;
    clearTimeout(this._timers.welcome);
    this.welcome = w;
    this.id = w.conn;
    this.user = w.user;
    this.name = w.name || this.name;
    this.limits = w.limits || {};
    // Keep the token that worked: the server's (anonymous mode) or the one
    // given, so that the next page load connects as the same user.
    if (w.token) this.token = w.token;
    if (this.token) {
      try { this._storage?.setItem(this._storageKey, this.token); } catch { /* storage disabled */ }
      if (w.token) this._emit('token', w.token);
    }
    const rate = this.limits.rate > 0 ? this.limits.rate * 0.9 : Infinity;
    const burst = this.limits.rate_burst > 0 ? Math.max(1, Math.floor(this.limits.rate_burst * 0.9)) : Infinity;
    this._bucket = { rate, burst, tokens: burst, at: Date.now() };
    this._startHeartbeat(w.ping_interval_ms || 25000, w.ping_timeout_ms || 20000);
    this._emit('welcome', w);

    const attempts = this._attempt;
    const reconnected = this._everConnected;
    this._everConnected = true;
    this._attempt = 0;
    this._setState('connected');

    // Re-join first: the joins go out, in order, ahead of anything queued
    // meanwhile.
    const entries = [];
    const rejoins = [...this._joined].map((room) => new Promise((resolve, reject) => {
      const frame = { t: 'join', room };
      const pass = this._passes.get(room);
      if (pass) frame.token = pass;
      const since = this._pos.get(room);
      if (since) frame.since = { ...since };
      entries.push({ frame, p: { resolve, reject } });
    }).then((ack) => this._joinedAt(room, ack), (err) => {
      if (err.code === 'disconnected') return;
      this._joined.delete(room);
      this._emit('error', new FerryError(err.code, `could not re-join ${room}: ${err.message}`, { room }));
    }));
    this._outbox.unshift(...entries);
    this._flush();
    Promise.all(rejoins).then(() => {
      if (gen !== this._gen || this._stopped) return;
      this._ready = true;
      this._wakeReady();
      if (reconnected) this._emit('reconnect', attempts);
      this._emit('connect');
    });
  }

  _startHeartbeat(interval, timeout) {
    this._lastFrame = Date.now();
    this._lastPing = Date.now();
    this._pingSince = 0;
    this._heartbeat = { interval, timeout };
    // One tick a second. A dead link is declared only when a ping we sent
    // went unanswered for `timeout`, so a background tab whose timers are
    // throttled does not mistake its own silence for the server's.
    this._timers.heartbeat = setInterval(() => {
      const now = Date.now();
      if (now - this._lastPing >= interval) this._ping();
      if (this._pingSince && now - this._pingSince > timeout && now - this._lastFrame > interval + timeout) {
        this._lost(4001, 'no frame received in time', REASON_PING_TIMEOUT);
      }
    }, Math.min(1000, interval));
  }

  _ping() {
    if (!this.ws || this.ws.readyState !== 1 || !this._welcomed) return;
    const now = Date.now();
    this._lastPing = now;
    if (!this._pingSince) this._pingSince = now;
    // Pings are not rate limited by the server, so they skip the bucket.
    try { this._wsSend(JSON.stringify({ t: 'ping', ts: now })); } catch { /* closing */ }
  }

  // --- requests ---

  _request(frame, { timeout } = {}) {
    return new Promise((resolve, reject) => {
      if (this._stopped) { reject(new FerryError('offline', 'not connected')); return; }
      if (this._outbox.length >= maxOutbox) { reject(outboxFull()); return; }
      let timer;
      const p = {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
      if (timeout > 0) {
        timer = setTimeout(() => {
          for (const [id, q] of this._pending) if (q.p === p) this._pending.delete(id);
          this._outbox = this._outbox.filter((e) => e.p !== p);
          reject(new FerryError('timeout', `no answer within ${timeout} ms`));
        }, timeout);
      }
      this._outbox.push({ frame, p });
      this._flush();
    });
  }

  _send(frame) {
    return new Promise((resolve, reject) => {
      if (this._stopped) { reject(new FerryError('offline', 'not connected')); return; }
      if (this._outbox.length >= maxOutbox) { reject(outboxFull()); return; }
      this._outbox.push({ frame, p: null, sent: resolve });
      this._flush();
    });
  }

  // _flush writes queued frames while the socket is open and the rate bucket
  // has tokens; it goes on by itself when tokens come back.
  _flush() {
    if (this._timers.flush) return;
    while (this._outbox.length && this.ws && this.ws.readyState === 1 && this._welcomed) {
      const wait = this._take();
      if (wait > 0) {
        this._timers.flush = setTimeout(() => { delete this._timers.flush; this._flush(); }, wait);
        return;
      }
      const e = this._outbox.shift();
      let frame = e.frame;
      if (e.p) {
        const id = this._nextId++;
        frame = { ...frame, id };
        this._pending.set(id, e);
      }
      this._wsSend(JSON.stringify(frame));
      e.sent?.();
    }
  }

  // _wsSend writes to the socket and counts the bytes, so that uploads can
  // tell how much of what they sent has left the browser. bufferedAmount
  // counts a text frame in UTF-8 bytes; ascii says that data is known to be
  // ASCII (base64 chunks), which spares the count a pass over a large string.
  _wsSend(data, ascii) {
    this.ws.send(data);
    this._wire += typeof data !== 'string' ? data.byteLength : ascii ? data.length : utf8Length(data);
  }

  // _take takes a token from the rate bucket: 0 when there was one, else the
  // number of ms until there will be.
  _take() {
    const b = this._bucket;
    if (!(b.rate < Infinity)) return 0;
    const now = Date.now();
    b.tokens = Math.min(b.burst, b.tokens + ((now - b.at) * b.rate) / 1000);
    b.at = now;
    if (b.tokens >= 1) { b.tokens -= 1; return 0; }
    return Math.ceil(((1 - b.tokens) * 1000) / b.rate);
  }

  // _failPending rejects the requests waiting for an answer. With requeue,
  // emits that carry a msg_id go back to the front of the queue instead:
  // resending them is safe, the server publishes each msg_id once.
  _failPending(code, message, requeue = false) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    const again = [];
    for (const e of pending) {
      if (requeue && e.frame.msg_id) again.push(e);
      else e.p.reject(new FerryError(code, message));
    }
    this._outbox.unshift(...again);
  }

  _failOutbox(err = new FerryError('offline', 'not connected')) {
    const out = this._outbox;
    this._outbox = [];
    for (const e of out) e.p ? e.p.reject(err) : e.sent?.();
  }

  // _whenReady resolves once the client is connected with its rooms re-joined.
  _whenReady(signal) {
    if (this._ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = () => {
        signal?.removeEventListener('abort', onAbort);
        this._readyWaiters.delete(w);
        if (signal?.aborted) reject(abortError(signal));
        else if (this._ready) resolve();
        else if (this._stopped) reject(new FerryError('offline', 'not connected'));
      };
      const onAbort = () => w();
      signal?.addEventListener('abort', onAbort, { once: true });
      this._readyWaiters.add(w);
      if (this._stopped) w();
    });
  }

  _wakeReady() {
    for (const w of [...this._readyWaiters]) w();
  }

  _uploadByID(id) {
    for (const u of this._uploads) if (u.id === id) return u;
    return null;
  }

  // Upload slots keep this connection under the server's max_uploads.
  async _takeSlot(signal) {
    const max = () => this.limits.max_uploads || DEFAULT_MAX_UPLOADS;
    while (this._activeUploads >= max()) {
      await new Promise((resolve, reject) => {
        const onAbort = () => { this._slotWaiters = this._slotWaiters.filter((x) => x !== resolve); reject(abortError(signal)); };
        if (signal?.aborted) { onAbort(); return; }
        signal?.addEventListener('abort', onAbort, { once: true });
        this._slotWaiters.push(() => { signal?.removeEventListener('abort', onAbort); resolve(); });
      });
    }
    this._activeUploads++;
  }

  _releaseSlot() {
    this._activeUploads--;
    this._slotWaiters.shift()?.();
  }

  _load() {
    try { return this._storage?.getItem(this._storageKey) || ''; } catch { return ''; }
  }
}

function newMsgId() {
  const b = new Uint8Array(12);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(b);
  else for (let i = 0; i < b.length; i++) b[i] = Math.floor(Math.random() * 256);
  return 'm' + [...b].map((x) => x.toString(36).padStart(2, '0')).join('');
}

function pick(o, keys) {
  const r = {};
  for (const k of keys) if (o[k] !== undefined) r[k] = o[k];
  return r;
}

// Codes after which an upload pauses and carries on, rather than failing.
const UPLOAD_RETRY_CODES = new Set(['storage_unavailable', 'too_many_uploads', 'rate_limited', 'disconnected']);
// Codes saying that the server has no upload left to resume.
const UPLOAD_GONE_CODES = new Set(['unknown_upload', 'not_found', 'expired', 'forbidden', 'canceled']);
// Failures that end a call to upload() but not the upload on the server: it
// stays remembered, to be resumed by a later call or page.
const UPLOAD_KEEP_CODES = new Set(['offline', 'disconnected', 'reconnect_failed', 'timeout', 'queue_full']);
// Web Locks named after an upload tell the pages of an origin which uploads
// one of them is sending.
const LOCK_PREFIX = 'ferry.upload:';

// Upload is one file going up: open (or resume), then chunks under the flow
// control window, hashed as they are first read, then upload.finish with the
// SHA-256, until upload.done. It survives reconnects, and page reloads
// through the UploadMemory.
class Upload {
  constructor(ferry, room, file, opts) {
    this.ferry = ferry;
    this.room = room;
    this.file = file;
    this.opts = opts;
    this.signal = opts.signal;
    this.size = file.size;
    this.name = opts.name || file.name || 'file';
    this.type = opts.type ?? file.type ?? '';
    this.id = typeof opts.resume === 'string' && opts.resume ? opts.resume : null;
    // An upload begun by an earlier page: when the server cannot resume it,
    // a new one starts instead of failing.
    this._adopted = !!this.id;
    // Only a File says when it was modified, which tells it from another
    // file of the same name and size: a Blob is never remembered.
    this._remember = opts.resume !== false && typeof file.lastModified === 'number' && ferry._memory.enabled;
    this._looked = false;
    this._known = typeof opts.sha256 === 'string' ? opts.sha256.toLowerCase() : '';
    this._hasher = null;
    this._hashed = 0; // the file's first _hashed bytes went through the hasher
    this._digest = '';
    this._setHashing(!this._known && opts.sha256 !== false);
    this._catchUp = null; // the pass hashing bytes that were not read here
    this._finishSent = false; // upload.finish went out on the current grant
    this._release = null; // gives back the Web Lock held on this.id
    this.sent = 0; // the next byte to hand to the socket
    this.received = 0; // bytes the server holds (stored or buffered)
    this.durable = 0; // bytes the server has stored
    this.result = null;
    this.failure = null;
    this._reason = ''; // why the upload waits
    this._storageDown = false;
    this._lost = 0; // unknown_upload answers since the last grant
    this._waiter = null;
    this._rewoundTo = -1;
    this._status = 'queued';
    this._marks = []; // [socket byte count after a chunk, upload offset after it]
    this._onWire = 0; // upload bytes that have left the browser
    this._speed = { at: 0, sent: 0, bps: 0 };
    this._lastReport = 0;
    this._lastSaved = 0;
  }

  // _setHashing chooses sha256_later: the file is hashed as it is sent and
  // the digest given with upload.finish.
  _setHashing(on) {
    this._later = on;
    if (!on) {
      this._hasher = null;
    } else if (!this._hasher) {
      this._hasher = new SHA256();
      this._hashed = 0;
      this._digest = '';
    }
  }

  async run() {
    const f = this.ferry;
    if (this.signal?.aborted) throw abortError(this.signal);
    if (f.limits.max_file_size && this.size > f.limits.max_file_size) {
      throw new FerryError('too_large', `${this.name} is larger than the server allows (${f.limits.max_file_size} bytes)`);
    }
    const onAbort = () => {
      this.failure = abortError(this.signal);
      if (this.id) {
        f._memory.forget(this.id);
        if (f._ready) f.cancelUpload(this.id).catch(() => {});
      }
      this._poke();
    };
    this.signal?.addEventListener('abort', onAbort, { once: true });
    this._report('queued', true);
    await f._takeSlot(this.signal);
    f._uploads.add(this);
    // Progress moves while the socket drains, between chunks too.
    const ticker = this.opts.onProgress ? setInterval(() => this._report(this._status), 250) : null;
    try {
      const file = await this._loop();
      f._memory.forget(this.id);
      return file;
    } catch (err) {
      if (!UPLOAD_KEEP_CODES.has(err.code)) f._memory.forget(this.id);
      throw err;
    } finally {
      clearInterval(ticker);
      this._release?.();
      f._uploads.delete(this);
      f._releaseSlot();
      this.signal?.removeEventListener('abort', onAbort);
    }
  }

  async _loop() {
    const f = this.ferry;
    let pause = 0;
    for (;;) {
      if (this.failure) throw this.failure;
      if (pause) {
        this._report('waiting', true);
        await sleep(pause, this.signal);
      }
      if (!f._ready) {
        this._reason = 'disconnected';
        this._report('waiting', true);
      }
      await f._whenReady(this.signal);
      const gen = f._gen;
      try {
        await this._open();
        await this._pump(gen);
        this._report('done', true);
        return this.result;
      } catch (err) {
        if (this.failure) throw this.failure;
        if (this.result) return this.result;
        this._reason = err.code;
        if (err.code === 'busy') {
          // No part memory free on the server: nothing changed; open again
          // when it says. Not an error for the user.
          pause = Math.min(BUSY_MAX_MS, Math.max(BUSY_MIN_MS, Number(err.retry_after_ms) || BUSY_DEFAULT_MS));
        } else if (err.code === 'unknown_upload' && this.id) {
          // Paused on the server (idle): _open asks where it stands and
          // resumes it. Should the server keep refusing it, start over.
          if (++this._lost > 2) this._startOver();
          pause = 0;
        } else if (UPLOAD_RETRY_CODES.has(err.code)) {
          pause = err.code === 'disconnected' ? 0 : Math.min(10000, (pause || 500) * 2);
        } else {
          throw err;
        }
      }
    }
  }

  // _open opens the upload, or resumes it (asking its status first: the
  // done frame may have been lost with the old connection).
  async _open() {
    const f = this.ferry;
    this._report('opening', true);
    this._retry = null;
    if (!this.id && this._remember && !this._looked) await this._adopt();
    let st = null;
    if (this.id) {
      try {
        st = await f.uploadStatus(this.id);
      } catch (err) {
        if (!UPLOAD_GONE_CODES.has(err.code)) throw err;
      }
      if (st?.status === 'complete' && st.file) { this.result = st.file; return; }
      if (st?.status === 'failed' && !this._adopted) {
        const code = st.error || 'failed';
        throw new FerryError(code, `the upload of ${this.name} failed on the server (${code})`);
      }
      // The server forgot it, or an earlier page's upload failed: start
      // over rather than give up.
      if (st?.status !== 'uploading') this._startOver();
    }
    const req = {
      t: 'upload.open',
      room: this.room,
      name: this.name,
      size: this.size,
      chunk_size: this.opts.chunkSize || DEFAULT_CHUNK,
    };
    if (this.type) req.type = this.type;
    // How the digest comes was settled when the upload was opened.
    if (this.id) req.resume = this.id;
    else if (this._known) req.sha256 = this._known;
    else if (this._later) req.sha256_later = true;
    let g;
    try {
      g = await f._request(req);
    } catch (err) {
      if (this._adopted && !UPLOAD_RETRY_CODES.has(err.code) && err.code !== 'busy') {
        // An earlier page's upload that cannot go on: a new one can.
        this._startOver();
        return this._open();
      }
      throw err;
    }
    const fresh = !this.id;
    this.id = g.upload;
    this._adopted = false;
    this._lost = 0;
    this._reason = '';
    if (fresh && this._remember) this._release = await lockUpload(this.id);
    const at = g.offset || 0;
    this.sent = this.received = this._onWire = at;
    // The grant's offset may run ahead of what is stored, and the window
    // counts from the durable offset.
    this.durable = Math.min(at, typeof st?.durable === 'number' ? st.durable : at);
    this._marks = [];
    this._rewoundTo = -1;
    this._finishSent = false;
    this._speed.at = 0; // a resume's jump is no speed
    let chunk = Math.max(1, g.chunk_size || req.chunk_size);
    if (f.limits.max_chunk) chunk = Math.min(chunk, f.limits.max_chunk);
    if (this.opts.base64 && f.limits.max_frame) {
      // base64 grows by 4/3; keep the JSON frame under max_frame.
      chunk = Math.min(chunk, Math.floor((f.limits.max_frame - 512) / 4) * 3);
    }
    this.chunk = chunk;
    this.window = g.window > 0 ? g.window : Infinity;
    if (g.file) this.result = g.file; // a resumed upload that had completed
    this._save(true);
    // Bytes sent by an earlier page (or connection) were never read here.
    if (this._hashed < at) this._startCatchUp();
  }

  // _adopt takes over the remembered upload of the same file to the same
  // room, unless a page (this one or another tab) is sending it.
  async _adopt() {
    this._looked = true;
    const f = this.ferry;
    const e = f._memory.find({ user: f.user, room: this.room, name: this.name, size: this.size, lastModified: this.file.lastModified });
    if (!e || f._uploadByID(e.upload)) return;
    const release = await lockUpload(e.upload);
    if (!release) return;
    this.id = e.upload;
    this._release = release;
    this._adopted = true;
    this.received = Math.min(this.size, e.received || 0);
    if (!this._known) this._setHashing(!!e.later);
  }

  // _startOver drops the upload id: the next open starts a new upload.
  _startOver() {
    this.ferry._memory.forget(this.id);
    this._release?.();
    this._release = null;
    this.id = null;
    this._adopted = false;
    this._lost = 0;
    this.received = 0;
    // The hash is the file's, whatever the upload: what was hashed stays.
    if (!this._known) this._setHashing(this.opts.sha256 !== false);
  }

  async _pump(gen) {
    const f = this.ferry;
    this._report('uploading', true);
    for (;;) {
      if (this.failure) throw this.failure;
      if (this.result) return;
      if (this._retry) { const e = this._retry; this._retry = null; throw e; }
      if (gen !== f._gen || !f._ready) throw new FerryError('disconnected', 'the connection was lost');
      const inflight = this.sent - this.durable;
      const len = Math.min(this.chunk, this.size - this.sent);
      if (len <= 0 && (await this._finish())) continue;
      if (len <= 0 || (inflight > 0 && inflight + len > this.window)) {
        // Everything sent, or the window is full: wait for the server.
        if (len <= 0) this._report('finishing', true);
        if (!(await this._wait(UPLOAD_STALL_MS))) await this._resync();
        continue;
      }
      const ws = f.ws;
      if (ws.bufferedAmount > BUFFER_HIGH_WATER) {
        this._report('uploading');
        await this._wait(10);
        continue;
      }
      // Chunks are paced by the window, not by the request rate limit.
      const offset = this.sent;
      const payload = await this._read(offset, len);
      // The world may have moved while the slice was read.
      if (this.failure || gen !== f._gen || f.ws !== ws || ws.readyState !== 1 || offset !== this.sent) continue;
      this._feed(offset, payload);
      // sent moves first: an answer to this chunk (a bad_offset rewinding
      // it) must not be overwritten afterwards.
      const end = offset + payload.length;
      this.sent = end;
      if (this.opts.base64) {
        f._wsSend(JSON.stringify({ t: 'upload.chunk', upload: this.id, offset, data: toBase64(payload) }), true);
      } else {
        f._wsSend(chunkFrame(this.id, offset, payload));
      }
      if (this.sent === end) this._marks.push([f._wire, end]);
      this._report('uploading');
    }
  }

  // _finish gives the server the SHA-256 once every byte is sent, on every
  // grant (a resume whose offset is the size needs it again). It returns
  // true when it did something, false when there was nothing to do.
  async _finish() {
    if (!this._later || this._finishSent) return false;
    if (this._hashed < this.size) {
      // The pass over bytes sent before is still going.
      this._startCatchUp();
      this._report('hashing', true);
      await this._catchUp;
      return true;
    }
    this._finishSent = true;
    this._digest ||= this._hasher.hex();
    try {
      await this.ferry._request({ t: 'upload.finish', upload: this.id, sha256: this._digest });
    } catch (err) {
      // A server from before upload.finish completes without it.
      if (!this.result && err.code !== 'unknown_type' && err.code !== 'not_implemented') throw err;
    }
    return true;
  }

  // _feed hashes the bytes at offset that the hasher has not seen yet; it
  // leaves them to the catch-up pass while that runs.
  _feed(offset, bytes) {
    if (!this._hasher || this._catchUp || this._digest) return;
    const end = offset + bytes.length;
    if (offset > this._hashed || end <= this._hashed) return;
    this._hasher.update(offset === this._hashed ? bytes : bytes.subarray(this._hashed - offset));
    this._hashed = end;
  }

  // _startCatchUp hashes, from the file, what lies between the hashed bytes
  // and those read next (a resume beyond what this page read), while the
  // chunks go on. It stops where the reading stands, and _feed takes over.
  _startCatchUp() {
    if (this._catchUp || !this._hasher || this._digest || this._hashed >= this.sent) return;
    const run = async () => {
      try {
        while (this._hashed < this.sent && !this.failure) {
          const end = Math.min(this.sent, this._hashed + HASH_STEP);
          const b = await this.file.slice(this._hashed, end).arrayBuffer();
          this._hasher.update(new Uint8Array(b));
          this._hashed = end;
        }
      } catch (err) {
        this.failure = new FerryError('read_failed', `cannot read ${this.name}: ${err.message}`, { cause: err });
        this._poke();
      } finally {
        // Cleared where the loop ends, not a task later: a chunk read
        // meanwhile would be hashed by nobody.
        this._catchUp = null;
      }
    };
    this._catchUp = run();
  }

  // _read returns the bytes at offset and starts reading the next chunk, so
  // that the disk and the network work at the same time (two chunks in memory
  // at most).
  async _read(offset, len) {
    let p = this._ahead?.offset === offset && this._ahead.len === len ? this._ahead.p : null;
    this._ahead = null;
    if (!p) p = this.file.slice(offset, offset + len).arrayBuffer();
    const next = offset + len;
    if (next < this.size) {
      const nlen = Math.min(this.chunk, this.size - next);
      const np = this.file.slice(next, next + nlen).arrayBuffer();
      np.catch(() => {}); // a failed read-ahead is retried by _read
      this._ahead = { offset: next, len: nlen, p: np };
    }
    try {
      return new Uint8Array(await p);
    } catch (err) {
      // The file changed or vanished on disk after it was picked.
      throw new FerryError('read_failed', `cannot read ${this.name}: ${err.message}`, { cause: err });
    }
  }

  // _resync asks the server where the upload stands when frames we were
  // waiting for did not come.
  async _resync() {
    const st = await this.ferry.uploadStatus(this.id);
    if (st.status === 'complete' && st.file) { this.result = st.file; return; }
    if (st.status === 'failed') {
      const code = st.error || 'failed';
      throw new FerryError(code, `the upload of ${this.name} failed on the server (${code})`);
    }
    if (typeof st.durable === 'number') this.durable = Math.max(this.durable, st.durable);
    if (typeof st.offset === 'number') {
      this.received = Math.max(this.durable, st.offset);
      if (st.offset < this.sent) this.sent = st.offset;
    }
  }

  // _wait resolves true when poked, false after ms.
  _wait(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => { this._waiter = null; resolve(false); }, ms);
      this._waiter = () => { clearTimeout(t); this._waiter = null; resolve(true); };
    });
  }

  _poke() { this._waiter?.(); }

  _onProgress(p) {
    if (typeof p.offset !== 'number') return;
    if (p.offset > this.durable) this._storageDown = false; // storage is back
    this.durable = Math.max(this.durable, p.offset);
    const held = typeof p.received === 'number' ? p.received : p.offset;
    this.received = Math.min(this.size, Math.max(this.durable, held));
    if (this.durable > this.sent) this.sent = this.durable;
    this._save();
    this._report(this._status, true);
    this._poke();
  }

  _onDone(file) {
    this.result = file;
    this.durable = this.received = this.sent = this.size;
    this._storageDown = false;
    this._poke();
  }

  _onError(err) {
    if ((err.code === 'bad_offset' || err.code === 'window_exceeded') && typeof err.offset === 'number') {
      // Chunks already on their way get the same answer; rewind once per offset.
      if (!(err.offset === this._rewoundTo && this.sent > err.offset)) {
        this.sent = err.offset;
        this._marks = [];
        this._onWire = Math.min(this._onWire, err.offset);
        this.durable = Math.min(this.durable, err.offset);
        this._rewoundTo = err.offset;
      }
      if (err.code === 'bad_offset') this.received = err.offset; // the next byte it expects
    } else if (err.code === 'storage_unavailable') {
      // The server keeps what it has and retries; the window holds the
      // chunks back until upload.progress says the storage is back.
      this._storageDown = true;
      this._report(this._status, true);
    } else if (err.code === 'unknown_upload' || UPLOAD_RETRY_CODES.has(err.code)) {
      // Paused on the server, or not terminal: the loop stops sending, asks
      // the status and resumes from the server's offset.
      this._retry = err;
    } else {
      this.failure = err;
    }
    this._poke();
  }

  // _save remembers the upload for a later page (at most once a second
  // unless forced: localStorage writes are synchronous).
  _save(force) {
    if (!this._remember || !this.id || this.result || this.failure) return;
    const now = Date.now();
    if (!force && now - this._lastSaved < REMEMBER_WRITE_MS) return;
    this._lastSaved = now;
    this.ferry._memory.put({
      upload: this.id, user: this.ferry.user || '', room: this.room, name: this.name, size: this.size,
      lastModified: this.file.lastModified, received: this.received, later: this._later,
    });
  }

  _report(status, force) {
    const changed = status !== this._status;
    this._status = status;
    const fn = this.opts.onProgress;
    if (!fn) return;
    const now = Date.now();
    if (!force && !changed && now - this._lastReport < 100) return;
    this._lastReport = now;
    // The socket is shared (other uploads, chat): what has left the browser
    // is told by the socket's byte count minus what it still buffers.
    const f = this.ferry;
    if (f.ws) {
      const flushed = f._wire - f.ws.bufferedAmount;
      while (this._marks.length && this._marks[0][0] <= flushed) this._onWire = this._marks.shift()[1];
    }
    const sent = Math.min(this.size, Math.max(this.durable, this._onWire));
    const s = this._speed;
    if (!s.at) { s.at = now; s.sent = sent; } else if (now - s.at >= 500) {
      const bps = ((sent - s.sent) * 1000) / (now - s.at);
      s.bps = s.bps ? s.bps * 0.6 + Math.max(0, bps) * 0.4 : Math.max(0, bps);
      if (s.bps < 1) s.bps = 0;
      s.at = now;
      s.sent = sent;
    }
    const moving = status === 'uploading' || status === 'finishing';
    const shown = moving && this._storageDown ? 'waiting' : status;
    // Bytes that only fill the server's buffers while its storage is away
    // are no speed to show.
    const rate = moving && shown !== 'waiting' ? Math.round(s.bps) : 0;
    let reason = '';
    if (shown === 'waiting') reason = this._storageDown ? 'storage_unavailable' : this._reason || 'disconnected';
    const eta = shown === 'uploading' && rate > 0 ? Math.ceil((this.size - sent) / rate) : null;
    // The ticker calls this every 250 ms: tell only what changed.
    const key = `${shown}/${sent}/${this.received}/${this.durable}/${rate}/${this._hashed}`;
    if (!force && !changed && key === this._lastKey) return;
    this._lastKey = key;
    try {
      fn({
        upload: this.id,
        status: shown,
        reason,
        sent,
        received: this.received,
        stored: this.durable,
        size: this.size,
        rate,
        eta,
        hashed: this._hasher ? this._hashed : null,
        // The names of earlier versions.
        loaded: sent,
        durable: this.durable,
        total: this.size,
        bytesPerSecond: rate,
      });
    } catch (err) {
      setTimeout(() => { throw err; });
    }
  }
}

/**
 * UploadMemory keeps the unfinished uploads of this browser in a Storage
 * (localStorage), so that a page loaded later can resume them. An entry is
 * {upload, user, room, name, size, lastModified, received, later, at}: a file
 * is known by its room, name, size and lastModified, for one user. At most
 * `max` entries are kept (the least recently touched go first), each for
 * `ttl` ms after it was last touched.
 */
export class UploadMemory {
  constructor(storage, { key, max = REMEMBER_MAX, ttl = REMEMBER_TTL_MS, now = Date.now } = {}) {
    this.storage = storage || null;
    this.key = key || 'ferry.uploads';
    this.max = max;
    this.ttl = ttl;
    this.now = now;
  }

  /** Whether there is a storage to remember in. */
  get enabled() { return !!this.storage; }

  /** The live entries, the most recently touched first. */
  list() {
    const all = this._read();
    const now = this.now();
    const live = all.filter((e) => now - e.at < this.ttl);
    if (live.length !== all.length) this._write(live);
    return live;
  }

  /** The most recent entry for this file, room and user, or null. */
  find({ user, room, name, size, lastModified }) {
    return this.list().find((e) => e.user === (user || '') && e.room === room && e.name === name &&
      e.size === size && e.lastModified === lastModified) || null;
  }

  /** Adds or replaces the entry of e.upload, touched now. */
  put(e) {
    const rest = this.list().filter((x) => x.upload !== e.upload);
    this._write([{ ...e, at: this.now() }, ...rest].slice(0, this.max));
  }

  /** Changes fields of an entry, leaving when it was touched. */
  update(upload, fields) {
    const all = this.list();
    const e = all.find((x) => x.upload === upload);
    if (!e) return;
    Object.assign(e, fields);
    this._write(all);
  }

  /** Drops an upload's entry. */
  forget(upload) {
    if (!upload) return;
    const all = this._read();
    const rest = all.filter((x) => x.upload !== upload);
    if (rest.length !== all.length) this._write(rest);
  }

  /** Drops every entry. */
  clear() {
    try { this.storage?.removeItem(this.key); } catch { /* storage disabled */ }
  }

  _read() {
    if (!this.storage) return [];
    let v;
    try { v = JSON.parse(this.storage.getItem(this.key) || '[]'); } catch { return []; }
    return Array.isArray(v) ? v.filter(validEntry).sort((a, b) => b.at - a.at) : [];
  }

  _write(list) {
    if (!this.storage) return;
    try {
      if (list.length) this.storage.setItem(this.key, JSON.stringify(list));
      else this.storage.removeItem(this.key);
    } catch { /* full or disabled: the upload goes on, unremembered */ }
  }
}

function validEntry(e) {
  return !!e && typeof e === 'object' && typeof e.upload === 'string' && typeof e.user === 'string' &&
    typeof e.room === 'string' && typeof e.name === 'string' && Number.isFinite(e.size) &&
    Number.isFinite(e.lastModified) && Number.isFinite(e.at);
}

// lockUpload takes the Web Lock of an upload for as long as this page sends
// it, so that another tab does not resume it meanwhile (each would take it
// from the other). It resolves with the function that gives the lock back,
// or null when another page holds it. Without the Locks API every upload is
// free.
function lockUpload(id) {
  const locks = globalThis.navigator?.locks;
  if (!locks?.request) return Promise.resolve(() => {});
  return new Promise((resolve) => {
    locks.request(LOCK_PREFIX + id, { ifAvailable: true }, (lock) => {
      if (!lock) { resolve(null); return undefined; }
      return new Promise((release) => resolve(release));
    }).catch(() => resolve(() => {}));
  });
}

// heldUploadLocks lists the uploads that some page of this origin is sending.
async function heldUploadLocks() {
  const locks = globalThis.navigator?.locks;
  if (!locks?.query) return new Set();
  try {
    const { held = [] } = await locks.query();
    return new Set(held.map((l) => l.name || '').filter((n) => n.startsWith(LOCK_PREFIX)).map((n) => n.slice(LOCK_PREFIX.length)));
  } catch {
    return new Set();
  }
}

// chunkFrame builds a binary chunk frame: 0x01, n, upload id (n bytes),
// offset (uint64 big-endian), payload.
export function chunkFrame(upload, offset, payload) {
  const id = new TextEncoder().encode(upload);
  const b = new Uint8Array(2 + id.length + 8 + payload.length);
  b[0] = 0x01;
  b[1] = id.length;
  b.set(id, 2);
  new DataView(b.buffer).setBigUint64(2 + id.length, BigInt(offset));
  b.set(payload, 10 + id.length);
  return b;
}

// utf8Length is the length of s in UTF-8, as a WebSocket sends it: a lone
// surrogate becomes U+FFFD, three bytes.
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

// --- SHA-256, incremental, so that a file is hashed slice by slice ---

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** Incremental SHA-256: update(bytes) any number of times, then hex(). */
export class SHA256 {
  constructor() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.buf = new Uint8Array(64);
    this.n = 0; // bytes in buf
    this.len = 0; // total bytes
    this.w = new Uint32Array(64);
  }

  update(bytes) {
    let i = 0;
    this.len += bytes.length;
    if (this.n) {
      const take = Math.min(64 - this.n, bytes.length);
      this.buf.set(bytes.subarray(0, take), this.n);
      this.n += take;
      i = take;
      if (this.n < 64) return this;
      this._block(this.buf, 0);
      this.n = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) this._block(bytes, i);
    if (i < bytes.length) {
      this.buf.set(bytes.subarray(i), 0);
      this.n = bytes.length - i;
    }
    return this;
  }

  hex() {
    const bits = this.len * 8;
    const pad = new Uint8Array((this.n < 56 ? 56 : 120) - this.n + 8);
    pad[0] = 0x80;
    const dv = new DataView(pad.buffer);
    dv.setUint32(pad.length - 8, Math.floor(bits / 2 ** 32));
    dv.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    return [...this.h].map((x) => x.toString(16).padStart(8, '0')).join('');
  }

  _block(b, o) {
    const w = this.w;
    for (let i = 0; i < 16; i++) {
      w[i] = (b[o + 4 * i] << 24) | (b[o + 4 * i + 1] << 16) | (b[o + 4 * i + 2] << 8) | b[o + 4 * i + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15], y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const h = this.h;
    let a = h[0], b2 = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b2) ^ (a & c) ^ (b2 & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b2; b2 = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b2; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
}

/** Hashes a Blob slice by slice; resolves with the hex SHA-256. */
export async function sha256Blob(blob, signal, onProgress) {
  const h = new SHA256();
  const step = 4 * 1024 * 1024;
  for (let o = 0; o < blob.size; o += step) {
    if (signal?.aborted) throw abortError(signal);
    h.update(new Uint8Array(await blob.slice(o, o + step).arrayBuffer()));
    onProgress?.(Math.min(blob.size, o + step));
  }
  return h.hex();
}
