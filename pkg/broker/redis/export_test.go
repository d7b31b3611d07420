package redis

// PublishScriptHash is the SHA1 of the publish script, for tests that look
// for it in Redis's script cache.
var PublishScriptHash = publishScript.Hash

// QueueLen is how many publishes wait in the queue, not yet taken by a
// pipeliner.
func (b *Broker) QueueLen() int { return len(b.pubq) }
