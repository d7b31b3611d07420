// app.js: the Parley chat page. It drives the DOM of index.html with the
// protocol client in parley.js. User data (names, room names, message
// bodies) only ever reaches the page through textContent and attributes.
//
// Stored in localStorage: parley.identity ({user} or {token}), parley.device
// and parley.room (the one open). The room list is the server's: welcome.rooms
// on every (re)connect (each with its unread count), then membership frames.
// URL: #room opens (and joins) a room; ?device=name names this device
// (default: phone, tablet or browser, from the user agent).
//
// Who is online in the open room shows under its title: asked with
// presence(room) when the room is shown or (re)joined while shown, then kept
// live by presence events; a room over the server's detail size shows only
// how many are there. A name there opens the direct room with that user.
//
// Read state is shared by the user's devices: the open room's newest message,
// shown on a visible page, is sent as the read cursor (at most once a second
// per room, only forward); another device's read frame sets that room's
// unread count here.
//
// Structure: cacheElements looks the page's elements up once; a RoomView
// owns one room's part of the page (its message list, its entry in the room
// list, its unread count, its history paging); the App holds the client, the
// rooms and the open one, and wires the client's events and the page's
// listeners. init() builds them; nothing else runs on load.

import { ParleyClient, roomNameError, directRoom, directPeer, isDirectRoom } from './parley.js';

const MAX_BODY = 4096;
const PAGE = 50; // messages per history request
const TYPING_SHOWN = 5000; // ms a typing notice shows its user (notices come every 2 s)
const DEFAULT_ROOM = 'lobby';
const USER_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const READ_EVERY = 1000; // ms: at most one read cursor move per room in this time
const DIRECTORY_PAGE = 20; // rooms per directory page

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
    online: $('online'),
    onlineCount: $('online-count'),
    onlineList: $('online-list'),
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
    browseOpen: $('browse-open'),
    createOpen: $('create-open'),
    inviteOpen: $('invite-open'),
    browseDialog: $('browse-dialog'),
    browseClose: $('browse-close'),
    browseList: $('browse-list'),
    browseEmpty: $('browse-empty'),
    browseError: $('browse-error'),
    browseMore: $('browse-more'),
    askDialog: $('ask-dialog'),
    askForm: $('ask-form'),
    askTitle: $('ask-title'),
    askLabel: $('ask-label'),
    askInput: $('ask-input'),
    askError: $('ask-error'),
    askCancel: $('ask-cancel'),
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
  if (m.from === me) meta.append(el('span', 'from', m.from));
  else {
    // Another user's name opens the direct room with them.
    const from = el('button', 'from', m.from);
    from.type = 'button';
    from.title = 'Message ' + m.from + ' directly';
    meta.append(from);
  }
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
  constructor(name, me) {
    this.name = name;
    this.peer = directPeer(name, me); // the other user of a direct room
    this.label = this.peer ? '@' + this.peer : '# ' + name;
    this.log = el('div', 'room-log');
    this.log.dataset.room = name;
    this.log.hidden = true;
    this.li = el('li');
    this.li.dataset.room = name; // the room list's click handler finds the room here
    this.nameBtn = el('button', 'room-name', this.label);
    this.nameBtn.type = 'button';
    this.tag = el('span', 'kind-tag');
    this.nameBtn.append(this.tag);
    this.count = el('span', 'count');
    this.count.hidden = true;
    const leave = el('button', 'leave', '\u00d7');
    leave.type = 'button';
    leave.title = 'Leave ' + this.label;
    leave.setAttribute('aria-label', 'Leave ' + this.label);
    this.li.append(this.nameBtn, this.count, leave);
    this.setKind(isDirectRoom(name) ? 'direct' : '');

    this.bySeq = new Map(); // seq -> element
    this.mine = new Map(); // id -> element, own sends from this page
    this.epoch = undefined;
    this.first = 0;
    this.joined = false;
    this.noMore = false; // history said there is nothing older
    this.loading = false;
    this.unread = 0;
    this.recovery = ''; // the note shown while the room is open, until dismissed
    // Messages up to here ({epoch, seq}) are in the unread count already (the
    // server counted them): their arrival does not count them again.
    this.counted = null;
    this.readPos = null; // {epoch, seq}: the read cursor as far as this page knows
    this.readAt = 0; // Date.now() of the last read sent
    this.readTimer = 0;
    this.context = 0; // a join from the read cursor: show the read messages up to this seq too
    // Who is in the room: {count, users: Map(user -> devices), or null in a
    // room over the detail size}; null until asked (see App.loadPresence).
    this.online = null;
    this.presenceAsked = 0; // bumped per presence request: only the latest answer counts
  }

  /** The answer to presence(room): who is there now. You are, once joined. */
  setPresence(f, me) {
    const users = Array.isArray(f.users) ? new Map(f.users.map((u) => [u.user, u.devices || 1])) : null;
    if (users && me && !users.has(me)) users.set(me, 1);
    this.online = { count: f.count || 0, users };
  }

  /** A presence event: user's connections in the room are now devices (0: gone).
   * Returns whether the list changed. */
  presenceChanged(user, devices) {
    const o = this.online;
    if (!o || !o.users) return false; // not asked yet (the answer will have it), or a big room
    const before = o.users.get(user) || 0;
    if (devices > 0) o.users.set(user, devices);
    else o.users.delete(user);
    o.count = Math.max(0, o.count + devices - before);
    return before !== devices;
  }

  setKind(kind) {
    this.kind = kind || this.kind || '';
    this.li.dataset.kind = this.kind;
    this.tag.textContent = this.kind === 'private' ? 'private' : '';
  }

  /** Whether a message at (epoch, seq) is in the unread count already. */
  isCounted(epoch, seq) {
    return !!this.counted && this.counted.epoch === epoch && seq <= this.counted.seq;
  }

  /** The newest confirmed message shown, as {epoch, seq}, or null. */
  newest() {
    let hi = 0;
    for (const s of this.bySeq.keys()) if (s > hi) hi = s;
    return hi && this.epoch ? { epoch: this.epoch, seq: hi } : null;
  }

  /** Whether the read cursor is at pos or past it. */
  readPast(pos) {
    return !!this.readPos && this.readPos.epoch === pos.epoch && this.readPos.seq >= pos.seq;
  }

  /** The cursor moved to pos (an answer or another device): only forward. */
  noteRead(pos) {
    if (!pos || !pos.epoch) return;
    if (!this.readPos || this.readPos.epoch !== pos.epoch || pos.seq > this.readPos.seq) {
      this.readPos = { epoch: pos.epoch, seq: pos.seq };
    }
  }

  /** Puts the room's elements on the page. */
  mount(logs, list) {
    logs.append(this.log);
    list.append(this.li);
  }

  unmount() {
    clearTimeout(this.readTimer);
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
    if (!this.epoch) this.epoch = m.epoch; // joined empty: the first message brings the epoch
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
    this.welcomed = false; // the first welcome chose the room to show
    this.dirNext = ''; // the directory's next page ('' when none)
    this.askDone = null; // the ask dialog's answer: (value) => Promise of an error text or ''
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
      if (!document.hidden && this.room) {
        this.setUnread(this.room, 0);
        this.markRead(this.room);
      }
    });
    window.addEventListener('hashchange', () => this.hashChanged());
    // A name in the online list opens the direct room with that user.
    e.onlineList.addEventListener('click', (ev) => {
      const user = ev.target.closest('button.online-user')?.closest('li')?.dataset.user;
      if (user) this.openDirect(user);
    });
    // A name in a message opens the direct room with its author.
    e.logs.addEventListener('click', (ev) => {
      const b = ev.target.closest('button.from');
      const from = b && b.closest('.msg')?.dataset.from;
      if (from) this.openDirect(from);
    });
    e.browseOpen.addEventListener('click', () => this.openDirectory());
    e.browseClose.addEventListener('click', () => e.browseDialog.close());
    e.browseMore.addEventListener('click', () => this.loadDirectory(this.dirNext));
    e.browseList.addEventListener('click', (ev) => {
      const b = ev.target.closest('button.dir-join');
      const name = b && b.closest('li')?.dataset.room;
      if (!name) return;
      e.browseDialog.close();
      this.openRoom(name);
      this.selectRoom(name);
    });
    e.createOpen.addEventListener('click', () =>
      this.ask('New private room', 'Room name', 'Create', (name) => this.createPrivate(name)));
    e.inviteOpen.addEventListener('click', () => {
      const room = this.current;
      if (room) this.ask('Invite to ' + (this.room?.label || room), 'User name', 'Invite', (user) => this.invite(room, user));
    });
    e.askCancel.addEventListener('click', () => e.askDialog.close());
    e.askInput.addEventListener('input', () => show(e.askError, false));
    e.askForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.answerAsk();
    });
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
    store.del('rooms'); // kept by earlier versions of the page
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
    this.selectRoom(''); // the rooms come with the welcome
  }

  /**
   * The server's room list, on every (re)connect: a view for each room the
   * user is a member of (joined from its read cursor, so that exactly the
   * unread messages come), the unread counts, and the rooms left elsewhere
   * meanwhile dropped. The first one also picks the room to show.
   */
  applyWelcome(w) {
    const list = Array.isArray(w.rooms) ? w.rooms : null; // absent: the server could not read them
    if (list) {
      const names = new Set(list.map((m) => m.room));
      for (const r of [...this.rooms.values()]) {
        // Left on another device while this page was away (a room still
        // being joined from here is not in the list yet).
        if (r.joined && !names.has(r.name)) this.dropRoom(r.name);
      }
      for (const m of list) {
        if (roomNameError(m.room) || (isDirectRoom(m.room) && !directPeer(m.room, this.me))) continue;
        const fresh = !this.rooms.has(m.room);
        const since = m.epoch ? { epoch: m.epoch, seq: m.read || 0 } : undefined;
        const r = this.openRoom(m.room, { since, kind: m.kind });
        if (fresh && since && since.seq > 0) r.context = since.seq;
        r.setKind(m.kind);
        r.noteRead(m.read ? { epoch: m.epoch, seq: m.read } : null);
        r.counted = { epoch: m.epoch || '', seq: m.seq || 0 };
        this.setUnread(r, this.isReading(r) ? 0 : m.unread || 0);
      }
    }
    if (!this.welcomed) {
      this.welcomed = true;
      const fromHash = decodeURIComponent(location.hash.slice(1));
      if (fromHash && !roomNameError(fromHash) && (!isDirectRoom(fromHash) || directPeer(fromHash, this.me))) {
        this.openRoom(fromHash);
      }
      if (this.rooms.size === 0) this.openRoom(DEFAULT_ROOM);
      const want = fromHash && this.rooms.has(fromHash) ? fromHash : store.get('room', '');
      this.selectRoom(this.rooms.has(want) ? want : this.firstRoom());
    } else if (!this.rooms.has(this.current)) {
      this.selectRoom(this.firstRoom());
    }
  }

  /** The client's events, each to the view it changes. */
  wireClient(client) {
    client.addEventListener('state', (ev) => this.setBadge(ev.detail.state));
    client.addEventListener('welcome', (ev) => {
      this.me = ev.detail.user;
      this.els.me.textContent = this.me;
      this.els.node.textContent = ev.detail.node || '?';
      this.applyWelcome(ev.detail);
      this.updateOlder();
    });
    client.addEventListener('read', (ev) => this.readElsewhere(ev.detail));
    client.addEventListener('membership', (ev) => this.membership(ev.detail));
    client.addEventListener('joined', (ev) => this.joined(ev.detail));
    client.addEventListener('message', (ev) => {
      this.stoppedTyping(ev.detail.room, ev.detail.from);
      this.received(ev.detail);
    });
    client.addEventListener('typing', (ev) => this.typing(ev.detail));
    client.addEventListener('presence', (ev) => this.presence(ev.detail));
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

  /** The first room of the list, as shown. */
  firstRoom() {
    return this.els.roomList.firstElementChild?.dataset.room || '';
  }

  /** Creates the view of a room (in name order in the list) and joins it;
   * since is the position to join from (see applyWelcome). */
  openRoom(name, opts = {}) {
    if (this.rooms.has(name)) return this.rooms.get(name);
    const r = new RoomView(name, this.me);
    if (opts.kind) r.setKind(opts.kind);
    r.mount(this.els.logs, this.els.roomList);
    // Keep the list sorted by what it shows.
    const after = [...this.els.roomList.children].find((li) => li !== r.li && this.rooms.get(li.dataset.room)?.label > r.label);
    if (after) after.before(r.li);
    this.rooms.set(name, r);
    this.client.join(name, opts.since ? { since: opts.since } : {}).catch((err) => {
      if (this.rooms.get(name) !== r) return;
      this.showRoomError(`Could not join ${name}: ${err.message}`);
      this.leaveRoom(name);
    });
    return r;
  }

  leaveRoom(name) {
    if (!this.rooms.has(name)) return;
    this.dropRoom(name);
    if (this.client) this.client.leave(name).catch(() => {});
  }

  /** Takes a room off the page (left here or on another device). */
  dropRoom(name) {
    const r = this.rooms.get(name);
    if (!r) return;
    this.rooms.delete(name);
    r.unmount();
    if (this.current === name) this.selectRoom(this.firstRoom());
    this.updateUnreadTotal();
  }

  /** Another device (or another user: an invite, a direct room) made the
   * user a member of a room, or a device of the user left one. */
  membership(f) {
    if (f.state === 'left') {
      // Left elsewhere: stop receiving it here too.
      if (this.rooms.has(f.room)) this.leaveRoom(f.room);
      return;
    }
    if (f.state !== 'member' || roomNameError(f.room)) return;
    const fresh = !this.rooms.has(f.room);
    const r = this.openRoom(f.room, { kind: f.kind });
    r.setKind(f.kind);
    if (fresh && !this.current) this.selectRoom(f.room);
  }

  /** Opens (creating if need be) the direct room with user. */
  openDirect(user) {
    const name = directRoom(this.me, user);
    if (!name) return;
    this.openRoom(name, { kind: 'direct' });
    this.selectRoom(name);
  }

  selectRoom(name) {
    const e = this.els;
    this.current = name;
    const r = this.rooms.get(name);
    for (const x of this.rooms.values()) x.setCurrent(x === r);
    e.roomTitle.textContent = r ? r.label : this.welcomed ? 'No room' : '\u00a0';
    this.renderOnline();
    if (r) this.loadPresence(r);
    e.composer.disabled = !r;
    e.send.disabled = !r;
    e.composer.placeholder = r ? 'Message ' + r.label.replace('# ', '#') : 'Join a room to chat';
    show(e.inviteOpen, !!r && r.kind !== 'direct');
    if (r) {
      store.set('room', name);
      history.replaceState(null, '', location.pathname + location.search + '#' + encodeURIComponent(name));
      this.setUnread(r, 0);
      this.markRead(r);
    }
    this.updateRecovery();
    this.renderTyping();
    this.updateOlder();
    this.closeSidebar();
    this.scrollToBottom();
  }

  /** The room form: join (or create) the room typed and open it. */
  joinTyped() {
    let name = this.els.roomInput.value.trim();
    // @name: the direct room with that user.
    if (name.startsWith('@')) name = directRoom(this.me, name.slice(1)) || name;
    let err = roomNameError(name);
    if (!err && isDirectRoom(name) && !directPeer(name, this.me)) err = `${name} is another pair's direct room.`;
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

  /** Whether the user sees room r now: it is open on a visible page. */
  isReading(r) {
    return !!r && r.name === this.current && !document.hidden;
  }

  /**
   * Moves the read cursor to the newest message shown in r when the user
   * sees it: forward only, at most once per READ_EVERY per room (a later
   * call in that time is sent when it ends).
   */
  markRead(r) {
    if (!this.isReading(r) || !this.connected() || !r.joined) return;
    const pos = r.newest();
    if (!pos || r.readPast(pos)) return;
    const wait = r.readAt + READ_EVERY - Date.now();
    if (wait > 0) {
      if (!r.readTimer) {
        r.readTimer = setTimeout(() => {
          r.readTimer = 0;
          this.markRead(r);
        }, wait);
      }
      return;
    }
    r.readAt = Date.now();
    this.client.read(r.name, pos).then(
      (f) => r.noteRead(f),
      () => {}, // offline or refused: the next message or visit tries again
    );
    r.noteRead(pos); // not again meanwhile
  }

  /** Another device of the user moved its read cursor: its unread count is ours. */
  readElsewhere(f) {
    const r = this.rooms.get(f.room);
    if (!r) return;
    r.noteRead({ epoch: f.epoch, seq: f.seq });
    // The server counted up to its head then: seq + unread.
    const head = f.seq + (f.unread || 0);
    if (f.epoch && !r.isCounted(f.epoch, head)) r.counted = { epoch: f.epoch, seq: head };
    if (!this.isReading(r)) this.setUnread(r, f.unread);
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
    if (r.context) this.loadContext(r, r.context);
    r.context = 0;
    if (j.room === this.current) {
      this.updateRecovery();
      this.updateOlder();
      this.markRead(r);
      this.loadPresence(r); // (again after a reconnect: the events missed meanwhile)
    } else {
      r.online = null; // events may have been missed: asked again when it is shown
    }
  }

  /** A room joined from its read cursor shows the messages read already
   * too (a page of them): the unread ones follow them. */
  async loadContext(r, upTo) {
    const epoch = r.epoch;
    try {
      const msgs = await this.client.history(r.name, { before: upTo + 1, limit: PAGE });
      if (r.epoch !== epoch || this.rooms.get(r.name) !== r) return;
      const open = r.name === this.current;
      const stick = open && this.atBottom();
      r.addHistory(msgs, epoch, this.me);
      if (stick) this.scrollToBottom();
      if (open) this.updateOlder();
    } catch {
      // offline: Load older brings them
    }
  }

  // ---- who is online ----

  /** Asks who is in room r (joined) and shows the answer if r is open. */
  async loadPresence(r) {
    if (!r.joined || !this.connected()) return; // asked when it is joined
    const n = ++r.presenceAsked;
    let f;
    try {
      f = await this.client.presence(r.name);
    } catch {
      return; // offline: asked again after the re-join
    }
    if (this.rooms.get(r.name) !== r || n !== r.presenceAsked) return;
    r.setPresence(f, this.me);
    if (r.name === this.current) this.renderOnline();
  }

  /** A presence event: another user came online in a room, or changed or left. */
  presence(f) {
    const r = this.rooms.get(f.room);
    if (!r || !f.user || f.user === this.me) return;
    const devices = f.state === 'online' ? Math.max(f.devices, 1) : 0;
    if (r.presenceChanged(f.user, devices) && r.name === this.current) this.renderOnline();
  }

  /** The open room's online list: each user (a button that opens the direct
   * room with them; you are text) and their device count when over one. */
  renderOnline() {
    const e = this.els;
    const o = this.room?.online;
    show(e.online, !!o);
    if (!o) {
      e.onlineList.replaceChildren();
      return;
    }
    if (!o.users) {
      // Over the detail size: a count, no names and no events.
      e.onlineCount.textContent = `${o.count} online`;
      e.onlineList.replaceChildren();
      return;
    }
    const names = [...o.users.keys()].sort();
    e.onlineCount.textContent = `${names.length} online`;
    e.onlineList.replaceChildren(
      ...names.map((user) => {
        const devices = o.users.get(user);
        const li = el('li');
        li.dataset.user = user;
        li.dataset.devices = String(devices);
        const text = devices > 1 ? `${user} (${devices})` : user;
        const on = devices > 1 ? `online on ${devices} devices` : 'online';
        if (user === this.me) {
          const you = el('span', 'online-user self', text);
          you.title = 'You, ' + on;
          you.append(el('span', 'sr-only', ' (you)'));
          li.append(you);
        } else {
          const b = el('button', 'online-user', text);
          b.type = 'button';
          b.title = `${user}, ${on}: message ${user} directly`;
          li.append(b);
        }
        return li;
      }),
    );
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
    if (how === 'new' && !this.isReading(r) && !r.isCounted(m.epoch, m.seq)) this.setUnread(r, r.unread + 1);
    if (open) {
      if (stick) this.scrollToBottom();
      this.updateOlder();
      this.markRead(r);
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

  // ---- directory, private rooms, invites ----

  openDirectory() {
    const e = this.els;
    e.browseList.replaceChildren();
    show(e.browseEmpty, false);
    show(e.browseError, false);
    show(e.browseMore, false);
    if (!e.browseDialog.open) e.browseDialog.showModal();
    this.loadDirectory('');
  }

  async loadDirectory(after) {
    const e = this.els;
    e.browseMore.disabled = true;
    try {
      const page = await this.client.directory({ after, limit: DIRECTORY_PAGE });
      for (const d of page.rooms) {
        const li = el('li');
        li.dataset.room = d.room;
        li.append(el('span', 'dir-name', '# ' + d.room));
        li.append(el('span', 'members', d.members === 1 ? '1 member' : `${d.members || 0} members`));
        const join = el('button', 'small dir-join', this.rooms.has(d.room) ? 'Open' : 'Join');
        join.type = 'button';
        join.setAttribute('aria-label', (this.rooms.has(d.room) ? 'Open ' : 'Join ') + d.room);
        li.append(join);
        e.browseList.append(li);
      }
      this.dirNext = page.next || '';
      show(e.browseMore, !!this.dirNext);
      show(e.browseEmpty, e.browseList.children.length === 0);
    } catch (err) {
      e.browseError.textContent = 'Could not list the rooms: ' + err.message;
      show(e.browseError, true);
    } finally {
      e.browseMore.disabled = false;
    }
  }

  /** Opens the ask dialog: one input; done(value) resolves with an error text, or '' to close. */
  ask(title, label, ok, done) {
    const e = this.els;
    e.askTitle.textContent = title;
    e.askLabel.textContent = label;
    e.askForm.querySelector('#ask-ok').textContent = ok;
    e.askInput.value = '';
    show(e.askError, false);
    this.askDone = done;
    if (!e.askDialog.open) e.askDialog.showModal();
    e.askInput.focus();
  }

  async answerAsk() {
    const e = this.els;
    const value = e.askInput.value.trim();
    if (!value || !this.askDone) return;
    const err = await this.askDone(value);
    if (err) {
      e.askError.textContent = err;
      show(e.askError, true);
      return;
    }
    e.askDialog.close();
  }

  /** Creates a private room and opens it; resolves with an error text or ''. */
  async createPrivate(name) {
    const bad = roomNameError(name) || (isDirectRoom(name) ? 'Direct rooms are made by messaging someone.' : '');
    if (bad) return bad;
    try {
      const f = await this.client.createRoom(name, { kind: 'private' });
      this.openRoom(name, { kind: f.kind });
      this.selectRoom(name);
      return '';
    } catch (err) {
      return err.code === 'forbidden' ? `${name} is taken: ${err.message}` : err.message;
    }
  }

  async invite(room, user) {
    if (!USER_RE.test(user)) return 'Not a user name.';
    try {
      await this.client.invite(room, user);
      return '';
    } catch (err) {
      return err.message;
    }
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
