package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// roomMeta is a room's info and members: what Reset keeps, unlike the
// history.
type roomMeta struct {
	info    broker.RoomInfo // Members is filled in from members when read
	members map[string]bool
}

func (m *roomMeta) snapshot() broker.RoomInfo {
	info := m.info
	info.Members = int64(len(m.members))
	return info
}

// usable reports an error for a call on a closed broker. Called with b.mu
// held.
func (b *Broker) usable(ctx context.Context, op string) error {
	if b.closed {
		return broker.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory %s: %w", op, err)
	}
	return nil
}

// EnsureRoom implements broker.Users.
func (b *Broker) EnsureRoom(ctx context.Context, room string, kind broker.RoomKind, creator string) (broker.RoomInfo, error) {
	if err := broker.CheckKind("memory ensure room", kind); err != nil {
		return broker.RoomInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "ensure room"); err != nil {
		return broker.RoomInfo{}, err
	}
	m := b.metas[room]
	if m == nil {
		m = &roomMeta{
			info:    broker.RoomInfo{Room: room, Kind: kind, Creator: creator, Created: broker.Now()},
			members: make(map[string]bool),
		}
		b.metas[room] = m
	}
	return m.snapshot(), nil
}

// RoomInfo implements broker.Users.
func (b *Broker) RoomInfo(ctx context.Context, room string) (broker.RoomInfo, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "room info"); err != nil {
		return broker.RoomInfo{}, false, err
	}
	m := b.metas[room]
	if m == nil {
		return broker.RoomInfo{}, false, nil
	}
	return m.snapshot(), true, nil
}

// AddMember implements broker.Users.
func (b *Broker) AddMember(ctx context.Context, room, user string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "add member"); err != nil {
		return false, err
	}
	m := b.metas[room]
	if m == nil {
		return false, fmt.Errorf("memory add member %s to %s: %w", user, room, broker.ErrNoRoom)
	}
	if m.members[user] {
		return false, nil
	}
	m.members[user] = true
	rooms := b.users[user]
	if rooms == nil {
		rooms = make(map[string]protocol.Position)
		b.users[user] = rooms
	}
	rooms[room] = protocol.Position{}
	return true, nil
}

// RemoveMember implements broker.Users.
func (b *Broker) RemoveMember(ctx context.Context, room, user string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "remove member"); err != nil {
		return false, err
	}
	m := b.metas[room]
	if m == nil || !m.members[user] {
		return false, nil
	}
	delete(m.members, user)
	delete(b.users[user], room)
	if len(b.users[user]) == 0 {
		delete(b.users, user)
	}
	return true, nil
}

// IsMember implements broker.Users.
func (b *Broker) IsMember(ctx context.Context, room, user string) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "is member"); err != nil {
		return false, err
	}
	m := b.metas[room]
	return m != nil && m.members[user], nil
}

// Memberships implements broker.Users.
func (b *Broker) Memberships(ctx context.Context, user string) ([]broker.Membership, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "memberships"); err != nil {
		return nil, err
	}
	rooms := b.users[user]
	out := make([]broker.Membership, 0, len(rooms))
	for room, read := range rooms {
		head := b.rangeOf(room, 1, 0, 0, false).Position
		var kind broker.RoomKind
		if m := b.metas[room]; m != nil {
			kind = m.info.Kind
		}
		out = append(out, broker.Membership{Room: room, Kind: kind, Head: head, Read: read, Unread: broker.Unread(head, read)})
	}
	slices.SortFunc(out, func(x, y broker.Membership) int { return strings.Compare(x.Room, y.Room) })
	return out, nil
}

// MarkRead implements broker.Users.
func (b *Broker) MarkRead(ctx context.Context, user, room string, pos protocol.Position) (protocol.Position, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "mark read"); err != nil {
		return protocol.Position{}, err
	}
	rooms := b.users[user]
	cur, ok := rooms[room]
	if !ok {
		return protocol.Position{}, fmt.Errorf("memory mark read %s in %s: %w", user, room, broker.ErrNotMember)
	}
	cur = broker.MoveCursor(cur, pos)
	rooms[room] = cur
	return cur, nil
}

// Directory implements broker.Users. It sorts every public room's name on
// each call: the memory broker serves one process, not a directory of
// millions.
func (b *Broker) Directory(ctx context.Context, after string, limit int) ([]broker.RoomInfo, string, error) {
	limit = broker.DirectoryLimit(limit)
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.usable(ctx, "directory"); err != nil {
		return nil, "", err
	}
	var names []string
	for name, m := range b.metas {
		if m.info.Kind == broker.PublicRoom && name > after {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	next := ""
	if len(names) > limit {
		names = names[:limit]
		next = names[limit-1]
	}
	out := make([]broker.RoomInfo, len(names))
	for i, name := range names {
		out[i] = b.metas[name].snapshot()
	}
	return out, next, nil
}
