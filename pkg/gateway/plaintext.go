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

// servePlain runs plain-text mode for clients that speak no subprotocol:
// the classic tutorial pages and mini-programs. Each text frame is posted to
// the path's room; other connections' messages come back as bare text.
func (c *conn) servePlain(target *url.URL) {
	room, ok := plainRoom(target.Path)
	if !ok {
		c.closeWith(protocol.ClosePolicy, "invalid room in path", true)
		return
	}
	q := target.Query()
	user := q.Get("user")
	if user == "" && q.Get("token") == "" && c.g.cfg.DevAuth {
		// The boot id keeps guests of different gateways, and of one
		// gateway before and after a restart, apart.
		user = fmt.Sprintf("guest-%s-%d", c.g.boot, c.id)
	}
	u, err := c.g.authenticate(q.Get("token"), user)
	if err != nil {
		c.closeWith(protocol.ClosePolicy, err.Error(), true)
		return
	}
	// Message ids are <device>-<n>: the boot id makes them unique across
	// restarts of this node, whose connection numbers start again at 1;
	// without it a new client's first messages would be taken for resends
	// of an old one's within the idempotency window, and dropped.
	c.user, c.device = u, fmt.Sprintf("text-%s-%s-%d", c.g.cfg.NodeID, c.g.boot, c.id)
	if !c.admit("") {
		return
	}

	var m *member
	c.offStack(func() {
		ctx, cancel := c.requestCtx(nowFunc())
		m, err = c.g.hub.join(ctx, c, room, nil, "")
		cancel()
	})
	if err != nil {
		c.closeWith(protocol.CloseTryAgainLater, "message store unreachable; retry later", true)
		return
	}
	c.members[room] = m

	lim := newBucket(c.g.cfg.RateLimit, c.g.cfg.RateBurst)
	var n int
	for {
		data, typ, err := c.read(c.ctx)
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
			c.closeWith(protocol.CloseUnsupportedData, "plain-text mode takes UTF-8 text frames only", true)
			return
		case len(data) > c.g.cfg.MaxBodyBytes:
			c.closeWith(protocol.CloseTooBig, fmt.Sprintf("message over %d bytes", c.g.cfg.MaxBodyBytes), true)
			return
		case len(strings.TrimSpace(string(data))) == 0:
			continue
		}
		n++
		if !c.publishPlain(now, room, fmt.Sprintf("%s-%d", c.device, n), string(data)) {
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
func (c *conn) publishPlain(arrived time.Time, room, id, body string) bool {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var err error
		c.offStack(func() { _, err = c.publish(arrived, room, id, body) })
		if err == nil {
			return true
		}
		if c.ctx.Err() != nil || errors.Is(err, broker.ErrClosed) {
			return false // the connection or the gateway is ending
		}
		if !errors.Is(err, broker.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			c.g.log.Error("plain-text publish failed", "conn", c.id, "err", err)
			c.closeWith(protocol.CloseInternal, "internal error", true)
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
