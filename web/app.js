// app.js: the Parley chat page. It drives the DOM of index.html with the
// protocol client in parley.js. User data (names, room names, message
// bodies) only ever reaches the page through textContent and attributes.
//
// Stored in localStorage: parley.identity ({user} or {token}), parley.device,
// parley.rooms (the rooms joined) and parley.room (the one open).
// URL: #room opens (and joins) a room; ?device=name names this device
// (default: phone, tablet or browser, from the user agent).
//
// Structure: cacheElements looks the page's elements up once; a RoomView
// owns one room's part of the page (its message list, its entry in the room
// list, its unread count, its history paging); the App holds the client, the
// rooms and the open one, and wires the client's events and the page's
// listeners. init() builds them; nothing else runs on load.

import { ParleyClient, roomNameError } from './parley.js';

const MAX_BODY = 4096;
const PAGE = 50; // messages per history request
const TYPING_SHOWN = 5000; // ms a typing notice shows its user (notices come every 2 s)
const DEFAULT_ROOM = 'lobby';
const USER_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;

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

// ---- helpers ----

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

/** The elements of index.html the page uses, looked up once. */
function cacheElements(doc) {
  const $ = (id) => doc.getElementById(id);
  return {
    loginView: $('login-view'),
    loginForm: $('login-form'),
    loginName: $('login-name'),
    loginToken: $('login-token'),
    loginError: $('login-error'),
    chatView: $('chat-view'),
    sidebar: $('sidebar'),
    roomsClose: $('rooms-close'),
    roomForm: $('room-form'),
    roomInput: $('room-input'),
    roomError: $('room-error'),
    roomList: $('room-list'),
    me: $('me'),
    signout: $('signout'),
    scrim: $('scrim'),
    roomsToggle: $('rooms-toggle'),
    unreadTotal: $('unread-total'),
    roomTitle: $('room-title'),
    badge: $('badge'),
    node: $('node'),
    recoveryNote: $('recovery-note'),
    recoveryText: $('recovery-text'),
    recoveryDismiss: $('recovery-dismiss'),
    messages: $('messages'),
    loadOlder: $('load-older'),
    logStart: $('log-start'),
    logs: $('logs'),
    empty: $('empty'),
    composerForm: $('composer-form'),
    composer: $('composer'),
    send: $('send'),
    composerError: $('composer-error'),
    typing: $('typing'),
  };
}

// ---- message lines ----

/** A message line; pending is an own line not acknowledged yet (no seq). */
function renderMessage(m, pending, me) {
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

/** Re-marks e and the line after it: inserting e may start or break a run. */
function regroup(e) {
  for (const x of [e, e.nextElementSibling]) {
    if (x && x.classList.contains('msg')) x.classList.toggle('cont', continues(x.previousElementSibling, x));
  }
}

// ---- one room ----

/**
 * One room's part of the page: its message list (.room-log), its entry in
 * the room list, and what the page knows of it (the lines shown by seq, the
 * own lines waiting for an ack, the joined frame's epoch and first seq, the
 * history paging, the unread count, the recovery note).
 */
class RoomView {
  constructor(name) {
    this.name = name;
    this.log = el('div', 'room-log');
    this.log.dataset.room = name;
    this.log.hidden = true;
    this.li = el('li');
    this.li.dataset.room = name; // the room list's click handler finds the room here
    this.nameBtn = el('button', 'room-name', '# ' + name);
    this.nameBtn.type = 'button';
    this.count = el('span', 'count');
    this.count.hidden = true;
    const leave = el('button', 'leave', '\u00d7');
    leave.type = 'button';
    leave.title = 'Leave ' + name;
    leave.setAttribute('aria-label', 'Leave ' + name);
    this.li.append(this.nameBtn, this.count, leave);

    this.bySeq = new Map(); // seq -> element
    this.mine = new Map(); // id -> element, own sends from this page
    this.epoch = undefined;
    this.first = 0;
    this.joined = false;
    this.noMore = false; // history said there is nothing older
    this.loading = false;
    this.unread = 0;
    this.recovery = ''; // the note shown while the room is open, until dismissed
  }

  /** Puts the room's elements on the page. */
  mount(logs, list) {
    logs.append(this.log);
    list.append(this.li);
  }

  unmount() {
    this.log.remove();
    this.li.remove();
  }

  setCurrent(on) {
    this.log.hidden = !on;
    this.li.classList.toggle('current', on);
    this.nameBtn.setAttribute('aria-current', on ? 'true' : 'false');
  }

  setUnread(n) {
    this.unread = n;
    this.count.textContent = String(n);
    this.count.hidden = n === 0;
  }

  // ---- lines ----

  /** Puts an element with seq in order among the confirmed lines (and gap
   * markers); pending lines stay at the bottom. */
  insert(e, seq) {
    for (let c = this.log.lastElementChild; c; c = c.previousElementSibling) {
      if (c === e) continue;
      const pos = c.dataset.seq ?? c.dataset.pos; // gap markers have a pos
      if (pos !== undefined && Number(pos) < seq) {
        c.after(e);
        regroup(e);
        return;
      }
    }
    this.log.prepend(e);
    regroup(e);
  }

  confirm(e, seq) {
    e.dataset.seq = String(seq);
    this.bySeq.set(seq, e);
    this.insert(e, seq);
  }

  /** The room was (re)joined: note its epoch and history, and any loss. */
  applyJoined(j) {
    if (j.epochChanged) {
      // The server lost this room: its old seqs mean nothing any more.
      for (const e of this.bySeq.values()) e.remove();
      this.bySeq.clear();
      this.noMore = false;
    }
    this.epoch = j.epoch;
    this.first = j.first;
    this.joined = true;
    if (j.recovered === false) {
      this.recovery = j.epochChanged || (j.first <= 1 && j.resumed)
        ? `The server lost the history of #${this.name}; earlier messages are gone.`
        : `Some messages in #${this.name} could not be recovered: they are older than the history the server keeps.`;
      const at = Math.max(j.first, 1) - 0.5; // just before the first message kept
      const gap = el('div', 'gap', 'some messages may be missing here');
      gap.dataset.pos = String(at);
      this.insert(gap, at);
    }
  }

  /**
   * Shows a message from the server. Returns null if its seq is shown
   * already (its ack came first), 'own' if it confirms a pending line of
   * this page, 'new' for a new line.
   */
  receive(m, me) {
    if (this.bySeq.has(m.seq)) return null;
    const own = m.from === me ? this.mine.get(m.id) : undefined;
    if (own && own.dataset.seq === undefined) {
      this.confirm(own, m.seq); // stays .pending until its ack
      return 'own';
    }
    this.confirm(renderMessage(m, false, me), m.seq);
    return 'new';
  }

  /** Shows an own line at the bottom until its ack gives it a seq. */
  addPending(id, e) {
    this.mine.set(id, e);
    this.log.append(e);
    regroup(e);
  }

  /** An own send was acknowledged: its line gets its seq and is marked sent. */
  acked(ack) {
    const e = this.mine.get(ack.id);
    if (!e) return;
    this.mine.delete(ack.id);
    if (e.dataset.seq === undefined) {
      const dup = this.bySeq.get(ack.seq);
      if (dup && dup !== e) {
        e.remove(); // shown already (not joined under this id); keep one line
        return;
      }
      this.confirm(e, ack.seq);
    }
    e.classList.remove('pending');
    e.classList.add('sent');
    e.querySelector('.state').textContent = '';
  }

  /** An own send failed for good: its line says so. */
  failed(id, err) {
    const e = this.mine.get(id);
    if (!e) return;
    this.mine.delete(id);
    e.classList.remove('pending');
    e.classList.add('failed');
    e.querySelector('.state').textContent = 'not sent: ' + err.message;
  }

  // ---- history ----

  lowestSeq() {
    let low = 0;
    for (const s of this.bySeq.keys()) if (low === 0 || s < low) low = s;
    return low;
  }

  /** Whether history holds messages older than the lowest shown. */
  hasOlder() {
    return !this.noMore && this.lowestSeq() > Math.max(this.first, 1);
  }

  /** Whether no line is shown, confirmed or pending. */
  isEmpty() {
    return this.bySeq.size === 0 && this.mine.size === 0;
  }

  /** Whether a confirmed line (one with a seq) is shown. */
  hasLines() {
    return this.bySeq.size > 0;
  }

  /** Adds a page of history of epoch (lines shown already are skipped);
   * a short page means there is nothing older. */
  addHistory(msgs, epoch, me) {
    for (const x of msgs) {
      if (x.epoch === epoch && !this.bySeq.has(x.seq)) this.confirm(renderMessage(x, false, me), x.seq);
    }
    if (msgs.length < PAGE) this.noMore = true;
  }
}

// ---- the page ----

/**
 * The chat page: sign-in, the client and its events, the rooms (a RoomView
 * each, by name) and the one open, the composer, the phone layout.
 */
class App {
  constructor(els) {
    this.els = els;
    this.client = null;
    this.me = ''; // the user name the server knows us by
    this.rooms = new Map(); // name -> RoomView
    this.current = '';
    this.lastTop = 0; // the message list's last scrollTop, to tell scrolling up
    this.typers = new Map(); // room -> Map(user -> timeout id): who is typing there
  }

  /** The open room's view, if any. */
  get room() {
    return this.rooms.get(this.current);
  }

  /** Every listener on the page's own elements, registered once. */
  listen() {
    const e = this.els;
    e.loginForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.signIn();
    });
    e.signout.addEventListener('click', () => this.signOut());
    e.badge.addEventListener('click', () => {
      if (this.client && this.client.state === 'offline') this.client.connect();
    });
    e.roomForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.joinTyped();
    });
    e.roomInput.addEventListener('input', () => this.showRoomError(''));
    // One listener for every room's entry: the rooms come and go.
    e.roomList.addEventListener('click', (ev) => this.roomListClick(ev));
    e.loadOlder.addEventListener('click', () => this.loadOlder());
    e.messages.addEventListener('scroll', () => this.scrolled());
    e.recoveryDismiss.addEventListener('click', () => {
      const r = this.room;
      if (r) r.recovery = '';
      this.updateRecovery();
    });
    e.composerForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.sendComposed();
      e.composer.focus();
    });
    e.composer.addEventListener('keydown', (ev) => {
      // Enter sends, Shift+Enter is a new line; not while an IME composes.
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        this.sendComposed();
      }
    });
    e.composer.addEventListener('input', () => {
      this.autosize();
      this.showComposerError('');
      // The client sends at most one notice per 2 s, whatever the keystrokes.
      if (this.client && this.current && e.composer.value) this.client.typing(this.current);
    });
    e.roomsToggle.addEventListener('click', () => this.openSidebar());
    e.roomsClose.addEventListener('click', () => this.closeSidebar());
    e.scrim.addEventListener('click', () => this.closeSidebar());
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.closeSidebar();
    });
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.room) this.setUnread(this.room, 0);
    });
    window.addEventListener('hashchange', () => this.hashChanged());
  }

  /** Chats as the stored identity, or asks for one. */
  start() {
    const ident = store.get('identity', null);
    if (ident && (ident.user || ident.token)) this.startChat(ident);
    else this.showLogin('');
  }

  // ---- sign in ----

  showLogin(error) {
    const e = this.els;
    show(e.chatView, false);
    show(e.loginView, true);
    const ident = store.get('identity', null);
    if (ident && ident.user) e.loginName.value = ident.user;
    show(e.loginError, !!error);
    e.loginError.textContent = error || '';
    e.loginName.focus();
  }

  signIn() {
    const e = this.els;
    const user = e.loginName.value.trim();
    const token = e.loginToken.value.trim();
    let err = '';
    if (!token) {
      if (!user) err = 'Enter a name, or a token.';
      else if (!USER_RE.test(user)) {
        err = 'Names are 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit.';
      }
    }
    if (err) {
      show(e.loginError, true);
      e.loginError.textContent = err;
      return;
    }
    const ident = token ? { token } : { user };
    store.set('identity', ident);
    this.startChat(ident);
  }

  signOut() {
    if (this.client) this.client.close();
    store.del('identity');
    store.del('rooms');
    store.del('room');
    location.hash = '';
    location.reload();
  }

  // ---- chat ----

  startChat(ident) {
    const e = this.els;
    show(e.loginView, false);
    show(e.chatView, true);
    this.me = ident.user || '';
    e.me.textContent = this.me || '…';
    this.client = new ParleyClient({ user: ident.user, token: ident.token, device: deviceName() });
    this.wireClient(this.client);
    this.client.connect();

    let names = store.get('rooms', null);
    if (!Array.isArray(names) || names.length === 0) names = [DEFAULT_ROOM];
    const fromHash = decodeURIComponent(location.hash.slice(1));
    if (fromHash && !roomNameError(fromHash) && !names.includes(fromHash)) names.push(fromHash);
    for (const n of names) if (!roomNameError(n)) this.openRoom(n);
    const want = fromHash && this.rooms.has(fromHash) ? fromHash : store.get('room', '');
    this.selectRoom(this.rooms.has(want) ? want : this.firstRoom());
  }

  /** The client's events, each to the view it changes. */
  wireClient(client) {
    client.addEventListener('state', (ev) => this.setBadge(ev.detail.state));
    client.addEventListener('welcome', (ev) => {
      this.me = ev.detail.user;
      this.els.me.textContent = this.me;
      this.els.node.textContent = ev.detail.node || '?';
      this.updateOlder();
    });
    client.addEventListener('joined', (ev) => this.joined(ev.detail));
    client.addEventListener('message', (ev) => {
      this.stoppedTyping(ev.detail.room, ev.detail.from);
      this.received(ev.detail);
    });
    client.addEventListener('typing', (ev) => this.typing(ev.detail));
    client.addEventListener('fatal', (ev) => {
      store.del('identity');
      this.teardown();
      this.showLogin('Signed out: ' + ev.detail.reason);
    });
  }

  teardown() {
    for (const users of this.typers.values()) for (const id of users.values()) clearTimeout(id);
    this.typers.clear();
    if (this.client) this.client.close();
    this.client = null;
    this.rooms.clear();
    this.els.logs.replaceChildren();
    this.els.roomList.replaceChildren();
    this.current = '';
  }

  setBadge(state) {
    const words = {
      idle: 'starting',
      connecting: 'connecting…',
      connected: 'connected',
      reconnecting: 'reconnecting…',
      offline: 'offline',
    };
    const b = this.els.badge;
    b.dataset.state = state;
    b.textContent = words[state] || state;
    b.title = state === 'offline' ? 'Offline: click to reconnect' : 'Connection';
    this.updateOlder();
  }

  // ---- rooms ----

  firstRoom() {
    return this.rooms.keys().next().value || '';
  }

  saveRooms() {
    store.set('rooms', [...this.rooms.keys()]);
  }

  /** Creates the view of a room and joins it. */
  openRoom(name) {
    if (this.rooms.has(name)) return this.rooms.get(name);
    const r = new RoomView(name);
    r.mount(this.els.logs, this.els.roomList);
    this.rooms.set(name, r);
    this.saveRooms();
    this.client.join(name).catch((err) => {
      this.showRoomError(`Could not join ${name}: ${err.message}`);
      this.leaveRoom(name);
    });
    return r;
  }

  leaveRoom(name) {
    const r = this.rooms.get(name);
    if (!r) return;
    this.rooms.delete(name);
    this.saveRooms();
    r.unmount();
    if (this.client) this.client.leave(name).catch(() => {});
    if (this.current === name) this.selectRoom(this.firstRoom());
    this.updateUnreadTotal();
  }

  selectRoom(name) {
    const e = this.els;
    this.current = name;
    const r = this.rooms.get(name);
    for (const x of this.rooms.values()) x.setCurrent(x === r);
    e.roomTitle.textContent = r ? '# ' + name : 'No room';
    e.composer.disabled = !r;
    e.send.disabled = !r;
    e.composer.placeholder = r ? 'Message #' + name : 'Join a room to chat';
    if (r) {
      store.set('room', name);
      history.replaceState(null, '', location.pathname + location.search + '#' + encodeURIComponent(name));
      this.setUnread(r, 0);
    }
    this.updateRecovery();
    this.renderTyping();
    this.updateOlder();
    this.closeSidebar();
    this.scrollToBottom();
  }

  /** The room form: join (or create) the room typed and open it. */
  joinTyped() {
    const name = this.els.roomInput.value.trim();
    const err = roomNameError(name);
    if (err) {
      this.showRoomError(err);
      return;
    }
    this.showRoomError('');
    this.els.roomInput.value = '';
    this.openRoom(name);
    this.selectRoom(name);
  }

  /** A click in the room list: a room's name opens it, its × leaves it. */
  roomListClick(ev) {
    const btn = ev.target.closest('button');
    const name = btn && btn.closest('li')?.dataset.room;
    if (!name || !this.rooms.has(name)) return;
    if (btn.classList.contains('room-name')) this.selectRoom(name);
    else if (btn.classList.contains('leave')) this.leaveRoom(name);
  }

  hashChanged() {
    const name = decodeURIComponent(location.hash.slice(1));
    if (!this.client || !name || name === this.current || roomNameError(name)) return;
    this.openRoom(name);
    this.selectRoom(name);
  }

  showRoomError(text) {
    show(this.els.roomError, !!text);
    this.els.roomError.textContent = text;
  }

  setUnread(r, n) {
    r.setUnread(n);
    this.updateUnreadTotal();
  }

  updateUnreadTotal() {
    let n = 0;
    for (const r of this.rooms.values()) n += r.unread;
    this.els.unreadTotal.textContent = String(n);
    this.els.unreadTotal.hidden = n === 0;
    document.title = n ? `(${n}) Parley` : 'Parley';
  }

  // ---- messages ----

  atBottom() {
    const m = this.els.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }

  scrollToBottom() {
    this.els.messages.scrollTop = this.els.messages.scrollHeight;
  }

  joined(j) {
    const r = this.rooms.get(j.room);
    if (!r) return;
    r.applyJoined(j);
    if (j.room === this.current) {
      this.updateRecovery();
      this.updateOlder();
    }
  }

  // ---- who is typing ----

  /** A typing notice: show its user in the room for TYPING_SHOWN ms. */
  typing(f) {
    if (!f.user || f.user === this.me || !this.rooms.has(f.room)) return;
    let users = this.typers.get(f.room);
    if (!users) this.typers.set(f.room, (users = new Map()));
    clearTimeout(users.get(f.user));
    users.set(f.user, setTimeout(() => this.stoppedTyping(f.room, f.user), TYPING_SHOWN));
    if (f.room === this.current) this.renderTyping();
  }

  /** user no longer types in room: the notice expired, or the message came. */
  stoppedTyping(room, user) {
    const users = this.typers.get(room);
    if (!users || !users.has(user)) return;
    clearTimeout(users.get(user));
    users.delete(user);
    if (room === this.current) this.renderTyping();
  }

  renderTyping() {
    const names = [...(this.typers.get(this.current)?.keys() || [])].sort();
    let text = '';
    if (names.length === 1) text = names[0] + ' is typing…';
    else if (names.length === 2) text = names[0] + ' and ' + names[1] + ' are typing…';
    else if (names.length > 2) text = 'Several people are typing…';
    this.els.typing.textContent = text;
    show(this.els.typing, !!text);
  }

  received(m) {
    const r = this.rooms.get(m.room);
    if (!r) return;
    const open = m.room === this.current;
    const stick = open && this.atBottom(); // follow new lines only if the reader was
    const how = r.receive(m, this.me);
    if (!how) return;
    if (how === 'new' && (!open || document.hidden)) this.setUnread(r, r.unread + 1);
    if (open) {
      if (stick) this.scrollToBottom();
      this.updateOlder();
    }
  }

  // ---- history ----

  /** Shows the button or the notes at the ends of the open room's list. */
  updateOlder() {
    const e = this.els;
    const r = this.room;
    const older = !!r && r.joined && r.hasOlder();
    show(e.loadOlder, older);
    e.loadOlder.disabled = !this.connected() || !!(r && r.loading);
    e.loadOlder.textContent = r && r.loading ? 'Loading…' : 'Load older messages';
    show(e.logStart, !!r && r.joined && !older && r.hasLines());
    show(e.empty, !!r && r.joined && r.isEmpty());
  }

  connected() {
    return !!this.client && this.client.state === 'connected';
  }

  async loadOlder() {
    const r = this.room;
    if (!r || r.loading || !r.hasOlder() || !this.connected()) return;
    const before = r.lowestSeq();
    const epoch = r.epoch;
    r.loading = true;
    this.updateOlder();
    try {
      const msgs = await this.client.history(r.name, { before, limit: PAGE });
      if (r.epoch !== epoch) return; // the room was lost meanwhile: these seqs are gone
      // Keep the lines in view where they are as older ones go in above.
      const m = this.els.messages;
      const fromBottom = m.scrollHeight - m.scrollTop;
      r.addHistory(msgs, epoch, this.me);
      if (r.name === this.current) m.scrollTop = m.scrollHeight - fromBottom;
    } catch {
      // disconnected: the button comes back when connected
    } finally {
      r.loading = false;
      this.updateOlder();
    }
  }

  /** Scrolling up to the top of a long list loads older messages; a short
   * list (nothing to scroll) has the button. */
  scrolled() {
    const m = this.els.messages;
    const up = m.scrollTop < this.lastTop;
    this.lastTop = m.scrollTop;
    if (up && m.scrollTop < 40 && m.scrollHeight > m.clientHeight + 40) this.loadOlder();
  }

  updateRecovery() {
    const r = this.room;
    const text = r ? r.recovery : '';
    this.els.recoveryText.textContent = text;
    show(this.els.recoveryNote, !!text);
  }

  // ---- composer ----

  sendComposed() {
    const e = this.els;
    const r = this.room;
    if (!r || !this.client) return;
    // Trailing whitespace and leading blank lines are never meant.
    const body = e.composer.value.replace(/\s+$/, '').replace(/^(?:[ \t]*\n)+/, '');
    if (!body.trim()) return;
    if (bytes(body) > MAX_BODY) {
      this.showComposerError(`Too long: ${bytes(body)} bytes; the limit is ${MAX_BODY}.`);
      return;
    }
    this.showComposerError('');
    // The id first, so that the line shows at once and its ack finds it.
    const id = this.client.newId();
    const line = renderMessage(
      { room: r.name, id, from: this.me, device: this.client.device, ts: new Date().toISOString(), body },
      true,
      this.me,
    );
    r.addPending(id, line);
    this.updateOlder();
    e.composer.value = '';
    this.autosize();
    this.scrollToBottom();
    // The answer goes to the room of that name as it is then (it may have
    // been left, or left and joined again).
    const room = r.name;
    this.client.send(room, body, { id }).then(
      (ack) => this.rooms.get(room)?.acked(ack),
      (err) => this.rooms.get(room)?.failed(id, err),
    );
  }

  showComposerError(text) {
    show(this.els.composerError, !!text);
    this.els.composerError.textContent = text;
  }

  autosize() {
    const c = this.els.composer;
    c.style.height = 'auto';
    c.style.height = Math.min(c.scrollHeight, 160) + 'px';
  }

  // ---- phone layout: the room list slides over the chat ----

  openSidebar() {
    this.els.sidebar.classList.add('open');
    show(this.els.scrim, true);
  }

  closeSidebar() {
    this.els.sidebar.classList.remove('open');
    show(this.els.scrim, false);
  }
}

/** The page's entry point: the element cache, the app, its listeners. */
function init() {
  const app = new App(cacheElements(document));
  app.listen();
  app.start();
}

init();
