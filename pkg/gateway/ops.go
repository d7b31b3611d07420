package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file holds the gateway's operations, free of any transport: each
// takes the principal that asks and returns a result or an *opError that
// names a protocol error code. The WebSocket (session.go) and plain-text
// (plaintext.go) transports call them; so will any other.

// principal is who makes a request: an authenticated user and one of
// their devices, and the room patterns their token allows (nil: every
// room; see auth.Claims.Allows).
type principal struct {
	user, device string
	conn         string // the connection that asks, "<node>.<boot>/<n>": its presence entry, and the user's events do not go back to it; "" for none
	rooms        []string
}

// opError is an operation's refusal: a protocol error code (protocol.Code*)
// and a message for the client. A transport turns it into an error frame, a
// close or an HTTP status.
type opError struct {
	code, msg string
}

func (e *opError) Error() string { return e.code + ": " + e.msg }

// refusal returns err as an *opError. A failed broker call is unavailable
// when the store could not be reached in time (or the request was cut),
// else internal (logged here: the client is told nothing more).
func (g *Gateway) refusal(ctx context.Context, err error) *opError {
	if oe, ok := errors.AsType[*opError](err); ok {
		return oe
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, broker.ErrClosed) || ctx.Err() != nil {
		return &opError{protocol.CodeUnavailable, "message store unreachable; retry later"}
	}
	g.log.Error("broker call failed", "err", err)
	return &opError{protocol.CodeInternal, "internal error"}
}

// checkRoom says whether p may use room at all: not a direct room, and
// one the token allows.
func (g *Gateway) checkRoom(p principal, room string) error {
	if protocol.DirectRoom(room) {
		a, b, ok := protocol.DirectUsers(room)
		if !ok {
			return &opError{protocol.CodeBadRequest, `a direct room is "dm:<a>:<b>": two user names without ':', sorted, not the same`}
		}
		if p.user != a && p.user != b {
			return &opError{protocol.CodeForbidden, fmt.Sprintf("%s is the direct room of %s and %s", room, a, b)}
		}
	}
	if !(auth.Claims{Rooms: p.rooms}).Allows(room) {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("your token does not allow room %s", room)}
	}
	return nil
}

// mayUse checks that p may read and post in room beyond what its name
// says (checkRoom): any public room (one never created is public: its
// first use creates it), and any other room only as a member. member says
// the caller knows p is one, which costs no store read; so does a room
// whose kind is cached as public.
func (g *Gateway) mayUse(ctx context.Context, p principal, room string, member bool) error {
	if member || protocol.DirectRoom(room) { // checkRoom admitted a direct room's two users only
		return nil
	}
	kind, err := g.roomKind(ctx, room)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if kind == broker.PublicRoom {
		return nil
	}
	ok, err := g.broker.IsMember(ctx, room, p.user)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if !ok {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("room %s is %s: members only", room, kind)}
	}
	return nil
}

// roomKind returns room's kind: public when it was never created. A
// room's kind never changes once it is created, so it is cached then.
func (g *Gateway) roomKind(ctx context.Context, room string) (broker.RoomKind, error) {
	if k, ok := g.kinds.get(room); ok {
		return k, nil
	}
	info, ok, err := g.broker.RoomInfo(ctx, room)
	if err != nil {
		return "", err
	}
	if !ok {
		return broker.PublicRoom, nil
	}
	g.kinds.put(room, info.Kind)
	return info.Kind, nil
}

// join makes sub, a connection of p, a member of room, with the catch-up
// invariant 4 asks for: everything after since when it is given, else the
// last Backlog messages. ref tags the subscriber's joined answer.
// isMember says the caller knows p is a member of the room.
func (g *Gateway) join(ctx context.Context, p principal, sub subscriber, room string, since *protocol.Position, ref string, isMember bool) (*member, error) {
	if err := g.checkRoom(p, room); err != nil {
		return nil, err
	}
	if err := g.mayUse(ctx, p, room, isMember); err != nil {
		return nil, err
	}
	m, err := g.hub.join(ctx, sub, room, since, ref)
	if err != nil {
		return nil, g.refusal(ctx, err)
	}
	return m, nil
}

// leave ends a membership that join returned.
func (g *Gateway) leave(m *member) { g.hub.remove(m) }

// enter makes p a member of room in the store, on all p's devices: the
// first join of a public room creates it. A room of another kind is
// entered only by its members (it cannot be created by a join).
func (g *Gateway) enter(ctx context.Context, p principal, room string) error {
	if err := g.checkRoom(p, room); err != nil {
		return err
	}
	if a, b, ok := protocol.DirectUsers(room); ok {
		return g.enterDirect(ctx, p, room, a, b)
	}
	// A room known to be public (kinds never change) needs no EnsureRoom:
	// one round trip less on a first join.
	info := broker.RoomInfo{Room: room, Kind: broker.PublicRoom}
	if k, ok := g.kinds.get(room); !ok || k != broker.PublicRoom {
		var err error
		if info, err = g.broker.EnsureRoom(ctx, room, broker.PublicRoom, ""); err != nil {
			return g.refusal(ctx, err)
		}
		g.kinds.put(room, info.Kind)
	}
	if info.Kind != broker.PublicRoom {
		member, err := g.broker.IsMember(ctx, room, p.user)
		if err != nil {
			return g.refusal(ctx, err)
		}
		if !member {
			return &opError{protocol.CodeForbidden, fmt.Sprintf("room %s is %s: members only", room, info.Kind)}
		}
		return nil
	}
	added, err := g.broker.AddMember(ctx, room, p.user)
	if errors.Is(err, broker.ErrNoRoom) {
		// The store lost the room since its kind was cached: create it
		// again.
		if _, err = g.broker.EnsureRoom(ctx, room, broker.PublicRoom, ""); err == nil {
			added, err = g.broker.AddMember(ctx, room, p.user)
		}
	}
	if err != nil {
		return g.refusal(ctx, err)
	}
	if added {
		g.tellUser(ctx, p, &protocol.Frame{Type: protocol.TypeMembership, Room: room, Kind: string(info.Kind), State: "member"})
	}
	return nil
}

// enterDirect opens the direct room of users a and b (p is one of them):
// the first join or message creates it and makes both members, and both
// users' devices hear of it live.
func (g *Gateway) enterDirect(ctx context.Context, p principal, room, a, b string) error {
	if _, err := g.broker.EnsureRoom(ctx, room, broker.DirectRoom, p.user); err != nil {
		return g.refusal(ctx, err)
	}
	for _, u := range []string{a, b} {
		added, err := g.broker.AddMember(ctx, room, u)
		if err != nil {
			return g.refusal(ctx, err)
		}
		if added {
			who := principal{user: u}
			if u == p.user {
				who = p
			}
			g.tellUser(ctx, who, &protocol.Frame{Type: protocol.TypeMembership, Room: room, Kind: string(broker.DirectRoom), State: "member"})
		}
	}
	return nil
}

// create creates room as kind (public or private) with p its first member.
// Creating a room that exists already as that kind is fine for one of its
// members; otherwise the name is taken. Public rooms are also created by
// their first join or message; a private room can only be created here,
// and never over a room that has messages already.
func (g *Gateway) create(ctx context.Context, p principal, room string, kind broker.RoomKind) error {
	if err := g.checkRoom(p, room); err != nil {
		return err
	}
	if protocol.DirectRoom(room) {
		return &opError{protocol.CodeBadRequest, "a direct room is created by its first message or join"}
	}
	taken := &opError{protocol.CodeForbidden, fmt.Sprintf("room %s exists already", room)}
	info, ok, err := g.broker.RoomInfo(ctx, room)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if !ok {
		head, err := g.broker.Head(ctx, room)
		if err != nil {
			return g.refusal(ctx, err)
		}
		if head.Seq > 0 && kind != broker.PublicRoom {
			return taken // a public room by use, with its history
		}
		if info, err = g.broker.EnsureRoom(ctx, room, kind, p.user); err != nil {
			return g.refusal(ctx, err)
		}
	}
	if info.Kind != kind {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("room %s exists already, as a %s room", room, info.Kind)}
	}
	if kind != broker.PublicRoom && info.Creator != p.user {
		member, err := g.broker.IsMember(ctx, room, p.user)
		if err != nil {
			return g.refusal(ctx, err)
		}
		if !member {
			return taken
		}
	}
	added, err := g.broker.AddMember(ctx, room, p.user)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if added {
		g.tellUser(ctx, p, &protocol.Frame{Type: protocol.TypeMembership, Room: room, Kind: string(kind), State: "member"})
	}
	return nil
}

// invite makes user a member of room, on the word of p, a member of it.
// The invited user's devices hear of it live. A room holds at most
// MaxRoomMembers members.
func (g *Gateway) invite(ctx context.Context, p principal, room, user string) error {
	if err := g.checkRoom(p, room); err != nil {
		return err
	}
	if protocol.DirectRoom(room) {
		return &opError{protocol.CodeBadRequest, "a direct room has its two users and no one else"}
	}
	info, ok, err := g.broker.RoomInfo(ctx, room)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if !ok {
		return &opError{protocol.CodeNotFound, fmt.Sprintf("no room %s: create it or join it first", room)}
	}
	member, err := g.broker.IsMember(ctx, room, p.user)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if !member {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("only members of %s may invite to it", room)}
	}
	if g.cfg.MaxRoomMembers > 0 && info.Members >= int64(g.cfg.MaxRoomMembers) {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("room %s is full (%d members)", room, g.cfg.MaxRoomMembers)}
	}
	added, err := g.broker.AddMember(ctx, room, user)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if added {
		g.tellUser(ctx, principal{user: user}, &protocol.Frame{Type: protocol.TypeMembership, Room: room, Kind: string(info.Kind), State: "member"})
	}
	return nil
}

// directory lists public rooms in name order after the room after, at
// most limit (<= 0: 50; at most 200), with their member counts, and where
// the next page starts ("" when there is none).
func (g *Gateway) directory(ctx context.Context, after string, limit int) ([]protocol.RoomState, string, error) {
	infos, next, err := g.broker.Directory(ctx, after, limit)
	if err != nil {
		return nil, "", g.refusal(ctx, err)
	}
	out := make([]protocol.RoomState, len(infos))
	for i, r := range infos {
		out[i] = protocol.RoomState{Room: r.Room, Kind: string(r.Kind), Members: r.Members}
	}
	return out, next, nil
}

// exit ends p's membership of room in the store, on all p's devices.
func (g *Gateway) exit(ctx context.Context, p principal, room string) error {
	removed, err := g.broker.RemoveMember(ctx, room, p.user)
	if err != nil {
		return g.refusal(ctx, err)
	}
	if removed {
		// The kind goes with it: the user's other connections stop
		// receiving a private or direct room they are no longer a member
		// of (invariant 10; session.userEvent). It is cached once known.
		f := &protocol.Frame{Type: protocol.TypeMembership, Room: room, State: "left"}
		if kind, err := g.roomKind(ctx, room); err == nil {
			f.Kind = string(kind)
			if kind != broker.PublicRoom {
				g.revoke(ctx, room, p.user)
			}
		} else {
			g.log.Info("left a room of unknown kind: the user's other connections keep their joins", "room", room, "err", err)
		}
		g.tellUser(ctx, p, f)
	}
	return nil
}

// rooms lists p's rooms with their heads, read cursors and unread counts,
// in two round trips to the store whatever their number.
func (g *Gateway) rooms(ctx context.Context, p principal) ([]protocol.RoomState, error) {
	ms, err := g.broker.Memberships(ctx, p.user)
	if err != nil {
		return nil, g.refusal(ctx, err)
	}
	out := make([]protocol.RoomState, len(ms))
	for i, m := range ms {
		read := int64(0)
		if m.Read.Epoch == m.Head.Epoch {
			read = m.Read.Seq
		}
		out[i] = protocol.RoomState{Room: m.Room, Kind: string(m.Kind), Epoch: m.Head.Epoch,
			Seq: m.Head.Seq, First: m.Head.First, Read: read, Unread: m.Unread}
	}
	return out, nil
}

// markRead moves p's read cursor in room forward to pos and returns the
// cursor after it, with the unread count it leaves. A pos beyond the room's
// head is bad_request; one behind the cursor, or in an epoch the room no
// longer has, leaves the cursor where it is (two devices racing never move
// it back). Only a member has a cursor.
func (g *Gateway) markRead(ctx context.Context, p principal, room string, pos protocol.Position) (protocol.Position, int64, error) {
	if err := g.checkRoom(p, room); err != nil {
		return protocol.Position{}, 0, err
	}
	head, err := g.broker.Head(ctx, room)
	if err != nil {
		return protocol.Position{}, 0, g.refusal(ctx, err)
	}
	switch {
	case pos.Epoch == head.Epoch && pos.Seq > head.Seq:
		return protocol.Position{}, 0, &opError{protocol.CodeBadRequest, fmt.Sprintf("seq %d is beyond the room's head, %d", pos.Seq, head.Seq)}
	case pos.Epoch != head.Epoch:
		pos = protocol.Position{} // a stale epoch: read the cursor, move nothing
	}
	cur, err := g.broker.MarkRead(ctx, p.user, room, pos)
	if errors.Is(err, broker.ErrNotMember) {
		return protocol.Position{}, 0, &opError{protocol.CodeForbidden, "not a member of room " + room + ": join it first"}
	}
	if err != nil {
		return protocol.Position{}, 0, g.refusal(ctx, err)
	}
	unread := broker.Unread(head, cur)
	if pos != (protocol.Position{}) && cur == pos {
		// The cursor moved: the user's other devices clear their badges.
		g.tellUser(ctx, p, &protocol.Frame{Type: protocol.TypeRead, Room: room, Epoch: cur.Epoch, Seq: cur.Seq, Unread: unread})
	}
	return cur, unread, nil
}

// publish stores and publishes body as p's message id in room.
func (g *Gateway) publish(ctx context.Context, p principal, room, id, body string, member bool) (broker.Ack, error) {
	if err := g.checkRoom(p, room); err != nil {
		return broker.Ack{}, err
	}
	if err := g.mayUse(ctx, p, room, member); err != nil {
		return broker.Ack{}, err
	}
	if len(body) > g.cfg.MaxBodyBytes {
		return broker.Ack{}, &opError{protocol.CodeTooLarge, fmt.Sprintf("body is %d bytes; the limit is %d", len(body), g.cfg.MaxBodyBytes)}
	}
	start := time.Now()
	ack, err := g.broker.Publish(ctx, broker.Publication{Room: room, ID: id, From: p.user, Device: p.device, Body: body})
	if err != nil {
		return ack, g.refusal(ctx, err)
	}
	g.metrics.publishSeconds.Observe(time.Since(start).Seconds())
	if !ack.Duplicate {
		g.noticeMessage(p, room, ack, body)
	}
	return ack, nil
}

// typing tells the room's other members, on every gateway, that p is
// typing in room. It is ephemeral: no seq, never stored, never replayed on
// resume, and dropped first by a subscriber that falls behind. The caller
// has checked that p may read the room (it joined it).
func (g *Gateway) typing(ctx context.Context, p principal, room string) error {
	if err := g.emit(ctx, room, &protocol.Frame{Type: protocol.TypeTyping, Room: room, User: p.user, Device: p.device}); err != nil {
		return g.refusal(ctx, err)
	}
	return nil
}

// emit sends f to room's members on every gateway as an ephemeral event.
// A frame naming a user is not shown to that user's own connections.
func (g *Gateway) emit(ctx context.Context, room string, f *protocol.Frame) error {
	data, err := protocol.Encode(f)
	if err != nil {
		return fmt.Errorf("encode %s: %w", f.Type, err)
	}
	return g.broker.Emit(ctx, broker.Event{Topic: broker.Room(room), Data: data})
}

// Paging of history.
const (
	defaultHistoryPage = 50
	maxHistoryPage     = 200
)

// history returns up to limit of room's messages before seq before (from
// the head when before <= 0), oldest first: limit <= 0 means 50, and at
// most 200 come at once.
func (g *Gateway) history(ctx context.Context, p principal, room string, before int64, limit int, member bool) (broker.Range, error) {
	if err := g.checkRoom(p, room); err != nil {
		return broker.Range{}, err
	}
	if err := g.mayUse(ctx, p, room, member); err != nil {
		return broker.Range{}, err
	}
	if limit <= 0 {
		limit = defaultHistoryPage
	}
	rng, err := g.broker.Before(ctx, room, before, min(limit, maxHistoryPage))
	if err != nil {
		return rng, g.refusal(ctx, err)
	}
	return rng, nil
}

// kindCache remembers the kinds of created rooms (which never change), up
// to maxKinds of them; when full it starts again.
type kindCache struct {
	mu    sync.Mutex
	kinds map[string]broker.RoomKind
}

const maxKinds = 100_000

func (c *kindCache) get(room string) (broker.RoomKind, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.kinds[room]
	return k, ok
}

func (c *kindCache) put(room string, k broker.RoomKind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kinds == nil || len(c.kinds) >= maxKinds {
		c.kinds = make(map[string]broker.RoomKind)
	}
	c.kinds[room] = k
}
