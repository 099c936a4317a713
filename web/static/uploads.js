// Uploads: their rows (progress, speed, a friendly sentence when refused),
// the unfinished uploads of earlier pages, the storage banner, and the ways
// to share a file (Attach, drop, paste).
import { el, h, S, rooms } from './dom.js';
import { fmtBytes, fmtDuration, roomLabel } from './format.js';
import { addFile } from './messages.js';
import { sentence } from './words.js';

const uploads = new Set(); // {room, li, ctl, id, reason}
// Unfinished uploads of earlier pages (ferry.js remembers them): upload id →
// {room, li, entry}. Picking the same file again resumes one.
export const pendingRows = new Map();

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
    note = WAITING_TEXT[p.reason] || (S.client?.state === 'connected' ? 'paused, retrying…' : 'waiting for the connection…');
  }
  if (note) text += ` · ${note}`;
  const speed = p.rate > 0 ? `${fmtBytes(p.rate)}/s` + (p.eta !== null ? ` · ${fmtDuration(p.eta)} left` : '') : '';
  return { text, speed };
}

// failureText is a refused upload's sentence, with the server's numbers.
export function failureText(err) {
  return sentence(err.code, { limits: S.client?.limits, retry_after_ms: err.retry_after_ms });
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

export function startUpload(room, file) {
  const c = S.client;
  if (!room || !c) return;
  const ctl = new AbortController();
  const li = uploadRow(room, file.name, file.size);
  const bar = li.querySelector('.progress');
  const status = li.querySelector('.upload-status');
  const speed = li.querySelector('.speed');
  const cancel = li.querySelector('.cancel');
  li.dataset.state = 'queued';
  status.textContent = 'queued';
  cancel.setAttribute('aria-label', `Cancel upload of ${file.name}`);
  const u = { room, li, ctl, id: null, reason: '' };
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
    if (u.reason !== li.dataset.reason) {
      u.reason = li.dataset.reason;
      renderStorageBanner();
    }
  };
  const finish = () => { uploads.delete(u); renderUploads(); renderStorageBanner(); };
  cancel.addEventListener('click', () => ctl.abort());
  c.upload(room, file, { onProgress, signal: ctl.signal }).then((f) => {
    li.dataset.state = 'done';
    bar.value = bar.max;
    status.textContent = `${fmtBytes(file.size)} · done`;
    speed.textContent = '';
    cancel.hidden = true;
    u.reason = '';
    renderStorageBanner();
    addFile(room, f, { ts: Date.now(), local: true });
    setTimeout(() => { li.remove(); finish(); }, 1500);
  }, (err) => {
    if (err.code === 'canceled') { li.remove(); finish(); return; }
    u.reason = '';
    li.dataset.state = 'failed';
    li.dataset.reason = err.code || '';
    speed.textContent = '';
    status.textContent = failureText(err);
    status.setAttribute('role', 'alert');
    cancel.textContent = 'Dismiss';
    cancel.setAttribute('aria-label', `Dismiss failed upload of ${file.name}`);
    cancel.addEventListener('click', () => { li.remove(); finish(); }, { once: true });
    u.dismiss = () => { li.remove(); uploads.delete(u); };
    renderUploads();
    renderStorageBanner();
  });
}

// PENDING_RECHECK_MS is when the unfinished uploads of a room are listed
// again after joining it (see joinRoom).
export const PENDING_RECHECK_MS = 2000;

// showPending lists the unfinished uploads of earlier pages for a room, with
// a way to resume them (pick the file again) or drop them.
export async function showPending(room) {
  let list;
  try {
    list = await S.client.pendingUploads(room);
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
      S.client?.cancelUpload(e.upload).catch(() => { /* gone already, or offline: it expires */ });
      (el.attach.disabled ? el.message : el.attach).focus();
    });
    const pick = h('button', {
      type: 'button', class: 'pick', 'data-testid': 'pending-pick', text: 'Pick file…',
      onclick: () => {
        if (S.current !== room) onPickForRoom(room);
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

// onPickForRoom is how a pending row of another room shows its room before
// the file picker opens (app.js sets it to selectRoom).
let onPickForRoom = () => {};
export function setRoomSelector(fn) { onPickForRoom = fn; }

export function dropPending(id) {
  const r = pendingRows.get(id);
  if (!r) return;
  r.li.remove();
  pendingRows.delete(id);
  renderUploads();
}

// dropRoomUploads forgets the rows of unfinished uploads of a room left.
export function dropRoomUploads(room) {
  for (const [id, p] of pendingRows) if (p.room === room) dropPending(id);
}

// clearUploads empties the list (signing out).
export function clearUploads() {
  for (const u of uploads) u.ctl.abort();
  uploads.clear();
  pendingRows.clear();
  el.uploads.replaceChildren();
  renderUploads();
  renderStorageBanner();
}

// The bar over several refused uploads: one button dismisses them all.
const failedBar = h('li', { class: 'uploads-bar', 'data-testid': 'uploads-bar' },
  h('span', { class: 'uploads-bar-text' }),
  h('button', {
    type: 'button', class: 'dismiss-all', 'data-testid': 'dismiss-all', text: 'Dismiss all',
    onclick: () => {
      for (const u of [...uploads]) u.dismiss?.();
      renderUploads();
      (el.attach.disabled ? el.message : el.attach).focus();
    },
  }));

export function renderUploads() {
  for (const u of uploads) u.li.classList.toggle('other-room', u.room !== S.current);
  for (const r of pendingRows.values()) r.li.classList.toggle('other-room', r.room !== S.current);
  const failed = [...uploads].filter((u) => u.dismiss).length;
  if (failed >= 2) {
    failedBar.querySelector('.uploads-bar-text').textContent = `${failed} files could not be shared`;
    if (el.uploads.firstElementChild !== failedBar) el.uploads.prepend(failedBar);
  } else {
    failedBar.remove();
  }
  el.uploads.hidden = uploads.size === 0 && pendingRows.size === 0;
}

// --- the storage banner ---
//
// While an upload waits because the server's storage does not answer, the
// page says so once, above everything, rather than in each row; it goes
// when the uploads move again. Meanwhile the page asks /readyz now and then
// (docs/protocol.md, "Health"), to tell a full storage from an absent one.

const READY_POLL_MS = 5000;
let readyTimer = null;

export function renderStorageBanner() {
  const waiting = [...uploads].some((u) => u.reason === 'storage_unavailable');
  if (waiting && el.storageBanner.hidden) {
    el.storageBanner.dataset.storage = 'down';
    el.storageBanner.textContent = 'File storage is not reachable — uploads are paused and will resume';
  }
  el.storageBanner.hidden = !waiting;
  if (waiting && !readyTimer) {
    readyTimer = setInterval(pollReady, READY_POLL_MS);
  } else if (!waiting && readyTimer) {
    clearInterval(readyTimer);
    readyTimer = null;
  }
}

async function pollReady() {
  if (!S.client) return;
  let st = null;
  try {
    const u = new URL(S.client.fileURL('/readyz'));
    const res = await fetch(u, { cache: 'no-store' });
    st = await res.json();
  } catch { return; /* the server itself is away: the connection state says it */ }
  if (el.storageBanner.hidden || !st) return;
  el.storageBanner.dataset.storage = st.storage || '';
  el.storageBanner.textContent = st.storage === 'full'
    ? 'File storage is full — uploads are paused until space is freed'
    : st.storage === 'ok'
      ? 'File storage is back — uploads are resuming'
      : 'File storage is not reachable — uploads are paused and will resume';
}

// --- sharing ---

export function shareFiles(files) {
  if (!S.current) return;
  for (const f of files) startUpload(S.current, f);
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
  if (!hasFiles(e) || !S.current) return;
  e.preventDefault();
  dragDepth++;
  el.dropOverlay.hidden = false;
  el.dropOverlay.textContent = `Drop files to share them in ${roomLabel(S.current)}`;
});
el.room.addEventListener('dragover', (e) => {
  if (!hasFiles(e) || !S.current) return;
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
  if (!S.current || el.app.hidden) return;
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
