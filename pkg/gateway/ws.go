package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"runtime/debug"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// wsConn is the WebSocket transport of one client connection, v1 or plain
// text: the socket, its keepalive (pinger) and write watchdog, and the
// outbox it drains. Its serve goroutine is the socket's only reader; the
// outbox's writer goroutine, started only while frames wait, is its only
// writer. What the client says is handled by a session (v1, wsv1.go) or
// the plain-text loop (plaintext.go).
type wsConn struct {
	g      *Gateway
	ws     *websocket.Conn
	ctx    context.Context // ends when the connection does
	cancel context.CancelFunc
	id     uint64

	admission // against the connection limits; user is the user after hello

	out  outbox   // frames to the client
	in   inbox    // v1: client frames waiting to be handled
	ping pinger   // keepalive
	wd   watchdog // bounds each frame write
	sess *session // v1, after hello: what the inbox's requests go to
}

var (
	_ wire   = (*wsConn)(nil)
	_ client = (*wsConn)(nil)
)

// serveWS accepts a WebSocket connection: protocol v1 when the client
// offers the parley.v1 subprotocol, else plain text.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		http.Error(w, "gateway draining: connect to another node", http.StatusServiceUnavailable)
		return
	}
	addr := g.clientAddr(r)
	g.mu.Lock()
	admitted := g.admitAddrLocked(addr)
	g.mu.Unlock()
	if !admitted {
		g.metrics.refused.WithLabelValues("per_ip").Inc()
		g.log.Info("connection refused: too many from one address", "limit", g.cfg.MaxConnsPerIP)
		http.Error(w, fmt.Sprintf("too many connections from your address (limit %d per gateway)", g.cfg.MaxConnsPerIP), http.StatusTooManyRequests)
		return
	}
	lw := &leanWriter{ResponseWriter: w, readSize: g.cfg.ReadBufferSize, writeSize: g.cfg.WriteBufferSize}
	ws, err := websocket.Accept(lw, r, &websocket.AcceptOptions{
		Subprotocols:   []string{protocol.Subprotocol},
		OriginPatterns: g.cfg.AllowedOrigins,
	})
	if err != nil {
		g.mu.Lock()
		g.releaseAddrLocked(addr)
		g.mu.Unlock()
		g.log.Info("websocket upgrade refused", "err", err, "remote", r.RemoteAddr)
		return // Accept wrote the HTTP error
	}
	c := g.newWSConn(ws, addr)
	if !g.track(c) {
		g.mu.Lock()
		g.releaseLocked(&c.admission)
		g.mu.Unlock()
		c.cancel()
		_ = ws.Close(protocol.CloseServiceRestart, "gateway shutting down")
		return
	}
	ws.SetReadLimit(g.cfg.MaxFrameBytes)
	// The connection runs on a goroutine of its own (owned through track
	// and untrack) and ServeHTTP returns: net/http's per-request state (the
	// request, its headers, its 8 KiB of buffers and the deep stack of its
	// serving goroutine) is then garbage instead of being held for the
	// connection's whole life.
	// The upgrade's bearer token, if any, goes along to hello: it is kept
	// no longer than that.
	go c.serve(r.URL, bearerToken(r.Header.Get("Authorization")), ws.Subprotocol() != protocol.Subprotocol)
}

func (g *Gateway) newWSConn(ws *websocket.Conn, addr netip.Addr) *wsConn {
	ctx, cancel := context.WithCancel(g.ctx)
	c := &wsConn{g: g, ws: ws, ctx: ctx, cancel: cancel, id: g.nextID.Add(1), admission: admission{addr: addr}}
	// The parts reach the connection through interfaces it implements,
	// not closures: an idle connection holds no allocation for them.
	c.out = outbox{g: g, w: c}
	c.in = inbox{h: c}
	c.ping = pinger{interval: g.cfg.PingInterval, peer: c}
	c.wd = watchdog{timeout: g.cfg.WriteTimeout, peer: c}
	return c
}

// serve runs the connection until it ends, then cleans up: leave every
// room, stop the pinger, let the writer finish its close, free the socket.
func (c *wsConn) serve(u *url.URL, bearer string, plain bool) {
	defer c.g.untrack(c)
	c.ping.start()
	if plain {
		c.servePlain(u, bearer)
	} else {
		c.serveV1(bearer)
	}
	c.ping.stop()
	c.out.close(protocol.CloseNormal, "", false)
	c.out.wait()
	c.cancel()
	c.ping.wait()
	c.wd.stop()
	_ = c.ws.CloseNow()
}

// read reads one frame of any type and counts it.
func (c *wsConn) read() ([]byte, websocket.MessageType, error) {
	typ, data, err := c.ws.Read(c.ctx)
	if err != nil {
		return nil, 0, err
	}
	c.g.metrics.framesIn.Inc()
	return data, typ, nil
}

// logEnd logs why a connection's read loop ended, at a level that fits.
func (c *wsConn) logEnd(err error) {
	status := websocket.CloseStatus(err)
	switch {
	case status == websocket.StatusMessageTooBig:
		c.g.log.Info("closed: frame over the limit", "conn", c.id, "user", c.user, "limit", c.g.cfg.MaxFrameBytes)
	case status != -1 || errors.Is(err, context.Canceled):
		c.g.log.Debug("connection closed", "conn", c.id, "user", c.user, "status", int(status))
	default:
		c.g.log.Debug("connection ended", "conn", c.id, "user", c.user, "err", err)
	}
}

// write implements wire: one text frame, bounded by the watchdog. The
// context never ends: the watchdog bounds the write, and the library
// registers nothing per frame on it.
func (c *wsConn) write(b []byte) error {
	c.wd.arm()
	err := c.ws.Write(context.Background(), websocket.MessageText, b)
	c.wd.disarm()
	return err
}

// close implements wire: it sends the close frame and waits (bounded by
// the library's handshake timeout) for the peer's, then ends the
// connection's context.
func (c *wsConn) close(code int, why string) {
	_ = c.ws.Close(websocket.StatusCode(code), clipReason(why))
	c.cancel()
}

// maxCloseReason is the most bytes a close frame's reason may have (RFC
// 6455: a control frame's 125 bytes, less the code's 2). The library
// turns a longer one into a 1011 without a reason.
const maxCloseReason = 123

// clipReason cuts why to maxCloseReason bytes, on a rune boundary, ending
// it with "..." when cut.
func clipReason(why string) string {
	if len(why) <= maxCloseReason {
		return why
	}
	cut := maxCloseReason - len("...")
	for cut > 0 && !utf8.RuneStart(why[cut]) {
		cut--
	}
	return why[:cut] + "..."
}

// abort implements wire.
func (c *wsConn) abort() { c.cancel() }

// describe implements wire.
func (c *wsConn) describe() (uint64, string) { return c.id, c.user }

func (c *wsConn) admitted() *admission { return &c.admission }

// shutdown implements client: 1012 once what is queued is written.
func (c *wsConn) shutdown() {
	c.out.close(protocol.CloseServiceRestart, "service restart: reconnect and resume", true)
}

// kill implements client.
func (c *wsConn) kill() { c.cancel() }

// expel implements client: 1008 with reason at once; what is queued is
// dropped, and nothing more the client sent is handled.
func (c *wsConn) expel(reason string) {
	c.in.stop()
	c.out.close(protocol.ClosePolicy, reason, false)
}

// writeStuck runs when a write has been stuck for WriteTimeout: the socket
// is closed, which fails the write.
func (c *wsConn) writeStuck() {
	c.g.log.Info("write timed out; dropping the connection", "conn", c.id, "user", c.user, "timeout", c.g.cfg.WriteTimeout)
	c.cancel()
	_ = c.ws.CloseNow()
}

// sendPing pings the client: it must answer within WriteTimeout.
func (c *wsConn) sendPing() error {
	ctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.WriteTimeout)
	defer cancel()
	return c.ws.Ping(ctx)
}

func (c *wsConn) pingFailed(err error) {
	if c.ctx.Err() == nil {
		c.g.log.Info("client did not answer ping; dropping it", "conn", c.id, "err", err)
	}
	c.cancel()
	_ = c.ws.CloseNow()
}

// offStack runs fn, the handling of one client frame, on a goroutine of
// its own and waits for it. The connection's reader goroutine lives as
// long as the connection and spends nearly all of it blocked in a read.
// The runtime halves a goroutine's stack only while less than a quarter of
// it is in use, and a read in progress uses more than a quarter of 8 KiB,
// so the deep calls a request makes (JSON, the broker, Redis) would keep
// the reader's stack at 8 KiB for good. Run elsewhere, they leave it at
// 4 KiB: 4 KiB less per idle connection, for a goroutine start (a few
// microseconds with its stack growth) per client frame.
func (c *wsConn) offStack(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.recoverRequest()
		fn()
	}()
	<-done
}

// recoverRequest turns a panic while handling a client frame into an error
// log with the stack and a 1011 close of this connection, as net/http does
// for a handler: one bad request must not take the node and its other
// connections down.
func (c *wsConn) recoverRequest() {
	v := recover()
	if v == nil {
		return
	}
	c.g.log.Error("panic while handling a client frame; closing the connection",
		"conn", c.id, "user", c.user, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	c.in.stop() // nothing more is handled on a connection being closed
	c.out.close(protocol.CloseInternal, "internal error", false)
}

// admit counts the connection against its user's limit, or, when the user
// has MaxConnsPerUser already, answers (v1: an error frame naming ref)
// and closes it with 1008.
func (c *wsConn) admit(user string, answer bool, ref string) bool {
	if c.g.admitUser(&c.admission, user) {
		return true
	}
	c.g.metrics.refused.WithLabelValues("per_user").Inc()
	c.g.log.Info("connection refused: too many for one user", "conn", c.id, "user", user, "limit", c.g.cfg.MaxConnsPerUser)
	why := fmt.Sprintf("too many connections for this user (limit %d per gateway)", c.g.cfg.MaxConnsPerUser)
	if answer {
		c.out.sendError(ref, protocol.CodeForbidden, why)
	}
	c.out.close(protocol.ClosePolicy, why, true)
	return false
}
