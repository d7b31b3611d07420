package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// hub is the gateway's local room registry. It implements broker.Handler:
// the broker delivers each published envelope to it once, and it fans the
// envelope out to the room's local members, each a subscriber
// (subscriber.go). Gaps are repaired from history by one goroutine per
// room (repair.go), never on the delivery goroutine.
//
// Lock order: hub.mu and room.mu are never held together; room.mu, then a
// subscriber's outbox.mu (fan-out queues under room.mu). Gateway.mu,
// hub.mu and outbox.mu take no other lock while held. No broker call runs
// under any of them: a room's Subscribe and Unsubscribe run unlocked, one
// at a time, by the caller that set room.op (see acquire and release).
type hub struct {
	g *Gateway

	mu    sync.Mutex
	rooms registry[*room]
	users registry[*userTopic]

	wg        sync.WaitGroup // repair goroutines
	readSlots chan struct{}  // history reads of repairs in flight
}

// room is one room with local members. Its subscription is counted by refs:
// the first member subscribes, the last one out unsubscribes.
type room struct {
	name string
	hold int // the most live messages held back for one joining member (OutboundQueue)

	subscription // counted by members; guarded by hub.mu

	mu      sync.Mutex // guards the delivery state below
	cur     cursor     // the last envelope fanned out
	members map[*member]struct{}
	repair  repairState // a history repair in progress
}

// member is one subscriber's membership of a room.
type member struct {
	sub  subscriber
	room *room

	// guarded by room.mu
	pending bool              // joining: live messages are buffered
	buf     []broker.Envelope // live messages seen while pending
	pos     protocol.Position // what this member has been given
}

func newHub(g *Gateway) *hub {
	h := &hub{g: g, readSlots: make(chan struct{}, repairReads)}
	h.rooms = registry[*room]{
		kind:    broker.RoomTopic,
		entries: make(map[string]*room),
		create: func(name string) *room {
			g.metrics.rooms.Inc()
			return &room{name: name, hold: g.cfg.OutboundQueue, members: make(map[*member]struct{})}
		},
		dropped: func(*room) { g.metrics.rooms.Dec() },
	}
	h.users = registry[*userTopic]{
		kind:    broker.UserTopic,
		entries: make(map[string]*userTopic),
		create:  func(string) *userTopic { return &userTopic{} },
	}
	return h
}

// roomNames lists the rooms with local members.
func (h *hub) roomNames() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make([]string, 0, len(h.rooms.entries))
	for n := range h.rooms.entries {
		names = append(names, n)
	}
	return names
}

func (h *hub) room(name string) *room {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rooms.entries[name]
}

// acquire counts a member in and makes sure the room is subscribed.
func (h *hub) acquire(ctx context.Context, name string) (*room, error) {
	return hold(ctx, h, &h.rooms, name)
}

// release counts a member out; the last one unsubscribes the room, and
// the room's stream is no longer followed: the next joiner reads history
// itself.
func (h *hub) release(r *room) {
	release(h, &h.rooms, r.name, r, func() {
		r.mu.Lock()
		r.cur = cursor{}
		r.abandonRepairLocked()
		r.mu.Unlock()
	})
}

// join makes sub a member of the room, reading history as invariant 4
// says: subscribe first, buffer live messages, read history after since,
// give the subscriber its catch-up, then the buffered messages without
// duplicates, then go live.
func (h *hub) join(ctx context.Context, sub subscriber, name string, since *protocol.Position, ref string) (*member, error) {
	r, err := h.acquire(ctx, name)
	if err != nil {
		return nil, err
	}
	m := &member{sub: sub, room: r, pending: true}
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
	sub.joined(joinOutcome{ref: ref, room: name, rng: rng, resumed: since != nil, recovered: recovered})
	m.pos = protocol.Position{Epoch: rng.Epoch, Seq: rng.Seq}
	m.pending = false
	buf := m.buf
	m.buf = nil
	for _, env := range buf {
		m.deliver(env, true) // held back during the join: part of its catch-up
	}
	if !r.cur.known {
		r.cur = cursor{known: true, pos: m.pos}
	}
	return m, nil
}

// catchUp reads what a joiner is owed: everything after since when it is
// given (readSince), else the last Backlog messages.
func (h *hub) catchUp(ctx context.Context, name string, since *protocol.Position) (broker.Range, bool, error) {
	if since == nil {
		rng, err := h.g.broker.Before(ctx, name, 0, h.g.cfg.Backlog)
		return rng, true, err
	}
	return readSince(ctx, h.g.broker, name, *since)
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

// Deliver implements broker.Handler. It runs on the broker's delivery
// goroutine, so envelopes of one room arrive in publish order except where
// pub/sub lost some, which the seq check finds. It never waits on Redis: a
// gap (or a new epoch whose start was not seen) buffers the envelope and
// starts the room's repair, and while the room repairs its envelopes are
// buffered for the repair to merge.
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
	switch r.cur.place(env) {
	case placeSeen:
		// already delivered (a repair read it first)
	case placeNext:
		r.fanOut(env, false)
	case placeHole:
		why := "live gap"
		if env.Epoch != r.cur.pos.Epoch {
			// A new epoch (the room was lost and recreated) whose start
			// we have not seen: read it from history first.
			why = "new epoch"
		}
		h.startRepairLocked(r, why)
		h.bufferLocked(r, env)
	}
}

// Event implements broker.Handler: a room's ephemeral event goes to its
// members as it is, neither sequenced nor repaired; a user's goes to the
// user's sessions (users.go).
func (h *hub) Event(ev broker.Event) {
	if ev.Topic.Kind == broker.UserTopic {
		h.userEvent(ev)
		return
	}
	if user, ok := revokedUser(ev.Data); ok {
		h.revokeLocal(ev.Topic.Name, user)
		return
	}
	r := h.room(ev.Topic.Name)
	if r == nil {
		return
	}
	// Events are frames the gateways wrote (ops.go); the sender is read
	// once here, not by every member.
	var head struct {
		User string `json:"user"`
	}
	_ = json.Unmarshal(ev.Data, &head)
	r.mu.Lock()
	defer r.mu.Unlock()
	for m := range r.members {
		if !m.pending {
			m.sub.event(ev, head.User)
		}
	}
}

// Subscribed implements broker.Handler. After a loss the room's
// subscription is back, and whatever was published while it was down is
// read from history by the room's repair.
func (h *hub) Subscribed(t broker.Topic) {
	if t.Kind != broker.RoomTopic {
		return
	}
	r := h.room(t.Name)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h.g.log.Debug("subscribed", "room", t.Name, "known", r.cur.known, "last", r.cur.pos.Seq, "repairing", r.repair.active)
	if !r.cur.known {
		return // first subscription: the joiner reads history itself
	}
	h.startRepairLocked(r, "resubscribed")
}

// Lost implements broker.Handler. Nothing is done until each room's
// Subscribed comes back: its repair then reads what the loss cost.
func (h *hub) Lost(topics []broker.Topic, err error) {
	h.g.metrics.pubsubLost.Inc()
	if errors.Is(err, broker.ErrSilent) {
		h.g.metrics.pubsubSilent.Inc()
	}
	h.g.log.Warn("pub/sub subscriptions lost; rooms will be re-read from history when they are back",
		"topics", len(topics), "err", err)
}

// fanOut gives env to every member and advances the room. Called with
// r.mu held; it never blocks: subscribers only queue. catchUp marks what
// the gateway held back (a repair's merge): it does not count against the
// members' outbound limits.
func (r *room) fanOut(env broker.Envelope, catchUp bool) {
	r.cur.advance(env)
	for m := range r.members {
		m.deliver(env, catchUp)
	}
}

// deliver gives env to one member, keeping its stream gapless and free of
// duplicates. Called with room.mu held.
func (m *member) deliver(env broker.Envelope, catchUp bool) {
	if m.pending {
		if len(m.buf) >= m.room.hold {
			m.sub.overflow()
			return
		}
		m.buf = append(m.buf, env)
		return
	}
	switch m.pos.Place(env.Epoch, env.Seq) {
	case protocol.Duplicate:
		return
	case protocol.NewEpoch:
		// The room's epoch changed under the member: Redis lost its data.
		m.pos = protocol.Reset(env.Epoch, env.Seq)
		m.sub.epochReset(m.room.name, m.pos, env.Seq)
	case protocol.Gap:
		// A hole history could not fill: never hide it. The client
		// resumes from its last seq and is told what can be recovered.
		m.sub.resume(m.room.name, m.pos)
	}
	m.pos = protocol.Position{Epoch: env.Epoch, Seq: env.Seq}
	m.sub.deliver(env, catchUp)
}
