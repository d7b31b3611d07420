package broker

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/pkg/protocol"
)

// ErrUnavailable is wrapped by errors caused by the store being unreachable.
// Clients should retry later.
var ErrUnavailable = errors.New("broker unavailable")

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

// Handler receives what a Broker's subscriptions deliver. Its methods are
// called from one goroutine, in the order the store delivered; they must not
// block for long.
type Handler interface {
	// Deliver is called for each envelope published to a subscribed room.
	Deliver(env Envelope)
	// Subscribed is called each time a room's subscription becomes active,
	// the first time and after every reconnect of the subscriber connection.
	// Messages published while the subscription was down may have been lost,
	// so the handler re-reads history for the room when it was active before.
	Subscribed(room string)
	// Disconnected is called once when the subscriber connection is lost;
	// Subscribed follows for each room once it is back.
	Disconnected(err error)
}

// Broker is the shared message store and bus.
type Broker interface {
	// Publish stores and publishes p in one atomic step, or returns the
	// original Ack if (p.From, p.ID) was published within the idempotency
	// window.
	Publish(ctx context.Context, p Publication) (Ack, error)
	// Subscribe starts live delivery of room to the Handler. It returns once
	// the subscription is active: every message published after Subscribe
	// returns is delivered. Subscriptions are not counted: the caller
	// subscribes once per room, and calls for one room (Subscribe,
	// Unsubscribe) are not concurrent. When Subscribe returns an error, the
	// room is not subscribed: nothing of it is delivered (no message, no
	// Subscribed) and nothing is left to undo.
	Subscribe(ctx context.Context, room string) error
	// Unsubscribe stops live delivery of room.
	Unsubscribe(ctx context.Context, room string) error
	// After returns up to limit of the room's messages with seq > after
	// (the oldest such ones; limit <= 0 means all retained), together with
	// the head they were read at.
	After(ctx context.Context, room string, after int64, limit int) (Range, error)
	// Before returns up to limit messages with seq < before, the newest
	// such ones, in ascending order. before <= 0 means from the head.
	Before(ctx context.Context, room string, before int64, limit int) (Range, error)
	// Head returns the room's position.
	Head(ctx context.Context, room string) (Position, error)
	// Ready returns nil when the store is reachable and subscriptions are live.
	Ready(ctx context.Context) error
	// Close releases the broker's connections and goroutines.
	Close() error
}
