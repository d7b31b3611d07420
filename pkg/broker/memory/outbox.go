package memory

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
)

var _ broker.Outbox = (*Broker)(nil)

// outbox is the memory broker's broker.Outbox: the same semantics as the
// Redis stream and its consumer group, in process.
//
// Lock order: outbox.mu takes no other lock (it is not b.mu).
type outbox struct {
	mu      sync.Mutex
	seq     uint64                // the last entry id given
	queue   []broker.OutboxEntry  // entries no consumer took yet, oldest first
	pending map[string]*held      // entry id -> taken and not settled
	retry   []scheduled           // events waiting for their time
	dead    map[string]deadLetter // key -> dead letter
	wake    chan struct{}         // closed and replaced when an entry is queued
}

// held is an entry a consumer took.
type held struct {
	entry    broker.OutboxEntry
	consumer string
	since    time.Time // when it was taken (or reclaimed)
}

// scheduled is an event due again at at.
type scheduled struct {
	at time.Time
	ev broker.OutboxEvent
}

// deadLetter is a dead letter and the order it died in.
type deadLetter struct {
	broker.DeadLetter
	order uint64
}

// box returns the outbox, made on first use. Called without b.mu.
func (b *Broker) box() *outbox {
	b.outboxOnce.Do(func() {
		b.ob = &outbox{pending: make(map[string]*held), dead: make(map[string]deadLetter), wake: make(chan struct{})}
	})
	return b.ob
}

// closedErr is ErrClosed once Close has begun.
func (b *Broker) closedErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	return nil
}

// pushLocked queues ev as a new entry. Called with o.mu held.
func (o *outbox) pushLocked(ev broker.OutboxEvent) {
	o.seq++
	ev.Payload = slices.Clone(ev.Payload)
	o.queue = append(o.queue, broker.OutboxEntry{ID: strconv.FormatUint(o.seq, 10), OutboxEvent: ev})
	close(o.wake)
	o.wake = make(chan struct{})
}

// Enqueue implements broker.Outbox.
func (b *Broker) Enqueue(ctx context.Context, ev broker.OutboxEvent) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	if ev.Enqueued.IsZero() {
		ev.Enqueued = time.Now()
	}
	o := b.box()
	o.mu.Lock()
	o.pushLocked(ev)
	o.mu.Unlock()
	return nil
}

// Next implements broker.Outbox.
func (b *Broker) Next(ctx context.Context, consumer string, n int, block time.Duration) ([]broker.OutboxEntry, error) {
	o := b.box()
	deadline := time.Now().Add(block)
	for {
		if err := b.closedErr(); err != nil {
			return nil, err
		}
		o.mu.Lock()
		if len(o.queue) > 0 {
			k := min(max(n, 1), len(o.queue))
			out := slices.Clone(o.queue[:k])
			o.queue = slices.Delete(o.queue, 0, k)
			now := time.Now()
			for _, e := range out {
				o.pending[e.ID] = &held{entry: e, consumer: consumer, since: now}
			}
			o.mu.Unlock()
			return out, nil
		}
		wake := o.wake
		o.mu.Unlock()
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-b.done:
		}
		t.Stop()
	}
}

// Reclaim implements broker.Outbox: the pending entries idle for minIdle,
// oldest id first.
func (b *Broker) Reclaim(ctx context.Context, consumer string, minIdle time.Duration, n int) ([]broker.OutboxEntry, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	o := b.box()
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	var out []broker.OutboxEntry
	for _, h := range o.pending {
		if now.Sub(h.since) >= minIdle {
			out = append(out, h.entry)
		}
	}
	slices.SortFunc(out, func(a, b broker.OutboxEntry) int { return cmpID(a.ID, b.ID) })
	if len(out) > n {
		out = out[:n]
	}
	for _, e := range out {
		h := o.pending[e.ID]
		h.consumer, h.since = consumer, now
	}
	return out, nil
}

// cmpID orders entry ids (decimal numbers).
func cmpID(a, b string) int {
	x, _ := strconv.ParseUint(a, 10, 64)
	y, _ := strconv.ParseUint(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// settle removes a pending entry and reports whether it was pending.
// Called with o.mu held.
func (o *outbox) settleLocked(id string) bool {
	if _, ok := o.pending[id]; !ok {
		return false
	}
	delete(o.pending, id)
	return true
}

// Done implements broker.Outbox.
func (b *Broker) Done(ctx context.Context, e broker.OutboxEntry) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	o := b.box()
	o.mu.Lock()
	o.settleLocked(e.ID)
	o.mu.Unlock()
	return nil
}

// Retry implements broker.Outbox.
func (b *Broker) Retry(ctx context.Context, e broker.OutboxEntry, at time.Time, lastErr string) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	o := b.box()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settleLocked(e.ID) {
		ev := e.OutboxEvent
		ev.Attempts++
		o.retry = append(o.retry, scheduled{at: at, ev: ev})
	}
	return nil
}

// Due implements broker.Outbox: the events due at now, earliest first.
func (b *Broker) Due(ctx context.Context, now time.Time, n int) (int, error) {
	if err := b.closedErr(); err != nil {
		return 0, err
	}
	o := b.box()
	o.mu.Lock()
	defer o.mu.Unlock()
	slices.SortStableFunc(o.retry, func(a, b scheduled) int { return a.at.Compare(b.at) })
	moved := 0
	for moved < max(n, 1) && moved < len(o.retry) && !o.retry[moved].at.After(now) {
		o.pushLocked(o.retry[moved].ev)
		moved++
	}
	o.retry = slices.Delete(o.retry, 0, moved)
	return moved, nil
}

// Dead implements broker.Outbox.
func (b *Broker) Dead(ctx context.Context, e broker.OutboxEntry, lastErr string) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	o := b.box()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settleLocked(e.ID) {
		ev := e.OutboxEvent
		ev.Attempts++
		o.seq++
		o.dead[ev.Key] = deadLetter{DeadLetter: broker.DeadLetter{OutboxEvent: ev, LastError: lastErr, FailedAt: time.Now()}, order: o.seq}
	}
	return nil
}

// sortedDeadLocked returns the dead letters, the oldest failure first.
// Called with o.mu held.
func (o *outbox) sortedDeadLocked() []deadLetter {
	all := make([]deadLetter, 0, len(o.dead))
	for _, d := range o.dead {
		all = append(all, d)
	}
	slices.SortFunc(all, func(a, b deadLetter) int {
		if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
			return c
		}
		return cmpID(strconv.FormatUint(a.order, 10), strconv.FormatUint(b.order, 10))
	})
	return all
}

// DeadLetters implements broker.Outbox.
func (b *Broker) DeadLetters(ctx context.Context, limit int) ([]broker.DeadLetter, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	o := b.box()
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []broker.DeadLetter
	for _, d := range o.sortedDeadLocked() {
		if len(out) >= limit {
			break
		}
		out = append(out, d.DeadLetter)
	}
	return out, nil
}

// Replay implements broker.Outbox.
func (b *Broker) Replay(ctx context.Context, keys []string) (int, error) {
	if err := b.closedErr(); err != nil {
		return 0, err
	}
	o := b.box()
	o.mu.Lock()
	defer o.mu.Unlock()
	if keys == nil {
		for _, d := range o.sortedDeadLocked() {
			keys = append(keys, d.Key)
		}
	}
	n := 0
	for _, k := range keys {
		d, ok := o.dead[k]
		if !ok {
			continue
		}
		delete(o.dead, k)
		ev := d.OutboxEvent
		ev.Attempts = 0
		o.pushLocked(ev)
		n++
	}
	return n, nil
}
