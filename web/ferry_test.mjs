// Unit tests of static/ferry.js against an in-process fake server speaking
// docs/protocol.md, and of the page's modules that need no DOM (format.js,
// words.js). Run with: node --test web/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Ferry, FerryError, backoffDelay, chunkFrame, SHA256, UploadMemory, reconnectable, utf8Length } from './static/ferry.js';
import {
  AVATAR_COLORS, avatarColor, fileExt, fileTypeName, fitBox, fmtBytes, initials, linkParts, roomSuggestion, sameGroup, validRoom,
} from './static/format.js';
import { CLIENT_SENTENCES, SENTENCES, sentence, UNKNOWN_SENTENCE } from './static/words.js';

// No test may reach the network: the connect-failure probe gets a fixed answer.
globalThis.fetch = async () => { throw new TypeError('no network in tests'); };

const FAST = { delay: 5, delayMax: 20, randomization: 0, attempts: Infinity };

function memoryStorage() {
  const m = new Map();
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k), m };
}

const until = async (cond, what, ms = 2000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 2));
  }
};

// FakeServer plays the server side of every FakeWS it accepts.
class FakeServer {
  constructor({ ping = 25000, window = 1 << 20, durableStep = 1, chunk = 1024 } = {}) {
    Object.assign(this, { ping, window, durableStep, chunkSize: chunk });
    this.sockets = [];
    this.rooms = new Map(); // room → Set of sockets
    this.uploads = new Map();
    this.frames = []; // every text frame received, parsed
    this.hooks = {}; // t → fn(ws, frame) returning true when handled
    this.users = 0;
    this.streams = new Map();
    this.seen = new Map(); // user/msg_id → first ack
    this.published = [];
    this.received = [];
    this.finishes = []; // upload.finish frames
    this.busy = 0; // upload.open answers busy this many times
    const server = this;
    this.WebSocket = class FakeWS {
      constructor(url) {
        this.url = new URL(url);
        this.readyState = 0;
        this.bufferedAmount = 0;
        server.sockets.push(this);
        setTimeout(() => server.accept(this), 0);
      }
      send(data) {
        if (this.readyState !== 1) throw new Error('not open');
        this.sentBytes = (this.sentBytes ?? 0) + (typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength);
        server.receive(this, data);
      }
      close(code = 1000, reason = '') {
        if (this.readyState >= 2) return;
        this.readyState = 3;
        setTimeout(() => this.onclose?.({ code, reason }), 0);
      }
    };
  }

  get last() { return this.sockets[this.sockets.length - 1]; }

  stream(room) {
    if (!this.streams.has(room)) this.streams.set(room, { epoch: 'e' + (this.streams.size + 1), seq: 0, oldest: 1, events: [] });
    return this.streams.get(room);
  }

  accept(ws) {
    if (ws.readyState !== 0) return;
    if (this.refuse) { ws.readyState = 3; ws.onclose?.({ code: 1006, reason: '' }); return; }
    ws.readyState = 1;
    ws.onopen?.();
    const token = ws.url.searchParams.get('token');
    ws.user = token ? token.replace(/^tok_/, '') : 'u_' + ++this.users;
    ws.name = ws.url.searchParams.get('name') || 'guest';
    ws.conn = 'c_' + this.sockets.length;
    this.push(ws, {
      t: 'welcome', v: 1, conn: ws.conn, user: ws.user, name: ws.name, token: 'tok_' + ws.user,
      ping_interval_ms: this.ping, ping_timeout_ms: this.ping,
      limits: { max_frame: 1 << 20, max_rooms: 100, rate: 1000, rate_burst: 2000, max_chunk: 1 << 20, max_file_size: 1 << 30, max_uploads: 2 },
    });
  }

  push(ws, frame) {
    if (ws.readyState === 1) ws.onmessage?.({ data: JSON.stringify(frame) });
  }

  // drop ends a socket from the server side.
  drop(ws, code = 1006, reason = '') {
    ws.readyState = 3;
    for (const m of this.rooms.values()) m.delete(ws);
    ws.onclose?.({ code, reason });
  }

  receive(ws, data) {
    if (typeof data !== 'string') return this.chunk(ws, data);
    const f = JSON.parse(data);
    this.frames.push(f);
    setTimeout(() => this.handle(ws, f), 0);
  }

  handle(ws, f) {
    if (ws.readyState !== 1) return;
    if (this.hooks[f.t]?.(ws, f)) return;
    const ack = (data) => f.id && this.push(ws, { t: 'ack', id: f.id, data });
    const fail = (code, message, extra) => this.push(ws, { t: 'error', id: f.id, code, message, ...extra });
    switch (f.t) {
      case 'ping': return this.push(ws, { t: 'pong', ts: f.ts, server_ts: Date.now() });
      case 'join': {
        if (!this.rooms.has(f.room)) this.rooms.set(f.room, new Set());
        const st = this.stream(f.room);
        let recovery;
        if (f.since) {
          // As docs/protocol.md: replay after since, a gap frame first when
          // some events are gone or the epoch changed.
          let from = f.since.seq;
          recovery = 'ok';
          if (f.since.epoch !== st.epoch) {
            recovery = 'epoch';
            from = 0;
            this.push(ws, { t: 'gap', room: f.room, epoch: st.epoch, reason: 'epoch' });
          } else if (st.oldest > from + 1) {
            recovery = 'history';
            this.push(ws, { t: 'gap', room: f.room, epoch: st.epoch, reason: 'history', from: from + 1, to: st.oldest - 1 });
          }
          for (const ev of st.events) if (ev.seq > from && ev.seq >= st.oldest) this.push(ws, ev);
        }
        this.rooms.get(f.room).add(ws);
        return ack({ room: f.room, members: [...this.rooms.get(f.room)].map((s) => ({ user: s.user, name: s.name, connections: 1 })), epoch: st.epoch, seq: st.seq, recovery });
      }
      case 'leave':
        if (!this.rooms.get(f.room)?.delete(ws)) return fail('not_member', 'not in room');
        return ack({ room: f.room });
      case 'emit': {
        if (f.room && !this.rooms.get(f.room)?.has(ws)) return fail('not_member', `you are not in room "${f.room}"`);
        const key = ws.user + '/' + f.msg_id;
        if (f.msg_id && this.seen.has(key)) return ack({ ...this.seen.get(key), duplicate: true });
        const st = this.stream(f.room);
        const ev = { t: 'event', room: f.room, event: f.event, data: f.data, from: { conn: ws.conn, user: ws.user, name: ws.name }, ts: Date.now(), seq: ++st.seq, epoch: st.epoch };
        if (f.msg_id) ev.msg_id = f.msg_id;
        if (f.receipt) ev.receipt = true;
        st.events.push(ev);
        this.published.push(ev);
        let n = 0;
        for (const s of this.rooms.get(f.room) || []) {
          if (s === ws && f.except_self) continue;
          n++;
          this.push(s, ev);
        }
        const a = { delivered: n, seq: ev.seq, epoch: st.epoch };
        if (f.msg_id) this.seen.set(key, a);
        return ack(a);
      }
      case 'received':
        this.received.push(f);
        return undefined;
      case 'upload.open': {
        if (this.busy > 0) {
          this.busy--;
          return fail('busy', 'no part memory free', { retry_after_ms: 30 });
        }
        let u = f.resume && this.uploads.get(f.resume);
        if (f.resume && !u) return fail('unknown_upload', 'no such upload');
        if (!u) {
          u = { id: 'up_' + (this.uploads.size + 1), room: f.room, name: f.name, size: f.size, type: f.type, data: new Uint8Array(f.size), off: 0, durable: 0, later: !!f.sha256_later, sha256: f.sha256 };
          this.uploads.set(u.id, u);
        }
        u.ws = ws;
        u.paused = false;
        // As docs/protocol.md: a resume continues after the last byte received.
        if (this.resumeAtDurable) u.off = u.durable;
        ack({ upload: u.id, offset: u.off, chunk_size: this.chunkSize, window: this.window, size: u.size, ...(u.file ? { file: u.file } : {}) });
        return this.complete(ws, u);
      }
      case 'upload.finish': {
        const u = this.uploads.get(f.upload);
        if (!u) return fail('unknown_upload', 'no such upload', { upload: f.upload });
        this.finishes.push(f);
        if (u.digest && u.digest !== f.sha256) return fail('bad_request', 'another digest', { upload: u.id });
        u.digest = f.sha256;
        ack({ upload: u.id });
        return this.complete(ws, u);
      }
      case 'upload.chunk':
        return this.chunk(ws, null, f);
      case 'upload.status': {
        const u = this.uploads.get(f.upload);
        if (!u) return fail('unknown_upload', 'no such upload');
        return ack({ upload: u.id, room: u.room, name: u.name, size: u.size, offset: u.off, durable: u.durable, status: u.file ? 'complete' : 'uploading', file: u.file });
      }
      case 'upload.cancel':
        this.uploads.delete(f.upload);
        this.canceled = f.upload;
        return ack(null);
      default:
        return fail('unknown_type', 'unknown type');
    }
  }

  chunk(ws, bytes, text) {
    let id, off, payload;
    if (bytes) {
      const b = new Uint8Array(bytes.buffer ?? bytes, bytes.byteOffset ?? 0, bytes.byteLength);
      assert.equal(b[0], 0x01);
      const n = b[1];
      id = new TextDecoder().decode(b.subarray(2, 2 + n));
      off = Number(new DataView(b.buffer, b.byteOffset).getBigUint64(2 + n));
      payload = b.slice(10 + n);
    } else {
      id = text.upload;
      off = text.offset;
      payload = Uint8Array.from(Buffer.from(text.data, 'base64'));
      this.textChunks = (this.textChunks || 0) + 1;
    }
    const u = this.uploads.get(id);
    if (!u || u.paused) return this.push(ws, { t: 'error', code: 'unknown_upload', message: 'no such upload', upload: id });
    if (this.onChunk?.(ws, u, off, payload)) return;
    if (off !== u.off) return this.push(ws, { t: 'error', code: 'bad_offset', message: 'bad offset', upload: id, offset: u.off });
    assert.ok(off + payload.length - u.durable <= this.window, 'client went past the window');
    u.data.set(payload, off);
    u.off = off + payload.length;
    ws.chunkBytes = (ws.chunkBytes || 0) + payload.length;
    this.chunks = (this.chunks || 0) + 1;
    if (u.off - u.durable >= this.durableStep || u.off === u.size) u.durable = u.off;
    const progress = { t: 'upload.progress', upload: id, offset: u.durable, received: u.off };
    if (this.progressDelay) setTimeout(() => this.push(ws, progress), this.progressDelay);
    else this.push(ws, progress);
    this.complete(ws, u);
  }

  // complete stores an upload whose bytes are all in, once its digest is
  // known (sha256_later waits for upload.finish).
  complete(ws, u) {
    if (u.file || u.off !== u.size || (u.later && !u.digest)) return;
    const sum = createHash('sha256').update(u.data).digest('hex');
    const want = u.digest || u.sha256;
    if (want && want !== sum) {
      this.uploads.delete(u.id);
      return this.push(ws, { t: 'error', code: 'checksum_mismatch', message: 'the bytes do not match sha256', upload: u.id });
    }
    u.durable = u.size;
    u.file = { id: 'f_1', room: u.room, name: u.name, size: u.size, type: u.type, sha256: sum, user: ws.user, user_name: ws.name, time: new Date().toISOString(), url: `/files/f_1/${u.name}?exp=1&sig=x` };
    this.push(ws, { t: 'upload.done', upload: u.id, file: u.file });
  }
}

function client(srv, opts = {}) {
  return new Ferry({ url: 'ws://ferry.test/', name: 'alice', storage: memoryStorage(), reconnection: FAST, WebSocket: srv.WebSocket, ...opts });
}

async function connected(c) {
  if (c.state === 'connected' && c._ready) return;
  await new Promise((r) => c.once('connect', r));
}

// bytes returns n pseudo-random bytes, the same for the same n: no period,
// so that bytes put at a wrong offset never hash or compare equal by luck.
const bytes = (n) => {
  const b = new Uint8Array(n);
  let x = 2463534242;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b[i] = x >>> 24;
  }
  return b;
};

test('backoff grows by the factor, is capped, and stays within the randomization', () => {
  const r = { delay: 1000, delayMax: 5000, randomization: 0.5 };
  assert.equal(backoffDelay(1, r, 0.5), 1000);
  assert.equal(backoffDelay(2, r, 0.5), 2000);
  assert.equal(backoffDelay(3, r, 0.5), 4000);
  assert.equal(backoffDelay(4, r, 0.5), 5000);
  assert.equal(backoffDelay(1, r, 0), 500);
  assert.equal(backoffDelay(1, r, 0.999999), 1500);
  assert.equal(backoffDelay(100, r, 0.5), 5000);
});

test('close codes 4500-4999 are not reconnectable', () => {
  for (const [code, want] of [[1000, true], [1001, true], [1006, true], [4000, true], [4001, true], [4500, false], [4502, false], [4999, false], [5000, true]]) {
    assert.equal(reconnectable(code), want, String(code));
  }
});

test('utf8Length counts what a WebSocket sends', () => {
  for (const s of ['', 'hi', 'héllo', '€ 100', 'emoji 😀 and 𝄞', 'lone \ud800 surrogate', 'end \udc00', '\ud83d']) {
    assert.equal(utf8Length(s), Buffer.byteLength(s), JSON.stringify(s));
  }
});

test('the bytes counted as sent are the bytes the socket sent, in UTF-8', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 4000 });
  const c = client(srv);
  c.connect();
  await c.join('files');
  await c.emit('files', 'chat', { text: 'grüße, 世界 😀' });
  await c.upload('files', new Blob([bytes(3000)]), { name: 'a.bin', base64: true });
  const ws = srv.sockets.at(-1);
  assert.ok(ws.sentBytes > 4000);
  assert.equal(c._wire, ws.sentBytes);
  c.close();
});

test('chunk frames are laid out as docs/protocol.md says', () => {
  const f = chunkFrame('up_x', 2 ** 40 + 5, Uint8Array.of(9, 8, 7));
  assert.deepEqual([...f.subarray(0, 6)], [0x01, 4, 0x75, 0x70, 0x5f, 0x78]);
  assert.deepEqual([...f.subarray(6, 14)], [0, 0, 1, 0, 0, 0, 0, 5]);
  assert.deepEqual([...f.subarray(14)], [9, 8, 7]);
});

test('SHA256 matches node:crypto however the input is split', () => {
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 100003]) {
    const data = bytes(n);
    const want = createHash('sha256').update(data).digest('hex');
    const h = new SHA256();
    for (let i = 0; i < n; i += 37) h.update(data.subarray(i, i + 37));
    assert.equal(n ? h.hex() : new SHA256().hex(), want, `n=${n}`);
  }
});

test('the url gets /ws, the name and the stored token', async () => {
  const srv = new FakeServer();
  const storage = memoryStorage();
  storage.setItem('ferry.token', 'tok_u_7');
  const c = client(srv, { url: 'http://ferry.test:8080/base', storage });
  c.connect();
  await connected(c);
  assert.equal(srv.last.url.href, 'ws://ferry.test:8080/base/ws?name=alice&token=tok_u_7');
  assert.equal(c.user, 'u_7');
  assert.equal(c.fileURL({ url: '/files/f_1/a.png?sig=1' }), 'http://ferry.test:8080/files/f_1/a.png?sig=1');
  c.close();
});

test('requests: join, members, emit with ack, errors carry code and message', async () => {
  const srv = new FakeServer();
  const c = client(srv);
  const events = [];
  c.on('event', (ev) => events.push(ev));
  c.on('event:chat', (data) => events.push(data));
  const joined = c.join('lobby'); // queued until the connection is up
  c.connect();
  assert.equal(c.state, 'connecting');
  const members = await joined;
  assert.deepEqual([...members], [{ user: 'u_1', name: 'alice', connections: 1 }]);
  assert.equal(members.count, 1); // the fake server's answer has no count: the list's length
  assert.equal(c.state, 'connected');
  assert.equal(c.id, 'c_1');
  assert.equal((await c.emit('lobby', 'chat', { text: 'hi' })).delivered, 1);
  await until(() => events.length === 2, 'the event');
  assert.equal(events[0].room, 'lobby');
  assert.deepEqual(events[1], { text: 'hi' });
  assert.equal((await c.emit('lobby', 'chat', { text: 'quiet' }, { exceptSelf: true })).delivered, 0);
  assert.equal(srv.frames.at(-1).except_self, true);
  await assert.rejects(c.emit('nowhere', 'chat', 1), (err) => err instanceof FerryError && err.code === 'not_member' && /nowhere/.test(err.message));
  await c.emitTo({ user: 'u_9' }, 'dm', 'psst', { ack: false });
  assert.deepEqual(srv.frames.at(-1), { t: 'emit', user: 'u_9', event: 'dm', data: 'psst' });
  assert.deepEqual(c.joined, ['lobby']);
  await c.leave('lobby');
  assert.deepEqual(c.joined, []);
  c.close();
  assert.equal(c.state, 'offline');
  await assert.rejects(c.rooms(), (err) => err.code === 'offline');
});

test('a direct message delivered twice (a server crash between delivery and delete) is seen once', async () => {
  const srv = new FakeServer();
  const c = client(srv);
  const got = [];
  c.on('event:dm', (data) => got.push(data));
  c.connect();
  await until(() => c.state === 'connected', 'the connection');
  const ws = srv.sockets.at(-1);
  const dm = (seq, text) => ({ t: 'event', room: 'user:' + ws.user, event: 'dm', data: text, from: { user: 'u_9' }, ts: 1, seq, epoch: 'e1' });
  srv.push(ws, dm(5, 'first'));
  srv.push(ws, dm(5, 'first')); // the same frame again
  srv.push(ws, dm(1048581, 'after a restart')); // seqs jump, never go back
  srv.push(ws, { ...dm(2, 'from another life'), epoch: 'e2' });
  assert.deepEqual(got, ['first', 'after a restart', 'from another life']);
  c.close();
});

test('a dropped connection reconnects, re-joins its rooms first and keeps the user', async () => {
  const srv = new FakeServer();
  const c = client(srv);
  const seen = [];
  for (const e of ['connect', 'disconnect', 'reconnect_attempt', 'reconnect', 'connect_error']) c.on(e, (...a) => seen.push([e, ...a]));
  c.connect();
  await c.join('a');
  await c.join('b');
  const user = c.user;
  const atMostOnce = c.emit('a', 'chat', 0, { msgId: false });
  srv.drop(srv.last, 1006);
  await assert.rejects(atMostOnce, (err) => err.code === 'disconnected');
  assert.equal(c.state, 'reconnecting');
  const queued = c.emit('a', 'chat', 2); // waits for the new connection
  await new Promise((r) => c.once('connect', r));
  assert.equal(c.user, user);
  assert.equal(srv.last.url.searchParams.get('token'), 'tok_' + user);
  const after = srv.frames.slice(srv.frames.findLastIndex((f) => f.t === 'join' && f.room === 'a'));
  assert.deepEqual(after.slice(0, 3).map((f) => f.t + ':' + (f.room ?? '')), ['join:a', 'join:b', 'emit:a']);
  assert.equal((await queued).delivered, 1);
  assert.deepEqual(seen.map((s) => s[0]), ['connect', 'disconnect', 'reconnect_attempt', 'reconnect', 'connect']);
  assert.deepEqual(seen[1], ['disconnect', 'transport error', 1006, '']);
  c.close();
});

test('a private room is joined with an invite and rejoined with the pass', async () => {
  const srv = new FakeServer();
  // As docs/protocol.md: private rooms take a token; the ack carries a pass.
  srv.hooks.invite = (ws, f) => { srv.push(ws, { t: 'ack', id: f.id, data: { room: 'private:x', invite: 'inv_1', expires: Date.now() + 1000 } }); return true; };
  srv.hooks.join = (ws, f) => {
    if (!f.room.startsWith('private:')) return false;
    if (f.token !== 'inv_1' && f.token !== 'pass_' + ws.user) {
      srv.push(ws, { t: 'error', id: f.id, code: 'forbidden', message: 'private' });
      return true;
    }
    srv.rooms.set(f.room, (srv.rooms.get(f.room) || new Set()).add(ws));
    srv.push(ws, { t: 'ack', id: f.id, data: { room: f.room, members: [], epoch: 'e', seq: 0, pass: 'pass_' + ws.user } });
    return true;
  };
  const c = client(srv);
  c.connect();
  const inv = await c.invite();
  await assert.rejects(c.join(inv.room), (err) => err.code === 'forbidden');
  await c.join(inv.room, { token: inv.invite });
  srv.drop(srv.last, 1006);
  await new Promise((r) => c.once('reconnect', r));
  const rejoin = srv.frames.findLast((f) => f.t === 'join' && f.room === 'private:x');
  assert.equal(rejoin.token, 'pass_' + c.user);
  c.close();
});

test('close codes 4500-4999 end the client without reconnecting', async () => {
  const srv = new FakeServer();
  const c = client(srv);
  c.connect();
  await connected(c);
  const got = new Promise((r) => c.once('disconnect', (...a) => r(a)));
  srv.drop(srv.last, 4502, 'flood');
  assert.deepEqual(await got, ['io server disconnect', 4502, 'flood']);
  assert.equal(c.state, 'offline');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(srv.sockets.length, 1);
});

test('reconnect_failed after the configured attempts', async () => {
  const srv = new FakeServer();
  const c = client(srv, { reconnection: { ...FAST, attempts: 2 } });
  c.connect();
  await connected(c);
  srv.refuse = true;
  const failed = new Promise((r) => c.once('reconnect_failed', r));
  srv.drop(srv.last, 1001);
  const err = await failed;
  assert.equal(err.code, 'reconnect_failed');
  assert.equal(c.state, 'offline');
  assert.equal(srv.sockets.length, 3);
});

test('frames waiting for a connection are bounded', async () => {
  const srv = new FakeServer();
  const c = client(srv);
  c.connect();
  await connected(c);
  srv.refuse = true;
  srv.drop(srv.last, 1001);
  await until(() => c.state === 'reconnecting', 'reconnecting');
  const waiting = [];
  for (let i = 0; i < 1000; i++) waiting.push(c.emit('a', 'chat', i).catch((e) => e));
  await assert.rejects(c.emit('a', 'chat', 'one too many'), (err) => err.code === 'queue_full');
  c.close();
  for (const e of await Promise.all(waiting)) assert.equal(e.code, 'offline');
});

test('a silent server is detected by the heartbeat', async () => {
  const srv = new FakeServer({ ping: 40 });
  const c = client(srv);
  c.connect();
  await connected(c);
  srv.hooks.ping = () => true; // the link is dead: pings go unanswered
  const reason = await new Promise((r) => c.once('disconnect', r));
  assert.equal(reason, 'ping timeout');
  delete srv.hooks.ping;
  await new Promise((r) => c.once('connect', r));
  c.close();
});

test('upload: binary chunks within the window, progress, done', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 4000, durableStep: 3000 });
  const c = client(srv);
  c.connect();
  await c.join('files');
  const data = bytes(25000);
  const progress = [];
  const file = await c.upload('files', new Blob([data], { type: 'application/x-test' }), {
    name: 'a.bin', onProgress: (p) => progress.push(p),
  });
  assert.equal(file.size, 25000);
  const u = srv.uploads.get('up_1');
  assert.deepEqual(u.data, data);
  assert.equal(u.type, 'application/x-test');
  assert.equal(srv.chunks, 25);
  assert.equal(progress.at(-1).status, 'done');
  assert.equal(progress.at(-1).loaded, 25000);
  c.close();
});

test('upload: base64 text chunks', async () => {
  const srv = new FakeServer({ chunk: 4096 });
  const c = client(srv);
  c.connect();
  await c.join('files');
  const data = bytes(10000);
  await c.upload('files', new Blob([data]), { name: 'b.bin', base64: true });
  assert.deepEqual(srv.uploads.get('up_1').data, data);
  assert.equal(srv.textChunks, 3);
  c.close();
});

test('upload: bad_offset rewinds, a dropped connection resumes, storage_unavailable pauses', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 3000, durableStep: 1000 });
  const c = client(srv);
  c.connect();
  await c.join('files');
  const data = bytes(20000);
  let step = 0;
  srv.onChunk = (ws, u, off) => {
    if (off === 5000 && step === 0) { step = 1; u.off = 4000; u.durable = 4000; return false; } // server lost a chunk
    if (off === 9000 && step === 1) { step = 2; srv.drop(ws, 1006); return true; }
    if (off === 14000 && step === 2) {
      // The storage stops answering: the server keeps the bytes, stores
      // nothing for a while, then goes on.
      step = 3;
      srv.push(ws, { t: 'error', code: 'storage_unavailable', message: 'storage is down', upload: u.id });
      srv.durableStep = Infinity;
      setTimeout(() => {
        srv.durableStep = 1000;
        u.durable = u.off;
        srv.push(ws, { t: 'upload.progress', upload: u.id, offset: u.durable, received: u.off });
      }, 300);
    }
    return false;
  };
  const seen = [];
  const t0 = Date.now();
  const rates = [];
  const file = await c.upload('files', new Blob([data]), {
    name: 'c.bin',
    onProgress: (p) => { seen.push(`${p.status}:${p.reason}`); if (p.reason === 'storage_unavailable') rates.push(p.rate); },
  });
  assert.ok(rates.length > 0 && rates.every((r) => r === 0), `no speed while the storage is away: ${rates}`);
  // Recovering takes the storage outage (300 ms), not the stall timeout (15 s).
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  assert.equal(step, 3);
  assert.equal(file.size, 20000);
  assert.deepEqual(srv.uploads.get('up_1').data, data);
  const opens = srv.frames.filter((f) => f.t === 'upload.open');
  assert.equal(opens.length, 2, 'the storage outage needs no new open');
  assert.equal(opens[1].resume, 'up_1');
  const paused = seen.indexOf('waiting:storage_unavailable');
  assert.ok(paused > 0, seen.join(' '));
  assert.ok(seen.slice(paused).includes('uploading:'), 'uploading again after the outage');
  assert.equal(srv.finishes.at(-1).sha256, createHash('sha256').update(data).digest('hex'));
  c.close();
});

test('upload: abort cancels on the server and rejects with code canceled', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 2000, durableStep: 1e9 }); // no progress: the window stays full
  const c = client(srv);
  c.connect();
  await c.join('files');
  const ctl = new AbortController();
  const p = c.upload('files', new Blob([bytes(10000)]), { name: 'd.bin', signal: ctl.signal });
  await until(() => srv.chunks === 2, 'two chunks');
  ctl.abort();
  await assert.rejects(p, (err) => err.code === 'canceled' && err.name === 'AbortError');
  await until(() => srv.canceled === 'up_1', 'upload.cancel');
  c.close();
});

test('upload: terminal errors reject', async () => {
  const srv = new FakeServer();
  srv.hooks['upload.open'] = (ws, f) => { srv.push(ws, { t: 'error', id: f.id, code: 'type_refused', message: 'no executables' }); return true; };
  const c = client(srv);
  c.connect();
  await c.join('files');
  await assert.rejects(c.upload('files', new Blob(['MZ']), { name: 'x.exe' }), (err) => err.code === 'type_refused');
  c.close();
});

test('an emit in flight when the connection drops is sent again and published once', async () => {
  const srv = new FakeServer();
  const c = client(srv);
  c.connect();
  await c.join('a');
  srv.hooks.emit = (ws, f) => {
    // The server publishes, then the link dies before the ack.
    delete srv.hooks.emit;
    srv.handle(ws, { ...f, id: undefined });
    srv.drop(ws, 1006);
    return true;
  };
  const ack = await c.emit('a', 'chat', 'once');
  assert.equal(ack.duplicate, true);
  const emits = srv.frames.filter((f) => f.t === 'emit');
  assert.equal(emits.length, 2);
  assert.equal(emits[0].msg_id, emits[1].msg_id);
  assert.equal(srv.published.length, 1);
  c.close();
});

test('re-joining catches up: missed events are replayed once, gaps are reported, receipts answered', async () => {
  const srv = new FakeServer();
  const a = client(srv, { name: 'a' });
  const b = client(srv, { name: 'b' });
  const got = [];
  const gaps = [];
  a.on('event', (ev) => got.push(ev.data));
  a.on('gap', (g) => gaps.push(g.reason));
  a.connect();
  b.connect();
  await a.join('r');
  await b.join('r');
  await b.emit('r', 'chat', 1);
  await until(() => got.length === 1, 'event 1');
  srv.drop(srv.sockets.find((s) => s.name === 'a'), 1006);
  await b.emit('r', 'chat', 2);
  await b.emit('r', 'chat', 3, { receipt: true });
  await new Promise((r) => a.once('connect', r));
  assert.deepEqual(got, [1, 2, 3]);
  assert.deepEqual(a.position('r'), { epoch: 'e1', seq: 3 });
  const rejoin = srv.frames.findLast((f) => f.t === 'join' && f.since);
  assert.deepEqual(rejoin.since, { epoch: 'e1', seq: 1 });
  await until(() => srv.received.length === 1, 'the received frame');
  assert.deepEqual(srv.received[0], { t: 'received', room: 'r', seq: 3 });

  // The same events again (an overlapping replay) are dropped.
  for (const ev of srv.streams.get('r').events) srv.push(srv.last.name === 'a' ? srv.last : srv.sockets.findLast((s) => s.name === 'a'), ev);
  assert.deepEqual(got, [1, 2, 3]);

  // History lost while away: a gap, then what is left.
  srv.drop(srv.sockets.findLast((s) => s.name === 'a'), 1006);
  await b.emit('r', 'chat', 4);
  await b.emit('r', 'chat', 5);
  srv.streams.get('r').oldest = 5;
  await new Promise((r) => a.once('connect', r));
  assert.deepEqual(gaps, ['history']);
  assert.deepEqual(got, [1, 2, 3, 5]);
  a.close();
  b.close();
});

test('join with history replays what the server keeps', async () => {
  const srv = new FakeServer();
  const b = client(srv, { name: 'b' });
  b.connect();
  await b.join('r');
  await b.emit('r', 'chat', 'old');
  const a = client(srv, { name: 'a' });
  const got = [];
  a.on('event:chat', (d) => got.push(d));
  const gaps = [];
  a.on('gap', (g) => gaps.push(g));
  a.connect();
  await a.join('r', { history: true });
  assert.deepEqual(got, ['old']);
  assert.deepEqual(gaps, [], 'no position, so no epoch gap to report');
  assert.deepEqual(a.position('r'), { epoch: 'e1', seq: 1 });
  a.close();
  b.close();
});

// --- hashing while sending, resuming after a reload, progress ---

const sha = (b) => createHash('sha256').update(b).digest('hex');
const fileOf = (data, name = 'photo.jpg', lastModified = 1700000000000) => new File([data], name, { type: 'image/jpeg', lastModified });

// inFiles connects a client and joins the room "files".
async function inFiles(srv, opts) {
  const c = client(srv, opts);
  c.connect();
  await c.join('files');
  return c;
}

test('upload memory: keyed by user, room, name, size and lastModified; bounded; entries expire', () => {
  const storage = memoryStorage();
  let now = 1_000_000;
  const m = new UploadMemory(storage, { now: () => now, max: 50, ttl: 24 * 3600 * 1000 });
  const e = { upload: 'up_a', user: 'u_1', room: 'lobby', name: 'a.bin', size: 10, lastModified: 5, received: 3, later: true };
  m.put(e);
  const key = { user: 'u_1', room: 'lobby', name: 'a.bin', size: 10, lastModified: 5 };
  assert.equal(m.find(key).upload, 'up_a');
  for (const [k, v] of [['user', 'u_2'], ['room', 'other'], ['name', 'b.bin'], ['size', 11], ['lastModified', 6]]) {
    assert.equal(m.find({ ...key, [k]: v }), null, `another ${k}`);
  }
  // The most recent upload of a file wins; forget drops one.
  now += 10;
  m.put({ ...e, upload: 'up_b' });
  assert.equal(m.find(key).upload, 'up_b');
  m.forget('up_b');
  assert.equal(m.find(key).upload, 'up_a');
  m.update('up_a', { received: 7 });
  assert.equal(m.find(key).received, 7);

  // At most 50: the least recently touched go.
  for (let i = 0; i < 60; i++) {
    now += 1;
    m.put({ ...e, upload: 'up_' + i, name: `f${i}.bin` });
  }
  const list = m.list();
  assert.equal(list.length, 50);
  assert.equal(list[0].upload, 'up_59');
  assert.equal(list.at(-1).upload, 'up_10');
  assert.equal(JSON.parse(storage.getItem('ferry.uploads')).length, 50);

  // 24 hours after it was last touched, an entry is gone (from storage too).
  now += 24 * 3600 * 1000 - 30;
  assert.equal(m.list().length, 30);
  now += 1000;
  assert.deepEqual(m.list(), []);
  assert.equal(storage.getItem('ferry.uploads'), null);

  // Garbage in the storage is ignored; no storage remembers nothing.
  storage.setItem('ferry.uploads', '{not json');
  assert.deepEqual(m.list(), []);
  storage.setItem('ferry.uploads', JSON.stringify([{ upload: 1 }, null, 'x']));
  assert.deepEqual(m.list(), []);
  const none = new UploadMemory(null);
  none.put(e);
  assert.equal(none.enabled, false);
  assert.deepEqual(none.list(), []);
});

test('upload: the digest hashed while sending is the one-shot digest, through rewinds and resumes', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 4000, durableStep: 1000 });
  const c = await inFiles(srv);
  const data = bytes(30011);
  let step = 0;
  srv.onChunk = (ws, u, off) => {
    if (off === 7000 && step === 0) { step = 1; u.off = 5500; u.durable = 5000; return false; } // a rewind mid-chunk
    if (off >= 12000 && step === 1) { step = 2; srv.drop(ws, 1006); return true; }
    return false;
  };
  const file = await c.upload('files', new Blob([data]), { name: 'h.bin' });
  assert.equal(step, 2);
  const open = srv.frames.find((f) => f.t === 'upload.open');
  assert.equal(open.sha256_later, true);
  assert.equal(open.sha256, undefined);
  assert.equal(srv.finishes.length, 1);
  assert.equal(srv.finishes[0].sha256, sha(data));
  assert.equal(file.sha256, sha(data));
  // A finish goes out only after the last chunk.
  const last = srv.frames.findLastIndex((f) => f.t === 'upload.finish');
  assert.ok(srv.uploads.get('up_1').off === data.length && last >= 0);
  c.close();
});

test('upload: a known sha256 is sent at open and nothing is hashed; sha256: false sends none', async () => {
  const srv = new FakeServer({ chunk: 4096 });
  const c = await inFiles(srv);
  const data = bytes(10000);
  const seen = [];
  await c.upload('files', new Blob([data]), { name: 'k.bin', sha256: sha(data).toUpperCase(), onProgress: (p) => seen.push(p.hashed) });
  let open = srv.frames.findLast((f) => f.t === 'upload.open');
  assert.equal(open.sha256, sha(data));
  assert.equal(open.sha256_later, undefined);
  assert.equal(srv.finishes.length, 0);
  assert.ok(seen.every((h) => h === null));
  await c.upload('files', new Blob([data]), { name: 'n.bin', sha256: false });
  open = srv.frames.findLast((f) => f.t === 'upload.open');
  assert.equal(open.sha256, undefined);
  assert.equal(open.sha256_later, undefined);
  assert.equal(srv.finishes.length, 0);
  // A wrong digest ends the upload.
  await assert.rejects(c.upload('files', new Blob([data]), { name: 'w.bin', sha256: sha(bytes(3)) }), (err) => err.code === 'checksum_mismatch');
  c.close();
});

test('upload: a server without upload.finish completes the upload anyway', async () => {
  const srv = new FakeServer({ chunk: 1000 });
  // An older server: ignores sha256_later, completes at the last byte, and
  // does not know upload.finish.
  srv.hooks['upload.open'] = (ws, f) => { delete f.sha256_later; return false; };
  srv.hooks['upload.finish'] = (ws, f) => { srv.push(ws, { t: 'error', id: f.id, code: 'unknown_type', message: 'unknown frame type' }); return true; };
  const c = await inFiles(srv);
  const f = await c.upload('files', new Blob([bytes(5000)]), { name: 'o.bin' });
  assert.equal(f.size, 5000);
  c.close();
});

// reload starts an upload of a File in one client, stops that client when
// the server holds `stopAt` bytes (as a page reload would), and picks the
// same File again in a new client on the same storage.
async function reload({ size, chunk, window, stopAt }) {
  const srv = new FakeServer({ chunk, window, durableStep: Infinity });
  const storage = memoryStorage();
  const data = bytes(size);
  const pick = () => fileOf(data);
  const c1 = await inFiles(srv, { storage });
  srv.onChunk = (ws, u, off) => off >= stopAt; // everything after is lost with the page
  const first = c1.upload('files', pick()).catch((e) => e);
  await until(() => srv.uploads.get('up_1')?.off === stopAt, 'the first bytes', 5000);
  c1.close();
  assert.equal((await first).code, 'offline');
  assert.equal(JSON.parse(storage.getItem('ferry.uploads')).length, 1, 'the upload is remembered');

  srv.onChunk = null;
  srv.durableStep = chunk;
  const c2 = await inFiles(srv, { storage });
  assert.equal(c2.user, c1.user);
  const pending = await c2.pendingUploads('files');
  assert.deepEqual(pending.map((p) => [p.upload, p.name, p.size, p.received]), [['up_1', 'photo.jpg', size, stopAt]]);
  assert.deepEqual(await c2.pendingUploads('elsewhere'), []);
  const reports = [];
  const file = await c2.upload('files', pick(), { onProgress: (p) => reports.push(p) });
  return { srv, c2, data, file, reports, storage };
}

for (const sz of [
  { size: 20000, chunk: 1000, window: 8000, stopAt: 5000 },
  // Beyond one step of the pass that hashes what an earlier page sent.
  { size: 9 << 20, chunk: 256 << 10, window: 8 << 20, stopAt: 5 << 20 },
]) {
  test(`upload: a reloaded page resumes the same File at the server's offset (${sz.size} bytes, from ${sz.stopAt})`, async () => {
    const { srv, c2, data, file, reports, storage } = await reload(sz);
    assert.equal(file.size, data.length);
    assert.deepEqual(srv.uploads.get('up_1').data, data);
    assert.equal(srv.uploads.size, 1, 'no second upload');
    const opens = srv.frames.filter((f) => f.t === 'upload.open');
    assert.equal(opens.at(-1).resume, 'up_1');
    assert.equal(srv.last.chunkBytes, data.length - sz.stopAt, 'only the missing bytes were sent again');
    assert.equal(srv.finishes.at(-1).sha256, sha(data));
    assert.equal(reports.find((p) => p.status === 'uploading').sent, sz.stopAt);
    assert.equal(reports.at(-1).hashed, data.length);
    // What the first page sent was hashed from the file while the rest went out.
    assert.ok(reports.some((p) => p.status === 'uploading' && p.hashed >= sz.stopAt), 'hashed alongside the chunks');
    assert.equal(storage.getItem('ferry.uploads'), null, 'forgotten once done');
    assert.deepEqual(await c2.pendingUploads(), []);
    c2.close();
  });
}

test('upload: a remembered upload the server no longer has starts over; one it ended too', async () => {
  const srv = new FakeServer({ chunk: 1000 });
  const storage = memoryStorage();
  const c = await inFiles(srv, { storage });
  const data = bytes(3000);
  const m = new UploadMemory(storage);
  const entry = { user: c.user, room: 'files', name: 'photo.jpg', size: 3000, lastModified: 1700000000000, received: 1000, later: true };
  m.put({ ...entry, upload: 'up_gone' });
  assert.equal((await c.pendingUploads('files', { check: false })).length, 1);
  assert.deepEqual(await c.pendingUploads('files'), [], 'the server does not know it');
  assert.equal(m.list().length, 0);

  m.put({ ...entry, upload: 'up_gone' });
  const f = await c.upload('files', fileOf(data));
  assert.equal(f.size, 3000);
  const opens = srv.frames.filter((x) => x.t === 'upload.open');
  assert.deepEqual(opens.map((o) => o.resume), [undefined]);
  assert.deepEqual(srv.uploads.get('up_1').data, data);

  // A resume the server refuses with an "over" code: a new upload too.
  m.put({ ...entry, upload: 'up_1' });
  srv.uploads.set('up_1', { ...srv.uploads.get('up_1'), file: undefined, off: 1000 });
  srv.hooks['upload.open'] = (ws, x) => {
    if (!x.resume) return false;
    srv.push(ws, { t: 'error', id: x.id, code: 'expired', message: 'expired', upload: x.resume });
    return true;
  };
  await c.upload('files', fileOf(data));
  assert.deepEqual(srv.frames.filter((x) => x.t === 'upload.open').slice(1).map((o) => o.resume), ['up_1', undefined]);
  assert.equal(m.list().length, 0);
  c.close();
});

test('upload: resume: false and Blobs are not remembered; cancelUpload forgets', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 2000, durableStep: Infinity });
  const storage = memoryStorage();
  const c = await inFiles(srv, { storage });
  const a = c.upload('files', fileOf(bytes(5000)), { resume: false }).catch((e) => e);
  const b = c.upload('files', new Blob([bytes(5000)]), { name: 'blob.bin' }).catch((e) => e);
  await until(() => srv.chunks >= 4, 'chunks');
  assert.equal(storage.getItem('ferry.uploads'), null);
  c.close();
  await a;
  await b;

  const c2 = await inFiles(srv, { storage });
  const p = c2.upload('files', fileOf(bytes(5000), 'keep.bin')).catch((e) => e);
  await until(() => storage.getItem('ferry.uploads'), 'remembered');
  const id = JSON.parse(storage.getItem('ferry.uploads'))[0].upload;
  assert.deepEqual(await c2.pendingUploads('files'), [], 'not while it runs here');
  c2.close();
  await p;
  const c3 = await inFiles(srv, { storage });
  assert.equal((await c3.pendingUploads('files')).length, 1);
  await c3.cancelUpload(id);
  assert.equal(srv.canceled, id);
  assert.deepEqual(await c3.pendingUploads('files', { check: false }), []);
  c3.forgetToken();
  c3.close();
});

test('upload: busy waits retry_after_ms and opens again; storage_full is final', async () => {
  const srv = new FakeServer({ chunk: 1000 });
  const storage = memoryStorage();
  const c = await inFiles(srv, { storage });
  srv.busy = 2;
  const seen = [];
  const t0 = Date.now();
  const f = await c.upload('files', fileOf(bytes(3000)), { onProgress: (p) => seen.push(`${p.status}:${p.reason}`) });
  assert.equal(f.size, 3000);
  assert.ok(Date.now() - t0 >= 55, 'waited retry_after_ms twice');
  assert.equal(srv.frames.filter((x) => x.t === 'upload.open').length, 3);
  assert.ok(seen.includes('waiting:busy'), seen.join(' '));

  // Full at open.
  srv.hooks['upload.open'] = (ws, x) => { srv.push(ws, { t: 'error', id: x.id, code: 'storage_full', message: 'no room for the file' }); return true; };
  await assert.rejects(c.upload('files', fileOf(bytes(3000), 'big.bin')), (err) => err.code === 'storage_full');
  delete srv.hooks['upload.open'];
  // Full while writing: over, and forgotten.
  srv.onChunk = (ws, u, off) => {
    if (off < 2000) return false;
    srv.push(ws, { t: 'error', code: 'storage_full', message: 'disk full', upload: u.id });
    return true;
  };
  await assert.rejects(c.upload('files', fileOf(bytes(5000), 'big2.bin')), (err) => err.code === 'storage_full');
  assert.equal(storage.getItem('ferry.uploads'), null);
  c.close();
});

test('upload: a chunk answered unknown_upload (paused on the server) resumes it', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 3000, durableStep: 1000 });
  const c = await inFiles(srv);
  const data = bytes(8000);
  let paused = false;
  srv.onChunk = (ws, u, off) => {
    if (off === 4000 && !paused) { paused = true; u.paused = true; srv.push(ws, { t: 'error', code: 'unknown_upload', message: 'paused', upload: u.id }); return true; }
    return false;
  };
  const f = await c.upload('files', new Blob([data]), { name: 'p.bin' });
  assert.equal(f.size, 8000);
  assert.deepEqual(srv.uploads.get('up_1').data, data);
  const opens = srv.frames.filter((x) => x.t === 'upload.open');
  assert.deepEqual(opens.map((o) => o.resume), [undefined, 'up_1']);
  c.close();
});

test('upload: progress tells sent, received, stored, size, rate and eta', async () => {
  const srv = new FakeServer({ chunk: 1000, window: 4000, durableStep: 2000 });
  srv.progressDelay = 15; // the upload takes about a second
  const c = await inFiles(srv);
  const reports = [];
  const size = 200000;
  await c.upload('files', new Blob([bytes(size)]), { name: 'r.bin', onProgress: (p) => reports.push(p) });
  for (const p of reports) {
    assert.ok(p.stored <= p.received && p.received <= p.size && p.sent <= p.size, JSON.stringify(p));
    assert.equal(p.size, size);
    assert.equal(p.loaded, p.sent);
    assert.equal(p.total, p.size);
    assert.equal(p.durable, p.stored);
    assert.equal(p.bytesPerSecond, p.rate);
    if (p.eta !== null) assert.ok(p.status === 'uploading' && p.rate > 0 && p.eta >= 0);
  }
  const moving = reports.filter((p) => p.status === 'uploading' && p.rate > 0);
  assert.ok(moving.length > 0, 'a rate while uploading');
  assert.ok(moving.every((p) => Number.isInteger(p.eta)));
  assert.ok(reports.some((p) => p.received > p.stored), 'received runs ahead of stored');
  const done = reports.at(-1);
  assert.deepEqual([done.status, done.sent, done.received, done.stored, done.rate, done.eta], ['done', size, size, size, 0, null]);
  c.close();
});

// --- the connect-failure probe (docs/web-client.md, "Events") ---

// withFetch runs fn with globalThis.fetch answering as answer(url, init)
// says, and gives the usual refusal back afterwards.
async function withFetch(answer, fn) {
  const saved = globalThis.fetch;
  const calls = [];
  globalThis.fetch = async (url, init) => { calls.push({ url: String(url), ...init }); return answer(url, init); };
  try {
    return await fn(calls);
  } finally {
    globalThis.fetch = saved;
  }
}

// response is a fetch Response as much as _probe reads of one.
const response = (status, body = '', headers = {}, type = 'cors') => ({
  type, status, headers: new Headers(headers), text: async () => body,
});

test('probe: a 403 readable through CORS ends reconnection with forbidden', async () => {
  const srv = new FakeServer();
  srv.refuse = true;
  await withFetch(async () => response(403, 'origin not allowed'), async (calls) => {
    const c = client(srv);
    const events = [];
    c.on('reconnect_attempt', () => events.push('attempt'));
    const failed = new Promise((r) => c.once('reconnect_failed', r));
    c.connect();
    const err = await failed;
    assert.equal(err.code, 'forbidden');
    assert.equal(err.status, 403);
    assert.equal(err.reason, 'origin not allowed');
    assert.equal(c.state, 'offline');
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(srv.sockets.length, 1, 'no socket after the refusal');
    assert.deepEqual(events, []);
    // Another origin (no location in Node): a CORS request without
    // credentials, to the endpoint over http.
    assert.equal(calls[0].mode, 'cors');
    assert.equal(calls[0].credentials, 'omit');
    assert.equal(calls[0].url, 'http://ferry.test/ws');
  });
});

test('probe: a refused token given by the app ends reconnection with unauthorized', async () => {
  const srv = new FakeServer();
  srv.refuse = true;
  await withFetch(async () => response(401, 'bad token'), async (calls) => {
    const c = client(srv, { token: 'tok_bad' });
    const failed = new Promise((r) => c.once('reconnect_failed', r));
    c.connect();
    const err = await failed;
    assert.equal(err.code, 'unauthorized');
    assert.equal(c.state, 'offline');
    assert.match(calls[0].url, /token=tok_bad/);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(srv.sockets.length, 1);
  });
});

test('probe: without CORS headers the answer is opaque and the client keeps trying', async () => {
  const srv = new FakeServer();
  srv.refuse = true;
  await withFetch(async (url, init) => {
    if (init.mode === 'cors') throw new TypeError('Failed to fetch'); // no Access-Control-Allow-Origin
    return response(0, '', {}, 'opaque');
  }, async (calls) => {
    const c = client(srv);
    const errors = [];
    c.on('connect_error', (e) => errors.push(e.code));
    c.connect();
    await until(() => srv.sockets.length >= 3, 'three attempts');
    c.close();
    assert.deepEqual([...new Set(errors)], ['connect_failed'], 'reachable, so not "unreachable"');
    assert.deepEqual(calls.slice(0, 2).map((x) => x.mode), ['cors', 'no-cors']);
  });
});

test('probe: no answer at all is unreachable; Retry-After of a server at its caps is followed', async () => {
  const srv = new FakeServer();
  srv.refuse = true;
  await withFetch(async () => { throw new TypeError('Failed to fetch'); }, async () => {
    const c = client(srv);
    const err = await new Promise((r) => { c.once('connect_error', r); c.connect(); });
    assert.equal(err.code, 'unreachable');
    c.close();
  });
  for (const [status, after] of [[429, '1'], [503, '2']]) {
    await withFetch(async () => response(status, 'at capacity', { 'Retry-After': after }), async () => {
      const c = client(srv);
      const delays = [];
      const schedule = c._scheduleReconnect.bind(c);
      c._scheduleReconnect = (ms) => { delays.push(ms); schedule(ms); };
      c.connect();
      await until(() => delays.length > 0, 'a scheduled attempt');
      c.close();
      assert.equal(delays[0], Number(after) * 1000, `${status}`);
    });
  }
});

// --- the page's formatting and words (format.js, words.js) ---

test('page: sizes, file types and badges in words people use', () => {
  assert.equal(fmtBytes(512), '512 B');
  assert.equal(fmtBytes(1.2 * 1024 * 1024), '1.2 MiB');
  assert.equal(fmtBytes(734003), '717 KiB');
  assert.equal(fmtBytes(1048575), '1.0 MiB');
  assert.equal(fmtBytes(2 * 1024 ** 3), '2.0 GiB');
  assert.equal(fileTypeName('image/jpeg'), 'JPEG image');
  assert.equal(fileTypeName('application/pdf'), 'PDF document');
  assert.equal(fileTypeName('application/octet-stream'), 'File');
  assert.equal(fileTypeName(''), 'File');
  assert.equal(fileTypeName('text/plain; charset=utf-8'), 'Text file');
  assert.equal(fileTypeName('image/x-something'), 'Image');
  assert.equal(fileTypeName('application/vnd.openxmlformats-officedocument.wordprocessingml.document'), 'Word document');
  assert.equal(fileExt('report.pdf', 'application/pdf'), 'PDF');
  assert.equal(fileExt('noext', 'application/octet-stream'), 'FILE');
  assert.equal(fileExt('noext', 'application/pdf'), 'PDF');
});

test('page: avatars: initials, and one colour per user id', () => {
  assert.equal(initials('alice'), 'A');
  assert.equal(initials('Ada Lovelace'), 'AL');
  assert.equal(initials('alice #x7k2'), 'A');
  assert.equal(initials('émile zola'), 'ÉZ');
  assert.equal(initials('  '), '?');
  assert.equal(avatarColor('u_7hx2m0a9c3'), avatarColor('u_7hx2m0a9c3'));
  const used = new Set(Array.from({ length: 200 }, (_, i) => avatarColor('u_' + i)));
  assert.ok(used.size >= AVATAR_COLORS.length - 1, `200 users get ${used.size} colours`);
  for (const c of used) assert.ok(AVATAR_COLORS.includes(c));
});

test('page: grouping of consecutive messages', () => {
  assert.ok(sameGroup({ user: 'u1', ts: 1000 }, { user: 'u1', ts: 1000 + 60000 }));
  assert.ok(!sameGroup({ user: 'u1', ts: 1000 }, { user: 'u2', ts: 2000 }));
  assert.ok(!sameGroup({ user: 'u1', ts: 1000 }, { user: 'u1', ts: 1000 + 6 * 60000 }));
  assert.ok(!sameGroup(null, { user: 'u1', ts: 1 }));
});

test('page: only http and https addresses become links, without the punctuation around them', () => {
  assert.deepEqual(linkParts('see https://example.com/a, then http://x.org/b_(c).'), [
    { text: 'see ' }, { text: 'https://example.com/a', href: 'https://example.com/a' },
    { text: ', then ' }, { text: 'http://x.org/b_(c)', href: 'http://x.org/b_(c)' }, { text: '.' },
  ]);
  assert.deepEqual(linkParts('(https://example.com)'), [
    { text: '(' }, { text: 'https://example.com', href: 'https://example.com/' }, { text: ')' },
  ]);
  for (const t of ['javascript:alert(1)', 'data:text/html,<b>x</b>', 'ftp://example.com', 'https://', '<a href="x">']) {
    assert.ok(linkParts(t).every((p) => !p.href), t);
  }
});

test('page: a room name people type becomes one the server takes', () => {
  assert.equal(roomSuggestion('Design Team'), 'design-team');
  assert.equal(roomSuggestion('  Café  crème!! '), 'cafe-creme');
  assert.equal(roomSuggestion('lobby'), 'lobby');
  assert.equal(roomSuggestion('Lobby'), 'Lobby');
  assert.equal(roomSuggestion('user:bob'), 'user-bob');
  assert.equal(roomSuggestion('private:k3m1x0'), 'private:k3m1x0');
  assert.equal(roomSuggestion('!!!'), '');
  assert.equal(roomSuggestion('日本語'), '');
  assert.equal(roomSuggestion('x'.repeat(70) + ' y').length, 64);
  for (const t of ['Design Team', 'a  b', '--x--', 'Ünïcödé rööm', 'x'.repeat(70) + ' y']) {
    const r = roomSuggestion(t);
    assert.ok(r === '' || validRoom(r), `${t} → ${r}`);
  }
});

test('page: image boxes keep the aspect ratio within bounds', () => {
  assert.deepEqual(fitBox(1600, 1200, 320, 320), { width: 320, height: 240 });
  assert.deepEqual(fitBox(300, 900, 320, 320), { width: 107, height: 320 });
  assert.deepEqual(fitBox(64, 48, 320, 320), { width: 64, height: 48 });
  assert.equal(fitBox(undefined, 10, 320, 320), null);
  assert.equal(fitBox(0, 10, 320, 320), null);
});

test('page: error sentences, with the numbers the server gives', () => {
  assert.equal(sentence('type_mismatch'), "This file's contents don't match its name.");
  assert.equal(sentence('too_large'), 'This file is larger than the server accepts.');
  assert.equal(sentence('too_large', { limits: { max_file_size: 64 * 1024 } }), 'This file is larger than the server accepts (limit 64 KiB).');
  assert.equal(sentence('busy', { retry_after_ms: 2400 }), 'The server is busy. The upload starts in a moment (in about 2 s).');
  assert.equal(sentence('read_failed'), CLIENT_SENTENCES.read_failed);
  assert.equal(sentence('from_a_newer_server'), UNKNOWN_SENTENCE);
  assert.equal(sentence('constructor'), UNKNOWN_SENTENCE);
  for (const [code, s] of Object.entries({ ...SENTENCES, ...CLIENT_SENTENCES })) {
    assert.match(s, /^[A-Z].*\.$/, code);
    assert.doesNotMatch(s, /[a-z]_[a-z]/, code);
  }
});

test('files: pages of a room\'s files, the cursor sent back as it came, errors with codes', async () => {
  const srv = new FakeServer();
  const all = [{ id: 'f_3', name: 'c.txt' }, { id: 'f_2', name: 'b.txt' }, { id: 'f_1', name: 'a.txt' }];
  // As docs/protocol.md: newest first, next is the before of the older page.
  srv.hooks.files = (ws, f) => {
    if (f.room !== 'lobby') srv.push(ws, { t: 'error', id: f.id, code: 'not_member', message: 'not in room' });
    else {
      const from = f.before ? Number(f.before) : 0;
      const files = all.slice(from, from + f.limit);
      srv.push(ws, { t: 'ack', id: f.id, data: { room: f.room, files, ...(from + f.limit < all.length ? { next: String(from + f.limit) } : {}) } });
    }
    return true;
  };
  const c = client(srv);
  c.connect();
  const first = await c.files('lobby', { limit: 2 });
  assert.deepEqual(first, { files: all.slice(0, 2), next: '2' });
  assert.deepEqual(srv.frames.at(-1), { t: 'files', id: srv.frames.at(-1).id, room: 'lobby', limit: 2 });
  const second = await c.files('lobby', { before: first.next, limit: 2 });
  assert.deepEqual(second, { files: all.slice(2), next: '' });
  assert.equal(srv.frames.at(-1).before, '2');
  await assert.rejects(c.files('elsewhere'), (err) => err instanceof FerryError && err.code === 'not_member');
  assert.equal(srv.frames.at(-1).limit, 50);
  c.close();
});
