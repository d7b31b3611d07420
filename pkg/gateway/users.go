package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// userSubscriber is what the hub gives a user's events to: one session of
// the user on this gateway. Events of a user (a read cursor moved, a
// membership made or ended on another device) keep the user's devices in
// step. The hub calls it with userTopic.mu held: it must not block.
type userSubscriber interface {
	// userEvent gives the frame of an event that connection origin set off
	// ("" for none).
	userEvent(origin string, frame []byte)
	// revoke cuts room off at once: the user is no longer a member of
	// that private or direct room (revoke.go). It sends nothing.
	revoke(room string)
}

// userTopic is one user's topic on this gateway: the user's sessions here,
// which subscribe it once between them.
//
// Lock order: userTopic.mu, then a session's outbox.mu, kmu or inbox.mu
// (userEvent queues under it, and posts a leave to the session's
// handler); it is never held with hub.mu, room.mu or Gateway.mu.
type userTopic struct {
	subscription // counted by sessions; guarded by hub.mu

	mu       sync.Mutex
	sessions []userSubscriber // a user has a few devices: a slice costs an idle connection less than a map
}

// holdUser subscribes s to its user's topic on this gateway.
func (h *hub) holdUser(ctx context.Context, user string, s userSubscriber) (*userTopic, error) {
	u, err := hold(ctx, h, &h.users, user)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	u.sessions = append(u.sessions, s)
	u.mu.Unlock()
	return u, nil
}

// releaseUser ends what holdUser began.
func (h *hub) releaseUser(user string, u *userTopic, s userSubscriber) {
	u.mu.Lock()
	if i := slices.Index(u.sessions, s); i >= 0 {
		last := len(u.sessions) - 1
		u.sessions[i] = u.sessions[last]
		u.sessions[last] = nil
		u.sessions = u.sessions[:last]
	}
	u.mu.Unlock()
	release(h, &h.users, user, u, nil)
}

// userEvent gives an event of a user's topic to the user's sessions here.
// Events are not repaired after a loss of the subscription: a device that
// missed one reads the state again in its next welcome. A disconnect
// (disconnectUser) is not for the sessions: it ends every connection of
// the user here.
func (h *hub) userEvent(ev broker.Event) {
	// The gateways write a user's events as the origin connection, a
	// newline, and the frame (tellUser).
	origin, frame, ok := bytes.Cut(ev.Data, []byte{'\n'})
	if !ok {
		return
	}
	if reason, ok := disconnectReason(frame); ok {
		h.g.expelLocal(ev.Topic.Name, reason)
		return
	}
	h.mu.Lock()
	u := h.users.entries[ev.Topic.Name]
	h.mu.Unlock()
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.sessions {
		s.userEvent(string(origin), frame)
	}
}

// tellUser sends f to every device of p's user, on every gateway, as an
// event of the user's topic. Best effort, as every event: a device that
// misses it reads the state in its next welcome.
//
// Every membership made or ended goes through here: it is also where the
// member.added and member.removed webhooks start (notify.go).
func (g *Gateway) tellUser(ctx context.Context, p principal, f *protocol.Frame) {
	g.noticeMembership(p.user, f)
	frame, err := protocol.Encode(f)
	if err == nil {
		data := append(append([]byte(p.conn), '\n'), frame...)
		err = g.broker.Emit(ctx, broker.Event{Topic: broker.User(p.user), Data: data})
	}
	if err != nil {
		g.log.Info("a user's devices were not told", "type", f.Type, "room", f.Room, "err", fmt.Errorf("emit: %w", err))
	}
}

// typeDisconnect is the type of the user event that ends every connection
// of a user, on every gateway (the server API's disconnect). It is never
// sent to a client.
const typeDisconnect = "disconnect"

// disconnectFrame is the frame of a disconnect event.
type disconnectFrame struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// disconnectReason reads a user event's frame: whether it is a
// disconnect, and its reason. Other frames cost a byte search.
func disconnectReason(frame []byte) (string, bool) {
	if !bytes.Contains(frame, []byte(`"`+typeDisconnect+`"`)) {
		return "", false
	}
	var f disconnectFrame
	if err := json.Unmarshal(frame, &f); err != nil || f.Type != typeDisconnect {
		return "", false
	}
	return f.Reason, true
}

// disconnectUser ends every connection of user, on every gateway, for
// reason: this gateway's at once (their count is returned), the others'
// when they hear the disconnect event on the user's topic, which every
// connection of the user holds. A disconnected client must not reconnect
// with the same credentials.
func (g *Gateway) disconnectUser(ctx context.Context, user, reason string) (int, error) {
	n := g.expelLocal(user, reason)
	frame, err := json.Marshal(disconnectFrame{Type: typeDisconnect, Reason: reason})
	if err != nil {
		return n, fmt.Errorf("encode disconnect: %w", err)
	}
	data := append([]byte{'\n'}, frame...) // no origin connection
	if err := g.broker.Emit(ctx, broker.Event{Topic: broker.User(user), Data: data}); err != nil {
		return n, fmt.Errorf("emit disconnect: %w", err)
	}
	return n, nil
}
