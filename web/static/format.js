// How the page words and shapes things: sizes, times, file types, avatars,
// links, room names, image boxes. Pure functions without the DOM, so that
// web/ferry_test.mjs tests them in Node.

// Room names (docs/protocol.md, rooms/names.go).
export const ROOM_RE = /^[A-Za-z0-9._:@-]{1,64}$/;
export const PRIVATE_PREFIX = 'private:';

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
export const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function fmtTime(ms, now = Date.now()) {
  const d = new Date(ms);
  return new Date(now).toDateString() === d.toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

// Sizes, transfers and speeds all in binary units (KiB, MiB, ...), so that
// they add up wherever they are shown; two or three significant digits,
// as people say them ("1.2 MiB", "734 KiB").
export function fmtBytes(n) {
  if (!(n >= 0)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  if (i > 0 && n >= 1023.5 && i < units.length - 1) { n /= 1024; i++; } // "1.0 MiB", not "1024 KiB"
  return (i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

export function fmtDuration(s) {
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  return m ? `${h} h ${m} min` : `${h} h`;
}

// How long an invite stays valid, from its expiry (ms since the epoch, the
// server's clock): "valid 7 days", "valid 5 hours", "valid 20 min".
export function fmtValidity(expires, now = Date.now()) {
  const s = (expires - now) / 1000;
  if (!(s > 0)) return '';
  if (s >= 1.5 * 86400) return `valid ${Math.round(s / 86400)} days`;
  if (s >= 1.5 * 3600) return `valid ${Math.round(s / 3600)} hours`;
  return `valid ${fmtDuration(s)}`;
}

// --- file types ---

const TYPE_NAMES = {
  'image/jpeg': 'JPEG image',
  'image/png': 'PNG image',
  'image/gif': 'GIF image',
  'image/webp': 'WebP image',
  'image/avif': 'AVIF image',
  'image/bmp': 'BMP image',
  'image/heic': 'HEIC image',
  'image/tiff': 'TIFF image',
  'image/svg+xml': 'SVG image',
  'application/pdf': 'PDF document',
  'application/zip': 'ZIP archive',
  'application/x-zip-compressed': 'ZIP archive',
  'application/gzip': 'GZIP archive',
  'application/x-gzip': 'GZIP archive',
  'application/x-tar': 'TAR archive',
  'application/x-7z-compressed': '7-Zip archive',
  'application/vnd.rar': 'RAR archive',
  'application/x-rar-compressed': 'RAR archive',
  'application/x-bzip2': 'BZIP2 archive',
  'application/x-xz': 'XZ archive',
  'application/json': 'JSON data',
  'application/xml': 'XML data',
  'application/rtf': 'RTF document',
  'application/epub+zip': 'EPUB book',
  'application/msword': 'Word document',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': 'Word document',
  'application/vnd.ms-excel': 'Excel spreadsheet',
  'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet': 'Excel spreadsheet',
  'application/vnd.ms-powerpoint': 'PowerPoint presentation',
  'application/vnd.openxmlformats-officedocument.presentationml.presentation': 'PowerPoint presentation',
  'application/vnd.oasis.opendocument.text': 'OpenDocument text',
  'application/vnd.oasis.opendocument.spreadsheet': 'OpenDocument spreadsheet',
  'application/vnd.oasis.opendocument.presentation': 'OpenDocument presentation',
  'text/plain': 'Text file',
  'text/markdown': 'Markdown text',
  'text/csv': 'CSV table',
  'text/html': 'HTML page',
  'text/calendar': 'Calendar event',
  'text/vcard': 'Contact card',
  'audio/mpeg': 'MP3 audio',
  'audio/mp4': 'M4A audio',
  'audio/aac': 'AAC audio',
  'audio/ogg': 'Ogg audio',
  'audio/opus': 'Opus audio',
  'audio/wav': 'WAV audio',
  'audio/x-wav': 'WAV audio',
  'audio/flac': 'FLAC audio',
  'audio/webm': 'WebM audio',
  'video/mp4': 'MP4 video',
  'video/webm': 'WebM video',
  'video/quicktime': 'QuickTime video',
  'video/x-matroska': 'MKV video',
  'video/ogg': 'Ogg video',
};
const FAMILY_NAMES = { image: 'Image', audio: 'Audio', video: 'Video', text: 'Text file', font: 'Font' };

// fileTypeName says what a file is in words people use ("JPEG image",
// "PDF document"); a type the server could not tell is just a "File".
export function fileTypeName(type) {
  const t = String(type || '').toLowerCase().split(';')[0].trim();
  return TYPE_NAMES[t] || FAMILY_NAMES[t.split('/')[0]] || 'File';
}

// fileExt is the badge of a file card: its name's extension ("PDF"), else
// its type's ("FILE" when neither says anything).
export function fileExt(name, type) {
  const ext = /\.([A-Za-z0-9]{1,5})$/.exec(name || '')?.[1];
  if (ext) return ext.toUpperCase();
  const sub = String(type || '').split('/')[1]?.replace(/^(x-|vnd\.)/, '').replace(/[^a-z0-9].*$/i, '');
  return sub && sub !== 'octet' ? sub.slice(0, 4).toUpperCase() : 'FILE';
}

// fitBox is the size at which an image of w×h pixels is shown, within
// maxW×maxH and never larger than itself; null when w or h is not a size.
export function fitBox(w, h, maxW, maxH) {
  if (!(Number.isFinite(w) && Number.isFinite(h) && w > 0 && h > 0)) return null;
  const scale = Math.min(1, maxW / w, maxH / h);
  return { width: Math.max(1, Math.round(w * scale)), height: Math.max(1, Math.round(h * scale)) };
}

// --- people ---

// Avatar backgrounds, each with white initials at 4.5:1 or more (WCAG AA).
export const AVATAR_COLORS = [
  '#b91c1c', '#c2410c', '#a16207', '#15803d', '#0f766e', '#0369a1',
  '#1d4ed8', '#6d28d9', '#a21caf', '#be185d', '#4d7c0f', '#475569',
];

// avatarColor gives a user the same colour on every page and every device:
// a hash (FNV-1a) of the user id, not of the name people can change.
export function avatarColor(user) {
  let x = 0x811c9dc5;
  for (const c of String(user || '')) {
    x ^= c.codePointAt(0);
    x = Math.imul(x, 0x01000193) >>> 0;
  }
  return AVATAR_COLORS[x % AVATAR_COLORS.length];
}

// initials are the first letters of the first two words of a name, without
// the " #x7k2" the server adds to tell two people of the same name apart.
export function initials(name) {
  const words = String(name || '').replace(/\s+#[A-Za-z0-9]{1,8}$/, '').split(/[\s._-]+/u)
    .map((w) => w.replace(/^[^\p{L}\p{N}]+/u, '')).filter(Boolean);
  const first = (w) => Array.from(w)[0] || '';
  const s = words.length >= 2 ? first(words[0]) + first(words[1]) : first(words[0] || '');
  return s.toUpperCase() || '?';
}

// GROUP_MS: consecutive messages of one person within this time share one
// header (name and avatar).
export const GROUP_MS = 5 * 60 * 1000;

export function sameGroup(prev, next) {
  return !!prev && !!next && !!prev.user && prev.user === next.user && next.ts - prev.ts >= 0 && next.ts - prev.ts < GROUP_MS;
}

// --- links ---

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

// linkParts splits a message's text into plain parts and links: [{text}]
// and [{text, href}]. Only http and https addresses become links; the
// punctuation that ends a sentence stays out of them.
export function linkParts(text) {
  const out = [];
  let last = 0;
  for (const m of String(text).matchAll(URL_RE)) {
    let url = m[0];
    // Trailing punctuation belongs to the sentence, and a closing bracket
    // to the text unless the address opened one.
    for (;;) {
      const c = url.at(-1);
      if (/[.,;:!?'"*]/.test(c)) url = url.slice(0, -1);
      else if (c === ')' && count(url, '(') < count(url, ')')) url = url.slice(0, -1);
      else if (c === ']' && count(url, '[') < count(url, ']')) url = url.slice(0, -1);
      else break;
    }
    let href = null;
    try {
      const u = new URL(url);
      if ((u.protocol === 'http:' || u.protocol === 'https:') && u.hostname) href = u.href;
    } catch { /* not an address after all */ }
    if (!href) continue;
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ text: url, href });
    last = m.index + url.length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

function count(s, c) { return s.split(c).length - 1; }

// --- rooms ---

export const isPrivate = (room) => typeof room === 'string' && room.startsWith(PRIVATE_PREFIX);

// roomLabel is what the page calls a room. A private room's name is random:
// it is shown as "Private room" and the start of that name, enough to tell
// two apart (the same for everyone in it).
export function roomLabel(room) {
  return isPrivate(room) ? `Private room ${room.slice(PRIVATE_PREFIX.length, PRIVATE_PREFIX.length + 4)}` : room;
}

export function validRoom(name) {
  return ROOM_RE.test(name) && !/^(conn|user):/.test(name);
}

// roomSuggestion turns what a person typed into a room name the server
// takes: a valid name as it is; otherwise lower case, accents dropped, and
// runs of anything else as one "-" ("Design Team" → "design-team"). It
// returns '' when nothing is left.
export function roomSuggestion(typed) {
  const s = String(typed || '').trim();
  if (validRoom(s)) return s;
  let r = s.normalize('NFKD').replace(/\p{M}+/gu, '').toLowerCase()
    .replace(/^(conn|user):/, '$1-')
    .replace(/[^a-z0-9._:@-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '');
  r = r.slice(0, 64).replace(/[-.]+$/, '');
  return validRoom(r) ? r : '';
}
