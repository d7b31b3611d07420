package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// session is one protocol v1 client after hello: who it is, the rooms it
// has joined, and the handling of its requests through the gateway's
// operations (ops.go). It does no I/O: answers and the rooms' streams go
// to its outbox as v1 frames, and its transport feeds it decoded frames,
// one at a time, on the inbox's handler goroutine (which owns members).
// It is the subscriber (subscriber.go) of every room it joins.
type session struct {
	g   *Gateway
	ctx context.Context // ends with the connection
	p   principal
	out *outbox
	in  *inbox // its transport's: internal requests run on its handler goroutine

	members map[string]*member // owned by the request handler: rooms joined
	utopic  *userTopic         // the user's topic on this gateway, nil when it could not be subscribed

	kmu   sync.Mutex // guards known, and cut's writes: the handler and the user's events both change them
	known []string   // the user's rooms (memberships), sorted: welcome's list, kept by joins, leaves and the user's events (a slice: most users are in a few rooms, and an idle connection holds it)
	typed time.Time  // when the last typing notice went out (owned by the request handler)
	exp   *expiry    // the token's expiry; nil until a token with exp

	welcomed atomic.Bool // welcome is queued: the user's events may follow it

	// cut lists the rooms whose membership was ended (a private or direct
	// room the server API removed the user from) while this session may
	// still be joined to them: nothing of them goes out from the moment
	// the user's event is heard (deliveries read it without a lock) until
	// the handler goroutine has left them (dropRoom). Copy on write under
	// kmu; nil when empty, as it nearly always is.
	cut atomic.Pointer[[]string]
}

var _ subscriber = (*session)(nil)

// handle handles one decoded request that arrived at arrived.
func (s *session) handle(f *protocol.Frame, arrived time.Time) {
	switch f.Type {
	case protocol.TypeHello:
		s.out.sendError(f.Ref, protocol.CodeBadRequest, "already said hello")
	case protocol.TypePing:
		s.out.send(&protocol.Frame{Type: protocol.TypePong, Ref: f.Ref})
	case protocol.TypeJoin:
		s.join(f, arrived)
	case protocol.TypeLeave:
		s.leave(f.Room)
		if s.isKnown(f.Room) {
			ctx, cancel := s.requestCtx(arrived)
			err := s.g.exit(ctx, s.p, f.Room)
			cancel()
			if err != nil {
				s.refuse(f.Ref, err)
				return
			}
			s.setKnown(f.Room, false)
		}
		s.out.send(&protocol.Frame{Type: protocol.TypeLeft, Ref: f.Ref, Room: f.Room})
	case protocol.TypeSend:
		s.send(f, arrived)
	case protocol.TypeHistory:
		s.history(f, arrived)
	case protocol.TypeTyping:
		s.typing(f, arrived)
	case protocol.TypeRead:
		s.read(f, arrived)
	case protocol.TypeCreate:
		s.create(f, arrived)
	case protocol.TypeInvite:
		s.invite(f, arrived)
	case protocol.TypeRooms:
		s.directory(f, arrived)
	case protocol.TypePresence:
		s.presence(f, arrived)
	case protocol.TypeSync:
		s.sync(f, arrived)
	case protocol.TypeRefresh:
		s.refresh(f, arrived)
	}
}

// expireAt arms the connection's expiry at exp (zero: none).
func (s *session) expireAt(exp time.Time) {
	if s.exp == nil {
		if exp.IsZero() {
			return
		}
		s.exp = &expiry{out: s.out, window: s.g.cfg.RefreshWindow}
	}
	s.exp.set(exp)
}

// stopExpiry stops the expiry timer, once the handler is done.
func (s *session) stopExpiry() {
	if s.exp != nil {
		s.exp.stop()
	}
}

// refresh replaces the connection's token with a fresh one for the same
// user: its exp and rooms apply from now on (rooms already joined stay
// joined). A refused refresh leaves the connection as it was, to end at
// the old token's exp.
func (s *session) refresh(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	c, err := s.g.authenticate(ctx, f.Token, "")
	if err == nil && c.User != s.p.user {
		err = fmt.Errorf("%w: the token is for %q, this connection is %q's", errAuth, c.User, s.p.user)
	}
	if err != nil {
		msg := "refresh refused: " + err.Error()
		if s.exp != nil && !s.exp.expires().IsZero() {
			msg += "; the connection stays open until " + protocol.FormatTime(s.exp.expires())
		}
		s.out.sendError(f.Ref, protocol.CodeUnauthorized, msg)
		return
	}
	s.p.rooms = c.Rooms
	s.expireAt(c.Expires)
	rf := &protocol.Frame{Type: protocol.TypeRefreshed, Ref: f.Ref}
	if !c.Expires.IsZero() {
		rf.Expires = protocol.FormatTime(c.Expires)
	}
	s.out.send(rf)
}

// requestCtx bounds the broker calls of a request that arrived at arrived:
// RequestTimeout counts from its arrival, not from when its turn came.
func (s *session) requestCtx(arrived time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(s.ctx, arrived.Add(s.g.cfg.RequestTimeout))
}

// refuse answers a request an operation refused, unless the connection is
// ending anyway.
func (s *session) refuse(ref string, err error) {
	if s.ctx.Err() != nil {
		return
	}
	oe := s.g.refusal(s.ctx, err)
	s.out.sendError(ref, oe.code, oe.msg)
}

func (s *session) join(f *protocol.Frame, arrived time.Time) {
	// A re-join (for example with a new since) replaces the membership.
	s.leave(f.Room)
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	if !s.isKnown(f.Room) {
		// A first join makes the user a member, on all their devices; a
		// re-join of one of their rooms writes nothing.
		err := s.roomsFull()
		if err == nil {
			err = s.g.enter(ctx, s.p, f.Room)
		}
		if err != nil {
			s.refuse(f.Ref, err)
			return
		}
		s.setKnown(f.Room, true)
	}
	m, err := s.g.join(ctx, s.p, s, f.Room, f.Since, f.Ref, true) // enter checked access
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.members[f.Room] = m
	s.g.enterPresence(s.p, f.Room)
}

// sync joins every room the user is a member of and this connection has
// not joined, at the room's head: each answers with its joined frame (no
// backlog: welcome gave the unread counts, and history is fetched on
// demand), then synced with the number of rooms joined. A room that fails
// to join is answered with its error frame (ref: the sync's) and skipped.
func (s *session) sync(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	rooms, err := s.g.rooms(ctx, s.p)
	cancel()
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	joined := 0
	for _, r := range rooms {
		s.setKnown(r.Room, true)
		if s.members[r.Room] != nil {
			continue
		}
		// Each join gets its own RequestTimeout: a user in many rooms
		// takes longer than one request's.
		ctx, cancel := s.requestCtx(nowFunc())
		m, err := s.g.join(ctx, s.p, s, r.Room, &protocol.Position{Epoch: r.Epoch, Seq: r.Seq}, "", true)
		if err == nil {
			s.members[r.Room] = m
			s.g.enterPresence(s.p, r.Room)
			joined++
		}
		cancel()
		if err != nil {
			s.refuse(f.Ref, err)
		}
	}
	s.out.send(&protocol.Frame{Type: protocol.TypeSynced, Ref: f.Ref, Count: int64(joined)})
}

func (s *session) presence(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	if f.Room == "" {
		devices, err := s.g.userOnline(ctx, f.User)
		if err != nil {
			s.refuse(f.Ref, err)
			return
		}
		state := "online"
		if devices == 0 {
			state = "offline"
		}
		s.out.send(&protocol.Frame{Type: protocol.TypePresence, Ref: f.Ref, User: f.User, Devices: devices, State: state})
		return
	}
	users, count, err := s.g.present(ctx, s.p, f.Room, s.isKnown(f.Room))
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.out.send(&protocol.Frame{Type: protocol.TypePresence, Ref: f.Ref, Room: f.Room, Users: users, Count: count})
}

// roomsFull refuses a new membership when the user has MaxRoomsPerUser
// rooms already.
func (s *session) roomsFull() error {
	s.kmu.Lock()
	n := len(s.known)
	s.kmu.Unlock()
	if max := s.g.cfg.MaxRoomsPerUser; max > 0 && n >= max {
		return &opError{protocol.CodeForbidden, fmt.Sprintf("you are in %d rooms, the most one user may be in; leave one first", max)}
	}
	return nil
}

func (s *session) create(f *protocol.Frame, arrived time.Time) {
	kind := broker.PrivateRoom
	if f.Kind == string(broker.PublicRoom) {
		kind = broker.PublicRoom
	}
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	err := s.roomsFull()
	if err == nil {
		err = s.g.create(ctx, s.p, f.Room, kind)
	}
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.setKnown(f.Room, true)
	s.out.send(&protocol.Frame{Type: protocol.TypeCreated, Ref: f.Ref, Room: f.Room, Kind: string(kind)})
}

func (s *session) invite(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	if err := s.g.invite(ctx, s.p, f.Room, f.User); err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.out.send(&protocol.Frame{Type: protocol.TypeInvited, Ref: f.Ref, Room: f.Room, User: f.User})
}

func (s *session) directory(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	rooms, next, err := s.g.directory(ctx, f.After, f.Limit)
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.out.send(&protocol.Frame{Type: protocol.TypeRooms, Ref: f.Ref, Rooms: &rooms, Next: next})
}

// read moves the user's read cursor in a room forward and answers with
// the cursor and the unread count it leaves.
func (s *session) read(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	cur, unread, err := s.g.markRead(ctx, s.p, f.Room, protocol.Position{Epoch: f.Epoch, Seq: f.Seq})
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.out.send(&protocol.Frame{Type: protocol.TypeRead, Ref: f.Ref, Room: f.Room, Epoch: cur.Epoch, Seq: cur.Seq, Unread: unread})
}

func (s *session) leave(room string) {
	if m := s.members[room]; m != nil {
		delete(s.members, room)
		s.g.leave(m)
		s.g.exitPresence(s.p, room)
	}
}

// end ends the session with its connection: every room it joined here
// is left (the user's memberships stay), and its user topic released.
func (s *session) end() {
	for room := range s.members {
		s.leave(room)
	}
	if s.utopic != nil {
		s.g.hub.releaseUser(s.p.user, s.utopic, s)
	}
	s.g.offline(s.p)
}

func (s *session) isKnown(room string) bool {
	s.kmu.Lock()
	defer s.kmu.Unlock()
	_, ok := slices.BinarySearch(s.known, room)
	return ok
}

func (s *session) setKnown(room string, member bool) {
	s.kmu.Lock()
	defer s.kmu.Unlock()
	i, ok := slices.BinarySearch(s.known, room)
	switch {
	case member && !ok:
		s.known = slices.Insert(s.known, i, room)
	case !member && ok:
		s.known = slices.Delete(s.known, i, i+1)
	}
}

// userEvent implements userSubscriber: another device of the user read a
// room or made or ended a membership. The frame goes to the client as it
// is; a membership also changes what this session knows, so that its
// next join of the room writes (or skips) the membership rightly.
func (s *session) userEvent(origin string, data []byte) {
	if origin != "" && origin == s.p.conn {
		return // this connection did it, and has its answer
	}
	if !s.welcomed.Load() {
		return // nothing comes before welcome, whose rooms list is as new
	}
	var f struct {
		Type  string `json:"type"`
		Room  string `json:"room"`
		Kind  string `json:"kind"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return
	}
	if f.Type == protocol.TypeMembership {
		s.setKnown(f.Room, f.State == "member")
		switch {
		case f.State == "member":
			s.setCut(f.Room, false)
		case f.Kind == string(broker.PrivateRoom) || f.Kind == string(broker.DirectRoom):
			s.revoke(f.Room)
		}
	}
	s.out.push(data, classLive)
}

// revoke implements userSubscriber. Invariant 10: a user no longer a
// member of a private or direct room stops receiving it on every
// connection. The room is cut off at once; the handler goroutine, which
// owns members, leaves it (this runs under userTopic.mu, so it only
// queues). A closed inbox means the session is ending: it leaves every
// room as it ends, and the cut holds until then. A second revoke of the
// same room (the room's event, then the user's) changes nothing.
func (s *session) revoke(room string) {
	if s.isCut(room) {
		return
	}
	s.setCut(room, true)
	s.in.post(func() { s.dropRoom(room) })
}

// setCut adds room to the rooms cut off (on), or takes it out.
func (s *session) setCut(room string, on bool) {
	s.kmu.Lock()
	defer s.kmu.Unlock()
	var rooms []string
	if old := s.cut.Load(); old != nil {
		rooms = *old
	}
	has := slices.Contains(rooms, room)
	switch {
	case on && !has:
		next := append(slices.Clip(rooms), room)
		s.cut.Store(&next)
	case !on && has:
		next := slices.DeleteFunc(slices.Clone(rooms), func(r string) bool { return r == room })
		if len(next) == 0 {
			s.cut.Store(nil)
		} else {
			s.cut.Store(&next)
		}
	}
}

// isCut reports whether room is cut off (see cut). No lock: the hub calls
// it under room.mu for every delivery.
func (s *session) isCut(room string) bool {
	c := s.cut.Load()
	return c != nil && slices.Contains(*c, room)
}

// dropRoom runs on the handler goroutine (posted by userEvent): the
// session leaves room, which its user is no longer a member of (its hub
// membership and its presence end), unless the user became a member
// again meanwhile; then the room is no longer cut off.
func (s *session) dropRoom(room string) {
	if !s.isCut(room) {
		return // a member again: the join stays
	}
	s.leave(room)
	s.setCut(room, false)
}

func (s *session) send(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	if protocol.DirectRoom(f.Room) && !s.isKnown(f.Room) {
		// The first message of a direct room creates it, for both users.
		if err := s.g.enter(ctx, s.p, f.Room); err != nil {
			s.refuse(f.Ref, err)
			return
		}
		s.setKnown(f.Room, true)
	}
	ack, err := s.g.publish(ctx, s.p, f.Room, f.ID, f.Body, s.isKnown(f.Room))
	if err != nil {
		s.refuse(f.Ref, err)
		return
	}
	s.out.send(&protocol.Frame{Type: protocol.TypeAck, Ref: f.Ref, ID: ack.ID, Room: ack.Room, Seq: ack.Seq, Epoch: ack.Epoch, TS: ack.TS})
}

func (s *session) history(f *protocol.Frame, arrived time.Time) {
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	rng, err := s.g.history(ctx, s.p, f.Room, f.Before, f.Limit, s.isKnown(f.Room))
	if err != nil {
		s.refuse(f.Ref, err)
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
		s.refuse(f.Ref, fmt.Errorf("encode history: %w", err))
		return
	}
	s.out.push(b, classLive)
}

// typing relays a typing notice to the room's other members: at most one
// per TypingInterval per connection (more are dropped without an answer:
// clients send one per keystroke), and only in a room this connection has
// joined. A notice that fails to go out is dropped too: it is ephemeral.
func (s *session) typing(f *protocol.Frame, arrived time.Time) {
	if s.members[f.Room] == nil {
		s.out.sendError(f.Ref, protocol.CodeBadRequest, "join the room before typing in it")
		return
	}
	if !s.typed.IsZero() && arrived.Sub(s.typed) < s.g.cfg.TypingInterval {
		return
	}
	s.typed = arrived
	ctx, cancel := s.requestCtx(arrived)
	defer cancel()
	if err := s.g.typing(ctx, s.p, f.Room); err != nil {
		s.g.log.Debug("typing notice dropped", "room", f.Room, "err", err)
	}
}

// joined implements subscriber: the joined answer, then the catch-up.
func (s *session) joined(j joinOutcome) {
	if s.isCut(j.room) {
		return
	}
	jf := &protocol.Frame{Type: protocol.TypeJoined, Ref: j.ref, Room: j.room, Epoch: j.rng.Epoch, Seq: j.rng.Seq, First: j.rng.First}
	if j.resumed {
		jf.Recovered = protocol.Bool(j.recovered)
	}
	b, _ := protocol.Encode(jf) // a Frame always encodes
	frames := make([][]byte, 0, 1+len(j.rng.Messages))
	frames = append(frames, b)
	for _, env := range j.rng.Messages {
		frames = append(frames, env.Raw)
	}
	s.out.pushCatchUp(frames...)
}

// deliver implements subscriber: the envelope is the message frame.
func (s *session) deliver(env broker.Envelope, catchUp bool) {
	if s.isCut(env.Room) {
		return
	}
	if catchUp {
		s.out.pushCatchUp(env.Raw)
		return
	}
	s.out.push(env.Raw, classLive)
}

// event implements subscriber: the event's data is its frame. What a user
// does (typing) is not shown back to that user's own connections.
func (s *session) event(ev broker.Event, from string) {
	if (from != "" && from == s.p.user) || s.isCut(ev.Topic.Name) {
		return
	}
	s.out.push(ev.Data, classEphemeral)
}

// epochReset implements subscriber: an unsolicited joined frame, with
// recovered false, tells the client where the new epoch's stream starts.
func (s *session) epochReset(room string, pos protocol.Position, first int64) {
	if s.isCut(room) {
		return
	}
	s.out.send(&protocol.Frame{Type: protocol.TypeJoined, Room: room, Epoch: pos.Epoch,
		Seq: pos.Seq, First: first, Recovered: protocol.Bool(false)})
}

// resume implements subscriber: close 1013, and the client resumes from
// its last seq and is told what can be recovered.
func (s *session) resume(room string, last protocol.Position) {
	if s.isCut(room) {
		return
	}
	s.out.close(protocol.CloseTryAgainLater, fmt.Sprintf("missed messages after seq %d; resume", last.Seq), false)
}

// overflow implements subscriber.
func (s *session) overflow() { s.out.overflow() }
