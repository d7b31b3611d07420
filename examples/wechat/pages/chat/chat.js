/*
 * Parley chat logic for the WeChat mini-program (protocol v1).
 *
 * This file has no dependency on the `wx` global or on any page: it is given
 * a wx-like object (anything with connectSocket returning a SocketTask:
 * onOpen, onMessage, onClose, onError, send, close) and reports its state
 * through a callback. The page (index.js) turns that state into setData;
 * tests run the same file in a browser with a small wx shim over a real
 * WebSocket.
 *
 * One file, three ways to load it:
 *   - mini-program (CommonJS):  var chat = require('./chat.js');
 *   - classic <script> tag:     window.ParleyChat
 *   - ES module import:         import './chat.js'; globalThis.ParleyChat
 * It assigns module.exports when `module` exists and a global otherwise, and
 * uses no `export` statement, so the mini-program runtime needs no
 * transpiling. Plain ES5 syntax for the same reason.
 *
 * What it does, per docs/protocol.md:
 *   1. connect with subprotocol parley.v1, send hello {user, device};
 *   2. on welcome, join the room: the first time without `since` (the
 *      backlog), after a reconnect with since {epoch, seq} of the last
 *      message shown, so exactly the missed messages follow;
 *   3. show each message once, in seq order (a message whose seq is at or
 *      below the last one seen in the same epoch is dropped);
 *   4. send(text) gives the message an id (device + session + counter) and
 *      keeps it in an outbox until its ack; unacked sends are written again,
 *      with the same id, after every reconnect and after an ack timeout;
 *      the gateway's idempotency makes that safe. Sends are written one at a
 *      time, in order: the next once the one before is acknowledged, so a
 *      message the gateway refused for now is never overtaken by a later one;
 *   5. an error that means "not now" is waited out: rate_limited (the
 *      connection is over its allowance) for the error's retry_after_ms,
 *      unavailable or internal (the store is unreachable) for a backoff; then
 *      the send, or the join, is written again. A send refused for good
 *      (bad_request, too_large, forbidden, ...) is rejected;
 *   6. on close, reconnect with exponential backoff and jitter; a close with
 *      1008 (policy: bad credentials, flood) stops instead;
 *   7. the read cursor: welcome lists the user's rooms with their unread
 *      counts (state().rooms) and read cursors. The first join of the page's
 *      room starts from the cursor, since {epoch, seq: read}, so exactly the
 *      unread messages follow (without a cursor: the backlog). Once online,
 *      the last message shown is marked read (a `read` frame, at most one per
 *      readDelay); read frames from the user's other devices move the cursor
 *      and the unread counts too;
 *   8. typing: `typing` frames of the room show as state().typing ("bob is
 *      typing…") for a few seconds, or until bob's next message; typing()
 *      (call it on every keystroke) sends at most one `typing` per 2 s;
 *   9. frame types it does not know (presence, membership, later additions)
 *      are ignored, as the protocol asks.
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === 'object' && module && typeof module.exports === 'object') {
    module.exports = api;
  } else {
    root.ParleyChat = api;
  }
})(typeof globalThis !== 'undefined' ? globalThis : typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var SUBPROTOCOL = 'parley.v1';
  var MAX_SHOWN = 500; // messages kept for display; older ones are dropped
  // Error codes that mean "not now": the request was not done; write it again later.
  var NOT_NOW = { rate_limited: true, unavailable: true, internal: true };
  var TYPING_INTERVAL = 2000; // the gateway relays at most one typing per 2 s
  var TYPING_SHOWN = 4000;    // how long "X is typing…" stays without news

  /**
   * createChat returns a chat session for one room. Options:
   *   wx           object with connectSocket(opts) -> SocketTask (required)
   *   url          gateway URL, e.g. 'wss://chat.example.com/ws' (required)
   *   user, room   user name (dev auth) and room name (required)
   *   token        JWT instead of user, when the gateway has no dev auth
   *   device       device name, default 'wechat'
   *   onChange     function(state) called after every change (see state())
   *   minBackoff, maxBackoff   reconnect delays in ms (default 500, 15000)
   *   ackTimeout   ms before an unacked send is written again (default 10000)
   *   pingInterval ms between liveness pings (default 30000; 0 disables)
   *   autoRead     mark the last message shown read (default true)
   *   readDelay    ms to gather messages before marking read (default 1000)
   *   setTimeout, clearTimeout, random, now   injectable for tests
   */
  function createChat(opts) {
    if (!opts || !opts.wx || !opts.url || !opts.room || !(opts.user || opts.token)) {
      throw new Error('createChat needs wx, url, room and user (or token)');
    }
    var wx = opts.wx;
    var device = opts.device || 'wechat';
    var minBackoff = opts.minBackoff || 500;
    var maxBackoff = opts.maxBackoff || 15000;
    var ackTimeout = opts.ackTimeout || 10000;
    var pingInterval = opts.pingInterval === undefined ? 30000 : opts.pingInterval;
    var setT = opts.setTimeout || setTimeout;
    var clearT = opts.clearTimeout || clearTimeout;
    var random = opts.random || Math.random;
    var now = opts.now || Date.now;
    var autoRead = opts.autoRead !== false;
    var readDelay = opts.readDelay === undefined ? 1000 : opts.readDelay;
    var onChange = opts.onChange || function () {};

    // A per-session prefix keeps ids unique across app restarts.
    var session = Date.now().toString(36) + Math.floor(random() * 1296).toString(36);
    var counter = 0;

    var s = {
      status: 'idle',   // idle, connecting, joining, online, reconnecting, stopped
      detail: '',       // last close reason or error, for display
      node: '',         // gateway that serves us now
      user: '',
      warning: '',      // set when a resume could not recover everything
      messages: [],     // {key, seq, epoch, id, from, body, ts, mine}, in seq order;
                        // mine: sent by this user (from any of their devices)
      pending: [],      // outbox: {id, body} not yet acknowledged
      connects: 0,      // connections opened so far
      haveRooms: false, // a welcome listed the user's rooms (see roomList)
      typing: ''        // "bob is typing…", or ''
    };
    var cursors = {};   // room -> {epoch, seq, unread}: the user's read cursors
    var kinds = {};     // room -> kind, in welcome's order (see roomList)
    var readRef = '';   // the read request on its way, '' when none
    var readSent = null; // {epoch, seq} last written in a read
    var readTimer = null;
    var typers = {};    // user -> timer: who is typing in the room now
    var typedAt = 0;    // when typing() last wrote a frame
    var pos = null;     // {epoch, seq}: the last position shown, null before the first join
    var outbox = [];    // {id, body, ref, timer, sent, waiting, refusals, resolve, reject};
                        // only outbox[0] is ever written (see pump)
    var join = { ref: '', timer: null, refusals: 0 }; // the join of the current connection
    var task = null;    // current SocketTask
    var attempt = 0;    // failed attempts since the last welcome
    var retryTimer = null;
    var pingTimer = null;
    var heard = false;  // a frame arrived since the last ping tick
    var welcomed = false; // hello answered on the current connection
    var stopped = false;
    var refs = 0;

    function emit() {
      s.pending = outbox.map(function (o) { return { id: o.id, body: o.body }; });
      try {
        onChange(state());
      } catch (e) {
        if (typeof console !== 'undefined') console.error('parley chat onChange:', e);
      }
    }

    function state() {
      return {
        status: s.status, detail: s.detail, node: s.node, user: s.user,
        warning: s.warning, connects: s.connects,
        position: pos ? { epoch: pos.epoch, seq: pos.seq } : null,
        messages: s.messages.slice(), pending: s.pending.slice(),
        read: cursors[opts.room] ? { epoch: cursors[opts.room].epoch, seq: cursors[opts.room].seq } : null,
        rooms: s.haveRooms ? roomList() : null,
        typing: s.typing
      };
    }

    // roomList is the user's rooms with their unread counts, by name.
    function roomList() {
      return Object.keys(kinds).sort().map(function (r) {
        var c = cursors[r];
        return { room: r, kind: kinds[r], unread: c ? c.unread : 0 };
      });
    }

    function write(frame) {
      if (!task || (s.status !== 'joining' && s.status !== 'online')) return false;
      task.send({ data: JSON.stringify(frame) });
      return true;
    }

    function connect() {
      retryTimer = null;
      if (stopped) return;
      s.status = 'connecting';
      s.connects++;
      var t = wx.connectSocket({ url: opts.url, protocols: [SUBPROTOCOL] });
      var done = false;
      task = t;
      // Each handler checks that its task is still the current one: a late
      // event from an old socket must not disturb the new one.
      function closed(code, reason) {
        if (done || task !== t) return;
        done = true;
        task = null;
        welcomed = false;
        stopPing();
        readRef = '';
        if (readTimer) clearT(readTimer);
        readTimer = null;
        clearTypers();
        // Whatever was waiting on this connection is written again on the next.
        if (join.timer) clearT(join.timer);
        join.timer = null;
        for (var i = 0; i < outbox.length; i++) {
          if (outbox[i].timer) clearT(outbox[i].timer);
          outbox[i].timer = null;
          outbox[i].sent = false;
          outbox[i].waiting = false;
        }
        s.node = '';
        s.detail = 'closed' + (code ? ' ' + code : '') + (reason ? ': ' + reason : '');
        if (stopped) {
          s.status = 'stopped';
        } else if (code === 1008) {
          // Policy: bad credentials or flooding. Retrying would not help.
          s.status = 'stopped';
          stopped = true;
          failAll(new Error(s.detail));
        } else {
          scheduleRetry();
        }
        emit();
      }
      t.onOpen(function () {
        if (task !== t) return;
        s.status = 'joining';
        s.detail = '';
        var hello = { type: 'hello', ref: 'h' + (++refs), device: device };
        if (opts.token) hello.token = opts.token;
        else hello.user = opts.user;
        write(hello);
        emit();
      });
      t.onMessage(function (res) {
        if (task !== t) return;
        heard = true;
        var f;
        try {
          f = JSON.parse(res.data);
        } catch (e) {
          return; // not a v1 frame; ignore
        }
        if (f && typeof f === 'object' && typeof f.type === 'string') handle(f);
      });
      t.onError(function (res) {
        if (task !== t) return;
        s.detail = (res && res.errMsg) || 'socket error';
        // An error is followed by a close in browsers but not always in
        // the mini-program runtime: make sure the socket is gone.
        try { t.close({}); } catch (e) { /* already closed */ }
        closed(0, s.detail);
      });
      t.onClose(function (res) {
        closed(res && res.code, res && res.reason);
      });
    }

    function scheduleRetry() {
      s.status = 'reconnecting';
      var max = Math.min(maxBackoff, minBackoff * Math.pow(2, attempt));
      attempt++;
      var delay = max / 2 + random() * max / 2; // jitter: spread reconnects out
      retryTimer = setT(connect, delay);
    }

    function handle(f) {
      switch (f.type) {
        case 'welcome':
          attempt = 0;
          welcomed = true;
          s.node = f.node || '';
          s.user = f.user || '';
          join.refusals = 0;
          if (f.rooms) welcomeRooms(f.rooms);
          writeJoin();
          // Frames are handled in order, so this follows the join's catch-up.
          pump();
          startPing();
          emit();
          break;
        case 'joined':
          if (f.room !== opts.room) return;
          join.refusals = 0;
          var epoch = f.epoch || '';
          if (!pos || pos.epoch !== epoch) {
            // First join, or the room's history was reset: positions in the
            // old epoch mean nothing now.
            if (pos && pos.epoch !== epoch && s.messages.length > 0) {
              s.warning = 'The room was reset; earlier messages may be missing.';
            }
            pos = { epoch: epoch, seq: 0 };
          }
          if (f.recovered === false) {
            s.warning = 'Some messages could not be recovered.';
          }
          s.status = 'online';
          if (s.messages.length > 0) scheduleRead();
          emit();
          break;
        case 'message':
          if (f.room !== opts.room) return;
          if (pos && f.epoch === pos.epoch && f.seq <= pos.seq) return; // seen
          pos = { epoch: f.epoch, seq: f.seq };
          stopTyping(f.from);
          var c = cursors[opts.room];
          if (c && c.epoch === f.epoch && f.seq > c.seq) c.unread = f.seq - c.seq;
          s.messages.push({
            key: f.epoch + ':' + f.seq, seq: f.seq, epoch: f.epoch, id: f.id,
            from: f.from, body: f.body, ts: f.ts, mine: f.from === s.user
          });
          if (s.messages.length > MAX_SHOWN) s.messages.splice(0, s.messages.length - MAX_SHOWN);
          scheduleRead();
          emit();
          break;
        case 'read':
          // The answer to our read (ref), or another device's (no ref).
          if (f.ref && f.ref === readRef) readRef = '';
          setCursor(f.room, f.epoch || '', f.seq || 0, f.unread || 0);
          emit();
          break;
        case 'typing':
          if (f.room !== opts.room || !f.user || f.user === s.user) return;
          startTyping(f.user);
          emit();
          break;
        case 'membership':
          if (!s.haveRooms || !f.room) return;
          if (f.state === 'member') kinds[f.room] = f.kind || kinds[f.room] || 'public';
          else if (f.state === 'left') delete kinds[f.room];
          emit();
          break;
        case 'ack':
          settle(f.id, null, f);
          break;
        case 'error':
          onError(f);
          break;
        default:
          // pong, left, history, presence and frame types added later need
          // nothing here: unknown frames are ignored.
      }
    }

    // welcomeRooms adopts welcome's list of the user's rooms and cursors.
    function welcomeRooms(list) {
      s.haveRooms = true;
      kinds = {};
      for (var i = 0; i < list.length; i++) {
        var r = list[i];
        if (!r || !r.room) continue;
        kinds[r.room] = r.kind || 'public';
        cursors[r.room] = { epoch: r.epoch || '', seq: r.read || 0, unread: r.unread || 0 };
      }
    }

    // setCursor records a read cursor; within an epoch it only moves forward.
    function setCursor(room, epoch, seq, unread) {
      var c = cursors[room];
      if (c && c.epoch === epoch && seq < c.seq) return;
      cursors[room] = { epoch: epoch, seq: seq, unread: unread };
      if (s.haveRooms && !kinds[room]) kinds[room] = room.indexOf('dm:') === 0 ? 'direct' : 'public';
    }

    // scheduleRead marks the last message shown read, once the messages
    // arriving together (a catch-up) are in: one read per readDelay at most.
    function scheduleRead() {
      if (!autoRead || readTimer || s.status !== 'online') return;
      readTimer = setT(function () {
        readTimer = null;
        markRead();
      }, readDelay);
    }

    // markRead writes a read for the last message shown, unless the cursor
    // (or a read on its way) is there already.
    function markRead() {
      if (!pos || !pos.epoch || pos.seq <= 0 || !welcomed) return false;
      var c = cursors[opts.room];
      if (c && c.epoch === pos.epoch && c.seq >= pos.seq) return false;
      if (readRef && readSent && readSent.epoch === pos.epoch && readSent.seq >= pos.seq) return false;
      var ref = 'r' + (++refs);
      if (!write({ type: 'read', ref: ref, room: opts.room, epoch: pos.epoch, seq: pos.seq })) return false;
      readRef = ref;
      readSent = { epoch: pos.epoch, seq: pos.seq };
      return true;
    }

    function startTyping(user) {
      if (typers[user]) clearT(typers[user]);
      typers[user] = setT(function () {
        delete typers[user];
        typingLine();
        emit();
      }, TYPING_SHOWN);
      typingLine();
    }

    function stopTyping(user) {
      if (!typers[user]) return;
      clearT(typers[user]);
      delete typers[user];
      typingLine();
    }

    function clearTypers() {
      for (var u in typers) {
        if (Object.prototype.hasOwnProperty.call(typers, u)) clearT(typers[u]);
      }
      typers = {};
      s.typing = '';
    }

    // typingLine is what the page shows: "bob is typing…",
    // "bob and carol are typing…", "several people are typing…".
    function typingLine() {
      var who = Object.keys(typers).sort();
      if (who.length === 0) s.typing = '';
      else if (who.length === 1) s.typing = who[0] + ' is typing\u2026';
      else if (who.length === 2) s.typing = who[0] + ' and ' + who[1] + ' are typing\u2026';
      else s.typing = 'several people are typing\u2026';
    }

    function onError(f) {
      var ref = f.ref || '';
      var notNow = NOT_NOW[f.code] === true;
      if (ref && ref === readRef) {
        // Not marked read: the next message shown tries again.
        readRef = '';
        readSent = null;
        return;
      }
      s.detail = f.code + ': ' + f.message;
      if (ref && ref === join.ref && notNow) {
        // Join again later; until then the status stays 'joining'.
        join.refusals++;
        join.timer = setT(function () {
          join.timer = null;
          if (welcomed) writeJoin();
        }, retryDelay(f, join.refusals));
        emit();
        return;
      }
      var o = null;
      for (var i = 0; i < outbox.length; i++) {
        if (outbox[i].ref === ref) o = outbox[i];
      }
      if (o && !notNow) {
        settle(o.id, new Error(f.code + ': ' + f.message));
        return;
      }
      if (o) {
        // Written again, with the same id, after the wait; the sends after
        // it wait too (see pump).
        if (o.timer) clearT(o.timer);
        o.sent = false;
        o.waiting = true;
        o.refusals++;
        o.timer = setT(function () {
          o.timer = null;
          o.waiting = false;
          pump();
        }, retryDelay(f, o.refusals));
      }
      emit();
    }

    // retryDelay is how long to wait before writing a refused request again:
    // the server's retry_after_ms for rate_limited; otherwise (unavailable,
    // internal, or no retry_after_ms) a backoff doubling with each refusal.
    function retryDelay(f, refusals) {
      if (f.code === 'rate_limited' && f.retry_after_ms > 0) return f.retry_after_ms;
      var max = Math.min(maxBackoff, minBackoff * Math.pow(2, refusals - 1));
      return max / 2 + random() * max / 2;
    }

    function writeJoin() {
      join.ref = 'j' + (++refs);
      var f = { type: 'join', ref: join.ref, room: opts.room };
      var c = cursors[opts.room];
      if (pos) {
        f.since = { epoch: pos.epoch, seq: pos.seq };
      } else if (c && c.epoch && c.seq > 0) {
        // The first join: from the read cursor, so the unread messages follow.
        f.since = { epoch: c.epoch, seq: c.seq };
      }
      write(f);
    }

    // pump writes the oldest unacknowledged send unless it is on its way or
    // waiting to be written again. One at a time: pipelined, a send refused
    // while the connection is over its rate could be overtaken by the next,
    // which the gateway accepts a moment later.
    function pump() {
      if (!welcomed || outbox.length === 0) return;
      var o = outbox[0];
      if (!o.sent && !o.waiting) writeSend(o);
    }

    function writeSend(o) {
      o.ref = 's' + (++refs);
      o.sent = true;
      if (o.timer) clearT(o.timer);
      o.timer = setT(function () {
        o.timer = null;
        if (welcomed) writeSend(o);
      }, ackTimeout);
      write({ type: 'send', ref: o.ref, room: opts.room, id: o.id, body: o.body });
    }

    function settle(id, err, ack) {
      for (var i = 0; i < outbox.length; i++) {
        var o = outbox[i];
        if (o.id !== id) continue;
        outbox.splice(i, 1);
        if (o.timer) clearT(o.timer);
        if (err) o.reject(err);
        else o.resolve({ id: o.id, seq: ack.seq, epoch: ack.epoch || '', ts: ack.ts });
        pump();
        emit();
        return;
      }
    }

    function failAll(err) {
      var all = outbox;
      outbox = [];
      for (var i = 0; i < all.length; i++) {
        if (all[i].timer) clearT(all[i].timer);
        all[i].reject(err);
      }
    }

    function startPing() {
      stopPing();
      if (!pingInterval) return;
      heard = true;
      pingTimer = setT(function tick() {
        if (!task) return;
        if (!heard) {
          // Nothing at all since the last tick, not even the last pong: the
          // connection is dead without having said so (mobile networks).
          try { task.close({ code: 1000, reason: 'no answer to ping' }); } catch (e) { /* gone */ }
          return;
        }
        heard = false;
        write({ type: 'ping', ref: 'p' + (++refs) });
        pingTimer = setT(tick, pingInterval);
      }, pingInterval);
    }

    function stopPing() {
      if (pingTimer) clearT(pingTimer);
      pingTimer = null;
    }

    return {
      /** start opens the first connection. */
      start: function () {
        if (task || retryTimer || stopped) return;
        connect();
        emit();
      },
      /**
       * send posts text to the room. It returns a Promise of the ack
       * ({id, seq, epoch, ts}); until then the message is in state().pending
       * and is written again after reconnects and refusals for now. Messages
       * are stored in the order send was called. Empty text is ignored
       * (resolves null).
       */
      send: function (text) {
        var body = String(text);
        if (body.replace(/\s+/g, '') === '') return Promise.resolve(null);
        var o = {
          id: device + '-' + session + '-' + (++counter), body: body, ref: '', timer: null,
          sent: false, waiting: false, refusals: 0
        };
        var p = new Promise(function (resolve, reject) { o.resolve = resolve; o.reject = reject; });
        outbox.push(o);
        pump();
        emit();
        return p;
      },
      /**
       * typing tells the room's other members that the user is typing. Call
       * it on every keystroke: it writes at most one frame per 2 s, and
       * nothing while not online.
       */
      typing: function () {
        if (s.status !== 'online') return false;
        var t = now();
        if (typedAt && t - typedAt < TYPING_INTERVAL) return false;
        typedAt = t;
        return write({ type: 'typing', room: opts.room });
      },
      /**
       * markRead marks the last message shown read now (autoRead does it by
       * itself). Returns whether a read frame was written.
       */
      markRead: function () {
        if (readTimer) clearT(readTimer);
        readTimer = null;
        return s.status === 'online' && markRead();
      },
      /** stop closes the connection for good; unacked sends are rejected. */
      stop: function () {
        stopped = true;
        if (readTimer) clearT(readTimer);
        readTimer = null;
        clearTypers();
        if (retryTimer) clearT(retryTimer);
        retryTimer = null;
        stopPing();
        if (join.timer) clearT(join.timer);
        join.timer = null;
        failAll(new Error('chat stopped'));
        var t = task;
        task = null;
        s.status = 'stopped';
        if (t) {
          try { t.close({ code: 1000, reason: 'bye' }); } catch (e) { /* gone */ }
        }
        emit();
      },
      /**
       * state returns a snapshot: status, node, user, warning, messages,
       * pending, position, read (the room's read cursor {epoch, seq}, or
       * null), rooms ([{room, kind, unread}], null until a welcome lists
       * them) and typing ("bob is typing…" or '').
       */
      state: state
    };
  }

  return { createChat: createChat, SUBPROTOCOL: SUBPROTOCOL };
});
