package client

// The user's rooms: memberships with read cursors and unread counts, read
// cursors, private rooms, invites, the directory, presence, and token
// refresh.

import (
	"cmp"
	"context"
	"slices"

	"github.com/parley-chat/parley/pkg/protocol"
)

// Rooms returns the rooms the user is a member of, on any device, sorted
// by name: welcome's list, as of the last welcome, kept up to date since
// by this Client's joins, leaves and creates, by the messages it delivers
// (which advance a room's head and its unread count), and by the
// membership and read frames the user's other devices cause. Unread is
// exact as of the last welcome or read answer and counts every message
// delivered since; a joined room's trimmed history is not subtracted until
// then. Rooms returns nil when no welcome has listed the rooms (the
// gateway could not read its store at hello) and nothing has been learnt
// since.
func (c *Client) Rooms() []protocol.RoomState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.haveRooms && len(c.memberships) == 0 {
		return nil
	}
	out := make([]protocol.RoomState, 0, len(c.memberships))
	for _, rs := range c.memberships {
		out = append(out, *rs)
	}
	slices.SortFunc(out, func(a, b protocol.RoomState) int { return cmp.Compare(a.Room, b.Room) })
	return out
}

// Read moves the user's read cursor in room forward to pos, the last
// message read, and returns the server's answer: the cursor after the
// request (epoch and seq; it never moves back, so it may be further than
// pos if another device read further) and unread, the messages after it.
// The user's other devices receive it as Event.ReadSync, and Rooms
// reflects it. The user must be a member of room (else forbidden); a seq
// beyond the room's head is bad_request.
func (c *Client) Read(ctx context.Context, room string, pos protocol.Position) (protocol.Frame, error) {
	if !protocol.ValidRoom(room) {
		return protocol.Frame{}, badRequest("invalid room name %q", room)
	}
	if pos.Seq < 0 || (pos.Seq > 0 && pos.Epoch == "") {
		return protocol.Frame{}, badRequest("invalid read position %+v: seq >= 0, and seq > 0 needs its epoch", pos)
	}
	return c.do(ctx, &protocol.Frame{Type: protocol.TypeRead, Room: room, Epoch: pos.Epoch, Seq: pos.Seq})
}

// Create creates room of kind "private" ("" means private) or "public"
// and returns the "created" answer. The user is its first member: it is
// in Rooms, and the user's other devices hear of it. A name that is taken
// is forbidden, unless the user is already a member of it as that kind
// (creating it again is then harmless). Create does not join the room:
// call Join to receive its messages.
func (c *Client) Create(ctx context.Context, room, kind string) (protocol.Frame, error) {
	if !protocol.ValidRoom(room) {
		return protocol.Frame{}, badRequest("invalid room name %q", room)
	}
	if kind == "" {
		kind = "private"
	}
	if kind != "private" && kind != "public" {
		return protocol.Frame{}, badRequest("invalid room kind %q: private or public", kind)
	}
	return c.do(ctx, &protocol.Frame{Type: protocol.TypeCreate, Room: room, Kind: kind})
}

// Invite makes user a member of room, of which the user of this Client is
// a member (else forbidden; a room never created is not_found). The
// invited user's devices receive a membership frame (Event.Membership).
func (c *Client) Invite(ctx context.Context, room, user string) error {
	if !protocol.ValidRoom(room) {
		return badRequest("invalid room name %q", room)
	}
	if !protocol.ValidRoom(user) {
		return badRequest("invalid user name %q", user)
	}
	_, err := c.do(ctx, &protocol.Frame{Type: protocol.TypeInvite, Room: room, User: user})
	return err
}

// Directory returns a page of the public rooms, in name order, each with
// its member count (RoomState.Members): those after the room named after
// ("" from the start), at most limit (<= 0: the server's default, 50; the
// server caps it at 200). next is the after of the next page, "" on the
// last page.
func (c *Client) Directory(ctx context.Context, after string, limit int) (rooms []protocol.RoomState, next string, err error) {
	if after != "" && !protocol.ValidRoom(after) {
		return nil, "", badRequest("invalid room name %q", after)
	}
	r, err := c.do(ctx, &protocol.Frame{Type: protocol.TypeRooms, After: after, Limit: max(limit, 0)})
	if err != nil {
		return nil, "", err
	}
	if r.Rooms != nil {
		rooms = *r.Rooms
	}
	return rooms, r.Next, nil
}

// Presence returns who is in room now: the "presence" answer, with count
// (the room's connections) and users (each user with its devices, the
// connections in the room, sorted by name). In a room over the gateway's
// presence detail size (100 connections by default) users is nil and
// count is all there is. The room must be one the user may read: public,
// or one the user is a member of (else forbidden). It need not be joined.
// Changes in a joined room arrive as Event.Presence.
func (c *Client) Presence(ctx context.Context, room string) (protocol.Frame, error) {
	if !protocol.ValidRoom(room) {
		return protocol.Frame{}, badRequest("invalid room name %q", room)
	}
	return c.do(ctx, &protocol.Frame{Type: protocol.TypePresence, Room: room})
}

// Refresh replaces the connection's token with token, a fresh one for the
// same user, and returns the "refreshed" answer (expires: the new end of
// the connection, "" when the token has no exp). With Config.TokenSource
// the Client does this by itself. A refused token is unauthorized; the
// connection then lives until the old token's exp. Reconnects still say
// hello with Config.Token (or TokenSource).
func (c *Client) Refresh(ctx context.Context, token string) (protocol.Frame, error) {
	if token == "" {
		return protocol.Frame{}, badRequest("refresh: empty token")
	}
	return c.do(ctx, &protocol.Frame{Type: protocol.TypeRefresh, Token: token})
}

// refreshSoon handles token_expiring: with a TokenSource, it fetches a
// token and sends refresh, off the reading goroutine.
func (c *Client) refreshSoon(f *protocol.Frame) {
	if c.cfg.TokenSource == nil {
		c.log.Warn("parley client: token expires soon and there is no Config.TokenSource to refresh it", "expires", f.Expires)
		return
	}
	c.mu.Lock()
	if c.err != nil || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1) // run is still in the group: Close cannot be past its Wait
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, 2*c.cfg.AckTimeout)
		defer cancel()
		tok, err := c.cfg.TokenSource(ctx)
		if err != nil {
			c.log.Warn("parley client: Config.TokenSource failed; the connection ends at the token's exp", "err", err, "expires", f.Expires)
			return
		}
		r, err := c.Refresh(ctx, tok)
		if err != nil {
			c.log.Warn("parley client: refresh failed; the connection ends at the token's exp", "err", err, "expires", f.Expires)
			return
		}
		c.log.Debug("parley client: token refreshed", "expires", r.Expires)
	}()
}

// setWelcomeLocked adopts a welcome frame and, when it lists them, its
// rooms. Caller holds c.mu (or owns c alone).
func (c *Client) setWelcomeLocked(f *protocol.Frame) {
	c.welcome = *f
	if f.Rooms == nil {
		return // the store could not be read: keep what is known
	}
	c.haveRooms = true
	c.memberships = make(map[string]*protocol.RoomState, len(*f.Rooms))
	for _, rs := range *f.Rooms {
		c.memberships[rs.Room] = &rs
	}
}

// recount derives rs.Unread from its head, first and cursor, as the
// gateway does.
func recount(rs *protocol.RoomState) {
	rs.Unread = max(rs.Seq-max(rs.Read, rs.First-1), 0)
}

// guessKind is the kind of a room joined or entered before the Client
// learnt it: direct for dm: rooms, else public (a private room is known
// from the membership that made the user a member).
func guessKind(room string) string {
	if protocol.DirectRoom(room) {
		return "direct"
	}
	return "public"
}

// memberJoined records that the user is a member of room, of kind ("":
// unknown).
func (c *Client) memberJoined(room, kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.memberLocked(room, kind)
}

func (c *Client) memberLocked(room, kind string) *protocol.RoomState {
	rs := c.memberships[room]
	if rs == nil {
		if kind == "" {
			kind = guessKind(room)
		}
		rs = &protocol.RoomState{Room: room, Kind: kind}
		c.memberships[room] = rs
	} else if kind != "" {
		rs.Kind = kind
	}
	return rs
}

// applyJoinedLocked updates the membership of a joined room: its epoch,
// head and first. mine is true for the answer to a caller's Join, which
// makes the user a member. Caller holds c.mu.
func (c *Client) applyJoinedLocked(f *protocol.Frame, mine bool) {
	rs := c.memberships[f.Room]
	if rs == nil {
		if !mine {
			return
		}
		rs = c.memberLocked(f.Room, "")
	}
	if rs.Epoch != f.Epoch {
		rs.Epoch, rs.Read = f.Epoch, 0
	}
	rs.Seq, rs.First = f.Seq, f.First
	recount(rs)
}

// applyMessage advances the head of m's room.
func (c *Client) applyMessage(m *protocol.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.memberships[m.Room]
	if rs == nil {
		return
	}
	if rs.Epoch != m.Epoch {
		rs.Epoch, rs.Read, rs.Seq, rs.First = m.Epoch, 0, 0, m.Seq
	}
	if m.Seq > rs.Seq {
		rs.Seq = m.Seq
	}
	recount(rs)
}

// applyRead adopts the cursor of a read frame, answer or sync.
func (c *Client) applyRead(f *protocol.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rs := c.memberships[f.Room]
	if rs == nil {
		return
	}
	if f.Epoch != rs.Epoch {
		rs.Epoch, rs.Seq = f.Epoch, 0
	}
	rs.Read = f.Seq
	rs.Seq = max(rs.Seq, f.Seq+f.Unread)
	rs.Unread = f.Unread
}

// applyMembership adopts a membership frame. A room left on another
// device and joined here is left here too: it must not be re-joined (that
// would make the user a member again), and its messages stop.
func (c *Client) applyMembership(cn *conn, f *protocol.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch f.State {
	case "member":
		c.memberLocked(f.Room, f.Kind)
	case "left":
		delete(c.memberships, f.Room)
		if c.rooms[f.Room] == nil {
			return
		}
		delete(c.rooms, f.Room)
		if c.cur == cn {
			b, _ := protocol.Encode(&protocol.Frame{Type: protocol.TypeLeave, Room: f.Room}) // a Frame always encodes
			cn.q = append(cn.q, queued{b: b})
			select {
			case cn.wake <- struct{}{}:
			default:
			}
		}
	}
}
