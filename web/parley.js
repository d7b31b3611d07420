/**
 * parley.js: a browser client for Parley wire protocol v1 (docs/protocol.md).
 * An ES module with no dependencies; served by every gateway at /parley.js.
 *
 *   import { ParleyClient, roomNameError, directRoom, place } from '/parley.js';
 *
 *   const c = new ParleyClient({
 *     url: 'ws://host:8080/ws', // default: /ws on the host that served the page
 *     user: 'alice',            // dev auth; or token: '<JWT>', or tokenSource:
 *                               // async () => '<JWT>' (asked at each hello and refresh)
 *     device: 'laptop',         // optional, stamped on your messages
 *     minBackoff: 250,          // ms, first reconnect delay (default 250)
 *     maxBackoff: 10000,        // ms, largest reconnect delay (default 10000)
 *     ackTimeout: 5000,         // ms before an unacknowledged send is resent (default 5000)
 *     pingInterval: 20000,      // ms between application pings while idle (default 20000)
 *   });
 *   c.addEventListener('state', (e) => e.detail.state);  // see "States"
 *   c.addEventListener('message', (e) => show(e.detail)); // a message frame, each seq once
 *   c.connect();
 *   const joined = await c.join('general');  // resolves with the joined frame
 *   const id = c.newId();                    // pick the id first to show the line at once
 *   const ack = await c.send('general', 'hi', { id }); // resolves with the ack frame
 *   const older = await c.history('general', { before: 58, limit: 50 }); // message frames
 *   const who = await c.presence('general'); // {room, count, users: [{user, devices}]}
 *   await c.leave('general');
 *   c.close();
 *
 * Methods
 *   connect()                 start (or restart after close or a fatal error)
 *   close()                   stop for good: close the socket, reject pending sends
 *   join(room, {since})       join now and re-join with since after every reconnect;
 *                             since ({epoch, seq}) resumes from a stored position.
 *                             Resolves with the first joined frame; rejects on an error frame
 *                             that says no (forbidden, bad_request); one that says "not now"
 *                             (rate_limited, unavailable) makes it join again later.
 *                             On a room already joined it sends nothing and resolves at once
 *                             with the room's latest joined frame (since is ignored: the
 *                             client already follows the room from its own position); while
 *                             the first join is still on its way, with that join's answer.
 *   leave(room)               stop receiving room; resolves when left (at once if offline)
 *   refresh(token)            replace the connection's token (resolves with refreshed);
 *                             with the tokenSource option it is done by itself when the
 *                             server sends token_expiring
 *   typing(room)              tell room's other members you are typing; call it on every
 *                             keystroke: at most one notice per 2 s is sent, none while
 *                             offline or before the room is joined. Returns whether it sent
 *   send(room, body, {id})    post; resolves with the ack ({seq, epoch, id, ts, ...}). Kept
 *                             until acknowledged: resent with the same id after ackTimeout, a
 *                             reconnect, a rate_limited error (after its retry_after_ms) or an
 *                             unavailable/internal one (after a backoff); the server
 *                             deduplicates by id. Rejects on a permanent error (bad_request,
 *                             too_large, forbidden, ...). Sends are published in the order
 *                             send() was called: each is written once the one before it is
 *                             acknowledged or rejected, so a resent message is never overtaken
 *                             (the server may refuse one while over its rate and accept the
 *                             next a moment later).
 *   newId()                   a fresh idempotency key for send
 *   history(room, {before, limit}) resolves with messages older than before (ascending seq);
 *                             a rate_limited answer is waited out and the request resent
 *   presence(room)            who is in room now (a public room, or one you are a member of):
 *                             resolves with the answer, a presence frame ({room, count, users}):
 *                             count is the room's connections, users ([{user, devices}], sorted
 *                             by name, yourself included once joined) is absent in a room over
 *                             the server's detail size (100 connections). Keep it live with the
 *                             presence events; ask again after a reconnect (none come while
 *                             offline). Rejects when offline or on an error frame (forbidden)
 *   position(room)            {epoch, seq} of the last message seen in room, or null
 *   rooms()                   the rooms joined
 *   memberships()             the rooms the user is a member of, on any device, as the server
 *                             last said: welcome.rooms ({room, kind, epoch, seq, first, read,
 *                             unread}, sorted by name), kept up to date by membership frames
 *                             (added with their kind, or dropped) and read frames (read,
 *                             unread); [] before the first welcome, or when the welcome had
 *                             no rooms (the server could not read them). Messages that come
 *                             later do not change it: count them yourself.
 *   read(room, {epoch, seq})  move the read cursor in room forward to the message (epoch, seq);
 *                             resolves with the answer, a read frame ({room, epoch, seq,
 *                             unread}: where the cursor is now, perhaps further than asked if
 *                             another device read on). The user's other devices get a read
 *                             event. Rejects when offline or on an error frame (forbidden: not
 *                             a member)
 *   createRoom(room, {kind})  create a room, kind 'private' (default) or 'public'; resolves with
 *                             the created frame ({room, kind}); you are its first member (join
 *                             it to receive it). Rejects with code forbidden if the name is taken
 *   invite(room, user)        make user a member of room (you must be one); resolves with the
 *                             invited frame ({room, user}); not_found: a room never created
 *   directory({after, limit}) a page of the public rooms, in name order: resolves with the rooms
 *                             frame ({rooms: [{room, kind, members}], next}); pass next as after
 *                             for the following page (next is absent on the last one)
 *                             history, read, presence, createRoom, invite and directory reject when offline
 *                             or on an error frame (with .code); a rate_limited answer is waited
 *                             out and the request written again
 *   state, welcome            the current state and the last welcome frame (welcome.node
 *                             names the gateway)
 *
 * Events (EventTarget; the frame or a summary is in event.detail)
 *   state     {state, delay?, code?, reason?}
 *   welcome   the welcome frame, after every (re)connect; its rooms (when present) are the
 *             user's memberships with their unread counts (see memberships())
 *   joined    the joined frame plus {resumed, epochChanged}; recovered === false means
 *             some messages could not be delivered (history trimmed or lost)
 *   message   a message frame; duplicates (seq <= the last seen in the epoch: place()
 *             says 'duplicate') are dropped
 *   tokenexpiring {expires}: the token expires soon (refreshed by itself with tokenSource)
 *   tokenrefreshed {expires}: tokenSource's fresh token took effect
 *   ack       an ack frame for one of your sends
 *   typing    a typing frame ({room, user, device}): another member is typing; never
 *             replayed, so show it for a few seconds
 *   presence  {room, user, devices, state: 'online' | 'offline'}: another user's connections
 *             in a room this client joined changed; devices is how many are in it now (0 when
 *             offline). Never about yourself, none in rooms over the detail size, not
 *             replayed: after a reconnect, ask presence(room) again
 *   read      a read frame without ref ({room, epoch, seq, unread}): another device of the
 *             user moved its read cursor in room; unread (0 when absent) is what is left
 *   membership {room, state: 'member' | 'left', kind}: another device of the user (or another
 *             user: an invite, a direct room) made the user a member of room, or one of the
 *             user's devices left it. Not replayed: after a reconnect, welcome.rooms has the
 *             state. The client does not join or leave on its own
 *   senderror {id, room, error}: a send that failed for good
 *   retry     {type, room, id?, code, message, after, attempt}: the server refused a send,
 *             join or other request (type: history, read, presence, create, invite, rooms) for now; it is written again in `after` ms (attempt
 *             counts the refusals of that request)
 *   error     an error frame from the server (refusals for now included)
 *   fatal     {code, reason}: the server refused the session (bad credentials, flood);
 *             no more reconnects until connect() is called again
 *
 * States
 *   idle -> connecting -> connected; on a drop: reconnecting (exponential backoff with
 *   jitter; the load balancer may pick another gateway), then connected again after the
 *   resume. offline: close() was called, the session was refused, or the browser is
 *   offline (it retries as soon as the browser is back online).
 *
 * Functions
 *   roomNameError(name)       why name is not a room a client may join, or '' ('dm:' names must
 *                             be well-formed direct rooms: see directRoom)
 *   directRoom(a, b)          the direct room of users a and b: 'dm:<a>:<b>', the names sorted;
 *                             '' when they are the same or not valid user names (no ':')
 *   isDirectRoom(name)        whether name is a well-formed direct room; directPeer(name, me)
 *                             the other user of a direct room of me ('' if me is not in it)
 *   defaultURL()              /ws on the host that served the page
 *   place(pos, epoch, seq)    where a message at (epoch, seq) falls after pos ({epoch, seq} of
 *                             the last message seen, as position() gives it, or null):
 *                             'duplicate' (same epoch, seq <= pos.seq), 'next' (seq ==
 *                             pos.seq + 1), 'gap' (later) or 'new-epoch' (another epoch). The
 *                             zero position {epoch: '', seq: 0} (a room seen empty) and null
 *                             take any epoch as their own. The client drops the duplicates.
 */

const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const TYPING_INTERVAL = 2000; // ms between two typing notices, as the server relays them

const USER_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/; // a user name that can be in a direct room

/** The two users of a well-formed direct room name, or null. */
function directUsers(name) {
  if (typeof name !== 'string' || !name.startsWith('dm:') || !ROOM_RE.test(name)) return null;
  const parts = name.split(':');
  if (parts.length !== 3) return null;
  const [, a, b] = parts;
  if (!USER_RE.test(a) || !USER_RE.test(b) || !(a < b)) return null;
  return [a, b];
}

/** Returns why name is not a room a client may join, or '' when it is fine. */
export function roomNameError(name) {
  if (!ROOM_RE.test(name)) {
    return 'Room names are 1-64 characters of A-Z a-z 0-9 . _ : -, starting with a letter or digit.';
  }
  if (name.startsWith('dm:') && !directUsers(name)) {
    return 'Names starting "dm:" are direct rooms: dm:<a>:<b>, two different user names in sorted order.';
  }
  return '';
}

/** The direct room of users a and b ('dm:' and the two names, sorted), or '' if there is none. */
export function directRoom(a, b) {
  if (a === b) return '';
  const name = a < b ? `dm:${a}:${b}` : `dm:${b}:${a}`;
  return directUsers(name) ? name : '';
}

/** Whether name is a well-formed direct room. */
export function isDirectRoom(name) {
  return directUsers(name) !== null;
}

/** The other user of the direct room name of me, or '' (not a direct room, or not me's). */
export function directPeer(name, me) {
  const u = directUsers(name);
  if (!u) return '';
  if (u[0] === me) return u[1];
  if (u[1] === me) return u[0];
  return '';
}

/**
 * Where a message at (epoch, seq) falls after pos, the last message seen (null for none):
 * 'next' | 'duplicate' | 'gap' | 'new-epoch'. The one position rule of this file, the
 * same as protocol.Position.Place in Go. Seqs of different epochs cannot be compared: a
 * new epoch means the room's store lost it and counted again from 1. The zero position
 * (a room that was empty) has no epoch yet, so it takes the first one it meets.
 */
export function place(pos, epoch, seq) {
  const p = pos || { epoch: '', seq: 0 };
  const zero = p.epoch === '' && p.seq === 0;
  if (epoch !== p.epoch && !zero) return 'new-epoch';
  if (seq <= p.seq) return 'duplicate';
  if (seq === p.seq + 1) return 'next';
  return 'gap';
}

/** The default endpoint: /ws on the host that served the page. */
export function defaultURL() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

/** Error codes after which a send or a join is written again (a send with the same id). */
const RETRYABLE = new Set(['unavailable', 'internal', 'rate_limited']);

/** Requests written again after rate_limited (retry_after_ms); other errors reject them. */
const RESENT_REQUESTS = new Set(['history', 'read', 'presence', 'create', 'invite', 'rooms']);

/** The answer frame type of each request kind. */
const ANSWERS = {
  history: 'history', leave: 'left', ping: 'pong', read: 'read', presence: 'presence',
  create: 'created', invite: 'invited', rooms: 'rooms', refresh: 'refreshed',
};

// At most JOIN_WINDOW joins are on the wire at once; the next goes as one is
// answered. A page in many rooms (all of them re-joined after every reconnect)
// must not send its joins in one burst: the gateway refuses frames past its
// burst (40) and closes a connection whose refusals run past it as a flood.
const JOIN_WINDOW = 16;

function randomHex(bytes) {
  const a = new Uint8Array(bytes);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class ParleyClient extends EventTarget {
  constructor(opts = {}) {
    super();
    this.url = opts.url || defaultURL();
    this.user = opts.user || '';
    this.token = opts.token || '';
    // async () => a fresh token: asked for each hello and when the server says the
    // token is expiring (then sent as refresh); without it a token is used until it expires.
    this.tokenSource = opts.tokenSource || null;
    this.device = opts.device || '';
    this.minBackoff = opts.minBackoff ?? 250;
    this.maxBackoff = opts.maxBackoff ?? 10000;
    this.ackTimeout = opts.ackTimeout ?? 5000;
    this.pingInterval = opts.pingInterval ?? 20000;
    this.state = 'idle';
    this.welcome = null;
    /** room -> {room, kind, epoch, seq, first, read, unread}: see memberships(). */
    this._members = new Map();

    this._ws = null;
    this._gen = 0; // bumped for every socket; events of older sockets are ignored
    this._ready = false; // welcomed on the current socket
    this._stopped = true;
    this._attempt = 0;
    this._retryTimer = 0;
    this._pingTimer = 0;
    this._pongTimer = 0;
    this._helloRef = '';
    this._refN = 0;
    this._idPrefix = randomHex(6);
    this._idN = 0;
    /**
     * room -> {pos, waiters: [{resolve, reject}], ref, joined, timer, refusals}. pos is the
     * {epoch, seq} of the last message delivered (see place), null until a since or a
     * joined frame gives one; it is the since of every re-join.
     */
    this._rooms = new Map();
    this._typedAt = 0; // Date.now() of the last typing notice sent
    this._joining = 0; // joins on the wire (rooms with inflight set)
    this._joinWait = []; // rooms whose join waits for a free place in the window
    /**
     * id -> {id, room, body, ref, timer, sent, waiting, refusals, resolve, reject}, in send
     * order. Only the first is ever written (see _pump).
     */
    this._outbox = new Map();
    /** ref -> {kind, resolve, reject, id?, room?, frame?, refusals?} */
    this._requests = new Map();

    this._onOnline = () => {
      if (!this._stopped && !this._ready) this._open();
    };
  }

  // ---- public API ----

  connect() {
    if (!this._stopped) return;
    this._stopped = false;
    this._attempt = 0;
    if (typeof window !== 'undefined') window.addEventListener('online', this._onOnline);
    this._open();
  }

  close() {
    this._stopped = true;
    if (typeof window !== 'undefined') window.removeEventListener('online', this._onOnline);
    clearTimeout(this._retryTimer);
    this._drop(1000, 'closed by the client', false);
    for (const e of this._outbox.values()) {
      clearTimeout(e.timer);
      e.reject(new Error('client closed'));
    }
    this._outbox.clear();
    for (const r of this._rooms.values()) {
      clearTimeout(r.timer);
      for (const w of r.waiters) w.reject(new Error('client closed'));
      r.waiters = [];
    }
    this._setState('offline', { reason: 'closed' });
  }

  rooms() {
    return [...this._rooms.keys()];
  }

  memberships() {
    return [...this._members.values()].map((m) => ({ ...m })).sort((a, b) => (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
  }

  position(room) {
    const r = this._rooms.get(room);
    if (!r || !r.pos) return null;
    return { ...r.pos };
  }

  newId() {
    this._idN += 1;
    return `w${this._idPrefix}-${this._idN}`;
  }

  join(room, opts = {}) {
    const bad = roomNameError(room);
    if (bad) return Promise.reject(new Error(bad));
    let r = this._rooms.get(room);
    // Already joined: joining again would only replay the backlog, which the
    // client drops as seen. Answer with what the last join said.
    if (r && r.joined) return Promise.resolve(r.joined);
    if (!r) {
      r = { pos: null, waiters: [], ref: '', joined: null, timer: 0, refusals: 0 };
      if (opts.since) r.pos = { epoch: opts.since.epoch || '', seq: opts.since.seq || 0 };
      this._rooms.set(room, r);
      if (this._ready) this._sendJoin(room, r);
    }
    return new Promise((resolve, reject) => r.waiters.push({ resolve, reject }));
  }

  typing(room) {
    // The server relays one notice per 2 s per connection; sending more
    // would only spend the connection's rate allowance.
    const r = this._rooms.get(room);
    if (!this._ready || !r || !r.joined) return false;
    const now = Date.now();
    if (now - this._typedAt < TYPING_INTERVAL) return false;
    this._typedAt = now;
    return this._write({ type: 'typing', room });
  }

  leave(room) {
    if (!this._rooms.has(room)) return Promise.resolve();
    const r = this._rooms.get(room);
    this._rooms.delete(room);
    clearTimeout(r.timer);
    this._joinWait = this._joinWait.filter((w) => w !== room);
    this._joinAnswered(r);
    for (const w of r.waiters) w.reject(new Error('left ' + room));
    if (!this._ready) return Promise.resolve();
    return this._request('leave', { type: 'leave', room });
  }

  send(room, body, opts = {}) {
    const bad = roomNameError(room);
    if (bad) return Promise.reject(new Error(bad));
    const id = opts.id || this.newId();
    const existing = this._outbox.get(id);
    if (existing) return existing.promise;
    const e = { id, room, body, ref: '', timer: 0, sent: false, waiting: false, refusals: 0 };
    e.promise = new Promise((resolve, reject) => {
      e.resolve = resolve;
      e.reject = reject;
    });
    this._outbox.set(id, e);
    this._pump();
    return e.promise;
  }

  history(room, opts = {}) {
    if (!this._ready) return Promise.reject(new Error('not connected'));
    const f = { type: 'history', room };
    if (opts.before) f.before = opts.before;
    if (opts.limit) f.limit = opts.limit;
    return this._request('history', f, { room });
  }

  presence(room) {
    if (!this._ready) return Promise.reject(new Error('not connected'));
    return this._request('presence', { type: 'presence', room }, { room });
  }

  read(room, pos = {}) {
    if (!this._ready) return Promise.reject(new Error('not connected'));
    const f = { type: 'read', room, epoch: pos.epoch || '', seq: pos.seq || 0 };
    return this._request('read', f, { room });
  }

  createRoom(room, opts = {}) {
    const bad = roomNameError(room);
    if (bad) return Promise.reject(new Error(bad));
    if (!this._ready) return Promise.reject(new Error('not connected'));
    return this._request('create', { type: 'create', room, kind: opts.kind || 'private' }, { room });
  }

  invite(room, user) {
    if (!this._ready) return Promise.reject(new Error('not connected'));
    return this._request('invite', { type: 'invite', room, user }, { room });
  }

  directory(opts = {}) {
    if (!this._ready) return Promise.reject(new Error('not connected'));
    const f = { type: 'rooms' };
    if (opts.after) f.after = opts.after;
    if (opts.limit) f.limit = opts.limit;
    return this._request('rooms', f);
  }

  // ---- connection ----

  _setState(state, extra = {}) {
    this.state = state;
    this._emit('state', { state, ...extra });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _ref(prefix) {
    this._refN += 1;
    return `${prefix}${this._refN}`;
  }

  _open() {
    clearTimeout(this._retryTimer);
    if (this._stopped) return;
    this._drop(1000, 'reopening', false);
    const gen = ++this._gen;
    this._setState(this.welcome ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url, 'parley.v1');
    } catch (err) {
      this._scheduleRetry(0, String(err));
      return;
    }
    this._ws = ws;
    ws.onopen = async () => {
      if (gen !== this._gen) return;
      if (this.tokenSource) {
        try {
          this.token = await this.tokenSource();
        } catch (err) {
          this._emit('error', { code: 'token', message: 'tokenSource failed: ' + err });
        }
        if (gen !== this._gen) return;
      }
      this._helloRef = this._ref('h');
      const hello = { type: 'hello', ref: this._helloRef };
      if (this.token) hello.token = this.token;
      else hello.user = this.user;
      if (this.device) hello.device = this.device;
      this._write(hello);
    };
    ws.onmessage = (ev) => {
      if (gen !== this._gen) return;
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        return; // not v1: ignore
      }
      this._alive();
      this._frame(f);
    };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._gone(ev.code, ev.reason);
    };
    ws.onerror = () => {}; // a close event follows
  }

  /** Forget the current socket (its events are ignored from now on). */
  _drop(code, reason, notify) {
    const ws = this._ws;
    this._ws = null;
    this._gen += 1;
    this._ready = false;
    this._resetJoins();
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        // already closing
      }
    }
    if (notify) this._gone(code, reason);
  }

  /** The socket is gone: fail what cannot survive it and plan the next one. */
  _gone(code, reason) {
    this._ws = null;
    this._ready = false;
    this._resetJoins();
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    for (const [ref, q] of this._requests) {
      clearTimeout(q.timer);
      if (q.kind === 'leave') q.resolve({ type: 'left' });
      else q.reject(new Error('connection lost'));
      this._requests.delete(ref);
    }
    for (const e of this._outbox.values()) {
      clearTimeout(e.timer);
      e.sent = false;
      e.waiting = false;
    }
    for (const r of this._rooms.values()) clearTimeout(r.timer); // re-joined on welcome
    if (this._stopped) return;
    if (code === 1008) {
      // Policy: bad credentials or a flood. Reconnecting would fail again.
      this._stopped = true;
      const why = this._authError || reason || 'refused by the server';
      this._authError = '';
      this._emit('fatal', { code, reason: why });
      this._setState('offline', { code, reason: why });
      return;
    }
    this._scheduleRetry(code, reason);
  }

  _scheduleRetry(code, reason) {
    this._attempt += 1;
    const ceiling = Math.min(this.maxBackoff, this.minBackoff * 2 ** (this._attempt - 1));
    // "Equal jitter": at least half the ceiling, so retries never stampede.
    const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    const offline = typeof navigator !== 'undefined' && navigator.onLine === false;
    this._setState(offline ? 'offline' : 'reconnecting', { delay, code, reason });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _write(f) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  /** Any frame proves the connection alive; ping when it has been quiet. */
  _alive() {
    clearTimeout(this._pongTimer);
    clearTimeout(this._pingTimer);
    if (!this._ready || !this.pingInterval) return;
    const gen = this._gen;
    this._pingTimer = setTimeout(() => {
      if (gen !== this._gen) return;
      this._write({ type: 'ping', ref: this._ref('p') });
      this._pongTimer = setTimeout(() => {
        if (gen === this._gen) this._drop(4000, 'no answer to ping', true);
      }, 10000);
    }, this.pingInterval);
  }

  _request(kind, frame, extra = {}) {
    const ref = this._ref(kind.slice(0, 2));
    frame.ref = ref;
    return new Promise((resolve, reject) => {
      this._requests.set(ref, { kind, resolve, reject, frame, refusals: 0, timer: 0, ...extra });
      if (!this._write(frame)) {
        this._requests.delete(ref);
        reject(new Error('not connected'));
      }
    });
  }

  _sendJoin(room, r) {
    if (!r.inflight) {
      if (this._joining >= JOIN_WINDOW) {
        if (!this._joinWait.includes(room)) this._joinWait.push(room);
        return;
      }
      r.inflight = true;
      this._joining += 1;
    }
    r.ref = this._ref('j');
    const f = { type: 'join', ref: r.ref, room };
    if (r.pos) f.since = { ...r.pos }; // resume after the last message delivered
    this._write(f);
  }

  /** A join of r was answered (or given up): its place in the window goes to the next. */
  _joinAnswered(r) {
    if (r.inflight) {
      r.inflight = false;
      this._joining -= 1;
    }
    while (this._ready && this._joinWait.length && this._joining < JOIN_WINDOW) {
      const room = this._joinWait.shift();
      const w = this._rooms.get(room);
      if (w && !w.inflight) this._sendJoin(room, w);
    }
  }

  /** The socket is gone: no join is on the wire; the next welcome sends them all again. */
  _resetJoins() {
    for (const r of this._rooms.values()) r.inflight = false;
    this._joining = 0;
    this._joinWait = [];
  }

  /**
   * Writes the oldest unacknowledged send, unless it is already on its way or waiting to be
   * resent. Sends go one at a time: pipelined, a send refused while the connection is over
   * its rate could be overtaken by the next, which the server accepts once a token is back.
   */
  _pump() {
    if (!this._ready) return; // sent after the next welcome
    const head = this._outbox.values().next().value;
    if (head && !head.sent && !head.waiting) this._transmit(head);
  }

  _transmit(e) {
    clearTimeout(e.timer);
    if (!this._ready) return;
    if (e.ref) this._requests.delete(e.ref);
    e.ref = this._ref('s');
    e.sent = true;
    e.waiting = false;
    this._requests.set(e.ref, { kind: 'send', id: e.id, resolve() {}, reject() {} });
    this._write({ type: 'send', ref: e.ref, room: e.room, id: e.id, body: e.body });
    const gen = this._gen;
    e.timer = setTimeout(() => {
      if (gen === this._gen && this._outbox.has(e.id)) this._transmit(e);
    }, this.ackTimeout);
  }

  /**
   * How long to wait before writing again a request refused for now: the server's
   * retry_after_ms for rate_limited; otherwise (unavailable, internal, or a gateway that
   * gave no retry_after_ms) a backoff that doubles with each refusal, with jitter.
   */
  _retryDelay(f, refusals) {
    if (f.code === 'rate_limited' && f.retry_after_ms > 0) {
      // Refused requests go again one per retry_after_ms, not all at once
      // (they would only be refused again, together).
      const now = Date.now();
      this._nextRetry = Math.max(now, this._nextRetry || 0) + f.retry_after_ms;
      return this._nextRetry - now;
    }
    const ceiling = Math.min(this.maxBackoff, 1000 * 2 ** (refusals - 1));
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  /** Reports a refusal for now and runs again() after the delay, on this socket only. */
  _retryLater(f, refusals, what, again) {
    const after = this._retryDelay(f, refusals);
    this._emit('retry', { ...what, code: f.code, message: f.message, after, attempt: refusals });
    const gen = this._gen;
    return setTimeout(() => {
      if (gen === this._gen) again();
    }, after);
  }

  // ---- frames ----

  _frame(f) {
    switch (f.type) {
      case 'welcome':
        return this._onWelcome(f);
      case 'joined':
        return this._onJoined(f);
      case 'message':
        return this._onMessage(f);
      case 'ack':
        return this._onAck(f);
      case 'read':
        if (!f.ref) {
          this._noteRead(f);
          return this._emit('read', { ...f, unread: f.unread || 0 });
        }
        return this._answer(f);
      case 'presence':
        if (!f.ref) {
          // Zero members are left out of the frame.
          return this._emit('presence', { room: f.room, user: f.user, devices: f.devices || 0, state: f.state });
        }
        return this._answer(f);
      case 'token_expiring':
        return this._refreshToken(f);
      case 'refreshed':
      case 'history':
      case 'left':
      case 'pong':
      case 'created':
      case 'invited':
      case 'rooms':
        return this._answer(f);
      case 'membership':
        if (f.state === 'left') this._members.delete(f.room);
        else this._members.set(f.room, { ...this._members.get(f.room), room: f.room, kind: f.kind || '' });
        return this._emit('membership', { room: f.room, state: f.state, kind: f.kind || '' });
      case 'typing':
        return this._emit('typing', f);
      case 'error':
        return this._onError(f);
      default:
        return undefined; // later protocol additions
    }
  }

  /** The answer to a request: resolves its promise. */
  _answer(f) {
    const q = this._requests.get(f.ref);
    if (!q || ANSWERS[q.kind] !== f.type) return;
    this._requests.delete(f.ref);
    clearTimeout(q.timer);
    if (f.type === 'read') {
      f.unread = f.unread || 0;
      this._noteRead(f);
    }
    if (f.type === 'created') this._members.set(f.room, { ...this._members.get(f.room), room: f.room, kind: f.kind });
    if (f.type === 'rooms' && !f.rooms) f.rooms = [];
    if (f.type === 'presence') f.count = f.count || 0; // users stays absent in a big room
    q.resolve(f.type === 'history' ? f.messages || [] : f);
  }

  /**
   * The server says the token expires soon: with a tokenSource, fetch a fresh token and send
   * it as refresh; without one, tell the page (tokenexpiring), which may call refresh().
   */
  async _refreshToken(f) {
    this._emit('tokenexpiring', { expires: f.expires });
    if (!this.tokenSource) return;
    try {
      const r = await this.refresh(await this.tokenSource());
      this._emit('tokenrefreshed', { expires: r.expires });
    } catch (err) {
      this._emit('error', { code: 'token', message: 'refresh failed: ' + (err.message || err) });
    }
  }

  /** Replaces the connection's token with a fresh one; resolves with the refreshed frame. */
  refresh(token) {
    this.token = token;
    return this._request('refresh', { type: 'refresh', token });
  }

  /** A read cursor moved (an answer, or another device's): memberships() follows. */
  _noteRead(f) {
    const m = this._members.get(f.room);
    if (m) this._members.set(f.room, { ...m, epoch: f.epoch || m.epoch, read: f.seq || 0, unread: f.unread || 0 });
  }

  _onWelcome(f) {
    this.welcome = f;
    this._members = new Map((f.rooms || []).map((m) => [m.room, { ...m }]));
    this._ready = true;
    this._attempt = 0;
    this._setState('connected', { node: f.node });
    this._emit('welcome', f);
    // Rooms joined by a welcome listener are on their way already.
    for (const [room, r] of this._rooms) if (!r.inflight && !this._joinWait.includes(room)) this._sendJoin(room, r);
    this._pump();
    this._alive();
  }

  _onJoined(f) {
    const r = this._rooms.get(f.room);
    if (!r) return;
    if (f.ref && f.ref === r.ref) this._joinAnswered(r);
    const epoch = f.epoch || '';
    const resumed = r.pos !== null;
    // The room is in another epoch than the position: its store lost the
    // room, and the seqs seen before mean nothing any more.
    const epochChanged = place(r.pos, epoch, f.seq || 0) === 'new-epoch';
    // The position takes the room's epoch, at seq 0 (before its first
    // message) unless it was in it already; the backlog follows.
    if (!r.pos || r.pos.epoch !== epoch) r.pos = { epoch, seq: 0 };
    const detail = { ...f, epoch, seq: f.seq || 0, first: f.first || 0, resumed, epochChanged };
    r.joined = detail;
    r.refusals = 0;
    const waiters = r.waiters;
    r.waiters = [];
    this._emit('joined', detail);
    for (const w of waiters) w.resolve(detail);
  }

  _onMessage(m) {
    const r = this._rooms.get(m.room);
    if (!r) return;
    // Each message once. A gap is delivered too (a backlog starts where the
    // history does; what a resume could not recover, joined's recovered
    // reports), and so is a new epoch, which may come without a joined first.
    if (place(r.pos, m.epoch, m.seq) === 'duplicate') return;
    r.pos = { epoch: m.epoch, seq: m.seq };
    this._emit('message', m);
  }

  _onAck(f) {
    this._requests.delete(f.ref);
    const e = this._outbox.get(f.id);
    if (!e) return;
    clearTimeout(e.timer);
    this._outbox.delete(f.id);
    this._emit('ack', f);
    e.resolve(f);
    this._pump();
  }

  _onError(f) {
    this._emit('error', f);
    if (!f.ref) return;
    if (f.ref === this._helloRef) {
      this._authError = f.message; // the 1008 close follows
      return;
    }
    const q = this._requests.get(f.ref);
    if (q) {
      if (q.kind === 'send') {
        this._requests.delete(f.ref);
        return this._sendFailed(q.id, f);
      }
      if (RESENT_REQUESTS.has(q.kind) && f.code === 'rate_limited') {
        // Kept in _requests meanwhile, so that a lost connection rejects it.
        q.refusals += 1;
        q.timer = this._retryLater(f, q.refusals, { type: q.kind, room: q.room }, () => {
          if (this._requests.get(f.ref) === q) this._write(q.frame);
        });
        return undefined;
      }
      this._requests.delete(f.ref);
      q.reject(Object.assign(new Error(f.message), { code: f.code }));
      return undefined;
    }
    for (const [room, r] of this._rooms) {
      if (r.ref !== f.ref) continue;
      if (RETRYABLE.has(f.code)) {
        // It keeps its place in the window until the retry is answered:
        // freeing it would send the next join into the same refusal.
        // Not now: the room stays joined as far as the caller knows; join again later.
        r.refusals += 1;
        r.timer = this._retryLater(f, r.refusals, { type: 'join', room }, () => {
          if (this._rooms.get(room) === r) this._sendJoin(room, r);
        });
        continue;
      }
      this._rooms.delete(room);
      this._joinAnswered(r);
      for (const w of r.waiters) w.reject(Object.assign(new Error(f.message), { code: f.code }));
    }
    return undefined;
  }

  _sendFailed(id, f) {
    const e = this._outbox.get(id);
    if (!e) return;
    clearTimeout(e.timer);
    if (RETRYABLE.has(f.code)) {
      // Written again with the same id; the sends after it wait (see _pump).
      e.sent = false;
      e.waiting = true;
      e.refusals += 1;
      e.timer = this._retryLater(f, e.refusals, { type: 'send', room: e.room, id }, () => {
        if (this._outbox.get(id) === e) this._transmit(e);
      });
      return;
    }
    this._outbox.delete(id);
    const err = Object.assign(new Error(f.message), { code: f.code });
    this._emit('senderror', { id, room: e.room, error: err });
    e.reject(err);
    this._pump();
  }
}
