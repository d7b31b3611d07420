package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// A user who leaves a private or direct room, or is removed from it, is
// cut off it on every gateway before anything published to the room
// afterwards reaches them (invariant 10). The user's devices hear it as a
// membership event of the user's topic; that alone is not enough, because
// the user's topic and the room's may travel on different connections (on
// a Redis Cluster they live on different shards), so a message posted
// after the removal could overtake it. So the removal is also a revoke
// event on the room's own topic, which Redis delivers in order with the
// room's messages: each gateway cuts the room off the user's sessions
// there before it delivers the room's next message. The revoke only cuts;
// the membership frame the devices see still comes from the user's topic.

// typeRevoke is the type of the room event that cuts a user off a room.
// It is never sent to a client.
const typeRevoke = "revoke"

// revokeFrame is the data of a revoke event.
type revokeFrame struct {
	Type string `json:"type"`
	User string `json:"user"`
}

// revoke emits the revoke event of user on room. Best effort, as every
// event: the membership event of the user's topic cuts the room too.
func (g *Gateway) revoke(ctx context.Context, room, user string) {
	data, err := json.Marshal(revokeFrame{Type: typeRevoke, User: user})
	if err == nil {
		err = g.broker.Emit(ctx, broker.Event{Topic: broker.Room(room), Data: data})
	}
	if err != nil {
		g.log.Info("a room's gateways were not told of a removal; the user's topic tells them", "room", room, "err", fmt.Errorf("emit: %w", err))
	}
}

// revokedUser reads a room event: whether it is a revoke, and whose.
// Other events cost a byte search.
func revokedUser(data []byte) (string, bool) {
	if !bytes.Contains(data, []byte(`"`+typeRevoke+`"`)) {
		return "", false
	}
	var f revokeFrame
	if err := json.Unmarshal(data, &f); err != nil || f.Type != typeRevoke || f.User == "" {
		return "", false
	}
	return f.User, true
}

// revokeLocal cuts room off every session of user on this gateway. It
// runs in the room's delivery order: the room's next message finds the
// room cut.
func (h *hub) revokeLocal(room, user string) {
	h.mu.Lock()
	u := h.users.entries[user]
	h.mu.Unlock()
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, s := range u.sessions {
		s.revoke(room)
	}
}

// leftRoom reads a user event's frame: the room of a membership that
// ended in a private or direct room, or false.
func leftRoom(frame []byte) (string, bool) {
	var f struct {
		Type  string `json:"type"`
		Room  string `json:"room"`
		Kind  string `json:"kind"`
		State string `json:"state"`
	}
	if json.Unmarshal(frame, &f) != nil || f.Type != protocol.TypeMembership || f.State != "left" {
		return "", false
	}
	return f.Room, f.Kind == string(broker.PrivateRoom) || f.Kind == string(broker.DirectRoom)
}
