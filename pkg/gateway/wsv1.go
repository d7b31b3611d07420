package gateway

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// serveV1 runs protocol v1 on the connection: hello, then requests until
// the connection ends. The reader charges each frame to the rate limit as
// it arrives and queues it in the inbox, whose handler goroutine hands
// frames to the session in order; a frame over the limit is answered
// rate_limited (naming its ref, with retry_after_ms) and dropped.
func (c *wsConn) serveV1(bearer string) {
	s := c.hello(bearer)
	if s == nil {
		return
	}
	c.sess = s // before the first push: the inbox's handler reads it
	defer func() {
		// End the request in progress and wait for the handler: the
		// memberships it owns are left next.
		c.cancel()
		c.in.close()
		s.stopExpiry()
		s.end()
	}()
	lim := newBucket(c.g.cfg.RateLimit, c.g.cfg.RateBurst)
	for {
		data, typ, err := c.read()
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
				c.out.close(protocol.ClosePolicy, "flood: too many frames", true)
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
func (c *wsConn) refuse(data []byte, typ websocket.MessageType, lim *bucket) {
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
	c.out.send(f)
}

// handleRequest hands one queued client frame to the session, on the
// inbox's handler goroutine.
func (c *wsConn) handleRequest(r request) {
	defer c.recoverRequest()
	if r.fn != nil {
		r.fn()
		return
	}
	if f := c.decode(r.data, r.typ); f != nil {
		c.sess.handle(f, r.arrived)
	}
}

// decode parses one client frame, answering a binary or invalid one with a
// bad_request error (echoing its ref when it had one) and returning nil.
func (c *wsConn) decode(data []byte, typ websocket.MessageType) *protocol.Frame {
	if typ != websocket.MessageText {
		c.out.sendError("", protocol.CodeBadRequest, "binary frames are not part of protocol v1; send JSON text frames")
		return nil
	}
	f, err := protocol.Decode(data)
	if err != nil {
		ref := ""
		if f != nil {
			ref = f.Ref
		}
		c.out.sendError(ref, protocol.CodeBadRequest, err.Error())
		return nil
	}
	return f
}

// hello waits for a valid hello within HelloTimeout and returns the
// client's session, or nil when the connection ended first. Other frames
// before it are answered with unauthorized; a bad token closes with 1008.
// bearer is the upgrade request's bearer token: a hello without a token
// (or a user under dev auth) uses it.
func (c *wsConn) hello(bearer string) *session {
	// Not a read deadline: a cancelled Read tears the socket down without a
	// close frame, and the client deserves to read the reason.
	// The timer's callback is owned too: once it has begun, hello waits
	// for it, so the writer it may start is one serve waits for.
	fired := make(chan struct{})
	deadline := time.AfterFunc(c.g.cfg.HelloTimeout, func() {
		defer close(fired)
		c.out.close(protocol.ClosePolicy, "no hello within "+c.g.cfg.HelloTimeout.String(), true)
	})
	defer func() {
		if !deadline.Stop() {
			<-fired
		}
	}()
	for {
		data, typ, err := c.read()
		if err != nil {
			c.logEnd(err)
			return nil
		}
		var s *session
		var done bool
		c.offStack(func() { s, done = c.helloFrame(data, typ, bearer) })
		if done {
			return s
		}
	}
}

// helloFrame handles one frame read while waiting for hello: done reports
// that the wait is over, with the session when the client said a valid
// hello.
func (c *wsConn) helloFrame(data []byte, typ websocket.MessageType, bearer string) (s *session, done bool) {
	f := c.decode(data, typ)
	if f == nil {
		return nil, false
	}
	if f.Type != protocol.TypeHello {
		c.out.sendError(f.Ref, protocol.CodeUnauthorized, "send hello first")
		return nil, false
	}
	token := f.Token
	if token == "" && f.User == "" {
		token = bearer
	}
	ctx, cancel := c.g.authCtx(c.ctx)
	claims, err := c.g.authenticate(ctx, token, f.User)
	cancel()
	if err != nil {
		c.out.sendError(f.Ref, protocol.CodeUnauthorized, err.Error())
		c.out.close(protocol.ClosePolicy, err.Error(), true)
		return nil, true
	}
	user := claims.User
	if !c.admit(user, true, f.Ref) {
		return nil, true
	}
	s = &session{g: c.g, ctx: c.ctx, out: &c.out, in: &c.in,
		p:       principal{user: user, device: f.Device, rooms: claims.Rooms, conn: c.g.nodeKey() + "/" + strconv.FormatUint(c.id, 10)},
		members: make(map[string]*member)}
	welcome := &protocol.Frame{Type: protocol.TypeWelcome, Ref: f.Ref, User: user, Name: claims.Name, Device: f.Device, Node: c.g.cfg.NodeID}
	if !claims.Expires.IsZero() {
		welcome.Expires = protocol.FormatTime(claims.Expires)
	}
	// The user's rooms, each with its unread count, and the user's topic,
	// which keeps this device in step with the others, at the same time.
	// A store that cannot be read costs them, not the connection: welcome
	// comes without "rooms" (joins record memberships as they go), there
	// is no live sync, and the next welcome brings the state.
	ctx, cancel = context.WithTimeout(c.ctx, c.g.cfg.RequestTimeout)
	defer cancel()
	var topicErr error
	held := make(chan struct{})
	go func() { // waited for below
		defer close(held)
		s.utopic, topicErr = c.g.hub.holdUser(ctx, user, s)
	}()
	rooms, err := c.g.rooms(ctx, s.p)
	<-held
	if err == nil {
		welcome.Rooms = &rooms
		s.known = make([]string, len(rooms))
		for i, r := range rooms {
			s.known[i] = r.Room
		}
		slices.Sort(s.known)
	} else {
		c.g.log.Info("welcome without the user's rooms", "conn", c.id, "user", user, "err", err)
	}
	err = topicErr
	c.g.online(s.p)
	if err != nil {
		c.g.log.Info("no live sync of the user's devices on this connection", "conn", c.id, "user", user, "err", err)
	}
	c.out.send(welcome)
	s.welcomed.Store(true)
	c.g.log.Debug("hello", "conn", c.id, "user", user, "device", f.Device)
	s.expireAt(claims.Expires)
	return s, true
}
