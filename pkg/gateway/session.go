package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

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
	ctx, cancel := context.WithCancel(g.ctx)
	c := &conn{
		g:       g,
		ws:      ws,
		ctx:     ctx,
		cancel:  cancel,
		id:      g.nextID.Add(1),
		plain:   ws.Subprotocol() != protocol.Subprotocol,
		members: make(map[string]*member),
		addr:    addr,
	}
	if !g.track(c) {
		g.mu.Lock()
		g.releaseLocked(c)
		g.mu.Unlock()
		cancel()
		_ = ws.Close(protocol.CloseServiceRestart, "gateway shutting down")
		return
	}
	ws.SetReadLimit(g.cfg.MaxFrameBytes)
	// The connection runs on a goroutine of its own (owned through track
	// and untrack) and ServeHTTP returns: net/http's per-request state (the
	// request, its headers, its 8 KiB of buffers and the deep stack of its
	// serving goroutine) is then garbage instead of being held for the
	// connection's whole life.
	go c.serve(r.URL)
}

// serve runs the connection until it ends, then cleans up: leave every
// room, stop the pinger, let the writer finish its close, free the socket.
func (c *conn) serve(u *url.URL) {
	g := c.g
	defer g.untrack(c)
	c.startPinger()

	if c.plain {
		c.servePlain(u)
	} else {
		c.serveV1()
	}

	for _, m := range c.members {
		g.hub.remove(m)
	}
	c.stopPinger()
	c.closeWith(protocol.CloseNormal, "", false)
	c.wg.Wait()
	c.stopWatchdog()
	c.cancel()
	_ = c.ws.CloseNow()
}

// read reads one frame of any type and counts it.
func (c *conn) read(ctx context.Context) ([]byte, websocket.MessageType, error) {
	typ, data, err := c.ws.Read(ctx)
	if err != nil {
		return nil, 0, err
	}
	c.g.metrics.framesIn.Inc()
	return data, typ, nil
}

// logEnd logs why a connection's read loop ended, at a level that fits.
func (c *conn) logEnd(err error) {
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

// serveV1 runs protocol v1: hello, then requests until the connection
// ends. The reader charges each frame to the rate limit as it arrives and
// queues it in the inbox, whose handler goroutine handles frames in order;
// a frame over the limit is answered rate_limited (naming its ref, with
// retry_after_ms) and dropped.
func (c *conn) serveV1() {
	if !c.hello() {
		return
	}
	c.in.handle = c.handleRequest
	defer func() {
		// End the request in progress and wait for the handler: the
		// memberships it owns are the caller's to clean up next.
		c.cancel()
		c.in.close()
	}()
	lim := newBucket(c.g.cfg.RateLimit, c.g.cfg.RateBurst)
	for {
		data, typ, err := c.read(c.ctx)
		if err != nil {
			c.logEnd(err)
			return
		}
		now := nowFunc()
		if !lim.allow(now) {
			c.refuse(data, typ, lim)
			if lim.denied > c.g.cfg.RateBurst {
				// The frames accepted before the flood are answered first.
				c.in.wait()
				c.closeWith(protocol.ClosePolicy, "flood: too many frames", true)
				return
			}
			continue
		}
		held, ok := c.in.push(c.ctx, request{data: data, typ: typ, arrived: now})
		if !ok {
			return
		}
		lim.hold(held)
	}
}

// refuse answers a frame over the rate limit: rate_limited with the
// frame's ref when it has one, and when to send again.
func (c *conn) refuse(data []byte, typ websocket.MessageType, lim *bucket) {
	ref := ""
	if typ == websocket.MessageText {
		if f, _ := protocol.Decode(data); f != nil {
			ref = f.Ref
		}
	}
	msg := fmt.Sprintf("more than %g frames per second; this frame was dropped: send it again after retry_after_ms", c.g.cfg.RateLimit)
	if lim.denied > c.g.cfg.RateBurst {
		msg = "flood: connection closed"
	}
	c.g.metrics.errors.WithLabelValues(protocol.CodeRateLimited).Inc()
	f := protocol.ErrorFrame(ref, protocol.CodeRateLimited, msg)
	f.RetryAfterMS = lim.retryAfter().Milliseconds()
	c.sendFrame(f)
}

// handleRequest handles one queued client frame on the inbox's handler
// goroutine.
func (c *conn) handleRequest(r request) {
	defer c.recoverRequest()
	if f := c.decode(r.data, r.typ); f != nil {
		c.handle(f, r.arrived)
	}
}

// decode parses one client frame, answering a binary or invalid one with a
// bad_request error (echoing its ref when it had one) and returning nil.
func (c *conn) decode(data []byte, typ websocket.MessageType) *protocol.Frame {
	if typ != websocket.MessageText {
		c.sendError("", protocol.CodeBadRequest, "binary frames are not part of protocol v1; send JSON text frames")
		return nil
	}
	f, err := protocol.Decode(data)
	if err != nil {
		ref := ""
		if f != nil {
			ref = f.Ref
		}
		c.sendError(ref, protocol.CodeBadRequest, err.Error())
		return nil
	}
	return f
}

// hello waits for a valid hello within HelloTimeout. Other frames before it
// are answered with unauthorized; a bad token closes with 1008.
func (c *conn) hello() bool {
	// Not a read deadline: a cancelled Read tears the socket down without a
	// close frame, and the client deserves to read the reason.
	deadline := time.AfterFunc(c.g.cfg.HelloTimeout, func() {
		c.closeWith(protocol.ClosePolicy, "no hello within "+c.g.cfg.HelloTimeout.String(), true)
	})
	defer deadline.Stop()
	for {
		data, typ, err := c.read(c.ctx)
		if err != nil {
			c.logEnd(err)
			return false
		}
		var done, ok bool
		c.offStack(func() { done, ok = c.helloFrame(data, typ) })
		if done {
			return ok
		}
	}
}

// helloFrame handles one frame read while waiting for hello: done reports
// that the wait is over, ok that the client said a valid hello.
func (c *conn) helloFrame(data []byte, typ websocket.MessageType) (done, ok bool) {
	f := c.decode(data, typ)
	if f == nil {
		return false, false
	}
	if f.Type != protocol.TypeHello {
		c.sendError(f.Ref, protocol.CodeUnauthorized, "send hello first")
		return false, false
	}
	user, err := c.g.authenticate(f.Token, f.User)
	if err != nil {
		c.sendError(f.Ref, protocol.CodeUnauthorized, err.Error())
		c.closeWith(protocol.ClosePolicy, err.Error(), true)
		return true, false
	}
	c.user, c.device = user, f.Device
	if !c.admit(f.Ref) {
		return true, false
	}
	c.sendFrame(&protocol.Frame{Type: protocol.TypeWelcome, Ref: f.Ref, User: user, Device: f.Device, Node: c.g.cfg.NodeID})
	c.g.log.Debug("hello", "conn", c.id, "user", user, "device", f.Device)
	return true, true
}

// admit counts the connection against its user's limit, or answers and
// closes it with 1008 when the user has MaxConnsPerUser already.
func (c *conn) admit(ref string) bool {
	if c.g.admitUser(c) {
		return true
	}
	c.g.metrics.refused.WithLabelValues("per_user").Inc()
	c.g.log.Info("connection refused: too many for one user", "conn", c.id, "user", c.user, "limit", c.g.cfg.MaxConnsPerUser)
	why := fmt.Sprintf("too many connections for this user (limit %d per gateway)", c.g.cfg.MaxConnsPerUser)
	c.sendError(ref, protocol.CodeForbidden, why)
	c.closeWith(protocol.ClosePolicy, why, true)
	return false
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
func (c *conn) offStack(fn func()) {
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
func (c *conn) recoverRequest() {
	v := recover()
	if v == nil {
		return
	}
	c.g.log.Error("panic while handling a client frame; closing the connection",
		"conn", c.id, "user", c.user, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	c.in.stop() // nothing more is handled on a connection being closed
	c.closeWith(protocol.CloseInternal, "internal error", false)
}

// handle handles one decoded request that arrived at arrived.
func (c *conn) handle(f *protocol.Frame, arrived time.Time) {
	switch f.Type {
	case protocol.TypeHello:
		c.sendError(f.Ref, protocol.CodeBadRequest, "already said hello")
	case protocol.TypePing:
		c.sendFrame(&protocol.Frame{Type: protocol.TypePong, Ref: f.Ref})
	case protocol.TypeJoin:
		c.join(f, arrived)
	case protocol.TypeLeave:
		if m := c.members[f.Room]; m != nil {
			delete(c.members, f.Room)
			c.g.hub.remove(m)
		}
		c.sendFrame(&protocol.Frame{Type: protocol.TypeLeft, Ref: f.Ref, Room: f.Room})
	case protocol.TypeSend:
		c.send(f, arrived)
	case protocol.TypeHistory:
		c.history(f, arrived)
	}
}

// requestCtx bounds the broker calls of a request that arrived at arrived:
// RequestTimeout counts from its arrival, not from when its turn came.
func (c *conn) requestCtx(arrived time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(c.ctx, arrived.Add(c.g.cfg.RequestTimeout))
}

// brokerError answers a failed broker call.
func (c *conn) brokerError(ref string, err error) {
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, broker.ErrClosed) {
		c.sendError(ref, protocol.CodeUnavailable, "message store unreachable; retry later")
		return
	}
	if c.ctx.Err() != nil {
		return
	}
	c.g.log.Error("broker call failed", "conn", c.id, "err", err)
	c.sendError(ref, protocol.CodeInternal, "internal error")
}

func (c *conn) checkRoomAccess(ref, room string) bool {
	if protocol.DirectRoom(room) {
		c.sendError(ref, protocol.CodeForbidden, `rooms starting "dm:" are reserved for direct rooms`)
		return false
	}
	return true
}

func (c *conn) join(f *protocol.Frame, arrived time.Time) {
	if !c.checkRoomAccess(f.Ref, f.Room) {
		return
	}
	if old := c.members[f.Room]; old != nil {
		// A re-join (for example with a new since) replaces the membership.
		delete(c.members, f.Room)
		c.g.hub.remove(old)
	}
	ctx, cancel := c.requestCtx(arrived)
	defer cancel()
	m, err := c.g.hub.join(ctx, c, f.Room, f.Since, f.Ref)
	if err != nil {
		c.brokerError(f.Ref, err)
		return
	}
	c.members[f.Room] = m
}

func (c *conn) send(f *protocol.Frame, arrived time.Time) {
	if !c.checkRoomAccess(f.Ref, f.Room) {
		return
	}
	if len(f.Body) > c.g.cfg.MaxBodyBytes {
		c.sendError(f.Ref, protocol.CodeTooLarge, fmt.Sprintf("body is %d bytes; the limit is %d", len(f.Body), c.g.cfg.MaxBodyBytes))
		return
	}
	ack, err := c.publish(arrived, f.Room, f.ID, f.Body)
	if err != nil {
		c.brokerError(f.Ref, err)
		return
	}
	c.sendFrame(&protocol.Frame{Type: protocol.TypeAck, Ref: f.Ref, ID: ack.ID, Room: ack.Room, Seq: ack.Seq, Epoch: ack.Epoch, TS: ack.TS})
}

func (c *conn) publish(arrived time.Time, room, id, body string) (broker.Ack, error) {
	ctx, cancel := c.requestCtx(arrived)
	defer cancel()
	start := time.Now()
	ack, err := c.g.broker.Publish(ctx, broker.Publication{Room: room, ID: id, From: c.user, Device: c.device, Body: body})
	if err == nil {
		c.g.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	}
	return ack, err
}

// maxHistoryPage caps one history reply.
const maxHistoryPage = 200

func (c *conn) history(f *protocol.Frame, arrived time.Time) {
	if !c.checkRoomAccess(f.Ref, f.Room) {
		return
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, maxHistoryPage)
	ctx, cancel := c.requestCtx(arrived)
	defer cancel()
	rng, err := c.g.broker.Before(ctx, f.Room, f.Before, limit)
	if err != nil {
		c.brokerError(f.Ref, err)
		return
	}
	msgs := make([]*protocol.Message, len(rng.Messages))
	for i, env := range rng.Messages {
		msgs[i] = env.Message
	}
	// Its own shape so that an empty page is "messages":[], not absent.
	out := struct {
		Type     string              `json:"type"`
		Ref      string              `json:"ref,omitempty"`
		Room     string              `json:"room"`
		Messages []*protocol.Message `json:"messages"`
	}{protocol.TypeHistory, f.Ref, f.Room, msgs}
	b, err := protocol.Encode(out)
	if err != nil {
		c.brokerError(f.Ref, err)
		return
	}
	c.enqueue(b)
}
