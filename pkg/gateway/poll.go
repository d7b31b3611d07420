package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file is history and long-poll over HTTP:
// GET /v1/rooms/{room}/messages. It is stateless: nothing of a poll
// outlives its request, and any gateway serves the next one.
//
//	?after=<epoch>:<seq>  the messages after a position, oldest first; with
//	                      wait, the answer waits for the first one. An
//	                      empty after is the start of the room (the next
//	                      of an empty room is "")
//	?before=<seq>         a page of history before a seq, oldest first
//	neither               the last limit messages; with wait ("tail"), the
//	                      head is read and the poll behaves as after=head:
//	                      a client's first poll that wants new messages only
//	?limit=1..1000        at most that many messages (default 100)
//	?wait=25s or 25       how long to wait for a message (at most MaxPollWait)

// Long-poll limits.
const (
	defaultPollLimit = 100
	maxPollLimit     = 1000
)

// pollQuery is a poll's parsed query.
type pollQuery struct {
	after  *protocol.Position // the position to read after; nil: none
	before int64              // a page before this seq; 0: none
	limit  int
	wait   time.Duration // 0: answer at once
	tail   bool          // neither after nor before, with wait: after the head
}

// parsePollQuery reads a poll's query; maxWait clamps wait.
func parsePollQuery(q url.Values, maxWait time.Duration) (pollQuery, *opError) {
	bad := func(format string, args ...any) (pollQuery, *opError) {
		return pollQuery{}, &opError{protocol.CodeBadRequest, fmt.Sprintf(format, args...)}
	}
	pq := pollQuery{limit: defaultPollLimit}
	if q.Has("after") {
		// An empty after is the zero position, the start of the room:
		// the next of a poll of an empty room.
		p, err := protocol.ParsePosition(q.Get("after"))
		if err != nil {
			return bad("after: %v", err)
		}
		pq.after = &p
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return bad("before: want a seq > 0, got %q", s)
		}
		pq.before = n
	}
	if pq.after != nil && pq.before > 0 {
		return bad("after and before cannot go together: after polls forward, before pages back")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPollLimit {
			return bad("limit: want 1..%d, got %q", maxPollLimit, s)
		}
		pq.limit = n
	}
	if s := q.Get("wait"); s != "" {
		d, err := parseWait(s)
		if err != nil {
			return bad("wait: %v", err)
		}
		if pq.before > 0 {
			return bad("wait goes with after (or with neither after nor before), not with before")
		}
		pq.wait = min(d, maxWait)
		pq.tail = pq.after == nil && pq.wait > 0
	}
	return pq, nil
}

// parseWait reads a wait: a Go duration ("25s") or whole seconds ("25"),
// not negative.
func parseWait(s string) (time.Duration, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 {
			return 0, fmt.Errorf("%q is negative", s)
		}
		if n > 1<<31 {
			n = 1 << 31 // clamped later; no overflow
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a duration (25s) nor seconds (25)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// pollAnswer is the body of a poll's answer.
type pollAnswer struct {
	Room      string              `json:"room"`
	Epoch     string              `json:"epoch"`
	Seq       int64               `json:"seq"`
	First     int64               `json:"first"`
	Recovered *bool               `json:"recovered,omitempty"`
	Messages  []*protocol.Message `json:"messages"`
	Next      string              `json:"next"`
}

// serveMessages answers GET /v1/rooms/{room}/messages: history pages and
// long-polls, for API keys (any room) and users (the rooms they may read;
// a read never makes a membership).
func (g *Gateway) serveMessages(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Parley-Node", g.cfg.NodeID)
	c, oe := g.httpCaller(r, true, true)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if !g.allow(w, c) {
		return
	}
	room := r.PathValue("room")
	if !protocol.ValidRoom(room) {
		writeError(w, &opError{protocol.CodeBadRequest, fmt.Sprintf("invalid room name %q", room)})
		return
	}
	pq, oe := parsePollQuery(r.URL.Query(), g.cfg.MaxPollWait)
	if oe != nil {
		writeError(w, oe)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RequestTimeout)
	defer cancel()
	if !c.backend() {
		err := g.checkRoom(c.p, room)
		if err == nil {
			err = g.mayUse(ctx, c.p, room, false)
		}
		if err != nil {
			writeError(w, g.refusal(ctx, err))
			return
		}
	}
	var ans pollAnswer
	var err error
	switch {
	case pq.before > 0:
		ans, err = g.pollBefore(ctx, room, pq.before, pq.limit)
	case pq.after == nil && !pq.tail:
		ans, err = g.pollBefore(ctx, room, 0, pq.limit)
		if err == nil && ans.Next == "" {
			ans.Next = protocol.Position{Epoch: ans.Epoch, Seq: ans.Seq}.String()
		}
	default:
		if pq.tail {
			head, herr := g.broker.Head(ctx, room)
			if herr != nil {
				writeError(w, g.refusal(ctx, herr))
				return
			}
			pq.after = &protocol.Position{Epoch: head.Epoch, Seq: head.Seq}
		}
		cancel() // a wait outlives RequestTimeout; each broker call gets its own
		ans, err = g.pollAfter(r.Context(), c, room, *pq.after, pq.limit, pq.wait)
	}
	if err != nil {
		writeError(w, g.refusal(r.Context(), err))
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// pollBefore reads a page of up to limit messages before seq before (from
// the head when before is 0). The page's next is its last message's
// position, kept by the caller for the newest page only.
func (g *Gateway) pollBefore(ctx context.Context, room string, before int64, limit int) (pollAnswer, error) {
	rng, err := g.broker.Before(ctx, room, before, limit)
	if err != nil {
		return pollAnswer{}, err
	}
	ans := answerOf(room, rng.Position, rng.Messages)
	if before > 0 {
		ans.Next = "" // a page back is not a poll position
	}
	return ans, nil
}

// answerOf builds an answer from a head and messages; next is the last
// message's position ("" when there is none).
func answerOf(room string, head broker.Position, msgs []broker.Envelope) pollAnswer {
	ans := pollAnswer{Room: room, Epoch: head.Epoch, Seq: head.Seq, First: head.First, Messages: make([]*protocol.Message, len(msgs))}
	for i, env := range msgs {
		ans.Messages[i] = env.Message
	}
	if n := len(msgs); n > 0 {
		ans.Next = protocol.Position{Epoch: msgs[n-1].Epoch, Seq: msgs[n-1].Seq}.String()
	}
	return ans
}

// pollAfter answers a poll after a position: what follows it, at most
// limit messages, at once when there is any; else, with wait, the first
// messages published within wait. A caller that cannot wait (wait 0, or
// the node drains) gets a plain read with the same recovered rule
// (readSince).
//
// A poll with wait reads first, as one without: while messages flow each
// poll finds some and answers from that read, with no subscription; only
// one that finds none waits, through the hub's join.
func (g *Gateway) pollAfter(ctx context.Context, c caller, room string, after protocol.Position, limit int, wait time.Duration) (pollAnswer, error) {
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	rng, recovered, err := readSince(rctx, g.broker, room, after)
	cancel()
	if err != nil {
		return pollAnswer{}, err
	}
	if wait > 0 && len(rng.Messages) == 0 && recovered {
		pw := &pollWaiter{g: g, room: room, wake: make(chan struct{})}
		if g.track(pw) {
			defer g.untrack(pw)
			return pw.poll(ctx, c, room, after, limit, wait)
		}
		// Draining: answer at once (never 503), so that clients keep
		// polling during a rolling restart, through another gateway.
		g.metrics.polls.WithLabelValues("drain").Inc()
	} else if wait > 0 {
		g.metrics.polls.WithLabelValues("data").Inc()
	}
	return afterAnswer(room, rng.Position, rng.Messages, recovered, after, limit), nil
}

// afterAnswer is the answer to a poll after a position: at most limit of
// msgs; next is the last one's position, or after itself when there is
// none (the client polls again from where it was).
func afterAnswer(room string, head broker.Position, msgs []broker.Envelope, recovered bool, after protocol.Position, limit int) pollAnswer {
	if len(msgs) > limit {
		msgs = msgs[:limit]
	}
	ans := answerOf(room, head, msgs)
	ans.Recovered = protocol.Bool(recovered)
	if ans.Next == "" {
		ans.Next = after.String()
	}
	return ans
}

// pollWaiter is one waiting long-poll: a subscriber of its room (through
// the hub's join, so that no message published between the read and the
// wait is missed: invariant 4), a user subscriber of its user's topic (a
// disconnect reaches it), and a client the gateway tracks (Drain answers
// it at once). The hub calls it under room.mu, the user's topic under
// userTopic.mu: it only records and wakes the handler.
//
// Lock order: pollWaiter.mu is taken under room.mu and userTopic.mu, and
// takes no other lock.
type pollWaiter struct {
	g    *Gateway
	room string
	adm  admission
	wake chan struct{} // closed once the poll has its answer (or must end)

	mu        sync.Mutex
	woken     bool
	why       string            // "data", "drain", "kill", "expel", "revoked"
	expelWhy  string            // the reason of an expel
	head      broker.Position   // the join's head
	msgs      []broker.Envelope // what the poll answers with
	recovered bool
	reset     bool // the epoch changed under the wait: take no more
	revoked   bool // the user is no longer a member: take no more
}

var (
	_ subscriber     = (*pollWaiter)(nil)
	_ userSubscriber = (*pollWaiter)(nil)
	_ client         = (*pollWaiter)(nil)
)

// poll joins the room after after, waits up to wait for a message, and
// answers. The caller tracks pw.
func (pw *pollWaiter) poll(ctx context.Context, c caller, room string, after protocol.Position, limit int, wait time.Duration) (pollAnswer, error) {
	g := pw.g
	if !c.backend() && !g.admitUser(&pw.adm, c.p.user) {
		g.metrics.refused.WithLabelValues("per_user").Inc()
		return pollAnswer{}, &opError{protocol.CodeRateLimited, fmt.Sprintf("too many connections for this user (limit %d per gateway)", g.cfg.MaxConnsPerUser)}
	}
	jctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	if !c.backend() {
		ut, err := g.hub.holdUser(jctx, c.p.user, pw)
		if err != nil {
			cancel()
			return pollAnswer{}, err
		}
		defer g.hub.releaseUser(c.p.user, ut, pw)
	}
	m, err := g.hub.join(jctx, pw, room, &after, "")
	cancel()
	if err != nil {
		return pollAnswer{}, err
	}
	t := time.NewTimer(wait)
	g.metrics.pollsWaiting.Inc()
	select {
	case <-pw.wake:
	case <-t.C:
	case <-ctx.Done():
	}
	g.metrics.pollsWaiting.Dec()
	t.Stop()
	g.leave(m)

	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.woken = true // nothing more is taken
	switch pw.why {
	case "expel":
		g.metrics.polls.WithLabelValues("drain").Inc()
		return pollAnswer{}, &opError{protocol.CodeUnauthorized, pw.expelWhy}
	case "revoked":
		g.metrics.polls.WithLabelValues("drain").Inc()
		return pollAnswer{}, &opError{protocol.CodeForbidden, "no longer a member of " + room}
	case "drain", "kill":
		// Answer at once with what there is: the client polls again,
		// through the load balancer, on another gateway.
		g.metrics.polls.WithLabelValues("drain").Inc()
	default:
		if len(pw.msgs) > 0 {
			g.metrics.polls.WithLabelValues("data").Inc()
		} else {
			g.metrics.polls.WithLabelValues("timeout").Inc()
		}
	}
	head := pw.head
	if n := len(pw.msgs); n > 0 {
		last := pw.msgs[n-1]
		if last.Epoch != head.Epoch || last.Seq > head.Seq {
			head.Epoch, head.Seq = last.Epoch, last.Seq
		}
	}
	return afterAnswer(room, head, pw.msgs, pw.recovered, after, limit), nil
}

// wakeLocked ends the wait for why (the first why wins). Called with
// pw.mu held.
func (pw *pollWaiter) wakeLocked(why string) {
	if pw.woken {
		return
	}
	pw.woken, pw.why = true, why
	close(pw.wake)
}

// joined implements subscriber: the catch-up after the poll's position,
// read with the live subscription in place. Any message answers at once.
func (pw *pollWaiter) joined(j joinOutcome) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.head, pw.recovered = j.rng.Position, j.recovered
	if len(j.rng.Messages) > 0 {
		pw.msgs = append(pw.msgs, j.rng.Messages...)
		pw.wakeLocked("data")
	}
}

// deliver implements subscriber: a message published during the wait.
// Those that come with it (before the handler takes the answer) are
// answered too.
func (pw *pollWaiter) deliver(env broker.Envelope, catchUp bool) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if pw.reset || pw.revoked || (pw.woken && pw.why != "data") {
		return
	}
	pw.msgs = append(pw.msgs, env)
	pw.wakeLocked("data")
}

// event implements subscriber: a poll answers messages only.
func (pw *pollWaiter) event(broker.Event, string) {}

// epochReset implements subscriber: the room began again. With nothing
// gathered yet, the poll answers with the new epoch's messages and
// recovered false; otherwise it answers what it has, and the next poll
// (after the old epoch) is told recovered false by its read.
func (pw *pollWaiter) epochReset(room string, pos protocol.Position, first int64) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if len(pw.msgs) > 0 {
		pw.reset = true
		return
	}
	pw.recovered = false
	pw.head = broker.Position{Epoch: pos.Epoch, Seq: pos.Seq, First: first}
}

// resume implements subscriber: a hole history could not fill. The poll
// answers what it has; the next one reads the rest (and whether it was
// recovered) from history.
func (pw *pollWaiter) resume(string, protocol.Position) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.reset = true
	pw.wakeLocked("data")
}

// overflow implements subscriber: more was published during the join
// than the hub holds back. The poll answers what it has; the next one
// reads from history.
func (pw *pollWaiter) overflow() { pw.resume("", protocol.Position{}) }

// userEvent implements userSubscriber. A poll holds its user's topic so
// that its gateway hears a disconnect of the user, which the hub handles
// itself (expelLocal answers the poll 401), and the end of the user's
// membership of the poll's private or direct room; other events mean
// nothing to a poll.
func (pw *pollWaiter) userEvent(_ string, frame []byte) {
	if room, ok := leftRoom(frame); ok {
		pw.revoke(room)
	}
}

// revoke implements userSubscriber: a poll of a room its user is no
// longer a member of is answered 403, with nothing it took after.
func (pw *pollWaiter) revoke(room string) {
	if room != pw.room {
		return
	}
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.revoked = true
	pw.wakeLocked("revoked")
}

// admitted implements client.
func (pw *pollWaiter) admitted() *admission { return &pw.adm }

// shutdown implements client: the poll is answered at once.
func (pw *pollWaiter) shutdown() {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.wakeLocked("drain")
}

// kill implements client.
func (pw *pollWaiter) kill() {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.wakeLocked("kill")
}

// expel ends the poll because the server API disconnected its user: it
// is answered 401 with reason.
func (pw *pollWaiter) expel(reason string) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if !pw.woken {
		pw.expelWhy = reason
	}
	pw.wakeLocked("expel")
}
