// Package broker defines the message store and bus behind a Parley gateway:
// the Broker interface, the errors its implementations return, and (in
// package brokertest) the conformance suite every implementation passes.
//
// A Broker makes a message durable and delivered in one step: Publish assigns
// the room's next seq, appends the envelope to the room's history (trimmed to
// the retention size), records the ack under the sender's idempotency key and
// publishes the envelope to every node subscribed to the room.
//
// A Broker has two sides. The Store is durable and sequenced: Publish,
// and the reads After, Before and Head of a room's history. The Bus is
// live: Subscribe and Unsubscribe a Topic (a room, or a user), and Emit an
// ephemeral Event (typing, presence: no seq, no history, at most once to
// whoever is subscribed at the time). What the bus delivers goes to a
// Handler: Deliver for a room's messages, Event for events, Subscribed
// each time a topic's subscription becomes active, and Lost when the
// subscriptions of a group of topics (one subscriber connection, or one
// shard's) are lost together, after which the gateway repairs each room
// from its history.
//
// The Users side is the per-user part of the store: rooms' kinds and
// members, each user's rooms and read cursors, and the directory of public
// rooms. Unread counts are derived from a room's head and a user's cursor
// (see Unread), so publishing writes nothing for them.
//
// Implementations live in sub-packages: redis (the cluster's shared store)
// and memory (one process, for development and tests).
package broker
