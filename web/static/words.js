// What the page says about an error: one plain sentence per code.
import { fmtBytes } from './format.js';

// SENTENCES is protocol/words.go's table, code for code and word for word
// (web/web_test.go parses this object and compares): keep it valid JSON.
export const SENTENCES = Object.freeze({
  "bad_frame": "The app sent something the server could not read. Reload the page and try again.",
  "unknown_type": "The server does not know this request. The app may not match the server's version: reload it.",
  "frame_too_large": "This message is too long for the server. Send it in shorter parts.",
  "invalid_room": "Room names use letters, digits and . _ - : @ only, up to 64 characters.",
  "invalid_event": "The app sent a kind of message the server does not accept.",
  "invalid_target": "The app did not say who the message is for.",
  "not_member": "You are not in this room any more. Join it again to go on.",
  "unknown_room": "This room does not exist.",
  "unknown_target": "That person is not connected right now.",
  "too_many_rooms": "You are in too many rooms at once. Leave one to join another.",
  "rate_limited": "You are sending too fast. Wait a moment and try again.",
  "over_quota": "You have sent more than the server keeps for one person. Try again later.",
  "internal": "Something went wrong on the server. Try again; if it keeps happening, tell whoever runs it.",
  "not_implemented": "The server cannot do this yet.",
  "bad_chunk": "Part of the file was damaged on the way. It is sent again.",
  "bad_offset": "The upload lost its place. It goes on from where the server stands.",
  "too_large": "This file is larger than the server accepts.",
  "beyond_size": "The file grew while it was being sent. Pick it again.",
  "unknown_upload": "The server no longer has this upload. Pick the file again to start over.",
  "forbidden": "You are not allowed to do that here.",
  "bad_name": "The server does not accept this file's name. Rename the file and try again.",
  "bad_request": "The server did not understand this request. Reload the page and try again.",
  "type_refused": "Programs and scripts cannot be shared here.",
  "type_mismatch": "This file's contents don't match its name.",
  "checksum_mismatch": "The file changed while it was being sent. Pick it again.",
  "too_many_uploads": "Too many uploads are running at once. Wait for some to finish and try again.",
  "window_exceeded": "The upload is sending faster than the server stores. It slows down by itself.",
  "storage_unavailable": "File storage is not reachable. Uploads are paused and will resume.",
  "canceled": "The upload was canceled.",
  "not_found": "This file is no longer available.",
  "expired": "This upload was left unfinished for too long. Pick the file again to start over.",
  "storage_full": "The server has no room left for this file. Try again once space is freed.",
  "busy": "The server is busy. The upload starts in a moment."
});

// UNKNOWN_SENTENCE is what protocol.Sentence says for a code it does not know.
export const UNKNOWN_SENTENCE = 'Something went wrong. Try again.';

// The codes ferry.js makes up itself (docs/web-client.md).
export const CLIENT_SENTENCES = Object.freeze({
  read_failed: 'This file could not be read any more. Pick it again.',
  disconnected: 'The connection was lost. It is sent again once you are back online.',
  offline: 'You are offline.',
  timeout: 'The server did not answer in time. Try again.',
  queue_full: 'Too much is waiting to be sent. Wait until you are back online.',
  connect_failed: 'Could not connect to the server.',
  unreachable: 'The server cannot be reached. Check your connection.',
  unauthorized: 'The server did not accept your access token.',
  reconnect_failed: 'Could not reconnect to the server.',
  failed: UNKNOWN_SENTENCE,
});

// Numbers the protocol gives for some codes, added to their sentence when
// the page knows them: facts = {limits (the welcome frame's), retry_after_ms}.
const DETAILS = {
  too_large: (f) => f.limits?.max_file_size > 0 && `limit ${fmtBytes(f.limits.max_file_size)}`,
  frame_too_large: (f) => f.limits?.max_frame > 0 && `limit ${fmtBytes(f.limits.max_frame)}`,
  too_many_rooms: (f) => f.limits?.max_rooms > 0 && `at most ${f.limits.max_rooms}`,
  too_many_uploads: (f) => f.limits?.max_uploads > 0 && `at most ${f.limits.max_uploads} at once`,
  busy: (f) => f.retry_after_ms > 0 && `in about ${Math.max(1, Math.round(f.retry_after_ms / 1000))} s`,
};

// sentence says what an error code means, with the numbers the page knows
// ("This file is larger than the server accepts (limit 2.0 GiB).").
export function sentence(code, facts = {}) {
  const s = Object.hasOwn(SENTENCES, code) ? SENTENCES[code]
    : Object.hasOwn(CLIENT_SENTENCES, code) ? CLIENT_SENTENCES[code] : UNKNOWN_SENTENCE;
  const detail = Object.hasOwn(DETAILS, code) && DETAILS[code](facts);
  return detail ? s.replace(/\.$/, ` (${detail}).`) : s;
}
