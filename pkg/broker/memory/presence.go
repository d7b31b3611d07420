package memory

import (
	"context"
	"slices"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
)

// presenceEntry is one connection present in a room.
type presenceEntry struct {
	node, user string
}

// Beat implements broker.Presence.
func (b *Broker) Beat(ctx context.Context, node string, ttl time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return broker.ErrClosed
	}
	if b.nodes == nil {
		b.nodes = make(map[string]time.Time)
	}
	b.nodes[node] = time.Now().Add(ttl)
	return nil
}

// DeadNodes implements broker.Presence.
func (b *Broker) DeadNodes(ctx context.Context, forget time.Duration) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	var dead []string
	for n, until := range b.nodes {
		switch {
		case until.Add(forget).Before(now):
			delete(b.nodes, n)
		case until.Before(now):
			dead = append(dead, n)
		}
	}
	slices.Sort(dead)
	return dead, nil
}

// Enter implements broker.Presence.
func (b *Broker) Enter(ctx context.Context, room, node, conn, user string) (int64, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, 0, broker.ErrClosed
	}
	if b.present == nil {
		b.present = make(map[string]map[string]presenceEntry)
	}
	r := b.present[room]
	if r == nil {
		r = make(map[string]presenceEntry)
		b.present[room] = r
	}
	r[conn] = presenceEntry{node: node, user: user}
	return devicesOf(r, user), int64(len(r)), nil
}

// Exit implements broker.Presence.
func (b *Broker) Exit(ctx context.Context, room, conn string) (string, int64, int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", 0, 0, broker.ErrClosed
	}
	r := b.present[room]
	e, ok := r[conn]
	if !ok {
		return "", 0, int64(len(r)), nil
	}
	delete(r, conn)
	if len(r) == 0 {
		delete(b.present, room)
	}
	return e.user, devicesOf(r, e.user), int64(len(r)), nil
}

// Present implements broker.Presence.
func (b *Broker) Present(ctx context.Context, room string, dead []string, limit int) ([]broker.PresentUser, int64, []string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, 0, nil, broker.ErrClosed
	}
	r := b.present[room]
	swept := make(map[string]bool)
	for conn, e := range r {
		if slices.Contains(dead, e.node) {
			delete(r, conn)
			swept[e.user] = true
		}
	}
	counts := make(map[string]int64)
	for _, e := range r {
		counts[e.user]++
	}
	var gone []string
	for u := range swept {
		if counts[u] == 0 {
			gone = append(gone, u)
		}
	}
	slices.Sort(gone)
	var users []broker.PresentUser
	if limit > 0 {
		for u, n := range counts {
			users = append(users, broker.PresentUser{User: u, Devices: n})
		}
		slices.SortFunc(users, func(x, y broker.PresentUser) int {
			switch {
			case x.User < y.User:
				return -1
			case x.User > y.User:
				return 1
			}
			return 0
		})
		if len(users) > limit {
			users = users[:limit]
		}
	}
	return users, int64(len(r)), gone, nil
}

func devicesOf(r map[string]presenceEntry, user string) int64 {
	var n int64
	for _, e := range r {
		if e.user == user {
			n++
		}
	}
	return n
}
