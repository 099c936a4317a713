// Unit tests of static/ferry.js against an in-process fake server speaking
// docs/protocol.md. Run with: node --test web/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Ferry, FerryError, backoffDelay, chunkFrame, SHA256, reconnectable, utf8Length } from './static/ferry.js';

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
        let u = f.resume && this.uploads.get(f.resume);
        if (f.resume && !u) return fail('unknown_upload', 'no such upload');
        if (!u) {
          u = { id: 'up_' + (this.uploads.size + 1), room: f.room, name: f.name, size: f.size, type: f.type, data: new Uint8Array(f.size), off: 0, durable: 0 };
          this.uploads.set(u.id, u);
        }
        u.ws = ws;
        u.off = u.durable;
        return ack({ upload: u.id, offset: u.durable, chunk_size: this.chunkSize, window: this.window, size: u.size });
      }
      case 'upload.chunk':
        return this.chunk(ws, null, f);
      case 'upload.status': {
        const u = this.uploads.get(f.upload);
        if (!u) return fail('unknown_upload', 'no such upload');
        return ack({ upload: u.id, offset: u.durable, durable: u.durable, size: u.size, status: u.file ? 'complete' : 'uploading', file: u.file });
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
    if (!u) return this.push(ws, { t: 'error', code: 'unknown_upload', message: 'no such upload', upload: id });
    if (this.onChunk?.(ws, u, off, payload)) return;
    if (off !== u.off) return this.push(ws, { t: 'error', code: 'bad_offset', message: 'bad offset', upload: id, offset: u.off });
    assert.ok(off + payload.length - u.durable <= this.window, 'client went past the window');
    u.data.set(payload, off);
    u.off = off + payload.length;
    this.chunks = (this.chunks || 0) + 1;
    if (u.off - u.durable >= this.durableStep || u.off === u.size) {
      u.durable = u.off;
      this.push(ws, { t: 'upload.progress', upload: id, offset: u.durable });
    }
    if (u.off === u.size) {
      u.file = { id: 'f_1', room: u.room, name: u.name, size: u.size, type: u.type, sha256: '', user: ws.user, user_name: ws.name, time: new Date().toISOString(), url: `/files/f_1/${u.name}?exp=1&sig=x` };
      this.push(ws, { t: 'upload.done', upload: id, file: u.file });
    }
  }
}

function client(srv, opts = {}) {
  return new Ferry({ url: 'ws://ferry.test/', name: 'alice', storage: memoryStorage(), reconnection: FAST, WebSocket: srv.WebSocket, ...opts });
}

async function connected(c) {
  if (c.state === 'connected' && c._ready) return;
  await new Promise((r) => c.once('connect', r));
}

const bytes = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);

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
  assert.deepEqual(await joined, [{ user: 'u_1', name: 'alice', connections: 1 }]);
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
      step = 3;
      srv.push(ws, { t: 'error', code: 'storage_unavailable', message: 'storage is down', upload: u.id });
      return true;
    }
    return false;
  };
  const t0 = Date.now();
  const file = await c.upload('files', new Blob([data]), { name: 'c.bin' });
  // Recovering takes the storage pause (1 s), not the stall timeout (15 s).
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  assert.equal(step, 3);
  assert.equal(file.size, 20000);
  assert.deepEqual(srv.uploads.get('up_1').data, data);
  const opens = srv.frames.filter((f) => f.t === 'upload.open');
  assert.equal(opens.length, 3);
  assert.equal(opens[1].resume, 'up_1');
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
