package redis

import goredis "github.com/redis/go-redis/v9"

// publishScript stores and publishes one message atomically.
//
// KEYS[1] meta hash, KEYS[2] log list, KEYS[3] idempotency key.
// ARGV[1] envelope head, ARGV[2] envelope tail, ARGV[3] retention,
// ARGV[4] idempotency TTL in ms, ARGV[5] epoch to use if the room has none,
// ARGV[6] channel, ARGV[7] ts.
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
redis.call('PUBLISH', ARGV[6], env)
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
