// A room's files, listed in the side panel: what the room shares even
// after its announcements left the history (the files request), newest
// first, with links signed when listed.
import { el, h, S, rooms } from './dom.js';
import { fileTypeName, fmtBytes } from './format.js';

const PAGE = 50;

// loadFiles lists a room's newest files anew: after a join, and after each
// reconnection (the server may have restarted; links are signed again).
export async function loadFiles(room) {
  const r = rooms.get(room);
  if (!r || !S.client) return;
  try {
    const { files, next } = await S.client.files(room, { limit: PAGE });
    if (rooms.get(room) !== r) return;
    // Files announced while the listing was on its way stay on top.
    const listed = new Set(files.map((f) => f.id));
    const newest = files.length ? Date.parse(files[0].time) : -Infinity;
    const kept = (r.roomFiles || []).filter((f) => !listed.has(f.id) && Date.parse(f.time) > newest);
    r.roomFiles = [...kept, ...files];
    r.filesNext = next;
  } catch (err) {
    console.warn('ferry: files', room, err.code);
  }
  if (room === S.current) renderFiles();
}

// olderFiles adds the next page of the room shown.
async function olderFiles() {
  const r = S.current && rooms.get(S.current);
  if (!r?.filesNext) return;
  try {
    const { files, next } = await S.client.files(r.name, { before: r.filesNext, limit: PAGE });
    const have = new Set(r.roomFiles.map((f) => f.id));
    r.roomFiles.push(...files.filter((f) => !have.has(f.id)));
    r.filesNext = next;
  } catch (err) {
    console.warn('ferry: files', r.name, err.code);
  }
  if (r.name === S.current) renderFiles();
}

// fileAnnounced puts a file just announced at the top of its room's list.
export function fileAnnounced(room, file) {
  const r = rooms.get(room);
  if (!r || !file?.id) return;
  r.roomFiles ??= [];
  if (r.roomFiles.some((f) => f.id === file.id)) return;
  r.roomFiles.unshift(file);
  if (room === S.current) renderFiles();
}

// renderFiles shows the current room's files.
export function renderFiles() {
  const r = S.current && rooms.get(S.current);
  const files = r?.roomFiles || [];
  el.roomFiles.replaceChildren(...files.map((f) => h('li', { class: 'room-file', 'data-testid': 'room-file', 'data-file-id': f.id },
    h('a', { href: S.client.fileURL(f), target: '_blank', rel: 'noopener noreferrer', text: f.name }),
    h('span', { class: 'member-note', text: `${fileTypeName(f.type)} · ${fmtBytes(f.size)} · ${f.user_name || 'someone'}` }))));
  el.noFiles.hidden = files.length > 0;
  el.olderFiles.hidden = !r?.filesNext;
}

el.olderFiles.addEventListener('click', olderFiles);
