// app.js: the Parley chat page. It drives the DOM of index.html with the
// protocol client in parley.js. User data (names, room names, message
// bodies) only ever reaches the page through textContent and attributes.
//
// Stored in localStorage: parley.identity ({user} or {token}), parley.device,
// parley.rooms (the rooms joined) and parley.room (the one open).
// URL: #room opens (and joins) a room; ?device=name names this device
// (default: phone, tablet or browser, from the user agent).

import { ParleyClient, roomNameError } from './parley.js';

const $ = (id) => document.getElementById(id);
const MAX_BODY = 4096;
const PAGE = 50; // messages per history request
const DEFAULT_ROOM = 'lobby';

const store = {
  get(key, fallback) {
    try {
      const v = localStorage.getItem('parley.' + key);
      return v === null ? fallback : JSON.parse(v);
    } catch {
      return fallback;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem('parley.' + key, JSON.stringify(value));
    } catch {
      // storage full or disabled: the page still works, it just forgets
    }
  },
  del(key) {
    try {
      localStorage.removeItem('parley.' + key);
    } catch {
      // ignore
    }
  },
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function show(e, on) {
  e.hidden = !on;
}

function deviceName() {
  const q = new URLSearchParams(location.search).get('device');
  if (q) return q.slice(0, 64);
  let d = store.get('device', '');
  if (!d) {
    // A label for people, not an identifier: the kind of device.
    const ua = navigator.userAgent;
    d = /iPad|Tablet/i.test(ua) ? 'tablet' : /Mobi|Android|iPhone/i.test(ua) ? 'phone' : 'browser';
    store.set('device', d);
  }
  return d;
}

function fmtTime(ts) {
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return '';
  const t = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  if (d.toDateString() === new Date().toDateString()) return t;
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + t;
}

const bytes = (s) => new TextEncoder().encode(s).length;

// ---- state ----

let client = null;
let me = ''; // the user name the server knows us by
const rooms = new Map(); // name -> room view state
let current = '';

const ui = {
  login: $('login-view'),
  chat: $('chat-view'),
  messages: $('messages'),
  logs: $('logs'),
  composer: $('composer'),
  badge: $('badge'),
};

// ---- sign in ----

function showLogin(error) {
  show(ui.chat, false);
  show(ui.login, true);
  const ident = store.get('identity', null);
  if (ident && ident.user) $('login-name').value = ident.user;
  show($('login-error'), !!error);
  $('login-error').textContent = error || '';
  $('login-name').focus();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const user = $('login-name').value.trim();
  const token = $('login-token').value.trim();
  let err = '';
  if (!token) {
    if (!user) err = 'Enter a name, or a token.';
    else if (!/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/.test(user)) {
      err = 'Names are 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit.';
    }
  }
  if (err) {
    show($('login-error'), true);
    $('login-error').textContent = err;
    return;
  }
  const ident = token ? { token } : { user };
  store.set('identity', ident);
  startChat(ident);
});

$('signout').addEventListener('click', () => {
  if (client) client.close();
  store.del('identity');
  store.del('rooms');
  store.del('room');
  location.hash = '';
  location.reload();
});

// ---- chat ----

function startChat(ident) {
  show(ui.login, false);
  show(ui.chat, true);
  me = ident.user || '';
  $('me').textContent = me || '…';
  client = new ParleyClient({ user: ident.user, token: ident.token, device: deviceName() });
  client.addEventListener('state', (e) => setBadge(e.detail.state));
  client.addEventListener('welcome', (e) => {
    me = e.detail.user;
    $('me').textContent = me;
    $('node').textContent = e.detail.node || '?';
    updateOlder();
  });
  client.addEventListener('joined', (e) => onJoined(e.detail));
  client.addEventListener('message', (e) => onMessage(e.detail));
  client.addEventListener('fatal', (e) => {
    store.del('identity');
    teardown();
    showLogin('Signed out: ' + e.detail.reason);
  });
  client.connect();

  let names = store.get('rooms', null);
  if (!Array.isArray(names) || names.length === 0) names = [DEFAULT_ROOM];
  const fromHash = decodeURIComponent(location.hash.slice(1));
  if (fromHash && !roomNameError(fromHash) && !names.includes(fromHash)) names.push(fromHash);
  for (const n of names) if (!roomNameError(n)) openRoom(n);
  const want = fromHash && rooms.has(fromHash) ? fromHash : store.get('room', '');
  selectRoom(rooms.has(want) ? want : rooms.keys().next().value || '');
}

function teardown() {
  if (client) client.close();
  client = null;
  rooms.clear();
  ui.logs.replaceChildren();
  $('room-list').replaceChildren();
  current = '';
}

function setBadge(state) {
  const words = {
    idle: 'starting',
    connecting: 'connecting…',
    connected: 'connected',
    reconnecting: 'reconnecting…',
    offline: 'offline',
  };
  ui.badge.dataset.state = state;
  ui.badge.textContent = words[state] || state;
  ui.badge.title = state === 'offline' ? 'Offline: click to reconnect' : 'Connection';
  updateOlder();
}

ui.badge.addEventListener('click', () => {
  if (client && client.state === 'offline') client.connect();
});

function saveRooms() {
  store.set('rooms', [...rooms.keys()]);
}

/** Creates the view of a room and joins it. */
function openRoom(name) {
  if (rooms.has(name)) return rooms.get(name);
  const log = el('div', 'room-log');
  log.dataset.room = name;
  log.hidden = true;
  ui.logs.append(log);

  const li = el('li');
  li.dataset.room = name;
  const btn = el('button', 'room-name', '# ' + name);
  btn.type = 'button';
  btn.addEventListener('click', () => selectRoom(name));
  const count = el('span', 'count');
  count.hidden = true;
  const leave = el('button', 'leave', '\u00d7');
  leave.type = 'button';
  leave.title = 'Leave ' + name;
  leave.setAttribute('aria-label', 'Leave ' + name);
  leave.addEventListener('click', () => leaveRoom(name));
  li.append(btn, count, leave);
  $('room-list').append(li);

  const r = {
    name,
    log,
    li,
    count,
    bySeq: new Map(), // seq -> element
    mine: new Map(), // id -> element, own sends from this page
    epoch: undefined,
    first: 0,
    head: 0,
    joined: false,
    noMore: false,
    loading: false,
    unread: 0,
    recovery: '',
  };
  rooms.set(name, r);
  saveRooms();
  client.join(name).catch((err) => {
    showRoomError(`Could not join ${name}: ${err.message}`);
    leaveRoom(name);
  });
  return r;
}

function leaveRoom(name) {
  const r = rooms.get(name);
  if (!r) return;
  rooms.delete(name);
  saveRooms();
  r.log.remove();
  r.li.remove();
  if (client) client.leave(name).catch(() => {});
  if (current === name) selectRoom(rooms.keys().next().value || '');
  updateUnreadTotal();
}

function selectRoom(name) {
  current = name;
  const r = rooms.get(name);
  for (const x of rooms.values()) {
    x.log.hidden = x !== r;
    x.li.classList.toggle('current', x === r);
    x.li.querySelector('.room-name').setAttribute('aria-current', x === r ? 'true' : 'false');
  }
  $('room-title').textContent = r ? '# ' + name : 'No room';
  ui.composer.disabled = !r;
  $('send').disabled = !r;
  ui.composer.placeholder = r ? 'Message #' + name : 'Join a room to chat';
  if (r) {
    store.set('room', name);
    history.replaceState(null, '', location.pathname + location.search + '#' + encodeURIComponent(name));
    r.unread = 0;
    updateCount(r);
  }
  updateRecovery();
  updateOlder();
  closeSidebar();
  scrollToBottom();
}

function showRoomError(text) {
  show($('room-error'), !!text);
  $('room-error').textContent = text;
}

$('room-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('room-input').value.trim();
  const err = roomNameError(name);
  if (err) {
    showRoomError(err);
    return;
  }
  showRoomError('');
  $('room-input').value = '';
  openRoom(name);
  selectRoom(name);
});
$('room-input').addEventListener('input', () => showRoomError(''));

function updateCount(r) {
  r.count.textContent = String(r.unread);
  r.count.hidden = r.unread === 0;
  updateUnreadTotal();
}

function updateUnreadTotal() {
  let n = 0;
  for (const r of rooms.values()) n += r.unread;
  $('unread-total').textContent = String(n);
  $('unread-total').hidden = n === 0;
  document.title = n ? `(${n}) Parley` : 'Parley';
}

// ---- messages ----

function atBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function renderMessage(m, pending) {
  const div = el('div', 'msg');
  div.dataset.room = m.room;
  div.dataset.id = m.id;
  div.dataset.from = m.from;
  if (!pending) div.dataset.seq = String(m.seq);
  if (m.from === me) div.classList.add('mine');
  div.classList.add(pending ? 'pending' : 'sent');

  const meta = el('div', 'meta');
  meta.append(el('span', 'from', m.from));
  if (m.device) meta.append(el('span', 'device', m.device));
  const time = el('time', 'time', fmtTime(m.ts));
  time.dateTime = m.ts;
  time.title = new Date(m.ts).toLocaleString();
  meta.append(time);
  const state = el('span', 'state', pending ? 'sending…' : '');
  meta.append(state);
  div.append(meta, el('div', 'body', m.body));
  div.ts = Date.parse(m.ts) || 0;
  return div;
}

/** Whether b continues a run of messages by the same sender. */
function continues(a, b) {
  return (
    a && b && a.classList.contains('msg') && b.classList.contains('msg') &&
    a.dataset.from === b.dataset.from && Math.abs(b.ts - a.ts) < 5 * 60 * 1000
  );
}

function regroup(e) {
  for (const x of [e, e.nextElementSibling]) {
    if (x && x.classList.contains('msg')) x.classList.toggle('cont', continues(x.previousElementSibling, x));
  }
}

/** Puts a message element with seq in order among the room's confirmed ones;
 * pending lines stay at the bottom. */
function place(r, e, seq) {
  for (let c = r.log.lastElementChild; c; c = c.previousElementSibling) {
    if (c === e) continue;
    const pos = c.dataset.seq ?? c.dataset.pos; // gap markers have a pos
    if (pos !== undefined && Number(pos) < seq) {
      c.after(e);
      regroup(e);
      return;
    }
  }
  r.log.prepend(e);
  regroup(e);
}

function confirm(r, e, seq) {
  e.dataset.seq = String(seq);
  r.bySeq.set(seq, e);
  place(r, e, seq);
}

function onJoined(j) {
  const r = rooms.get(j.room);
  if (!r) return;
  if (j.epochChanged) {
    // The server lost this room: its old seqs mean nothing any more.
    for (const e of r.bySeq.values()) e.remove();
    r.bySeq.clear();
    r.noMore = false;
  }
  r.epoch = j.epoch;
  r.first = j.first;
  r.head = j.seq;
  r.joined = true;
  if (j.recovered === false) {
    r.recovery = j.epochChanged || (j.first <= 1 && j.resumed)
      ? `The server lost the history of #${r.name}; earlier messages are gone.`
      : `Some messages in #${r.name} could not be recovered: they are older than the history the server keeps.`;
    const gap = el('div', 'gap', 'some messages may be missing here');
    gap.dataset.pos = String(Math.max(j.first, 1) - 0.5);
    place(r, gap, Math.max(j.first, 1) - 0.5);
  }
  if (j.room === current) {
    updateRecovery();
    updateOlder();
  }
}

function onMessage(m) {
  const r = rooms.get(m.room);
  if (!r || r.bySeq.has(m.seq)) return;
  const stick = m.room === current && atBottom();
  const own = m.from === me ? r.mine.get(m.id) : undefined;
  if (own && own.dataset.seq === undefined) {
    confirm(r, own, m.seq); // stays .pending until its ack
  } else {
    confirm(r, renderMessage(m, false), m.seq);
    if (m.room !== current || document.hidden) {
      r.unread += 1;
      updateCount(r);
    }
  }
  if (m.room === current) {
    if (stick) scrollToBottom();
    updateOlder();
  }
}

function onAck(room, ack) {
  const r = rooms.get(room);
  if (!r) return;
  const e = r.mine.get(ack.id);
  if (!e) return;
  r.mine.delete(ack.id);
  if (e.dataset.seq === undefined) {
    const dup = r.bySeq.get(ack.seq);
    if (dup && dup !== e) {
      e.remove(); // shown already (not joined under this id); keep one line
      return;
    }
    confirm(r, e, ack.seq);
  }
  e.classList.remove('pending');
  e.classList.add('sent');
  e.querySelector('.state').textContent = '';
}

function onSendFailed(room, id, err) {
  const r = rooms.get(room);
  const e = r && r.mine.get(id);
  if (!e) return;
  r.mine.delete(id);
  e.classList.remove('pending');
  e.classList.add('failed');
  e.querySelector('.state').textContent = 'not sent: ' + err.message;
}

// ---- history ----

function lowestSeq(r) {
  let low = 0;
  for (const s of r.bySeq.keys()) if (low === 0 || s < low) low = s;
  return low;
}

function hasOlder(r) {
  const low = lowestSeq(r);
  return !r.noMore && low > Math.max(r.first, 1);
}

function updateOlder() {
  const r = rooms.get(current);
  const older = !!r && r.joined && hasOlder(r);
  show($('load-older'), older);
  $('load-older').disabled = !client || client.state !== 'connected' || (r && r.loading);
  $('load-older').textContent = r && r.loading ? 'Loading…' : 'Load older messages';
  show($('log-start'), !!r && r.joined && !older && r.bySeq.size > 0);
  show($('empty'), !!r && r.joined && r.bySeq.size === 0 && r.mine.size === 0);
}

async function loadOlder() {
  const r = rooms.get(current);
  if (!r || r.loading || !hasOlder(r) || !client || client.state !== 'connected') return;
  const before = lowestSeq(r);
  const epoch = r.epoch;
  r.loading = true;
  updateOlder();
  try {
    const msgs = await client.history(r.name, { before, limit: PAGE });
    if (r.epoch !== epoch) return;
    const m = ui.messages;
    const fromBottom = m.scrollHeight - m.scrollTop;
    for (const x of msgs) {
      if (x.epoch === epoch && !r.bySeq.has(x.seq)) confirm(r, renderMessage(x, false), x.seq);
    }
    if (msgs.length < PAGE) r.noMore = true;
    if (r.name === current) m.scrollTop = m.scrollHeight - fromBottom;
  } catch {
    // disconnected: the button comes back when connected
  } finally {
    r.loading = false;
    updateOlder();
  }
}

$('load-older').addEventListener('click', loadOlder);
// Scrolling up to the top of a long list loads older messages; a short list
// (nothing to scroll) has the button.
let lastTop = 0;
ui.messages.addEventListener('scroll', () => {
  const m = ui.messages;
  const up = m.scrollTop < lastTop;
  lastTop = m.scrollTop;
  if (up && m.scrollTop < 40 && m.scrollHeight > m.clientHeight + 40) loadOlder();
});

function updateRecovery() {
  const r = rooms.get(current);
  const text = r ? r.recovery : '';
  $('recovery-text').textContent = text;
  show($('recovery-note'), !!text);
}

$('recovery-dismiss').addEventListener('click', () => {
  const r = rooms.get(current);
  if (r) r.recovery = '';
  updateRecovery();
});

// ---- composer ----

function sendComposed() {
  const r = rooms.get(current);
  if (!r || !client) return;
  // Trailing whitespace and leading blank lines are never meant.
  const body = ui.composer.value.replace(/\s+$/, '').replace(/^(?:[ \t]*\n)+/, '');
  if (!body.trim()) return;
  if (bytes(body) > MAX_BODY) {
    showComposerError(`Too long: ${bytes(body)} bytes; the limit is ${MAX_BODY}.`);
    return;
  }
  showComposerError('');
  const id = client.newId();
  const e = renderMessage(
    { room: r.name, id, from: me, device: client.device, ts: new Date().toISOString(), body },
    true,
  );
  r.mine.set(id, e);
  r.log.append(e);
  regroup(e);
  updateOlder();
  ui.composer.value = '';
  autosize();
  scrollToBottom();
  const room = r.name;
  client.send(room, body, { id }).then(
    (ack) => onAck(room, ack),
    (err) => onSendFailed(room, id, err),
  );
}

function showComposerError(text) {
  show($('composer-error'), !!text);
  $('composer-error').textContent = text;
}

function autosize() {
  ui.composer.style.height = 'auto';
  ui.composer.style.height = Math.min(ui.composer.scrollHeight, 160) + 'px';
}

$('composer-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sendComposed();
  ui.composer.focus();
});
ui.composer.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
    e.preventDefault();
    sendComposed();
  }
});
ui.composer.addEventListener('input', () => {
  autosize();
  showComposerError('');
});

// ---- phone layout: the room list slides over the chat ----

function openSidebar() {
  $('sidebar').classList.add('open');
  show($('scrim'), true);
}

function closeSidebar() {
  $('sidebar').classList.remove('open');
  show($('scrim'), false);
}

$('rooms-toggle').addEventListener('click', openSidebar);
$('rooms-close').addEventListener('click', closeSidebar);
$('scrim').addEventListener('click', closeSidebar);
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeSidebar();
});
document.addEventListener('visibilitychange', () => {
  const r = rooms.get(current);
  if (!document.hidden && r) {
    r.unread = 0;
    updateCount(r);
  }
});
window.addEventListener('hashchange', () => {
  const name = decodeURIComponent(location.hash.slice(1));
  if (!client || !name || name === current || roomNameError(name)) return;
  openRoom(name);
  selectRoom(name);
});

// ---- start ----

const ident = store.get('identity', null);
if (ident && (ident.user || ident.token)) startChat(ident);
else showLogin('');
