package redis

import goredis "github.com/redis/go-redis/v9"

// publishScript stores and publishes one message atomically.
//
// KEYS[1] meta hash, KEYS[2] log list, KEYS[3] idempotency key.
// ARGV[1] envelope head, ARGV[2] envelope tail, ARGV[3] retention,
// ARGV[4] idempotency TTL in ms, ARGV[5] epoch to use if the room has none,
// ARGV[6] channel, ARGV[7] ts, ARGV[8] the publish command (PUBLISH, or
// SPUBLISH on a Cluster: the channel shares the keys' slot).
//
// Returns {1, "seq|epoch|ts"} for a new message, {0, "seq|epoch|ts"} for a
// resend within the window.
var publishScript = goredis.NewScript(`
local prev = redis.call('GET', KEYS[3])
if prev then
  return {0, prev}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[5]
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local env = ARGV[1] .. seq .. ',"epoch":"' .. epoch .. '",' .. ARGV[2]
redis.call('RPUSH', KEYS[2], env)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local ack = seq .. '|' .. epoch .. '|' .. ARGV[7]
redis.call('SET', KEYS[3], ack, 'PX', ARGV[4])
redis.call(ARGV[8], ARGV[6], env)
return {1, ack}
`)

// readScript reads a slice of history consistently with the head.
//
// KEYS[1] meta hash, KEYS[2] log list.
// ARGV[1] mode ("after" or "before"), ARGV[2] the seq bound, ARGV[3] limit
// (<= 0: no limit).
//
// Returns {epoch, head, first, envelope...}.
var readScript = goredis.NewScript(`
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local head = tonumber(meta[1]) or 0
local epoch = meta[2] or ''
local len = redis.call('LLEN', KEYS[2])
local first = 0
if len > 0 then first = head - len + 1 end
local bound = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local out = {epoch, head, first}
if len == 0 then return out end
local from, to
if ARGV[1] == 'after' then
  from = math.max(bound + 1, first)
  to = head
  if limit > 0 and to - from + 1 > limit then to = from + limit - 1 end
else
  to = head
  if bound > 0 then to = math.min(bound - 1, head) end
  from = first
  if limit > 0 then from = math.max(first, to - limit + 1) end
end
if from > to then return out end
local items = redis.call('LRANGE', KEYS[2], from - first, to - first)
for i = 1, #items do out[#out + 1] = items[i] end
return out
`)

// ensureRoomScript creates a room's info if it has none, so that two
// concurrent creations agree on one kind: the first one's.
//
// KEYS[1] info hash, KEYS[2] members set.
// ARGV[1] kind, ARGV[2] creator, ARGV[3] created.
//
// Returns {created (1 or 0), kind, creator, created, member count}.
var ensureRoomScript = goredis.NewScript(`
local made = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'creator', ARGV[2], 'created', ARGV[3])
  made = 1
end
local info = redis.call('HMGET', KEYS[1], 'kind', 'creator', 'created')
return {made, info[1] or '', info[2] or '', info[3] or '', redis.call('SCARD', KEYS[2])}
`)

// addMemberScript adds a member to a room that exists.
//
// KEYS[1] info hash, KEYS[2] members set. ARGV[1] user.
//
// Returns -1 when the room has no info, else SADD's reply (1 added, 0 a
// member already).
var addMemberScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('SADD', KEYS[2], ARGV[1])
`)

// headScript reads what Memberships lists of one room for one user, in one
// step so that the head and the list length agree (as readScript's do).
//
// KEYS[1] meta hash, KEYS[2] log list, KEYS[3] info hash, KEYS[4] members
// set. ARGV[1] user.
//
// Returns {epoch, head, first, kind, member (1 or 0)}.
var headScript = goredis.NewScript(`
local meta = redis.call('HMGET', KEYS[1], 'seq', 'epoch')
local head = tonumber(meta[1]) or 0
local len = redis.call('LLEN', KEYS[2])
local first = 0
if len > 0 then first = head - len + 1 end
local kind = redis.call('HGET', KEYS[3], 'kind') or ''
return {meta[2] or '', head, first, kind, redis.call('SISMEMBER', KEYS[4], ARGV[1])}
`)

// markReadScript moves a user's read cursor of a room by the rule of
// broker.MoveCursor: forward only within an epoch, replaced by another
// epoch's position. A cursor is "epoch:seq", or "" when none.
//
// KEYS[1] the user's rooms hash. ARGV[1] room, ARGV[2] epoch ("" leaves
// the cursor), ARGV[3] seq.
//
// Returns {0, ""} when room is not in the hash (not a member), else
// {1, the cursor after the call}.
var markReadScript = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return {0, ''} end
if ARGV[2] == '' then return {1, cur} end
local seq = tonumber(ARGV[3])
if cur ~= '' then
  local epoch, s = string.match(cur, '^(.*):(%-?%d+)$')
  if epoch == ARGV[2] and tonumber(s) >= seq then return {1, cur} end
end
local v = ARGV[2] .. ':' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], v)
return {1, v}
`)
