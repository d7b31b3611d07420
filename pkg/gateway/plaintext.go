package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// plainRoom maps a plain-text URL path to its room: "/" and "/ws" are the
// lobby, "/chat" is "chat".
func plainRoom(path string) (string, bool) {
	p := strings.Trim(path, "/")
	if p == "" || p == "ws" {
		return "lobby", true
	}
	return p, protocol.ValidRoom(p) && !protocol.DirectRoom(p)
}

// plainSession is a plain-text client's membership of its one room: the
// subscriber (subscriber.go) that turns the room's stream into bare text.
// A plain-text client gets the body of every message not its own, and
// cannot be told about epochs or holes: it gets what there is.
type plainSession struct {
	p    principal
	room string
	out  *outbox
}

var _ subscriber = (*plainSession)(nil)

func (s *plainSession) joined(j joinOutcome) {
	for _, env := range j.rng.Messages {
		s.deliver(env, true)
	}
}

func (s *plainSession) deliver(env broker.Envelope, catchUp bool) {
	if env.From == s.p.user && env.Device == s.p.device {
		return
	}
	if catchUp {
		s.out.pushCatchUp([]byte(env.Body))
		return
	}
	s.out.push([]byte(env.Body), classLive)
}

// userEvent implements userSubscriber: a plain-text connection holds its
// user's topic only to hear a disconnect (which the hub handles); the
// user's other events are not for it.
// userEvent implements userSubscriber: the end of the user's membership
// of this connection's private or direct room closes it (1008), as plain
// text has no frame to say so.
func (s *plainSession) userEvent(_ string, frame []byte) {
	if room, ok := leftRoom(frame); ok {
		s.revoke(room)
	}
}

// revoke implements userSubscriber.
func (s *plainSession) revoke(room string) {
	if room == s.room {
		s.out.close(protocol.ClosePolicy, "no longer a member of "+room, true)
	}
}

func (s *plainSession) event(broker.Event, string)                  {}
func (s *plainSession) epochReset(string, protocol.Position, int64) {}
func (s *plainSession) resume(string, protocol.Position)            {}
func (s *plainSession) overflow()                                   { s.out.overflow() }

// servePlain runs plain-text mode for clients that speak no subprotocol:
// the classic tutorial pages and mini-programs. Each text frame is posted to
// the path's room; other connections' messages come back as bare text.
// The token is ?token=, else the upgrade's bearer token.
func (c *wsConn) servePlain(target *url.URL, bearer string) {
	room, ok := plainRoom(target.Path)
	if !ok {
		c.out.close(protocol.ClosePolicy, "invalid room in path", true)
		return
	}
	q := target.Query()
	user, token := q.Get("user"), q.Get("token")
	if token == "" {
		token = bearer
	}
	if user == "" && token == "" && c.g.cfg.DevAuth {
		// The boot id keeps guests of different gateways, and of one
		// gateway before and after a restart, apart.
		user = fmt.Sprintf("guest-%s-%d", c.g.boot, c.id)
	}
	var claims auth.Claims
	var err error
	c.offStack(func() {
		ctx, cancel := c.g.authCtx(c.ctx)
		claims, err = c.g.authenticate(ctx, token, user)
		cancel()
	})
	if err != nil {
		c.out.close(protocol.ClosePolicy, err.Error(), true)
		return
	}
	u := claims.User
	if !c.admit(u, false, "") {
		return
	}
	if !claims.Expires.IsZero() {
		// No refresh in plain text: the connection ends at exp.
		exp := &expiry{out: &c.out}
		exp.set(claims.Expires)
		defer exp.stop()
	}
	// Message ids are <device>-<n>: the boot id makes them unique across
	// restarts of this node, whose connection numbers start again at 1;
	// without it a new client's first messages would be taken for resends
	// of an old one's within the idempotency window, and dropped.
	s := &plainSession{p: principal{user: u, device: fmt.Sprintf("text-%s-%s-%d", c.g.cfg.NodeID, c.g.boot, c.id), rooms: claims.Rooms}, room: room, out: &c.out}

	// The user's topic, for a disconnect of the user from any gateway.
	// A store that cannot be reached costs that, not the connection.
	var ut *userTopic
	c.offStack(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.RequestTimeout)
		ut, err = c.g.hub.holdUser(ctx, u, s)
		cancel()
	})
	if err != nil {
		c.g.log.Info("plain-text connection without its user's topic", "conn", c.id, "user", u, "err", err)
	} else {
		defer c.g.hub.releaseUser(u, ut, s)
	}

	var m *member
	c.offStack(func() {
		ctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.RequestTimeout)
		m, err = c.g.join(ctx, s.p, s, room, nil, "", false)
		cancel()
	})
	if err != nil {
		if oe, ok := errors.AsType[*opError](err); ok && oe.code == protocol.CodeForbidden {
			c.out.close(protocol.ClosePolicy, oe.msg, true)
			return
		}
		c.out.close(protocol.CloseTryAgainLater, "message store unreachable; retry later", true)
		return
	}
	defer c.g.leave(m)

	lim := newBucket(c.g.cfg.RateLimit, c.g.cfg.RateBurst)
	var n int
	for {
		data, typ, err := c.read()
		if err != nil {
			c.logEnd(err)
			return
		}
		// Plain-text clients cannot be told that a frame was refused, so
		// the rate limit paces them instead: over the limit, the frame
		// waits until a token is there and the next one waits in the
		// socket meanwhile. Nothing a plain-text client sends is dropped.
		now := nowFunc()
		if !lim.allow(now) {
			if !pause(c.ctx, lim.retryAfter()) {
				return
			}
			now = nowFunc()
			lim.allow(now)
		}
		switch {
		case typ != websocket.MessageText || !utf8.Valid(data):
			c.out.close(protocol.CloseUnsupportedData, "plain-text mode takes UTF-8 text frames only", true)
			return
		case len(data) > c.g.cfg.MaxBodyBytes:
			c.out.close(protocol.CloseTooBig, fmt.Sprintf("message over %d bytes", c.g.cfg.MaxBodyBytes), true)
			return
		case len(strings.TrimSpace(string(data))) == 0:
			continue
		}
		n++
		if !c.publishPlain(s.p, now, room, fmt.Sprintf("%s-%d", s.p.device, n), string(data)) {
			return
		}
	}
}

// publishPlain publishes one plain-text line. A plain-text client cannot
// be told that a send failed, so while the message store is unreachable
// the line is retried (same id: idempotent) with a backoff, and the
// client's next lines wait in the socket meanwhile: a Redis outage delays
// a plain-text client, it does not cut it or drop its words. It reports
// false when the connection ended, or on an error a retry cannot fix
// (then the connection is closed).
func (c *wsConn) publishPlain(p principal, arrived time.Time, room, id, body string) bool {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var err error
		c.offStack(func() {
			ctx, cancel := context.WithDeadline(c.ctx, arrived.Add(c.g.cfg.RequestTimeout))
			_, err = c.g.publish(ctx, p, room, id, body, true) // the join checked access
			cancel()
		})
		if err == nil {
			return true
		}
		if c.ctx.Err() != nil || c.g.ctx.Err() != nil {
			return false // the connection or the gateway is ending
		}
		oe := c.g.refusal(c.ctx, err)
		if oe.code != protocol.CodeUnavailable {
			c.g.log.Error("plain-text publish failed", "conn", c.id, "err", err)
			c.out.close(protocol.CloseInternal, "internal error", true)
			return false
		}
		if attempt == 1 {
			c.g.log.Info("plain-text publish waits for the message store", "conn", c.id, "err", err)
		}
		if !pause(c.ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, 2*time.Second)
		arrived = nowFunc() // each attempt gets its own RequestTimeout
	}
}
