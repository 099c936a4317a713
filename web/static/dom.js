// The page's elements, a tiny element builder, and what the page keeps in
// localStorage.

export const $ = (sel, root = document) => root.querySelector(sel);

// h builds an element. Text always goes in as text (the text attribute, or
// string children): user content never becomes markup.
export function h(tag, attrs = {}, ...children) {
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

export const store = {
  get(k, d = null) { try { const v = localStorage.getItem(k); return v === null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem(k, JSON.stringify(v)); } catch { /* storage disabled */ } },
  del(k) { try { localStorage.removeItem(k); } catch { /* storage disabled */ } },
};

export const el = {
  connState: $('#conn-state'), reconnect: $('#reconnect'), signOut: $('#sign-out'),
  accountName: $('#account-name'), storageBanner: $('#storage-banner'), connBanner: $('#conn-banner'),
  login: $('#login'), nameForm: $('#name-form'), name: $('#name'), nameError: $('#name-error'),
  tokenBox: $('#token-box'), token: $('#token'),
  app: $('#app'), sidebar: $('#sidebar'), toggleRooms: $('#toggle-rooms'), closeRooms: $('#close-rooms'),
  joinForm: $('#join-form'), roomName: $('#room-name'), roomHint: $('#room-hint'), joinError: $('#join-error'),
  newPrivate: $('#new-private'),
  rooms: $('#rooms'), noRooms: $('#no-rooms'),
  room: $('#room'), roomTitle: $('#room-title'), leave: $('#leave-room'), empty: $('#empty'),
  invite: $('#invite'), invitePanel: $('#invite-panel'), inviteStatus: $('#invite-status'),
  inviteBox: $('#invite-box'), inviteLink: $('#invite-link'), inviteCopy: $('#invite-copy'),
  inviteClose: $('#invite-close'),
  toggleMembers: $('#toggle-members'), memberCount: $('#member-count'),
  membersPanel: $('#members-panel'), members: $('#members'), closeMembers: $('#close-members'), scrim: $('#scrim'),
  roomFiles: $('#room-files'), noFiles: $('#no-files'), olderFiles: $('#older-files'),
  messages: $('#messages'), newBelow: $('#new-below'), uploads: $('#uploads'),
  composer: $('#composer'), message: $('#message'), send: $('#send'),
  attach: $('#attach'), fileInput: $('#file-input'), dropOverlay: $('#drop-overlay'),
  lightbox: $('#lightbox'), lightboxImg: $('#lightbox-img'), lightboxOpen: $('#lightbox-open'),
  confirm: $('#confirm'), confirmTitle: $('#confirm-title'), confirmText: $('#confirm-text'),
  confirmOk: $('#confirm-ok'),
  uploadTemplate: $('#upload-template'),
};

// The page's state shared by its modules: the client, the room shown, and
// every room the page is in (name → {name, list, item, button, badge,
// unread, members, mids, files, roomFiles, filesNext}).
export const S = { client: null, current: null };
export const rooms = new Map();
