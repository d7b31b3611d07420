package broker

import (
	"context"
	"time"
)

// Presence is who is in a room now, kept in the store by the gateways so
// that every gateway sees the same. Each connection joined to a room is an
// entry, tagged with its node; a node beats (Beat) while it runs, and the
// entries of a node that stopped beating (killed, cut off) are swept away
// by whichever gateway reads the room next (Present with the dead nodes).
// Nothing here is written per message.
type Presence interface {
	// Beat records that node runs, until ttl from now.
	Beat(ctx context.Context, node string, ttl time.Duration) error
	// DeadNodes lists the nodes whose last beat has run out, dead for at
	// most forget (older ones are forgotten: their entries were swept).
	DeadNodes(ctx context.Context, forget time.Duration) ([]string, error)
	// Enter records conn, a connection of user on node, as present in
	// room. It returns the user's connections in the room after it and
	// the room's; entering twice counts once.
	Enter(ctx context.Context, room, node, conn, user string) (devices, total int64, err error)
	// Exit undoes Enter, returning the same counts after it.
	Exit(ctx context.Context, room, conn string) (user string, devices, total int64, err error)
	// Present sweeps the entries of the dead nodes out of room, then
	// returns who is present: users sorted by name with their connection
	// counts (at most limit of them; limit <= 0: none, only the total), the
	// room's connection count, and the users the sweep took out entirely.
	Present(ctx context.Context, room string, dead []string, limit int) (users []PresentUser, total int64, gone []string, err error)
}

// PresentUser is one user present in a room, on Devices connections.
type PresentUser struct {
	User    string
	Devices int64
}
