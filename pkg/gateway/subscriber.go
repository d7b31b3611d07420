package gateway

import (
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// subscriber is what the hub delivers a room's stream to: one client
// connection's session, whatever its transport (session.go for protocol
// v1, plaintext.go for plain text). The hub never sees a transport: a
// subscriber turns the stream into its transport's frames and queues them
// in its outbox (outbox.go).
//
// The hub calls these methods with room.mu held, so they must not block
// (they only queue) and must not call back into the hub.
type subscriber interface {
	// joined starts the stream of a join with the catch-up it read.
	joined(j joinOutcome)
	// deliver gives the next message of the stream. catchUp marks one the
	// gateway held back (a join's or a repair's): it does not count
	// against the outbound limits.
	deliver(env broker.Envelope, catchUp bool)
	// event gives an ephemeral event of the room (typing, presence), sent
	// by user from (or "" when no user sent it): the first thing dropped
	// when the subscriber falls behind.
	event(ev broker.Event, from string)
	// epochReset says that the room's store was lost and began again: what
	// came before pos is gone, and the stream goes on after pos.
	epochReset(room string, pos protocol.Position, first int64)
	// resume says that the stream has a hole history could not fill after
	// last: the client must resume from there (protocol v1 closes with
	// 1013). Whatever the hub delivers afterwards may be dropped.
	resume(room string, last protocol.Position)
	// overflow says that the live messages held back during a join went
	// over OutboundQueue: a slow consumer.
	overflow()
}

// joinOutcome is what a join read for its subscriber.
type joinOutcome struct {
	ref       string // the request's tag, echoed in the answer
	room      string
	rng       broker.Range // the head, and the messages owed
	resumed   bool         // the join carried a position (since)
	recovered bool         // every message after since is in rng
}
