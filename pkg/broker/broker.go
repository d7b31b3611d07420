package broker

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/pkg/protocol"
)

// ErrUnavailable is wrapped by errors caused by the store being unreachable.
// Clients should retry later.
var ErrUnavailable = errors.New("broker unavailable")

// ErrSilent is wrapped by the error a Handler's Lost gets when a
// subscription connection that looked open stopped receiving what is
// published: a probe published through the store did not come back
// through it.
var ErrSilent = errors.New("subscription silent")

// ErrClosed is returned by a Broker that has been closed.
var ErrClosed = errors.New("broker closed")

// Publication is one message to publish.
type Publication struct {
	Room   string
	ID     string // the sender's idempotency key, 1-64 chars
	From   string // the sending user
	Device string // the sending device, may be empty
	TS     string // protocol.TimeLayout; the broker fills it in when empty
	Body   string
}

// Ack is the outcome of a publish. A resend with the same (From, ID) within
// the idempotency window returns the original Ack with Duplicate set.
type Ack struct {
	Room      string
	ID        string
	Seq       int64
	Epoch     string
	TS        string
	Duplicate bool
}

// Envelope is a published message: its decoded fields and its encoding as a
// protocol "message" frame, which a gateway writes to its sockets unchanged.
type Envelope struct {
	*protocol.Message
	Raw []byte
}

// Position is a room's head: the last assigned seq, the epoch and the oldest
// seq still in history. A room with no messages has Seq 0, First 0 and Epoch "".
type Position struct {
	Epoch string
	Seq   int64
	First int64
}

// Range is a slice of a room's history read consistently with its head.
type Range struct {
	Position
	Messages []Envelope // ascending seq
}

// TopicKind says what a topic carries.
type TopicKind uint8

const (
	// RoomTopic carries a room's messages (sequenced, stored in its
	// history, repaired from it) and the room's ephemeral events.
	RoomTopic TopicKind = iota
	// UserTopic carries ephemeral events addressed to one user's
	// connections, wherever they are (memberships, read cursors).
	UserTopic
)

func (k TopicKind) String() string {
	if k == UserTopic {
		return "user"
	}
	return "room"
}

// Topic is what the bus subscribes to: a room or a user.
type Topic struct {
	Kind TopicKind
	Name string // the room or the user
}

// Room returns the topic of a room.
func Room(name string) Topic { return Topic{Kind: RoomTopic, Name: name} }

// User returns the topic of a user.
func User(name string) Topic { return Topic{Kind: UserTopic, Name: name} }

func (t Topic) String() string { return t.Kind.String() + ":" + t.Name }

// Event is an ephemeral publication: no seq, no history, delivered at most
// once to the subscribers of its topic at the moment, and lost with the
// subscriber connection (typing, presence, read cursors).
type Event struct {
	Topic Topic
	Data  []byte // opaque to the broker; the gateway sends it on as a frame
}

// Handler receives what a Broker's subscriptions deliver. Its methods are
// called from one goroutine per subscriber connection, in the order the
// store delivered on it; they must not block for long. Deliveries of one
// topic always come from one goroutine, in order.
type Handler interface {
	// Deliver is called for each envelope published to a subscribed room.
	Deliver(env Envelope)
	// Event is called for each ephemeral event published to a subscribed
	// topic (room or user).
	Event(ev Event)
	// Subscribed is called each time a topic's subscription becomes active,
	// the first time and after every loss. Messages published while the
	// subscription was down may have been lost, so the handler re-reads
	// history for a room that was active before. Events are not re-read.
	Subscribed(t Topic)
	// Lost is called when the subscriptions of topics are lost together
	// (one subscriber connection, or one shard's): Subscribed follows for
	// each of them once it is back. Until then nothing of them is
	// delivered.
	Lost(topics []Topic, err error)
}

// Store is the durable, sequenced side of a Broker: each room's history.
type Store interface {
	// Publish stores and publishes p in one atomic step, or returns the
	// original Ack if (p.From, p.ID) was published within the idempotency
	// window.
	Publish(ctx context.Context, p Publication) (Ack, error)
	// After returns up to limit of the room's messages with seq > after
	// (the oldest such ones; limit <= 0 means all retained), together with
	// the head they were read at.
	After(ctx context.Context, room string, after int64, limit int) (Range, error)
	// Before returns up to limit messages with seq < before, the newest
	// such ones, in ascending order. before <= 0 means from the head.
	Before(ctx context.Context, room string, before int64, limit int) (Range, error)
	// Head returns the room's position.
	Head(ctx context.Context, room string) (Position, error)
}

// Bus is the live side of a Broker: subscriptions to topics, and ephemeral
// events.
type Bus interface {
	// Subscribe starts live delivery of topic to the Handler. It returns
	// once the subscription is active: every message and event published
	// after Subscribe returns is delivered. Subscriptions are not counted:
	// the caller subscribes once per topic, and calls for one topic
	// (Subscribe, Unsubscribe) are not concurrent. When Subscribe returns
	// an error, the topic is not subscribed: nothing of it is delivered (no
	// message, no event, no Subscribed) and nothing is left to undo.
	Subscribe(ctx context.Context, t Topic) error
	// Unsubscribe stops live delivery of topic.
	Unsubscribe(ctx context.Context, t Topic) error
	// Emit publishes an ephemeral event to the topic's subscribers on
	// every node. It stores nothing and assigns no seq.
	Emit(ctx context.Context, ev Event) error
}

// Broker is the shared message store and bus, and the per-user side of
// the store.
type Broker interface {
	Store
	Bus
	Users
	Presence
	// Ready returns nil when the store is reachable and subscriptions are live.
	Ready(ctx context.Context) error
	// Close releases the broker's connections and goroutines.
	Close() error
}
