// Package faults is Parley's fault suite: a real redis-server (append-only
// file, appendfsync everysec as in production), three `parley serve`
// processes and a real haproxy rendered from deploy/haproxy's template, all
// on loopback, driven by reconnecting SDK clients (pkg/client) under steady
// traffic while one fault at a time is injected: a gateway killed or
// drained, a rolling restart, pub/sub connections killed, Redis stalled,
// killed or wiped, one gateway's link to Redis blackholed, a slow consumer
// among hundreds, a reconnect storm of thousands, a client sending near its
// rate limit through a Redis stall. Four scenarios run the gateways on a
// Redis Cluster (a master killed, slots moved, pub/sub connections killed)
// or on Sentinel (the master killed) instead of one redis-server.
//
// Every scenario is judged by the one Checker (checker.go): per room, each
// client's seqs rise by exactly one within an epoch unless a joined frame
// with recovered:false announced the break; every acknowledged message is
// in the room's history in Redis exactly once (unless the scenario wiped
// Redis and every client in the room was told); every client catches up to
// the head; what each client holds matches the history message by
// message. A scenario that kills a Redis master reports the acknowledged
// writes lost with it (Redis replicates asynchronously) instead of failing
// on them. Each scenario adds one row to the table that TestFaults prints
// at the end (table.go). See README.md for the scenarios and the soak mode.
package faults
