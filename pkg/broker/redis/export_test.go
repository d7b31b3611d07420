package redis

// PublishScriptHash is the SHA1 of the publish script, for tests that look
// for it in Redis's script cache.
var PublishScriptHash = publishScript.Hash

// QueueLen is how many publishes wait in the queue, not yet taken by a
// pipeliner.
func (b *Broker) QueueLen() int { return len(b.pubq) }

// Key is the name of one of a room's keys ("meta", "log", "info", "members").
func (b *Broker) Key(room, kind string) string { return b.key(room, kind) }

// UserKey is the name of a user's rooms hash.
func (b *Broker) UserKey(user string) string { return b.userKey(user) }
