// Package memory implements broker.Broker inside one process. It keeps the
// same semantics as the Redis broker (seq, epoch, retention, idempotency,
// subscribe-then-deliver) and passes the same conformance suite, but nothing
// outlives the process and nothing crosses to another node: it is the
// single-node default when no Redis URL is configured.
package memory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Config configures a Broker. Zero fields take the stated defaults.
type Config struct {
	// Retention is how many messages each room's history keeps.
	// Default broker.DefaultRetention (1000).
	Retention int
	// IdempotencyWindow is how long a send's ack is remembered.
	// Default broker.DefaultIdempotencyWindow (5m).
	IdempotencyWindow time.Duration
	// Handler receives subscribed messages.
	Handler broker.Handler
}

type room struct {
	seq   int64
	epoch string
	log   []broker.Envelope // consecutive seqs ending at seq
}

type idemEntry struct {
	ack     broker.Ack
	expires time.Time
}

// Broker is an in-process broker.Broker.
type Broker struct {
	cfg Config

	mu    sync.Mutex
	rooms map[string]*room
	idem  map[string]idemEntry
	subs  map[broker.Topic]bool

	nodes   map[string]time.Time                // node -> end of its last beat (presence.go)
	present map[string]map[string]presenceEntry // room -> conn -> entry (presence.go)
	closed  bool

	// The per-user side (users.go), which Reset keeps.
	metas map[string]*roomMeta                    // room -> info and members
	users map[string]map[string]protocol.Position // user -> room -> read cursor (zero: none)

	// deliveries run on one goroutine, in publish order, like a pub/sub
	// connection; queue is unbounded so Publish never waits for a reader.
	qmu   sync.Mutex
	queue []func()
	wake  chan struct{}
	done  chan struct{}
	wg    sync.WaitGroup

	// The outbox (outbox.go), made on first use.
	outboxOnce sync.Once
	ob         *outbox
}

var _ broker.Broker = (*Broker)(nil)

// New returns an empty in-memory Broker.
func New(cfg Config) *Broker {
	if cfg.Retention <= 0 {
		cfg.Retention = broker.DefaultRetention
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = broker.DefaultIdempotencyWindow
	}
	b := &Broker{
		cfg:   cfg,
		rooms: make(map[string]*room),
		idem:  make(map[string]idemEntry),
		subs:  make(map[broker.Topic]bool),
		metas: make(map[string]*roomMeta),
		users: make(map[string]map[string]protocol.Position),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *Broker) run() {
	defer b.wg.Done()
	for {
		select {
		case <-b.wake:
		case <-b.done:
			return
		}
		for {
			b.qmu.Lock()
			q := b.queue
			b.queue = nil
			b.qmu.Unlock()
			if len(q) == 0 {
				break
			}
			for _, f := range q {
				f()
			}
		}
	}
}

// post queues f for the delivery goroutine. Called with b.mu held, so the
// queue order is the publish order.
func (b *Broker) post(f func()) {
	b.qmu.Lock()
	b.queue = append(b.queue, f)
	b.qmu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Publish implements broker.Broker.
func (b *Broker) Publish(ctx context.Context, p broker.Publication) (broker.Ack, error) {
	if err := ctx.Err(); err != nil {
		return broker.Ack{}, err
	}
	if p.TS == "" {
		p.TS = broker.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.Ack{}, broker.ErrClosed
	}
	now := time.Now()
	ikey := p.Room + "\x00" + p.From + "\x00" + p.ID
	if e, ok := b.idem[ikey]; ok && now.Before(e.expires) {
		ack := e.ack
		ack.Duplicate = true
		return ack, nil
	}
	r := b.rooms[p.Room]
	if r == nil {
		r = &room{}
		b.rooms[p.Room] = r
	}
	if r.epoch == "" {
		r.epoch = broker.NewEpoch()
	}
	r.seq++
	head, tail := broker.EnvelopeParts(p)
	raw := broker.Assemble(head, r.seq, r.epoch, tail)
	env, err := broker.ParseEnvelope(raw)
	if err != nil {
		return broker.Ack{}, err
	}
	r.log = append(r.log, env)
	if over := len(r.log) - b.cfg.Retention; over > 0 {
		r.log = append(r.log[:0:0], r.log[over:]...)
	}
	ack := broker.Ack{Room: p.Room, ID: p.ID, Seq: r.seq, Epoch: r.epoch, TS: p.TS}
	b.idem[ikey] = idemEntry{ack: ack, expires: now.Add(b.cfg.IdempotencyWindow)}
	if len(b.idem)%1024 == 0 {
		b.expireIdem(now)
	}
	if b.subs[broker.Room(p.Room)] && b.cfg.Handler != nil {
		h := b.cfg.Handler
		b.post(func() { h.Deliver(env) })
	}
	return ack, nil
}

func (b *Broker) expireIdem(now time.Time) {
	for k, e := range b.idem {
		if !now.Before(e.expires) {
			delete(b.idem, k)
		}
	}
}

// rangeOf returns the room's retained messages with from <= seq <= to, at
// most limit of them (limit <= 0: all), the oldest such ones or, with
// newest, the newest. Called with b.mu held.
func (b *Broker) rangeOf(name string, from, to int64, limit int, newest bool) broker.Range {
	r := b.rooms[name]
	if r == nil {
		return broker.Range{}
	}
	out := broker.Range{Position: broker.Position{Epoch: r.epoch, Seq: r.seq}}
	if len(r.log) == 0 {
		return out
	}
	first := r.seq - int64(len(r.log)) + 1
	out.First = first
	from, to = max(from, first), min(to, r.seq)
	if limit > 0 && to-from+1 > int64(limit) {
		if newest {
			from = to - int64(limit) + 1
		} else {
			to = from + int64(limit) - 1
		}
	}
	if from <= to {
		out.Messages = append([]broker.Envelope(nil), r.log[from-first:to-first+1]...)
	}
	return out
}

const maxSeq = int64(1<<62 - 1)

// After implements broker.Broker.
func (b *Broker) After(ctx context.Context, room string, after int64, limit int) (broker.Range, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rangeOf(room, after+1, maxSeq, limit, false), nil
}

// Before implements broker.Broker.
func (b *Broker) Before(ctx context.Context, room string, before int64, limit int) (broker.Range, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	to := maxSeq
	if before > 0 {
		to = before - 1
	}
	return b.rangeOf(room, 0, to, limit, true), nil
}

// Head implements broker.Broker.
func (b *Broker) Head(ctx context.Context, room string) (broker.Position, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rangeOf(room, 1, 0, 0, false).Position, nil
}

// Subscribe implements broker.Broker. Nothing here waits, but a ctx that
// has already ended fails it, as it would fail the Redis broker's.
func (b *Broker) Subscribe(ctx context.Context, t broker.Topic) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory subscribe %s: %w", t, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	b.subs[t] = true
	if h := b.cfg.Handler; h != nil {
		b.post(func() { h.Subscribed(t) })
	}
	return nil
}

// Unsubscribe implements broker.Broker.
func (b *Broker) Unsubscribe(ctx context.Context, t broker.Topic) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, t)
	return nil
}

// Emit implements broker.Broker.
func (b *Broker) Emit(ctx context.Context, ev broker.Event) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory emit %s: %w", ev.Topic, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	if b.subs[ev.Topic] && b.cfg.Handler != nil {
		h := b.cfg.Handler
		ev.Data = append([]byte(nil), ev.Data...) // the caller may reuse its slice
		b.post(func() { h.Event(ev) })
	}
	return nil
}

// Interrupt simulates the loss of the subscriber connection, for tests of
// what the loss signal sets off: the Handler gets Lost with every
// subscribed topic, then Subscribed for each. Nothing published is lost.
func (b *Broker) Interrupt(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.cfg.Handler
	if b.closed || h == nil || len(b.subs) == 0 {
		return
	}
	topics := make([]broker.Topic, 0, len(b.subs))
	for t := range b.subs {
		topics = append(topics, t)
	}
	b.post(func() { h.Lost(topics, err) })
	for _, t := range topics {
		b.post(func() { h.Subscribed(t) })
	}
}

// Ready implements broker.Broker; an open memory broker is always ready.
func (b *Broker) Ready(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	return nil
}

// Reset forgets every room's history, as a Redis that lost a room's
// history keys would: new messages start a new epoch. Rooms' kinds and
// members and users' read cursors stay, so that a cursor of the old epoch
// meets the new one. It exists for tests of epoch changes.
func (b *Broker) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rooms = make(map[string]*room)
	b.idem = make(map[string]idemEntry)
}

// Close implements broker.Broker.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	b.wg.Wait()
	return nil
}
