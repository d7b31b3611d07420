package gateway

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file holds the server API's message and presence endpoints: a
// backend (an API key) acts in any room for any user; a user's token acts
// as its user, through the same checks as a WebSocket client (checkRoom,
// mayUse, membership). Rooms, members, a user's rooms and disconnects are
// in api_users.go. docs/openapi.yaml describes every endpoint.

// apiStart begins a request under /v1/: it authenticates the caller (keys
// and users say which callers the endpoint takes), charges its rate limit,
// and returns the context that bounds the request's broker calls, which
// ends RequestTimeout after the request began. ok false: the error is
// answered.
func (g *Gateway) apiStart(w http.ResponseWriter, r *http.Request, keys, users bool) (c caller, ctx context.Context, cancel context.CancelFunc, ok bool) {
	start := time.Now()
	c, oe := g.httpCaller(r, keys, users)
	if oe != nil {
		// The path only: a query may carry a token.
		g.log.Info("api request refused", "method", r.Method, "path", r.URL.Path, "code", oe.code, "why", oe.msg)
		writeError(w, oe)
		return caller{}, nil, nil, false
	}
	g.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "caller", c.who())
	if !g.allow(w, c) {
		return caller{}, nil, nil, false
	}
	ctx, cancel = context.WithDeadline(r.Context(), start.Add(g.cfg.RequestTimeout))
	return c, ctx, cancel, true
}

// apiRefuse answers err, an operation's refusal or a failed broker call.
func (g *Gateway) apiRefuse(ctx context.Context, w http.ResponseWriter, err error) {
	writeError(w, g.refusal(ctx, err))
}

// badRequest is a bad_request refusal.
func badRequest(format string, args ...any) *opError {
	return &opError{protocol.CodeBadRequest, fmt.Sprintf(format, args...)}
}

// pathRoom reads the {room} of r's path: a valid room name.
func pathRoom(r *http.Request) (string, *opError) {
	room := r.PathValue("room")
	if !protocol.ValidRoom(room) {
		return "", badRequest("invalid room name %q", room)
	}
	return room, nil
}

// pathUser reads the {user} of r's path: a valid user name.
func pathUser(r *http.Request) (string, *opError) {
	user := r.PathValue("user")
	if !protocol.ValidUser(user) {
		return "", badRequest("invalid user name %q", user)
	}
	return user, nil
}

// publishLimit is how many bytes a request carrying a message body may
// have: a body of MaxBodyBytes, escaped in JSON, and the rest.
func (g *Gateway) publishLimit() int64 { return int64(g.cfg.MaxBodyBytes)*2 + 4096 }

// apiPublishRequest is the body of POST /v1/rooms/{room}/messages.
type apiPublishRequest struct {
	ID   string `json:"id"`
	Body string `json:"body"`
	From string `json:"from"`
}

// apiAck is a published message's answer: the fields of the WebSocket
// ack frame; duplicate says a resend of (from, id) within the broker's
// idempotency window, which published nothing new.
type apiAck struct {
	Room      string `json:"room"`
	ID        string `json:"id"`
	Seq       int64  `json:"seq"`
	Epoch     string `json:"epoch"`
	TS        string `json:"ts"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

func ackOf(a broker.Ack) apiAck {
	return apiAck{Room: a.Room, ID: a.ID, Seq: a.Seq, Epoch: a.Epoch, TS: a.TS, Duplicate: a.Duplicate}
}

// sender is who a message of c is posted as: with an API key the user
// from names (required), device "api:<key>"; with a user's token its
// user (from, if given, must be the same), device "http". member says
// that no membership check applies (a backend's message).
func sender(c caller, from string) (p principal, member bool, oe *opError) {
	if c.backend() {
		if !protocol.ValidUser(from) {
			return principal{}, false, badRequest(`"from" must name the user the message is from (a valid user name)`)
		}
		return principal{user: from, device: "api:" + c.key}, true, nil
	}
	if from != "" && from != c.p.user {
		return principal{}, false, &opError{protocol.CodeForbidden, fmt.Sprintf("your token is %s's: you cannot post as %s", c.p.user, from)}
	}
	p = c.p
	p.device = "http"
	return p, false, nil
}

// checkMessage checks a message's id and body.
func checkMessage(id, body string) *opError {
	switch {
	case !protocol.ValidID(id):
		return badRequest(`"id" must be 1 to 64 printable ASCII characters without spaces`)
	case body == "":
		return badRequest(`"body" is empty`)
	}
	return nil
}

// apiPublish serves POST /v1/rooms/{room}/messages (API keys and users).
func (g *Gateway) apiPublish(w http.ResponseWriter, r *http.Request) {
	c, ctx, cancel, ok := g.apiStart(w, r, true, true)
	if !ok {
		return
	}
	defer cancel()
	room, oe := pathRoom(r)
	var req apiPublishRequest
	if oe == nil {
		oe = readJSON(w, r, g.publishLimit(), &req)
	}
	if oe == nil {
		oe = checkMessage(req.ID, req.Body)
	}
	var p principal
	var member bool
	if oe == nil {
		p, member, oe = sender(c, req.From)
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	ack, err := g.publishAs(ctx, p, room, req.ID, req.Body, member)
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, ackOf(ack))
}

// publishAs publishes a message that did not come through a session: the
// first message of a direct room creates it for both its users (as a
// session's first send does), then publish checks and stores it.
func (g *Gateway) publishAs(ctx context.Context, p principal, room, id, body string, member bool) (broker.Ack, error) {
	if protocol.DirectRoom(room) {
		if err := g.checkRoom(p, room); err != nil {
			return broker.Ack{}, err
		}
		in, err := g.broker.IsMember(ctx, room, p.user)
		if err != nil {
			return broker.Ack{}, g.refusal(ctx, err)
		}
		if !in {
			if err := g.enter(ctx, p, room); err != nil {
				return broker.Ack{}, err
			}
		}
	}
	return g.publish(ctx, p, room, id, body, member)
}

// maxBroadcastRooms is the most rooms one POST /v1/messages may name.
const maxBroadcastRooms = 100

// apiBroadcastRequest is the body of POST /v1/messages.
type apiBroadcastRequest struct {
	Rooms []string `json:"rooms"`
	ID    string   `json:"id"`
	Body  string   `json:"body"`
	From  string   `json:"from"`
}

// apiBroadcastResult is one room's outcome of POST /v1/messages: its ack,
// or its error.
type apiBroadcastResult struct {
	Room      string    `json:"room"`
	ID        string    `json:"id,omitempty"`
	Seq       int64     `json:"seq,omitempty"`
	Epoch     string    `json:"epoch,omitempty"`
	TS        string    `json:"ts,omitempty"`
	Duplicate bool      `json:"duplicate,omitempty"`
	Error     *apiError `json:"error,omitempty"`
}

// apiBroadcast serves POST /v1/messages (API keys): one message to many
// rooms, each published on its own, in the request's order. The broker's
// idempotency key is per room (room, from, id), so the one id serves every
// room, and a resend is a duplicate in each.
func (g *Gateway) apiBroadcast(w http.ResponseWriter, r *http.Request) {
	c, ctx, cancel, ok := g.apiStart(w, r, true, false)
	if !ok {
		return
	}
	defer cancel()
	var req apiBroadcastRequest
	oe := readJSON(w, r, g.publishLimit(), &req)
	if oe == nil {
		oe = checkMessage(req.ID, req.Body)
	}
	if oe == nil {
		switch {
		case len(req.Rooms) == 0:
			oe = badRequest(`"rooms" is empty`)
		case len(req.Rooms) > maxBroadcastRooms:
			oe = badRequest(`"rooms" names %d rooms; at most %d`, len(req.Rooms), maxBroadcastRooms)
		}
	}
	if oe == nil {
		seen := make(map[string]bool, len(req.Rooms))
		for _, room := range req.Rooms {
			if seen[room] {
				oe = badRequest("room %q is named twice", room)
				break
			}
			seen[room] = true
		}
	}
	var p principal
	if oe == nil {
		p, _, oe = sender(c, req.From)
	}
	if oe != nil {
		writeError(w, oe)
		return
	}
	results := make([]apiBroadcastResult, len(req.Rooms))
	for i, room := range req.Rooms {
		results[i].Room = room
		var err error
		var ack broker.Ack
		if !protocol.ValidRoom(room) {
			err = badRequest("invalid room name %q", room)
		} else {
			ack, err = g.publishAs(ctx, p, room, req.ID, req.Body, true)
		}
		if err != nil {
			oe := g.refusal(ctx, err)
			results[i].Error = &apiError{Code: oe.code, Message: oe.msg}
			continue
		}
		a := ackOf(ack)
		results[i] = apiBroadcastResult{Room: a.Room, ID: a.ID, Seq: a.Seq, Epoch: a.Epoch, TS: a.TS, Duplicate: a.Duplicate}
	}
	writeJSON(w, http.StatusOK, struct {
		Results []apiBroadcastResult `json:"results"`
	}{results})
}

// apiPresenceAnswer is the body of GET /v1/rooms/{room}/presence: users is
// absent when the room has more than PresenceDetail connections, as in the
// WebSocket answer.
type apiPresenceAnswer struct {
	Room  string                  `json:"room"`
	Users *[]protocol.PresentUser `json:"users,omitempty"`
	Count int64                   `json:"count"`
}

// apiPresence serves GET /v1/rooms/{room}/presence (API keys and users):
// a user must be allowed to read the room; a backend may read any.
func (g *Gateway) apiPresence(w http.ResponseWriter, r *http.Request) {
	c, ctx, cancel, ok := g.apiStart(w, r, true, true)
	if !ok {
		return
	}
	defer cancel()
	room, oe := pathRoom(r)
	if oe != nil {
		writeError(w, oe)
		return
	}
	var users *[]protocol.PresentUser
	var count int64
	var err error
	if c.backend() {
		users, count, err = g.presentNow(ctx, room)
	} else {
		users, count, err = g.present(ctx, c.p, room, false)
	}
	if err != nil {
		g.apiRefuse(ctx, w, err)
		return
	}
	writeJSON(w, http.StatusOK, apiPresenceAnswer{Room: room, Users: users, Count: count})
}
