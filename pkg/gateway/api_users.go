package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file holds the server API's endpoints for rooms, members and users
// (API keys, but a user may read their own rooms): creating a room with
// its members, adding and removing a member, a user's rooms, and
// disconnecting a user everywhere. Their operations (createAs, addMember,
// removeMember) know no transport, as those of ops.go.

// apiCreateRoomRequest is the body of POST /v1/rooms.
type apiCreateRoomRequest struct {
	Room    string   `json:"room"`
	Kind    string   `json:"kind"`
	Members []string `json:"members"`
}

// apiRoomAnswer is the answer of POST /v1/rooms: the room, its kind, and
// the members this request added (not those it had already).
type apiRoomAnswer struct {
	Room    string   `json:"room"`
	Kind    string   `json:"kind"`
	Members []string `json:"members"`
}

// apiCreateRoom serves POST /v1/rooms (API keys): 201 when the room was
// created, 200 when it existed already as that kind.
func (g *Gateway) apiCreateRoom(w http.ResponseWriter, r *http.Request) {
	_, ctx, cancel, ok := g.apiStart(w, r, true, false)
	if !ok {
		return
	}
	defer cancel()
	var req apiCreateRoomRequest
	oe := readJSON(w, r, 64<<10, &req)
	kind := broker.PrivateRoom
	if oe == nil {
		switch req.Kind {
		case "", string(broker.PrivateRoom):
		case string(broker.PublicRoom):
			kind = broker.PublicRoom
		default:
			oe = badRequest(`"kind" is "public" or "private", not %q`, req.Kind)
		}
	}
	if oe == nil {
		switch {
		case !protocol.ValidRoom(req.Room):
			oe = badRequest("invalid room name %q", req.Room)
		case protocol.DirectRoom(req.Room):
			oe = badRequest("a direct room is created by its first message or join")
		}
	}
	if oe == nil {
		for _, u := range req.Members {
			if !protocol.ValidUser(u) {
				oe = badRequest("invalid user name %q in members", u)
				break
			}
		}
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	created, added, err := g.createAs(ctx, req.Room, kind, req.Members)
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, apiRoomAnswer{Room: req.Room, Kind: string(kind), Members: added})
}

// createAs creates room as kind (public or private) on a backend's word,
// with no creator, and makes members its members; each added member's
// devices hear of it live. A room that exists already as kind keeps its
// members and gains these; as another kind, or a room with history that
// was never created (a public room by use) asked for as private, it is
// refused. It returns whether it created the room and whom it added, in
// the order given. A room holds at most MaxRoomMembers members.
func (g *Gateway) createAs(ctx context.Context, room string, kind broker.RoomKind, members []string) (created bool, added []string, err error) {
	info, ok, err := g.broker.RoomInfo(ctx, room)
	if err != nil {
		return false, nil, g.refusal(ctx, err)
	}
	if !ok {
		head, err := g.broker.Head(ctx, room)
		if err != nil {
			return false, nil, g.refusal(ctx, err)
		}
		if head.Seq > 0 && kind != broker.PublicRoom {
			return false, nil, &opError{protocol.CodeForbidden, fmt.Sprintf("room %s exists already, as a %s room", room, broker.PublicRoom)}
		}
		if info, err = g.broker.EnsureRoom(ctx, room, kind, ""); err != nil {
			return false, nil, g.refusal(ctx, err)
		}
		created = info.Kind == kind
	}
	if info.Kind != kind {
		return false, nil, &opError{protocol.CodeForbidden, fmt.Sprintf("room %s exists already, as a %s room", room, info.Kind)}
	}
	g.kinds.put(room, info.Kind)
	added = []string{}
	count := info.Members
	for _, u := range members {
		if slices.Contains(added, u) {
			continue
		}
		if g.cfg.MaxRoomMembers > 0 && count >= int64(g.cfg.MaxRoomMembers) {
			return created, added, &opError{protocol.CodeForbidden, fmt.Sprintf("room %s is full (%d members)", room, g.cfg.MaxRoomMembers)}
		}
		ok, err := g.addMember(ctx, info, u)
		if err != nil {
			return created, added, err
		}
		if ok {
			added = append(added, u)
			count++
		}
	}
	return created, added, nil
}

// addMember makes user a member of the room info describes; when that is
// new, the user's devices hear of it live.
func (g *Gateway) addMember(ctx context.Context, info broker.RoomInfo, user string) (bool, error) {
	added, err := g.broker.AddMember(ctx, info.Room, user)
	if err != nil {
		return false, g.refusal(ctx, err)
	}
	if added {
		g.tellUser(ctx, principal{user: user}, &protocol.Frame{Type: protocol.TypeMembership, Room: info.Room, Kind: string(info.Kind), State: "member"})
	}
	return added, nil
}

// memberRoom reads the room of a member endpoint: it must exist.
func (g *Gateway) memberRoom(ctx context.Context, room string) (broker.RoomInfo, error) {
	info, ok, err := g.broker.RoomInfo(ctx, room)
	if err != nil {
		return info, g.refusal(ctx, err)
	}
	if !ok {
		return info, &opError{protocol.CodeNotFound, fmt.Sprintf("no room %s", room)}
	}
	return info, nil
}

// apiMemberAnswer is the answer of the member endpoints: Added (PUT) or
// Removed (DELETE) says whether the request changed the membership.
type apiMemberAnswer struct {
	Room    string `json:"room"`
	User    string `json:"user"`
	Added   *bool  `json:"added,omitempty"`
	Removed *bool  `json:"removed,omitempty"`
}

// memberPath reads the {room} and {user} of a member endpoint's path.
func memberPath(r *http.Request) (string, string, *opError) {
	room, oe := pathRoom(r)
	if oe != nil {
		return "", "", oe
	}
	user, oe := pathUser(r)
	return room, user, oe
}

// apiAddMember serves PUT /v1/rooms/{room}/members/{user} (API keys).
func (g *Gateway) apiAddMember(w http.ResponseWriter, r *http.Request) {
	_, ctx, cancel, ok := g.apiStart(w, r, true, false)
	if !ok {
		return
	}
	defer cancel()
	room, user, oe := memberPath(r)
	if oe == nil && protocol.DirectRoom(room) {
		oe = badRequest("a direct room has its two users and no one else")
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	info, err := g.memberRoom(ctx, room)
	if err == nil && g.cfg.MaxRoomMembers > 0 && info.Members >= int64(g.cfg.MaxRoomMembers) {
		var in bool
		if in, err = g.broker.IsMember(ctx, room, user); err == nil && !in {
			err = &opError{protocol.CodeForbidden, fmt.Sprintf("room %s is full (%d members)", room, g.cfg.MaxRoomMembers)}
		}
	}
	var added bool
	if err == nil {
		added, err = g.addMember(ctx, info, user)
	}
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, apiMemberAnswer{Room: room, User: user, Added: &added})
}

// apiRemoveMember serves DELETE /v1/rooms/{room}/members/{user} (API
// keys).
func (g *Gateway) apiRemoveMember(w http.ResponseWriter, r *http.Request) {
	_, ctx, cancel, ok := g.apiStart(w, r, true, false)
	if !ok {
		return
	}
	defer cancel()
	room, user, oe := memberPath(r)
	if oe != nil {
		writeError(w, oe)
		return
	}
	removed, err := g.removeMember(ctx, room, user)
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, apiMemberAnswer{Room: room, User: user, Removed: &removed})
}

// removeMember ends user's membership of room (which must exist). The
// user's devices hear "membership" "left" with the room's kind, and,
// invariant 10, every live connection of the user stops receiving a
// private or direct room at once and leaves it (session.userEvent); a
// public room may still be read by anyone, so its live joins stay.
func (g *Gateway) removeMember(ctx context.Context, room, user string) (bool, error) {
	info, err := g.memberRoom(ctx, room)
	if err != nil {
		return false, err
	}
	removed, err := g.broker.RemoveMember(ctx, room, user)
	if err != nil {
		return false, g.refusal(ctx, err)
	}
	if removed {
		if info.Kind != broker.PublicRoom {
			g.revoke(ctx, room, user)
		}
		g.tellUser(ctx, principal{user: user}, &protocol.Frame{Type: protocol.TypeMembership, Room: room, Kind: string(info.Kind), State: "left"})
	}
	return removed, nil
}

// apiUserRooms serves GET /v1/users/{user}/rooms: a backend reads any
// user's rooms, a user only their own.
func (g *Gateway) apiUserRooms(w http.ResponseWriter, r *http.Request) {
	c, ctx, cancel, ok := g.apiStart(w, r, true, true)
	if !ok {
		return
	}
	defer cancel()
	user, oe := pathUser(r)
	if oe == nil && !c.backend() && user != c.p.user {
		oe = &opError{protocol.CodeForbidden, fmt.Sprintf("your token is %s's: you may read only your own rooms", c.p.user)}
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	rooms, err := g.rooms(ctx, principal{user: user})
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	if rooms == nil {
		rooms = []protocol.RoomState{}
	}
	writeJSON(w, http.StatusOK, struct {
		User  string               `json:"user"`
		Rooms []protocol.RoomState `json:"rooms"`
	}{user, rooms})
}

// defaultDisconnectReason is the close reason of a disconnect that gives
// none.
const defaultDisconnectReason = "disconnected by the server"

// maxDisconnectReason is the longest reason a disconnect may give: a
// WebSocket close frame's reason.
const maxDisconnectReason = maxCloseReason

// apiDisconnect serves POST /v1/users/{user}/disconnect (API keys): every
// connection of the user, on every gateway, ends. The answer counts this
// gateway's ("local"); the others end theirs when they hear the event.
func (g *Gateway) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	_, ctx, cancel, ok := g.apiStart(w, r, true, false)
	if !ok {
		return
	}
	defer cancel()
	user, oe := pathUser(r)
	var req struct {
		Reason string `json:"reason"`
	}
	if oe == nil {
		oe = readOptionalJSON(w, r, 4096, &req)
	}
	if oe == nil && len(req.Reason) > maxDisconnectReason {
		oe = badRequest(`"reason" is over %d bytes`, maxDisconnectReason)
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	if req.Reason == "" {
		req.Reason = defaultDisconnectReason
	}
	n, err := g.disconnectUser(ctx, user, req.Reason)
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		User  string `json:"user"`
		Local int    `json:"local"`
	}{user, n})
}

// readOptionalJSON is readJSON for a body that may be absent (or empty):
// then v is left as it is.
func readOptionalJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *opError {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &opError{protocol.CodeTooLarge, fmt.Sprintf("the request body is over %d bytes", limit)}
		}
		return badRequest("reading the body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(b))
	return readJSON(w, r2, limit, v)
}
