package gateway

import (
	"context"
	"fmt"

	"github.com/parley-chat/parley/pkg/broker"
)

// subscription is one topic's subscription on this gateway, counted by
// its holders: the first holder subscribes, the last one out unsubscribes.
// Rooms (hub.go) and users (users.go) each embed one. Guarded by hub.mu.
type subscription struct {
	refs       int           // holders counted in (subscribed or being subscribed for)
	subscribed bool          // the broker delivers the topic
	op         chan struct{} // a Subscribe or Unsubscribe in flight; closed when it ends
}

func (s *subscription) sub() *subscription { return s }

// topicEntry is what a hub registry holds: a room or a user topic.
type topicEntry interface {
	sub() *subscription
}

// registry is one kind of topic's entries on this gateway, by name.
type registry[E topicEntry] struct {
	kind    broker.TopicKind
	entries map[string]E // guarded by hub.mu
	create  func(name string) E
	dropped func(E) // called under hub.mu when an entry is forgotten
}

// hold counts a holder of name in and makes sure its topic is subscribed.
// The caller that finds it unsubscribed subscribes it, with no lock held;
// others wait for that call (or an unsubscribe in flight) to end, bounded
// by ctx.
func hold[E topicEntry](ctx context.Context, h *hub, reg *registry[E], name string) (E, error) {
	topic := broker.Topic{Kind: reg.kind, Name: name}
	for {
		h.mu.Lock()
		e, ok := reg.entries[name]
		if !ok {
			e = reg.create(name)
			reg.entries[name] = e
		}
		s := e.sub()
		if op := s.op; op != nil {
			h.mu.Unlock()
			select {
			case <-op:
				continue
			case <-ctx.Done():
				var zero E
				return zero, fmt.Errorf("subscribe %s: %w: %w", topic, broker.ErrUnavailable, ctx.Err())
			}
		}
		s.refs++
		if s.subscribed {
			h.mu.Unlock()
			return e, nil
		}
		op := make(chan struct{})
		s.op = op
		h.mu.Unlock()

		err := h.g.broker.Subscribe(ctx, topic)

		h.mu.Lock()
		s.op = nil
		close(op)
		if err == nil {
			s.subscribed = true
		} else {
			s.refs--
			forget(reg, name, e)
		}
		h.mu.Unlock()
		if err != nil {
			var zero E
			return zero, err
		}
		return e, nil
	}
}

// release counts a holder of e out; the last one unsubscribes the topic,
// with no lock held, and then calls unsubscribed (to reset what the entry
// followed of the topic) before the entry is forgotten.
func release[E topicEntry](h *hub, reg *registry[E], name string, e E, unsubscribed func()) {
	s := e.sub()
	h.mu.Lock()
	s.refs--
	if s.refs > 0 || !s.subscribed || s.op != nil {
		forget(reg, name, e)
		h.mu.Unlock()
		return
	}
	op := make(chan struct{})
	s.op = op
	h.mu.Unlock()

	topic := broker.Topic{Kind: reg.kind, Name: name}
	ctx, cancel := context.WithTimeout(context.Background(), h.g.cfg.RequestTimeout)
	if err := h.g.broker.Unsubscribe(ctx, topic); err != nil {
		h.g.log.Warn("unsubscribe failed", "topic", topic.String(), "err", err)
	}
	cancel()
	if unsubscribed != nil {
		unsubscribed()
	}

	h.mu.Lock()
	s.subscribed = false
	s.op = nil
	close(op)
	forget(reg, name, e)
	h.mu.Unlock()
}

// forget drops e from the registry once nothing holds it: no holder, no
// subscription, no call in flight. Holders that waited for its call then
// make a new entry. Called with hub.mu held.
func forget[E topicEntry](reg *registry[E], name string, e E) {
	s := e.sub()
	if s.refs != 0 || s.subscribed || s.op != nil {
		return
	}
	if cur, ok := reg.entries[name]; ok && any(cur) == any(e) {
		delete(reg.entries, name)
		if reg.dropped != nil {
			reg.dropped(e)
		}
	}
}
