package broker

import (
	"context"
	"time"
)

// OutboxEvent is one event waiting to leave the cluster (a webhook): its
// stable key (the receivers' idempotency key, the same on every attempt),
// its type, its payload, how many attempts failed already, and when it
// was first enqueued.
type OutboxEvent struct {
	Key      string
	Type     string
	Payload  []byte
	Attempts int
	Enqueued time.Time
}

// OutboxEntry is an event as a consumer holds it: ID is the store's id of
// this delivery of it (a stream entry id), which Done, Retry and Dead name.
type OutboxEntry struct {
	ID string
	OutboxEvent
}

// DeadLetter is an event that failed its last attempt: kept, with the last
// error, until it is replayed.
type DeadLetter struct {
	OutboxEvent
	LastError string
	FailedAt  time.Time
}

// Outbox is a durable queue of events shared by the nodes of a cluster,
// delivered at least once: an entry a consumer takes (Next) stays pending
// with it until the consumer settles it (Done, Retry or Dead); an entry
// pending longer than a minimum idle time is taken over by another
// consumer (Reclaim), so a node that dies loses nothing. Failed entries
// wait for their time (Retry, then Due) or, after their last attempt, wait
// in the dead letters for a replay.
//
// It is an optional part of a broker: Broker does not embed it, and a
// gateway that needs one type-asserts it.
type Outbox interface {
	// Enqueue appends ev to the queue; Attempts and Enqueued are kept
	// as given (a zero Enqueued is now).
	Enqueue(ctx context.Context, ev OutboxEvent) error
	// Next takes up to n entries no consumer has taken yet, oldest first,
	// for consumer, waiting up to block for one when there are none (0:
	// no wait). None is not an error.
	Next(ctx context.Context, consumer string, n int, block time.Duration) ([]OutboxEntry, error)
	// Reclaim takes over, for consumer, up to n entries that other
	// consumers (or consumer itself) took and left unsettled for at
	// least minIdle.
	Reclaim(ctx context.Context, consumer string, minIdle time.Duration, n int) ([]OutboxEntry, error)
	// Done settles a delivered entry: it leaves the queue.
	Done(ctx context.Context, e OutboxEntry) error
	// Retry settles a failed entry and schedules its event again at at,
	// with Attempts+1 and lastErr noted, in one atomic step.
	Retry(ctx context.Context, e OutboxEntry, at time.Time, lastErr string) error
	// Due moves up to n scheduled events whose time is at or before now
	// back into the queue, in one atomic step, and returns how many.
	Due(ctx context.Context, now time.Time, n int) (int, error)
	// Dead settles a failed entry and keeps its event in the dead letters
	// with lastErr, in one atomic step. Its Attempts is counted as one
	// more (the attempt that failed).
	Dead(ctx context.Context, e OutboxEntry, lastErr string) error
	// DeadLetters lists up to limit dead letters, the oldest failure
	// first.
	DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error)
	// Replay puts the dead letters with the given keys (nil: all of them)
	// back into the queue with Attempts 0 and returns how many. Keys that
	// are not dead letters are skipped.
	Replay(ctx context.Context, keys []string) (int, error)
}
