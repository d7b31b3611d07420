package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker"
)

// Presence keys: a room's connections <prefix>:{R}:presence (hash conn ->
// "user|node"; '|' is in no user name) and its users <prefix>:{R}:present
// (hash user -> connection count), both on the room's slot; the nodes
// <prefix>:nodes (sorted set node -> end of its last beat, in unix ms).

func (b *Broker) nodesKey() string { return b.cfg.Prefix + ":nodes" }

// enterScript records a connection in a room. KEYS[1] the room's
// connections, KEYS[2] its users; ARGV[1] conn, ARGV[2] "user|node",
// ARGV[3] user. Returns {the user's connections, the room's}.
var enterScript = goredis.NewScript(`
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
end
return {tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0'), redis.call('HLEN', KEYS[1])}
`)

// exitScript removes a connection from a room. KEYS as enterScript's;
// ARGV[1] conn. Returns {user or "", the user's connections, the room's}.
var exitScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'', 0, redis.call('HLEN', KEYS[1])} end
redis.call('HDEL', KEYS[1], ARGV[1])
local user = string.match(v, '^([^|]*)|')
local n = redis.call('HINCRBY', KEYS[2], user, -1)
if n <= 0 then redis.call('HDEL', KEYS[2], user); n = 0 end
return {user, n, redis.call('HLEN', KEYS[1])}
`)

// presentScript sweeps the dead nodes' connections out of a room and
// reads who is present. KEYS as enterScript's; ARGV[1] 1 to list the
// users (else 0), ARGV[2...] the dead nodes. Returns {the room's
// connections, {users gone}, {user, count, ...} or {}}.
var presentScript = goredis.NewScript(`
local gone = {}
if #ARGV > 1 then
  local dead = {}
  for i = 2, #ARGV do dead[ARGV[i]] = true end
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local user, node = string.match(all[i + 1], '^([^|]*)|(.*)$')
    if dead[node] then
      redis.call('HDEL', KEYS[1], all[i])
      local n = redis.call('HINCRBY', KEYS[2], user, -1)
      if n <= 0 then
        redis.call('HDEL', KEYS[2], user)
        gone[#gone + 1] = user
      end
    end
  end
end
local users = {}
if ARGV[1] == '1' then users = redis.call('HGETALL', KEYS[2]) end
return {redis.call('HLEN', KEYS[1]), gone, users}
`)

// Beat implements broker.Presence with one ZADD.
func (b *Broker) Beat(ctx context.Context, node string, ttl time.Duration) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	until := time.Now().Add(ttl).UnixMilli()
	if err := b.client.ZAdd(ctx, b.nodesKey(), goredis.Z{Score: float64(until), Member: node}).Err(); err != nil {
		return unavailable("beat", err)
	}
	return nil
}

// DeadNodes implements broker.Presence: one pipeline that forgets the
// nodes dead for longer than forget and lists the others whose beat ran
// out.
func (b *Broker) DeadNodes(ctx context.Context, forget time.Duration) ([]string, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	now := time.Now()
	var dead *goredis.StringSliceCmd
	_, err := b.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, b.nodesKey(), "-inf", "("+strconv.FormatInt(now.Add(-forget).UnixMilli(), 10))
		dead = p.ZRangeByScore(ctx, b.nodesKey(), &goredis.ZRangeBy{Min: "-inf", Max: "(" + strconv.FormatInt(now.UnixMilli(), 10)})
		return nil
	})
	if err != nil {
		return nil, unavailable("dead nodes", err)
	}
	return dead.Val(), nil
}

// Enter implements broker.Presence with one script on the room's slot.
func (b *Broker) Enter(ctx context.Context, room, node, conn, user string) (int64, int64, error) {
	if err := b.closedErr(); err != nil {
		return 0, 0, err
	}
	res, err := enterScript.Run(ctx, b.client, b.presenceKeys(room), conn, user+"|"+node, user).Int64Slice()
	if err != nil {
		return 0, 0, unavailable("enter", err)
	}
	if len(res) != 2 {
		return 0, 0, fmt.Errorf("redis enter: unexpected reply %v", res)
	}
	return res[0], res[1], nil
}

// Exit implements broker.Presence with one script on the room's slot.
func (b *Broker) Exit(ctx context.Context, room, conn string) (string, int64, int64, error) {
	if err := b.closedErr(); err != nil {
		return "", 0, 0, err
	}
	res, err := exitScript.Run(ctx, b.client, b.presenceKeys(room), conn).Slice()
	if err != nil {
		return "", 0, 0, unavailable("exit", err)
	}
	if len(res) != 3 {
		return "", 0, 0, fmt.Errorf("redis exit: unexpected reply %v", res)
	}
	user, _ := res[0].(string)
	devices, _ := res[1].(int64)
	total, _ := res[2].(int64)
	return user, devices, total, nil
}

// Present implements broker.Presence with one script on the room's slot.
func (b *Broker) Present(ctx context.Context, room string, dead []string, limit int) ([]broker.PresentUser, int64, []string, error) {
	if err := b.closedErr(); err != nil {
		return nil, 0, nil, err
	}
	list := "0"
	if limit > 0 {
		list = "1"
	}
	args := make([]any, 0, 1+len(dead))
	args = append(args, list)
	for _, n := range dead {
		args = append(args, n)
	}
	res, err := presentScript.Run(ctx, b.client, b.presenceKeys(room), args...).Slice()
	if err != nil {
		return nil, 0, nil, unavailable("present", err)
	}
	if len(res) != 3 {
		return nil, 0, nil, fmt.Errorf("redis present: unexpected reply %v", res)
	}
	total, _ := res[0].(int64)
	var gone []string
	for _, g := range res[1].([]any) {
		s, _ := g.(string)
		gone = append(gone, s)
	}
	slices.Sort(gone)
	flat, _ := res[2].([]any)
	var users []broker.PresentUser
	for i := 0; i+1 < len(flat); i += 2 {
		u, _ := flat[i].(string)
		c, _ := flat[i+1].(string)
		n, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("redis present: count %q of %s: %w", c, u, err)
		}
		users = append(users, broker.PresentUser{User: u, Devices: n})
	}
	slices.SortFunc(users, func(x, y broker.PresentUser) int { return strings.Compare(x.User, y.User) })
	if limit > 0 && len(users) > limit {
		users = users[:limit]
	}
	return users, total, gone, nil
}

func (b *Broker) presenceKeys(room string) []string {
	return []string{b.key(room, "presence"), b.key(room, "present")}
}
