package gateway

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// Presence (who is in a room now) lives in the store (broker.Presence):
// each v1 connection joined to a room is an entry tagged with this node,
// which beats every PresenceInterval. When a node stops beating, the first
// node to notice sweeps its entries out of the rooms it has members in,
// and tells those rooms who went offline. Nothing of it is written per
// message.

// forgetDeadNodes is how long a dead node is listed (and swept from rooms
// whose presence is read) before it is forgotten.
const forgetDeadNodes = 10 * time.Minute

// presenceState is what the beat loop knows of other nodes. Guarded by mu.
type presenceState struct {
	mu    sync.Mutex
	dead  []string        // the dead nodes as last listed
	swept map[string]bool // dead nodes whose connections this node swept from its rooms
}

// nodeKey names this process among the nodes: its NodeID and boot id, so
// that a node restarted under the same name is a new one.
func (g *Gateway) nodeKey() string { return g.cfg.NodeID + "." + g.boot }

// beat is the presence loop, owned by the Gateway (g.bg).
func (g *Gateway) beat() {
	defer g.bg.Done()
	t := time.NewTicker(g.cfg.PresenceInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.PresenceInterval)
		g.beatOnce(ctx)
		cancel()
		select {
		case <-t.C:
		case <-g.ctx.Done():
			return
		}
	}
}

// beatOnce beats, lists the dead nodes, and sweeps newly dead ones out of
// this node's rooms.
func (g *Gateway) beatOnce(ctx context.Context) {
	if err := g.broker.Beat(ctx, g.nodeKey(), g.cfg.PresenceTTL); err != nil {
		g.log.Debug("presence: beat failed", "err", err)
		return
	}
	dead, err := g.broker.DeadNodes(ctx, forgetDeadNodes)
	if err != nil {
		g.log.Debug("presence: listing dead nodes failed", "err", err)
		return
	}
	ps := &g.presence
	ps.mu.Lock()
	ps.dead = dead
	var fresh []string
	for _, n := range dead {
		if !ps.swept[n] {
			fresh = append(fresh, n)
		}
	}
	for n := range ps.swept {
		if !slices.Contains(dead, n) {
			delete(ps.swept, n)
		}
	}
	ps.mu.Unlock()
	if len(fresh) == 0 {
		return
	}
	g.log.Info("presence: nodes stopped beating; sweeping their users out of this node's rooms", "nodes", fresh)
	for _, room := range g.hub.roomNames() {
		_, total, gone, err := g.broker.Present(ctx, room, dead, 0)
		if err != nil {
			g.log.Debug("presence: sweep failed", "room", room, "err", err)
			return // the next beat sweeps again
		}
		for _, u := range gone {
			g.presenceEvent(ctx, room, u, 0, total)
		}
	}
	ps.mu.Lock()
	if ps.swept == nil {
		ps.swept = make(map[string]bool)
	}
	for _, n := range fresh {
		ps.swept[n] = true
	}
	ps.mu.Unlock()
}

// deadNodes returns the dead nodes as the beat loop last listed them.
func (g *Gateway) deadNodes() []string {
	g.presence.mu.Lock()
	defer g.presence.mu.Unlock()
	return g.presence.dead
}

// presenceEvent tells a room that user now has devices connections in it
// (0: offline), unless the room is over PresenceDetail connections.
func (g *Gateway) presenceEvent(ctx context.Context, room, user string, devices, total int64) {
	if g.cfg.PresenceDetail > 0 && total > int64(g.cfg.PresenceDetail) {
		return
	}
	state := "online"
	if devices == 0 {
		state = "offline"
	}
	f := &protocol.Frame{Type: protocol.TypePresence, Room: room, User: user, Devices: devices, State: state}
	if err := g.emit(ctx, room, f); err != nil {
		g.log.Debug("presence event dropped", "room", room, "err", err)
	}
}

// enterPresence records a connection of p, joined to room, as present,
// and tells the room. Best effort: presence is lost with the store, and
// comes back with the next join.
func (g *Gateway) enterPresence(p principal, room string) {
	g.chore(func(ctx context.Context) { g.enterPresenceNow(ctx, p, room) }, false)
}

func (g *Gateway) enterPresenceNow(ctx context.Context, p principal, room string) {
	devices, total, err := g.broker.Enter(ctx, room, g.nodeKey(), p.conn, p.user)
	if err != nil {
		g.log.Debug("presence: enter failed", "room", room, "err", err)
		return
	}
	g.presenceEvent(ctx, room, p.user, devices, total)
}

// exitPresence undoes enterPresence.
func (g *Gateway) exitPresence(p principal, room string) {
	g.chore(func(ctx context.Context) { g.exitPresenceNow(ctx, p, room) }, true)
}

func (g *Gateway) exitPresenceNow(ctx context.Context, p principal, room string) {
	user, devices, total, err := g.broker.Exit(ctx, room, p.conn)
	if err != nil {
		g.log.Debug("presence: exit failed", "room", room, "err", err)
		return
	}
	if user != "" {
		g.presenceEvent(ctx, room, user, devices, total)
	}
}

// userPresence is the presence "room" of a user's connections, whatever
// rooms they joined: "@" starts no room name, so it meets none.
func userPresence(user string) string { return "@" + user }

// online records a v1 connection of p as online, and offline undoes it:
// a user is online while any device is.
func (g *Gateway) online(p principal) {
	g.chore(func(ctx context.Context) { g.onlineNow(ctx, p) }, false)
}

func (g *Gateway) onlineNow(ctx context.Context, p principal) {
	if _, _, err := g.broker.Enter(ctx, userPresence(p.user), g.nodeKey(), p.conn, p.user); err != nil {
		g.log.Debug("presence: user online failed", "err", err)
	}
}

func (g *Gateway) offline(p principal) {
	g.chore(func(ctx context.Context) { g.offlineNow(ctx, p) }, true)
}

func (g *Gateway) offlineNow(ctx context.Context, p principal) {
	if _, _, _, err := g.broker.Exit(ctx, userPresence(p.user), p.conn); err != nil {
		g.log.Debug("presence: user offline failed", "err", err)
	}
}

// userOnline returns on how many connections user is online, on any node.
func (g *Gateway) userOnline(ctx context.Context, user string) (int64, error) {
	users, _, _, err := g.broker.Present(ctx, userPresence(user), g.deadNodes(), 1)
	if err != nil {
		return 0, g.refusal(ctx, err)
	}
	if len(users) == 0 {
		return 0, nil
	}
	return users[0].Devices, nil
}

// present returns who is in room: the users with their device counts
// (nil over PresenceDetail connections) and the room's connection count.
// p must be allowed to read the room.
func (g *Gateway) present(ctx context.Context, p principal, room string, member bool) (*[]protocol.PresentUser, int64, error) {
	if err := g.checkRoom(p, room); err != nil {
		return nil, 0, err
	}
	if err := g.mayUse(ctx, p, room, member); err != nil {
		return nil, 0, err
	}
	return g.presentNow(ctx, room)
}

// presentNow is present without the access checks: for callers that made
// them, or that may read any room (a backend).
func (g *Gateway) presentNow(ctx context.Context, room string) (*[]protocol.PresentUser, int64, error) {
	users, total, gone, err := g.broker.Present(ctx, room, g.deadNodes(), g.cfg.PresenceDetail)
	if err != nil {
		return nil, 0, g.refusal(ctx, err)
	}
	for _, u := range gone {
		g.presenceEvent(ctx, room, u, 0, total)
	}
	if g.cfg.PresenceDetail > 0 && total > int64(g.cfg.PresenceDetail) {
		return nil, total, nil
	}
	out := make([]protocol.PresentUser, len(users))
	for i, u := range users {
		out[i] = protocol.PresentUser{User: u.User, Devices: u.Devices}
	}
	return &out, total, nil
}
