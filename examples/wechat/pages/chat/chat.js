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
 *      1008 (policy: bad credentials, flood) stops instead.
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
   *   setTimeout, clearTimeout, random   injectable for tests
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
      connects: 0       // connections opened so far
    };
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
        messages: s.messages.slice(), pending: s.pending.slice()
      };
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
        handle(f);
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
          emit();
          break;
        case 'message':
          if (f.room !== opts.room) return;
          if (pos && f.epoch === pos.epoch && f.seq <= pos.seq) return; // seen
          pos = { epoch: f.epoch, seq: f.seq };
          s.messages.push({
            key: f.epoch + ':' + f.seq, seq: f.seq, epoch: f.epoch, id: f.id,
            from: f.from, body: f.body, ts: f.ts, mine: f.from === s.user
          });
          if (s.messages.length > MAX_SHOWN) s.messages.splice(0, s.messages.length - MAX_SHOWN);
          emit();
          break;
        case 'ack':
          settle(f.id, null, f);
          break;
        case 'error':
          onError(f);
          break;
        default:
          // pong, left, history and later additions need nothing here.
      }
    }

    function onError(f) {
      var ref = f.ref || '';
      var notNow = NOT_NOW[f.code] === true;
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
      if (pos) f.since = { epoch: pos.epoch, seq: pos.seq };
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
      /** stop closes the connection for good; unacked sends are rejected. */
      stop: function () {
        stopped = true;
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
      /** state returns a snapshot: status, node, user, warning, messages, pending. */
      state: state
    };
  }

  return { createChat: createChat, SUBPROTOCOL: SUBPROTOCOL };
});
