package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// userKey is the hash of a user's rooms and read cursors:
// <prefix>:u:{<user>}:rooms. Room keys have '{' right after the prefix, so
// the two never meet.
func (b *Broker) userKey(user string) string {
	return b.cfg.Prefix + ":" + userMark + "{" + user + "}:rooms"
}

// directoryKey is the sorted set of public rooms' names, all with score 0
// so that ZRANGE BYLEX pages them in name order.
func (b *Broker) directoryKey() string { return b.cfg.Prefix + ":rooms:public" }

// closedErr is ErrClosed once Close has begun.
func (b *Broker) closedErr() error {
	if b.ctx.Err() != nil {
		return broker.ErrClosed
	}
	return nil
}

// EnsureRoom implements broker.Users with one script on the room's info,
// and, when it created a public room, a ZADD to the directory: another slot,
// so another command. A crash between the two leaves a public room that
// works but is not listed in the directory (see docs/protocol.md).
func (b *Broker) EnsureRoom(ctx context.Context, room string, kind broker.RoomKind, creator string) (broker.RoomInfo, error) {
	if err := broker.CheckKind("redis ensure room", kind); err != nil {
		return broker.RoomInfo{}, err
	}
	if err := b.closedErr(); err != nil {
		return broker.RoomInfo{}, err
	}
	res, err := ensureRoomScript.Run(ctx, b.client, []string{b.key(room, "info"), b.key(room, "members")}, string(kind), creator, broker.Now()).Slice()
	if err != nil {
		return broker.RoomInfo{}, unavailable("ensure room", err)
	}
	if len(res) != 5 {
		return broker.RoomInfo{}, fmt.Errorf("redis ensure room: unexpected reply %v", res)
	}
	made, _ := res[0].(int64)
	info := broker.RoomInfo{Room: room}
	k, _ := res[1].(string)
	info.Kind = broker.RoomKind(k)
	info.Creator, _ = res[2].(string)
	info.Created, _ = res[3].(string)
	info.Members, _ = res[4].(int64)
	if made == 1 && info.Kind == broker.PublicRoom {
		if err := b.client.ZAdd(ctx, b.directoryKey(), goredis.Z{Member: room}).Err(); err != nil {
			return broker.RoomInfo{}, unavailable("ensure room: directory", err)
		}
	}
	return info, nil
}

// RoomInfo implements broker.Users: HGETALL of the info and SCARD of the
// members, pipelined (one slot, one round trip).
func (b *Broker) RoomInfo(ctx context.Context, room string) (broker.RoomInfo, bool, error) {
	if err := b.closedErr(); err != nil {
		return broker.RoomInfo{}, false, err
	}
	pipe := b.client.Pipeline()
	h := pipe.HGetAll(ctx, b.key(room, "info"))
	n := pipe.SCard(ctx, b.key(room, "members"))
	if _, err := pipe.Exec(ctx); err != nil {
		return broker.RoomInfo{}, false, unavailable("room info", err)
	}
	info, ok := roomInfo(room, h.Val(), n.Val())
	return info, ok, nil
}

// roomInfo builds a RoomInfo from the info hash and the member count; ok
// is false when the hash is empty (no such room).
func roomInfo(room string, h map[string]string, members int64) (broker.RoomInfo, bool) {
	if len(h) == 0 {
		return broker.RoomInfo{}, false
	}
	return broker.RoomInfo{Room: room, Kind: broker.RoomKind(h["kind"]), Members: members, Creator: h["creator"], Created: h["created"]}, true
}

// AddMember implements broker.Users in two commands, as the room and the
// user live on two slots: the room side first (a script that checks the
// room exists and SADDs the member), then the user side (HSETNX of the
// room into the user's hash, which keeps a cursor already there). A crash
// between the two leaves a member whom the room lists but whose
// Memberships does not: IsMember, which access checks use, reads the room
// side, so the user is a member; and the next AddMember, which the user's
// next join makes, writes the user side even when the room side says
// "already a member", and so repairs it.
func (b *Broker) AddMember(ctx context.Context, room, user string) (bool, error) {
	if err := b.closedErr(); err != nil {
		return false, err
	}
	n, err := addMemberScript.Run(ctx, b.client, []string{b.key(room, "info"), b.key(room, "members")}, user).Int64()
	if err != nil {
		return false, unavailable("add member", err)
	}
	if n < 0 {
		return false, fmt.Errorf("redis add member %s to %s: %w", user, room, broker.ErrNoRoom)
	}
	if err := b.client.HSetNX(ctx, b.userKey(user), room, "").Err(); err != nil {
		return false, unavailable("add member: user's rooms", err)
	}
	return n == 1, nil
}

// RemoveMember implements broker.Users: SREM on the room side first, then
// HDEL of the room (and its cursor) from the user's hash, two commands like
// AddMember's. A crash between the two leaves the room in the user's hash
// although the room no longer lists the user: Memberships checks each room's
// side (SISMEMBER in its per-room script) and leaves such a room out, and
// IsMember says no, so the user sees nothing of it; the next RemoveMember
// or AddMember of the pair sets the user side right.
func (b *Broker) RemoveMember(ctx context.Context, room, user string) (bool, error) {
	if err := b.closedErr(); err != nil {
		return false, err
	}
	n, err := b.client.SRem(ctx, b.key(room, "members"), user).Result()
	if err != nil {
		return false, unavailable("remove member", err)
	}
	if err := b.client.HDel(ctx, b.userKey(user), room).Err(); err != nil {
		return false, unavailable("remove member: user's rooms", err)
	}
	return n == 1, nil
}

// IsMember implements broker.Users with SISMEMBER: the room side is the
// truth of membership.
func (b *Broker) IsMember(ctx context.Context, room, user string) (bool, error) {
	if err := b.closedErr(); err != nil {
		return false, err
	}
	ok, err := b.client.SIsMember(ctx, b.key(room, "members"), user).Result()
	if err != nil {
		return false, unavailable("is member", err)
	}
	return ok, nil
}

// Memberships implements broker.Users in two round trips: HGETALL of the
// user's hash, then one pipeline of one EVALSHA of headScript per room. Each
// EVALSHA touches one room's slot, so the pipeline has no cross-slot
// command and a Cluster client can split it by node. After Redis lost its
// script cache the pipeline meets NOSCRIPT: the script is loaded and the
// pipeline sent again (two round trips more, once).
func (b *Broker) Memberships(ctx context.Context, user string) ([]broker.Membership, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	rooms, err := b.client.HGetAll(ctx, b.userKey(user)).Result()
	if err != nil {
		return nil, unavailable("memberships", err)
	}
	names := make([]string, 0, len(rooms))
	for r := range rooms {
		names = append(names, r)
	}
	slices.Sort(names)
	out := make([]broker.Membership, 0, len(names))
	if len(names) == 0 {
		return out, nil
	}
	cmds, err := b.heads(ctx, user, names)
	if err != nil {
		return nil, err
	}
	for i, room := range names {
		res, err := cmds[i].Slice()
		if err != nil {
			return nil, unavailable("memberships: head of "+room, err)
		}
		if len(res) != 5 {
			return nil, fmt.Errorf("redis memberships: unexpected reply %v for %s", res, room)
		}
		if member, _ := res[4].(int64); member != 1 {
			continue // a RemoveMember stopped between its two commands: see there
		}
		m := broker.Membership{Room: room}
		m.Head.Epoch, _ = res[0].(string)
		m.Head.Seq, _ = res[1].(int64)
		m.Head.First, _ = res[2].(int64)
		kind, _ := res[3].(string)
		m.Kind = broker.RoomKind(kind)
		if m.Read, err = parseCursor(rooms[room]); err != nil {
			return nil, fmt.Errorf("redis memberships of %s: %w", user, err)
		}
		m.Unread = broker.Unread(m.Head, m.Read)
		out = append(out, m)
	}
	return out, nil
}

// heads sends one pipeline of headScript, one EVALSHA per room, and again
// after loading the script if Redis had lost it.
func (b *Broker) heads(ctx context.Context, user string, rooms []string) ([]*goredis.Cmd, error) {
	send := func() ([]*goredis.Cmd, error) {
		pipe := b.client.Pipeline()
		cmds := make([]*goredis.Cmd, len(rooms))
		for i, room := range rooms {
			keys := []string{b.key(room, "meta"), b.key(room, "log"), b.key(room, "info"), b.key(room, "members")}
			cmds[i] = headScript.EvalSha(ctx, pipe, keys, user)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := send()
	if err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") {
		if err := headScript.Load(ctx, b.client).Err(); err != nil {
			return nil, unavailable("memberships: load script", err)
		}
		cmds, err = send()
	}
	if err != nil {
		return nil, unavailable("memberships: heads", err)
	}
	return cmds, nil
}

// parseCursor reads a cursor as the user's hash holds it: "epoch:seq", or
// "" for none.
func parseCursor(s string) (protocol.Position, error) {
	if s == "" {
		return protocol.Position{}, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return protocol.Position{}, fmt.Errorf("malformed cursor %q", s)
	}
	seq, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil {
		return protocol.Position{}, fmt.Errorf("malformed cursor %q: %w", s, err)
	}
	return protocol.Position{Epoch: s[:i], Seq: seq}, nil
}

// MarkRead implements broker.Users with one script on the user's hash that
// compares and sets, so two devices racing never move the cursor back.
func (b *Broker) MarkRead(ctx context.Context, user, room string, pos protocol.Position) (protocol.Position, error) {
	if err := b.closedErr(); err != nil {
		return protocol.Position{}, err
	}
	res, err := markReadScript.Run(ctx, b.client, []string{b.userKey(user)}, room, pos.Epoch, pos.Seq).Slice()
	if err != nil {
		return protocol.Position{}, unavailable("mark read", err)
	}
	if len(res) != 2 {
		return protocol.Position{}, fmt.Errorf("redis mark read: unexpected reply %v", res)
	}
	if ok, _ := res[0].(int64); ok != 1 {
		return protocol.Position{}, fmt.Errorf("redis mark read %s in %s: %w", user, room, broker.ErrNotMember)
	}
	s, _ := res[1].(string)
	return parseCursor(s)
}

// Directory implements broker.Users: ZRANGE BYLEX of the directory from
// "(after" for limit+1 names (the one more says whether more follow), then
// one pipeline of HGETALL and SCARD per room returned.
func (b *Broker) Directory(ctx context.Context, after string, limit int) ([]broker.RoomInfo, string, error) {
	if err := b.closedErr(); err != nil {
		return nil, "", err
	}
	limit = broker.DirectoryLimit(limit)
	start := "-"
	if after != "" {
		start = "(" + after
	}
	names, err := b.client.ZRangeArgs(ctx, goredis.ZRangeArgs{Key: b.directoryKey(), Start: start, Stop: "+", ByLex: true, Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", unavailable("directory", err)
	}
	next := ""
	if len(names) > limit {
		names = names[:limit]
		next = names[limit-1]
	}
	out := make([]broker.RoomInfo, 0, len(names))
	if len(names) == 0 {
		return out, next, nil
	}
	pipe := b.client.Pipeline()
	infos := make([]*goredis.MapStringStringCmd, len(names))
	counts := make([]*goredis.IntCmd, len(names))
	for i, room := range names {
		infos[i] = pipe.HGetAll(ctx, b.key(room, "info"))
		counts[i] = pipe.SCard(ctx, b.key(room, "members"))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, "", unavailable("directory: rooms", err)
	}
	for i, room := range names {
		info, ok := roomInfo(room, infos[i].Val(), counts[i].Val())
		if !ok {
			// Listed but its info lost: still a public room by the listing.
			info = broker.RoomInfo{Room: room, Kind: broker.PublicRoom, Members: counts[i].Val()}
		}
		out = append(out, info)
	}
	return out, next, nil
}
