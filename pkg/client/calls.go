package client

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// call is a request waiting for its reply.
type call struct {
	num      uint64 // order of issue; requests are resent in this order
	ref      string
	frame    *protocol.Frame
	internal bool // an automatic re-join, not a caller's request
	done     chan result

	// conn is the connection the request was last queued on (nil: not
	// yet, or refused and waiting to be resent), and sentAt when it was
	// written; queued is true while it waits in conn's write queue. All
	// guarded by Client.mu, like the fields below.
	conn   *conn
	sentAt time.Time
	queued bool

	// refusals counts the rate_limited and unavailable answers to the
	// request, and last is the latest one. retry resends the request after
	// an unavailable answer (nil when no resend is planned); bo spaces
	// those resends.
	refusals int
	last     *protocol.Error
	retry    *time.Timer
	bo       backoff
}

type result struct {
	f   *protocol.Frame
	err error
}

// Join joins room and returns the "joined" frame. With since, the server
// delivers every message after that position (recovered says whether it
// could); without, the room's recent backlog. The messages follow on Events,
// after an Event carrying the same joined frame. The Client re-joins the
// room after every reconnect until Leave.
func (c *Client) Join(ctx context.Context, room string, since *protocol.Since) (protocol.Frame, error) {
	if !protocol.ValidRoom(room) {
		return protocol.Frame{}, badRequest("invalid room name %q", room)
	}
	f := &protocol.Frame{Type: protocol.TypeJoin, Room: room}
	if since != nil {
		s := *since
		f.Since = &s
	}
	return c.do(ctx, f)
}

// Leave leaves room. The Client stops delivering its messages and stops
// re-joining it at once, even if ctx ends before the server answers.
func (c *Client) Leave(ctx context.Context, room string) error {
	if !protocol.ValidRoom(room) {
		return badRequest("invalid room name %q", room)
	}
	_, err := c.do(ctx, &protocol.Frame{Type: protocol.TypeLeave, Room: room})
	return err
}

// Send posts body to room under a new unique id and returns the ack, which
// carries the message's seq and epoch. The send survives reconnects and
// refusals for now (rate_limited, unavailable): it is resent with the same
// id until acked, and the server stores it once. Sends are published in
// the order they were made (see the package documentation). If ctx ends
// first the message may or may not have been stored; SendID with the same
// id settles it without a duplicate.
func (c *Client) Send(ctx context.Context, room, body string) (protocol.Frame, error) {
	return c.SendID(ctx, room, newID(), body)
}

// SendID is Send with an id chosen by the caller: 1-64 printable ASCII
// characters without spaces, unique per user within the server's
// idempotency window. Sending again with the same id returns the original
// ack and stores nothing.
func (c *Client) SendID(ctx context.Context, room, id, body string) (protocol.Frame, error) {
	if !protocol.ValidRoom(room) {
		return protocol.Frame{}, badRequest("invalid room name %q", room)
	}
	if !protocol.ValidID(id) {
		return protocol.Frame{}, badRequest("invalid id %q: 1-64 printable ASCII characters without spaces", id)
	}
	return c.do(ctx, &protocol.Frame{Type: protocol.TypeSend, Room: room, ID: id, Body: body})
}

// History returns up to limit messages of room with seq < before, the
// newest such ones, in ascending seq order. before <= 0 means from the
// newest message; limit <= 0 means the server's default. The messages are
// returned, not delivered on Events.
func (c *Client) History(ctx context.Context, room string, before int64, limit int) ([]*protocol.Message, error) {
	if !protocol.ValidRoom(room) {
		return nil, badRequest("invalid room name %q", room)
	}
	f := &protocol.Frame{Type: protocol.TypeHistory, Room: room, Before: max(before, 0), Limit: max(limit, 0)}
	r, err := c.do(ctx, f)
	if err != nil {
		return nil, err
	}
	return r.Messages, nil
}

// Typing tells the other members of room, a room joined, that the user is
// typing. Nothing answers it and nothing retries it: while the Client is
// reconnecting it is dropped. The server relays at most one per 2 s per
// connection, and the Client sends at most one per TypingInterval (2 s),
// so an application may call it on every keystroke without spending the
// connection's rate allowance. It waits for nothing.
func (c *Client) Typing(room string) error {
	if !protocol.ValidRoom(room) {
		return badRequest("invalid room name %q", room)
	}
	b, _ := protocol.Encode(&protocol.Frame{Type: protocol.TypeTyping, Room: room}) // a Frame always encodes
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	cn := c.cur
	if cn == nil || !c.ready || c.rooms[room] == nil {
		return nil
	}
	now := time.Now()
	if now.Sub(c.typedAt) < TypingInterval {
		return nil
	}
	c.typedAt = now
	cn.q = append(cn.q, queued{b: b})
	select {
	case cn.wake <- struct{}{}:
	default:
	}
	return nil
}

// newID returns a random idempotency key: 32 hex digits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// newCall makes a call for f with a fresh ref. Caller holds c.mu.
func (c *Client) newCall(f *protocol.Frame) *call {
	n := c.nextRef.Add(1)
	f.Ref = "r" + strconv.FormatUint(n, 36)
	return &call{
		num: n, ref: f.Ref, frame: f, done: make(chan result, 1),
		bo: backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff},
	}
}

// do sends the request f, or queues it while reconnecting, and waits for
// its reply.
func (c *Client) do(ctx context.Context, f *protocol.Frame) (protocol.Frame, error) {
	if err := ctx.Err(); err != nil {
		return protocol.Frame{}, fmt.Errorf("parley client: %s: %w", f.Type, err)
	}
	c.mu.Lock()
	if c.err != nil || c.ctx.Err() != nil {
		err := c.err
		c.mu.Unlock()
		if err == nil {
			err = ErrClosed
		}
		return protocol.Frame{}, err
	}
	cl := c.newCall(f)
	if f.Type == protocol.TypeLeave {
		delete(c.rooms, f.Room)
		delete(c.memberships, f.Room)
		if !c.ready && !c.resumeRooms[f.Room] {
			// The next connection will not join the room: nothing to
			// leave.
			c.mu.Unlock()
			return protocol.Frame{Type: protocol.TypeLeft, Room: f.Room}, nil
		}
	}
	c.pending[cl.ref] = cl
	switch {
	case f.Type == protocol.TypeSend:
		// Sends go one at a time, in order: see nextSendLocked.
		c.sends = append(c.sends, cl)
		c.nextSendLocked()
	case c.ready:
		c.write(c.cur, cl)
	}
	c.mu.Unlock()

	r, err := c.wait(ctx, cl)
	if err != nil {
		return protocol.Frame{}, err
	}
	return *r, nil
}

// wait waits for cl's reply. When the reply is overdue it drops the
// connection, so that the request is resent on a new one.
func (c *Client) wait(ctx context.Context, cl *call) (*protocol.Frame, error) {
	timer := time.NewTimer(c.cfg.AckTimeout)
	defer timer.Stop()
	for {
		select {
		case r := <-cl.done:
			return r.f, r.err
		case <-ctx.Done():
			c.mu.Lock()
			_, ok := c.pending[cl.ref]
			if ok {
				c.finishLocked(cl)
			}
			last := cl.last
			c.mu.Unlock()
			if !ok {
				// The reply is on its way.
				r := <-cl.done
				return r.f, r.err
			}
			if last != nil {
				// Say why it took so long: the server kept refusing it.
				return nil, fmt.Errorf("parley client: %s %s: %w (refused %d times, last: %s: %s)",
					cl.frame.Type, cl.frame.Room, ctx.Err(), cl.refusals, last.Code, last.Msg)
			}
			return nil, fmt.Errorf("parley client: %s %s: %w", cl.frame.Type, cl.frame.Room, ctx.Err())
		case <-timer.C:
			timer.Reset(c.checkOverdue(cl))
		}
	}
}

// checkOverdue drops the connection if cl has waited on it for AckTimeout,
// and returns when to look again. A request still in the write queue (held
// back after a rate_limited answer) is not overdue: it has not been sent.
func (c *Client) checkOverdue(cl *call) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.conn == nil || cl.conn != c.cur || !c.ready || cl.queued {
		return c.cfg.AckTimeout
	}
	if waited := time.Since(cl.sentAt); waited < c.cfg.AckTimeout {
		return c.cfg.AckTimeout - waited
	}
	c.log.Warn("parley client: request unanswered, dropping the connection",
		"type", cl.frame.Type, "room", cl.frame.Room, "ref", cl.ref, "timeout", c.cfg.AckTimeout)
	cl.conn.cancel(fmt.Errorf("%s %s (ref %s): %w", cl.frame.Type, cl.frame.Room, cl.ref, errReplyTimeout))
	return c.cfg.AckTimeout
}

// write queues cl's frame on cn. Caller holds c.mu.
func (c *Client) write(cn *conn, cl *call) {
	b, err := protocol.Encode(cl.frame)
	if err != nil { // cannot happen: frames are plain structs
		c.log.Error("parley client: encode", "err", err)
		return
	}
	c.stopRetry(cl)
	cn.q = append(cn.q, queued{cl: cl, b: b})
	cl.conn, cl.sentAt, cl.queued = cn, time.Now(), true
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// nextSendLocked writes the oldest pending send, unless it is already on
// its way or waiting to be resent. Sends are written one at a time: the
// next only once the one before it is answered (or abandoned by its
// caller). Pipelining them would let a refused send be overtaken: the
// server refuses the first when the connection is over its rate, then
// accepts the second once a token has come back, and the first, resent,
// would be published after it. Caller holds c.mu.
func (c *Client) nextSendLocked() {
	if !c.ready || len(c.sends) == 0 {
		return
	}
	head := c.sends[0]
	if head.conn != nil || head.retry != nil {
		return
	}
	c.write(c.cur, head)
}

// take removes and returns the pending call with ref, or nil.
func (c *Client) take(ref string) *call {
	if ref == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.pending[ref]
	if cl != nil {
		c.finishLocked(cl)
	}
	return cl
}

// finishLocked removes cl from the pending calls, answered or abandoned.
// A send leaves the queue of sends, and the next one goes. Caller holds
// c.mu.
func (c *Client) finishLocked(cl *call) {
	delete(c.pending, cl.ref)
	c.stopRetry(cl)
	if i := slices.Index(c.sends, cl); i >= 0 {
		c.sends = slices.Delete(c.sends, i, i+1)
		if i == 0 {
			c.nextSendLocked()
		}
	}
}

// refused handles an answer that refuses a pending request for now:
// rate_limited (the connection is over its allowance) or unavailable (the
// message store is unreachable). The request stays pending and is written
// again on the same connection: after retry_after_ms for rate_limited, and
// every frame queued behind it waits as long; after a backoff for
// unavailable. It returns what to report on Events, or nil when f is not
// such an answer to a pending request of cn.
func (c *Client) refused(cn *conn, f *protocol.Frame) *Retry {
	if f.Ref == "" || (f.Code != protocol.CodeRateLimited && f.Code != protocol.CodeUnavailable) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.pending[f.Ref]
	if cl == nil || cl.conn != cn || c.cur != cn {
		return nil
	}
	cl.refusals++
	cl.last = frameError(f)
	cl.conn, cl.queued = nil, false
	var after time.Duration
	if f.Code == protocol.CodeRateLimited && f.RetryAfterMS > 0 {
		after = time.Duration(f.RetryAfterMS) * time.Millisecond
		// The connection, not the request, is over its allowance: hold
		// every frame until then, and space the held ones by as much,
		// so that they do not all meet an empty bucket again (each
		// refusal counts towards the flood limit).
		if until := time.Now().Add(after); until.After(cn.notBefore) {
			cn.notBefore = until
		}
		cn.pace = after
		c.write(cn, cl)
	} else {
		after = cl.bo.next()
		n := cl.refusals
		cl.retry = time.AfterFunc(after, func() { c.resend(cl, n) })
	}
	c.log.Debug("parley client: request refused for now, resending",
		"type", cl.frame.Type, "room", cl.frame.Room, "ref", cl.ref, "code", f.Code, "after", after)
	req := *cl.frame
	return &Retry{Request: req, Err: cl.last, After: after, Attempt: cl.refusals}
}

// resend writes cl again after its n-th refusal (unavailable), unless it
// was answered, abandoned or resent on a new connection since.
func (c *Client) resend(cl *call, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.retry == nil || cl.refusals != n {
		return
	}
	cl.retry = nil
	if c.pending[cl.ref] != cl || cl.conn != nil || c.cur == nil {
		return
	}
	if !c.ready && !cl.internal {
		return // resume writes it
	}
	c.write(c.cur, cl)
}

// stopRetry cancels a planned resend of cl. Caller holds c.mu.
func (c *Client) stopRetry(cl *call) {
	if cl.retry != nil {
		cl.retry.Stop()
		cl.retry = nil
	}
}

// pendingInOrder returns the callers' pending requests in the order they
// were issued. Caller holds c.mu.
func (c *Client) pendingInOrder() []*call {
	var calls []*call
	for _, cl := range c.pending {
		if !cl.internal {
			calls = append(calls, cl)
		}
	}
	slices.SortFunc(calls, func(a, b *call) int { return cmp.Compare(a.num, b.num) })
	return calls
}
