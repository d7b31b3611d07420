package gateway

import (
	"context"
	"fmt"
	"sync"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// hub is the gateway's local room registry. It implements broker.Handler:
// the broker delivers each published envelope to it once, and it fans the
// envelope out to the room's local members. Gaps are repaired from history
// by one goroutine per room (repair.go), never on the delivery goroutine.
//
// Lock order: room.subMu, then hub.mu or room.mu (never both at once);
// room.mu, then conn.qmu (fan-out enqueues under room.mu). Gateway.mu,
// hub.mu and conn.qmu take no other lock while held. A broker call runs
// under room.subMu only (Subscribe, Unsubscribe), never under room.mu.
type hub struct {
	g *Gateway

	mu    sync.Mutex
	rooms map[string]*room

	wg        sync.WaitGroup // repair goroutines
	readSlots chan struct{}  // history reads of repairs in flight
}

// room is one room with local members. Its subscription is counted by refs:
// the first member subscribes, the last one out unsubscribes.
type room struct {
	name string

	refs int // guarded by hub.mu

	subMu      sync.Mutex // serialises Subscribe/Unsubscribe of this room
	subscribed bool       // guarded by subMu

	mu      sync.Mutex // guards the delivery state below
	known   bool       // epoch and last describe the live stream
	epoch   string
	last    int64 // last seq fanned out
	members map[*member]struct{}
	repair  repairState // a history repair in progress
}

// member is one connection's membership of a room.
type member struct {
	c    *conn
	room *room

	// guarded by room.mu
	pending bool              // joining: live messages are buffered
	buf     []broker.Envelope // live messages seen while pending
	epoch   string            // what this member has been given
	last    int64
}

func newHub(g *Gateway) *hub {
	return &hub{g: g, rooms: make(map[string]*room), readSlots: make(chan struct{}, repairReads)}
}

func (h *hub) room(name string) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms[name]
}

// acquire counts a member in and makes sure the room is subscribed.
func (h *hub) acquire(ctx context.Context, name string) (*room, error) {
	h.mu.Lock()
	r := h.rooms[name]
	if r == nil {
		r = &room{name: name, members: make(map[*member]struct{})}
		h.rooms[name] = r
		h.g.metrics.rooms.Inc()
	}
	r.refs++
	h.mu.Unlock()

	r.subMu.Lock()
	var err error
	if !r.subscribed {
		if err = h.g.broker.Subscribe(ctx, name); err == nil {
			r.subscribed = true
		}
	}
	r.subMu.Unlock()
	if err != nil {
		h.release(r)
		return nil, err
	}
	return r, nil
}

// release counts a member out; the last one unsubscribes the room.
func (h *hub) release(r *room) {
	h.mu.Lock()
	r.refs--
	last := r.refs == 0
	h.mu.Unlock()
	if !last {
		return
	}
	r.subMu.Lock()
	defer r.subMu.Unlock()
	h.mu.Lock()
	still := r.refs == 0
	h.mu.Unlock()
	if still && r.subscribed {
		ctx, cancel := context.WithTimeout(context.Background(), h.g.cfg.RequestTimeout)
		if err := h.g.broker.Unsubscribe(ctx, r.name); err != nil {
			h.g.log.Warn("unsubscribe failed", "room", r.name, "err", err)
		}
		cancel()
		r.subscribed = false
		r.mu.Lock()
		r.known = false
		r.abandonRepairLocked()
		r.mu.Unlock()
	}
	h.mu.Lock()
	if r.refs == 0 && !r.subscribed && h.rooms[r.name] == r {
		delete(h.rooms, r.name)
		h.g.metrics.rooms.Dec()
	}
	h.mu.Unlock()
}

// join makes c a member of the room, reading history as invariant 4 says:
// subscribe first, buffer live messages, read history after since, send
// joined and the missed messages, then the buffered ones without
// duplicates, then go live.
func (h *hub) join(ctx context.Context, c *conn, name string, since *protocol.Since, ref string) (*member, error) {
	r, err := h.acquire(ctx, name)
	if err != nil {
		return nil, err
	}
	m := &member{c: c, room: r, pending: true}
	r.mu.Lock()
	r.members[m] = struct{}{}
	r.mu.Unlock()

	rng, recovered, err := h.catchUp(ctx, name, since)
	if err != nil {
		h.remove(m)
		return nil, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if c.plain {
		for _, env := range rng.Messages {
			m.deliverPlain(env, true)
		}
	} else {
		jf := &protocol.Frame{Type: protocol.TypeJoined, Ref: ref, Room: name, Epoch: rng.Epoch, Seq: rng.Seq, First: rng.First}
		if since != nil {
			jf.Recovered = protocol.Bool(recovered)
		}
		b, _ := protocol.Encode(jf) // a Frame always encodes
		frames := make([][]byte, 0, 1+len(rng.Messages))
		frames = append(frames, b)
		for _, env := range rng.Messages {
			frames = append(frames, env.Raw)
		}
		c.enqueueCatchUp(frames...)
	}
	m.epoch, m.last = rng.Epoch, rng.Seq
	m.pending = false
	buf := m.buf
	m.buf = nil
	for _, env := range buf {
		m.deliver(env, true) // held back during the join: part of its catch-up
	}
	if !r.known {
		r.known, r.epoch, r.last = true, rng.Epoch, rng.Seq
	}
	return m, nil
}

// catchUp reads what a joiner is owed: everything after since when it is
// given, else the last Backlog messages. recovered reports whether every
// message after since is in the range.
func (h *hub) catchUp(ctx context.Context, name string, since *protocol.Since) (broker.Range, bool, error) {
	b := h.g.broker
	if since == nil {
		rng, err := b.Before(ctx, name, 0, h.g.cfg.Backlog)
		return rng, true, err
	}
	rng, err := b.After(ctx, name, since.Seq, 0)
	if err != nil {
		return rng, false, err
	}
	if since.Seq == 0 || rng.Epoch == since.Epoch {
		// Every message after since.Seq is here unless history was trimmed
		// past it. A client ahead of the head (same epoch) has all there is.
		return rng, rng.Seq <= since.Seq || rng.First <= since.Seq+1, nil
	}
	// The epoch changed: Redis lost the room. Everything in the new epoch
	// is new to the client, and what it missed before is gone.
	rng, err = b.After(ctx, name, 0, 0)
	return rng, false, err
}

// remove takes m out of its room and releases the room.
func (h *hub) remove(m *member) {
	r := m.room
	r.mu.Lock()
	delete(r.members, m)
	m.buf = nil
	r.mu.Unlock()
	h.release(r)
}

// Deliver implements broker.Handler. It runs on the broker's single
// delivery goroutine, so envelopes of one room arrive in publish order
// except where pub/sub lost some, which the seq check finds. It never
// waits on Redis: a gap (or a new epoch whose start was not seen) buffers
// the envelope and starts the room's repair, and while the room repairs
// its envelopes are buffered for the repair to merge.
func (h *hub) Deliver(env broker.Envelope) {
	r := h.room(env.Room)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.repair.active {
		h.bufferLocked(r, env)
		return
	}
	switch r.placeLocked(env) {
	case placeSeen:
		// already delivered (a repair read it first)
	case placeNext:
		r.fanOut(env, false)
	case placeHole:
		why := "live gap"
		if env.Epoch != r.epoch {
			// A new epoch (the room was lost and recreated) whose start
			// we have not seen: read it from history first.
			why = "new epoch"
		}
		h.startRepairLocked(r, why)
		h.bufferLocked(r, env)
	}
}

// Subscribed implements broker.Handler. After a reconnect of the
// subscriber connection the room's subscription is back, and whatever was
// published while it was down is read from history by the room's repair.
func (h *hub) Subscribed(name string) {
	r := h.room(name)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h.g.log.Debug("subscribed", "room", name, "known", r.known, "last", r.last, "repairing", r.repair.active)
	if !r.known {
		return // first subscription: the joiner reads history itself
	}
	h.startRepairLocked(r, "resubscribed")
}

// Disconnected implements broker.Handler.
func (h *hub) Disconnected(err error) {
	h.g.metrics.pubsubLost.Inc()
	h.g.log.Warn("pub/sub connection lost; rooms will be re-read from history when it is back", "err", err)
}

// fanOut gives env to every member and advances the room. Called with
// r.mu held; it never blocks: enqueue only appends to a bounded queue.
// catchUp marks what the gateway held back (a repair's merge): it does not
// count against the members' outbound limits.
func (r *room) fanOut(env broker.Envelope, catchUp bool) {
	r.known, r.epoch, r.last = true, env.Epoch, env.Seq
	for m := range r.members {
		m.deliver(env, catchUp)
	}
}

// deliver gives env to one member, keeping its stream gapless and free of
// duplicates. Called with room.mu held.
func (m *member) deliver(env broker.Envelope, catchUp bool) {
	if m.pending {
		if len(m.buf) >= m.c.g.cfg.OutboundQueue {
			m.c.slowConsumer()
			return
		}
		m.buf = append(m.buf, env)
		return
	}
	if m.c.plain {
		if env.Epoch == m.epoch && env.Seq <= m.last {
			return
		}
		m.epoch, m.last = env.Epoch, env.Seq
		m.deliverPlain(env, catchUp)
		return
	}
	if env.Epoch != m.epoch {
		if m.epoch == "" && m.last == 0 {
			m.epoch = env.Epoch // the room was empty when we joined: its first message
		} else {
			// The room's epoch changed under us: Redis lost its data.
			m.c.sendFrame(&protocol.Frame{Type: protocol.TypeJoined, Room: m.room.name, Epoch: env.Epoch,
				Seq: env.Seq - 1, First: env.Seq, Recovered: protocol.Bool(false)})
			m.epoch, m.last = env.Epoch, env.Seq-1
		}
	}
	if env.Seq <= m.last {
		return
	}
	if env.Seq > m.last+1 {
		// A hole history could not fill: never hide it. The client resumes
		// from its last seq and is told what can be recovered.
		m.c.closeWith(protocol.CloseTryAgainLater, fmt.Sprintf("missed messages after seq %d; resume", m.last), false)
		return
	}
	m.last = env.Seq
	if catchUp {
		m.c.enqueueCatchUp(env.Raw)
	} else {
		m.c.enqueue(env.Raw)
	}
}

// deliverPlain gives a plain-text member the bare body of every message
// not its own.
func (m *member) deliverPlain(env broker.Envelope, catchUp bool) {
	if env.From == m.c.user && env.Device == m.c.device {
		return
	}
	if catchUp {
		m.c.enqueueCatchUp([]byte(env.Body))
	} else {
		m.c.enqueue([]byte(env.Body))
	}
}
