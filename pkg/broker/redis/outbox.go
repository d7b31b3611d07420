package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker"
)

// The outbox (broker.Outbox) is a Redis Stream read by one consumer
// group, with a sorted set of events scheduled for a retry and a hash of
// dead letters. Its keys share the hash tag {outbox}, so that each script
// touches one Cluster slot:
//
//	<prefix>:{outbox}:stream  the stream; fields key, type, payload, attempts, enqueued (unix ms)
//	<prefix>:{outbox}:retry   sorted set: an encoded event (outboxRecord) by due time (unix ms)
//	<prefix>:{outbox}:dead    hash: key -> encoded dead letter (outboxRecord)
//	<prefix>:{outbox}:deadq   sorted set: key by failure time (unix ms)
//
// Done is XACK and XDEL in one MULTI; Retry, Dead, Due and Replay are Lua
// scripts. Retry and Dead do nothing when the entry is no longer pending
// (another consumer that reclaimed it settled it first).

// outboxGroup is the consumer group every gateway reads the stream in.
const outboxGroup = "webhooks"

var _ broker.Outbox = (*Broker)(nil)

func (b *Broker) outboxKey(kind string) string { return b.cfg.Prefix + ":{outbox}:" + kind }

// outboxRecord is an event as the retry set and the dead letters hold
// it: JSON with strings only, so the scripts copy fields without number
// conversions.
type outboxRecord struct {
	Key      string `json:"key"`
	Type     string `json:"type"`
	Payload  string `json:"payload"`
	Attempts string `json:"attempts"`
	Enqueued string `json:"enqueued"`
	Error    string `json:"error,omitempty"`
	Failed   string `json:"failed,omitempty"`
}

func recordOf(ev broker.OutboxEvent) outboxRecord {
	return outboxRecord{Key: ev.Key, Type: ev.Type, Payload: string(ev.Payload),
		Attempts: strconv.Itoa(ev.Attempts), Enqueued: strconv.FormatInt(ev.Enqueued.UnixMilli(), 10)}
}

func (r outboxRecord) encode() string {
	b, _ := json.Marshal(r) // strings only: never fails
	return string(b)
}

func (r outboxRecord) event() broker.OutboxEvent {
	n, _ := strconv.Atoi(r.Attempts)
	ms, _ := strconv.ParseInt(r.Enqueued, 10, 64)
	return broker.OutboxEvent{Key: r.Key, Type: r.Type, Payload: []byte(r.Payload), Attempts: n, Enqueued: time.UnixMilli(ms)}
}

// outboxRetryScript settles an entry and schedules its event.
//
// KEYS[1] stream, KEYS[2] retry set. ARGV[1] group, ARGV[2] entry id,
// ARGV[3] due time (ms), ARGV[4] the encoded event.
// Returns 1, or 0 when the entry was not pending.
var outboxRetryScript = goredis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
`)

// outboxDeadScript settles an entry and keeps its event as a dead letter.
//
// KEYS[1] stream, KEYS[2] dead hash, KEYS[3] dead queue. ARGV[1] group,
// ARGV[2] entry id, ARGV[3] the event's key, ARGV[4] the encoded dead
// letter, ARGV[5] failure time (ms).
// Returns 1, or 0 when the entry was not pending.
var outboxDeadScript = goredis.NewScript(`
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
return 1
`)

// outboxDueScript moves the scheduled events whose time came into the
// stream.
//
// KEYS[1] retry set, KEYS[2] stream. ARGV[1] now (ms), ARGV[2] at most.
// Returns how many moved.
var outboxDueScript = goredis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local ev = cjson.decode(m)
  redis.call('XADD', KEYS[2], '*', 'key', ev.key, 'type', ev.type, 'payload', ev.payload,
    'attempts', ev.attempts, 'enqueued', ev.enqueued)
  redis.call('ZREM', KEYS[1], m)
end
return #due
`)

// outboxReplayScript puts dead letters back into the stream with
// attempts 0.
//
// KEYS[1] dead hash, KEYS[2] dead queue, KEYS[3] stream. ARGV: the keys
// to replay; none: all of them, oldest failure first.
// Returns how many were replayed.
var outboxReplayScript = goredis.NewScript(`
local keys = ARGV
if #keys == 0 then keys = redis.call('ZRANGE', KEYS[2], 0, -1) end
local n = 0
for _, k in ipairs(keys) do
  local rec = redis.call('HGET', KEYS[1], k)
  if rec then
    local ev = cjson.decode(rec)
    redis.call('XADD', KEYS[3], '*', 'key', ev.key, 'type', ev.type, 'payload', ev.payload,
      'attempts', '0', 'enqueued', ev.enqueued)
    redis.call('HDEL', KEYS[1], k)
    redis.call('ZREM', KEYS[2], k)
    n = n + 1
  end
end
return n
`)

// ensureGroup creates the consumer group (and the stream) once; a group
// that exists already (BUSYGROUP) is fine. It starts at id 0, so events
// enqueued before any gateway read are delivered.
func (b *Broker) ensureGroup(ctx context.Context) error {
	if b.groupMade.Load() {
		return nil
	}
	err := b.client.XGroupCreateMkStream(ctx, b.outboxKey("stream"), outboxGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return unavailable("outbox: create group", err)
	}
	b.groupMade.Store(true)
	return nil
}

// noGroup reports whether err says the group is gone (the stream was
// deleted, or Redis lost its data): it is made again on the next call.
func (b *Broker) noGroup(err error) bool {
	if err != nil && strings.HasPrefix(err.Error(), "NOGROUP") {
		b.groupMade.Store(false)
		return true
	}
	return false
}

// Enqueue implements broker.Outbox with one XADD.
func (b *Broker) Enqueue(ctx context.Context, ev broker.OutboxEvent) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	if ev.Enqueued.IsZero() {
		ev.Enqueued = time.Now()
	}
	r := recordOf(ev)
	err := b.client.XAdd(ctx, &goredis.XAddArgs{Stream: b.outboxKey("stream"),
		Values: []any{"key", r.Key, "type", r.Type, "payload", r.Payload, "attempts", r.Attempts, "enqueued", r.Enqueued}}).Err()
	return unavailable("outbox: enqueue", err)
}

// Next implements broker.Outbox with XREADGROUP ... STREAMS <stream> >.
func (b *Broker) Next(ctx context.Context, consumer string, n int, block time.Duration) ([]broker.OutboxEntry, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	if err := b.ensureGroup(ctx); err != nil {
		return nil, err
	}
	if block <= 0 {
		block = -1 // go-redis sends no BLOCK (BLOCK 0 would wait forever)
	}
	res, err := b.client.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: outboxGroup, Consumer: consumer,
		Streams: []string{b.outboxKey("stream"), ">"}, Count: int64(max(n, 1)), Block: block}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if b.noGroup(err) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("outbox: next", err)
	}
	var out []broker.OutboxEntry
	for _, s := range res {
		for _, m := range s.Messages {
			out = append(out, entryOf(m))
		}
	}
	return out, nil
}

// Reclaim implements broker.Outbox with XAUTOCLAIM, following its cursor
// from the start of the pending entries until n are claimed or the scan
// ends. Entries deleted from the stream while pending are dropped from
// the pending list by Redis (7.0+: the reply's third element, which
// go-redis discards) and never returned.
func (b *Broker) Reclaim(ctx context.Context, consumer string, minIdle time.Duration, n int) ([]broker.OutboxEntry, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	if err := b.ensureGroup(ctx); err != nil {
		return nil, err
	}
	var out []broker.OutboxEntry
	start := "0-0"
	for range 16 { // each call scans at most 10*count pending entries
		msgs, next, err := b.client.XAutoClaim(ctx, &goredis.XAutoClaimArgs{Stream: b.outboxKey("stream"), Group: outboxGroup,
			Consumer: consumer, MinIdle: minIdle, Start: start, Count: int64(n - len(out))}).Result()
		if b.noGroup(err) {
			return out, nil
		}
		if err != nil {
			return out, unavailable("outbox: reclaim", err)
		}
		for _, m := range msgs {
			if m.Values != nil { // Redis before 7.0 returned deleted entries as nil
				out = append(out, entryOf(m))
			}
		}
		if next == "0-0" || len(out) >= n {
			break
		}
		start = next
	}
	return out, nil
}

// entryOf reads a stream entry.
func entryOf(m goredis.XMessage) broker.OutboxEntry {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	r := outboxRecord{Key: str("key"), Type: str("type"), Payload: str("payload"), Attempts: str("attempts"), Enqueued: str("enqueued")}
	return broker.OutboxEntry{ID: m.ID, OutboxEvent: r.event()}
}

// Done implements broker.Outbox: XACK and XDEL in one MULTI.
func (b *Broker) Done(ctx context.Context, e broker.OutboxEntry) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	stream := b.outboxKey("stream")
	_, err := b.client.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.XAck(ctx, stream, outboxGroup, e.ID)
		p.XDel(ctx, stream, e.ID)
		return nil
	})
	return unavailable("outbox: done", err)
}

// Retry implements broker.Outbox with one script.
func (b *Broker) Retry(ctx context.Context, e broker.OutboxEntry, at time.Time, lastErr string) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	ev := e.OutboxEvent
	ev.Attempts++
	r := recordOf(ev)
	r.Error = lastErr
	err := outboxRetryScript.Run(ctx, b.client, []string{b.outboxKey("stream"), b.outboxKey("retry")},
		outboxGroup, e.ID, at.UnixMilli(), r.encode()).Err()
	return unavailable("outbox: retry", err)
}

// Due implements broker.Outbox with one script.
func (b *Broker) Due(ctx context.Context, now time.Time, n int) (int, error) {
	if err := b.closedErr(); err != nil {
		return 0, err
	}
	moved, err := outboxDueScript.Run(ctx, b.client, []string{b.outboxKey("retry"), b.outboxKey("stream")},
		now.UnixMilli(), max(n, 1)).Int()
	return moved, unavailable("outbox: due", err)
}

// Dead implements broker.Outbox with one script.
func (b *Broker) Dead(ctx context.Context, e broker.OutboxEntry, lastErr string) error {
	if err := b.closedErr(); err != nil {
		return err
	}
	now := time.Now()
	ev := e.OutboxEvent
	ev.Attempts++
	r := recordOf(ev)
	r.Error = lastErr
	r.Failed = strconv.FormatInt(now.UnixMilli(), 10)
	err := outboxDeadScript.Run(ctx, b.client, []string{b.outboxKey("stream"), b.outboxKey("dead"), b.outboxKey("deadq")},
		outboxGroup, e.ID, ev.Key, r.encode(), now.UnixMilli()).Err()
	return unavailable("outbox: dead", err)
}

// DeadLetters implements broker.Outbox: the oldest keys of the dead queue,
// then their letters (one slot, one pipeline after the range).
func (b *Broker) DeadLetters(ctx context.Context, limit int) ([]broker.DeadLetter, error) {
	if err := b.closedErr(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	keys, err := b.client.ZRange(ctx, b.outboxKey("deadq"), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, unavailable("outbox: dead letters", err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	recs, err := b.client.HMGet(ctx, b.outboxKey("dead"), keys...).Result()
	if err != nil {
		return nil, unavailable("outbox: dead letters", err)
	}
	out := make([]broker.DeadLetter, 0, len(recs))
	for _, v := range recs {
		s, ok := v.(string)
		if !ok {
			continue // replayed between the two reads
		}
		var r outboxRecord
		if err := json.Unmarshal([]byte(s), &r); err != nil {
			return nil, fmt.Errorf("redis outbox: dead letter: %w", err)
		}
		ms, _ := strconv.ParseInt(r.Failed, 10, 64)
		out = append(out, broker.DeadLetter{OutboxEvent: r.event(), LastError: r.Error, FailedAt: time.UnixMilli(ms)})
	}
	return out, nil
}

// Replay implements broker.Outbox with one script.
func (b *Broker) Replay(ctx context.Context, keys []string) (int, error) {
	if err := b.closedErr(); err != nil {
		return 0, err
	}
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	if keys != nil && len(keys) == 0 {
		return 0, nil
	}
	n, err := outboxReplayScript.Run(ctx, b.client, []string{b.outboxKey("dead"), b.outboxKey("deadq"), b.outboxKey("stream")}, args...).Int()
	return n, unavailable("outbox: replay", err)
}
