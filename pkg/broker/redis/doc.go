// Package redis implements broker.Broker on Redis with
// github.com/redis/go-redis/v9.
//
// Per room R (with {R} a hash tag, so a room lives on one Cluster slot):
//
//	<prefix>:{R}:meta                 hash: seq (last assigned), epoch
//	<prefix>:{R}:log                  list: the last Retention envelopes, oldest first
//	<prefix>:{R}:idem:<n>:<user>:<id> string: the ack of an idempotent send, with a TTL
//	channel <prefix>:{R}              pub/sub: each envelope as it is published, and the room's events
//
//	<prefix>:{R}:info                 hash: kind (public, private, direct), creator, created
//	<prefix>:{R}:members              set: the room's members (the truth of membership; SCARD counts them)
//
// Per user U:
//
//	<prefix>:u:{U}:rooms              hash: room -> the user's read cursor "epoch:seq", "" when none
//	channel <prefix>:u:{U}            pub/sub: the user's events
//
// And one key for all:
//
//	<prefix>:rooms:public             sorted set: public rooms' names, score 0, paged by ZRANGE BYLEX
//
// Every command touches one slot: a room's keys share {R}, a user's {U}.
// What spans a room and a user is two commands: AddMember writes the room
// side (a script: the room exists, SADD), then the user side (HSETNX, which
// keeps a cursor); RemoveMember SREM, then HDEL. A crash between them is
// harmless: IsMember reads the room side, Memberships leaves out a room whose
// members no longer hold the user, and the next AddMember or RemoveMember
// writes the user side whatever the room side said. EnsureRoom is a script
// on the room's info (the first creation's kind wins), then, for a new
// public room, ZADD to the directory. Memberships is two round trips:
// HGETALL of the user's hash, then one pipeline of one EVALSHA per room of
// a script that reads its head (meta, LLEN of the log), kind and whether the
// user is in its members. MarkRead is a script on the user's hash that
// compares and sets. Unread counts are derived (head - cursor, capped by
// what the log retains): nothing of the Users side is written on publish.
//
// In the idempotency key n is the length of user in bytes, in decimal: user
// and id may both contain ':', and n says where the user ends.
//
// Publish is one Lua script run with EVALSHA: idempotency check, seq and
// epoch, RPUSH and LTRIM, the ack stored under the idempotency key, PUBLISH.
// Concurrent publishes share round trips: at most Config.PublishPipelines
// pipelines are in flight, and publishes that find them all busy queue and
// go out together, up to Config.PublishBatch per pipeline, each still its
// own EVALSHA. A publish that finds a pipeline free and nothing queued is
// sent at once, so an idle broker adds no latency. After Redis loses its
// script cache (restart, SCRIPT FLUSH), the script is loaded again and the
// calls that met NOSCRIPT are sent again.
// Reads run a script that reads the head and the list in one step, so the
// list always holds the seqs head-len+1..head.
//
// On a channel an envelope is its JSON object, which starts with '{'. An
// event (Emit) is one PUBLISH of '!' followed by its data, on the room's
// channel for a room topic, so a room's messages and events reach a
// subscriber in the order Redis ran them. Whatever else arrives on a
// channel is dropped. Gateways that predate events drop an event on a
// room's channel as a malformed envelope.
//
// Where Redis is: a URL (one Redis), seed nodes (Config.ClusterAddrs: a
// Redis Cluster, Redis 7+) or a master watched by Sentinel
// (Config.SentinelMaster and SentinelAddrs). Every command above touches
// one slot, so all of it works the same on a Cluster; there the publish
// script and Emit use SPUBLISH, and a room's channel is a shard channel on
// its room's slot.
//
// Pub/sub runs on connections the Broker owns and speaks RESP2 on itself
// (resp.go), one per shard (shard.go): the only one on a single Redis or
// Sentinel's master; one per master that holds a subscribed channel's slot
// on a Cluster, so the connections are bounded by the masters, whatever
// the number of rooms. Each command names one channel, so every reply is
// matched to its command: a MOVED sends the channel to the node it names.
// The bus (bus.go) routes channels to shards by slot; on a Cluster its
// router reads the slot map (CLUSTER SLOTS, from the nodes it knows) every
// TopologyInterval, every 250ms while a channel is off a live connection,
// and at once when a connection fails or Redis unsubscribes a channel
// whose slot moved, and moves each channel to its slot's master. A
// connection that breaks is dialed again and subscribes everything it
// holds. A connection idle for PingInterval is probed: a nonce published
// through the client must come back through it within ProbeTimeout, else
// it is dropped (broker.ErrSilent). Every loss is reported to the Handler
// as one Lost naming the topics it cost, and each resubscription through
// Subscribed, so the gateway can re-read what pub/sub lost.
package redis
