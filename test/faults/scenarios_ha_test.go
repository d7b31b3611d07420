package faults

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/redistest"
)

// The scenarios of a Redis Cluster (3 masters, 1 replica each,
// cluster-node-timeout 1s) and of Sentinel (a master, 1 replica, 3
// sentinels, down-after-milliseconds 1s), under the standard traffic.

// logKey is the key of a room's history; its hash tag {room} puts every
// key of the room in one Cluster slot.
func logKey(room string) string { return "parley:{" + room + "}:log" }

// roleAt asks the redis-server at addr for its replication role ("master",
// "slave"), without retries.
func roleAt(ctx context.Context, addr string) (string, error) {
	cl := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: time.Second})
	defer cl.Close()
	txt, err := cl.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(txt, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "role:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s: no role in INFO replication", addr)
}

// promotion is when a replica was first seen as a master, and when the
// Sentinels first named it (Sentinel only).
type promotion struct {
	promoted, named time.Time
	err             error
}

// watchPromotion polls addr every 20 ms from now on until it says it is a
// master, then, with named set, until named reports true; the result
// comes on the returned channel (an error when ctx ends first). It never
// touches t: it runs on its own goroutine.
func watchPromotion(ctx context.Context, addr string, named func(context.Context) bool) <-chan promotion {
	out := make(chan promotion, 1)
	go func() {
		var p promotion
		var last error
		for p.promoted.IsZero() {
			role, err := roleAt(ctx, addr)
			if err == nil && role == "master" {
				p.promoted = time.Now()
				break
			}
			last = fmt.Errorf("role %q, %v", role, err)
			if !sleepCtx(ctx, 20*time.Millisecond) {
				out <- promotion{err: fmt.Errorf("%s not promoted: %w (last: %w)", addr, ctx.Err(), last)}
				return
			}
		}
		for named != nil && !named(ctx) {
			if !sleepCtx(ctx, 20*time.Millisecond) {
				out <- promotion{err: fmt.Errorf("%s promoted but not named by the sentinels: %w", addr, ctx.Err())}
				return
			}
		}
		if named != nil {
			p.named = time.Now()
		}
		out <- p
	}()
	return out
}

func awaitPromotion(t *testing.T, ctx context.Context, ch <-chan promotion) promotion {
	t.Helper()
	select {
	case p := <-ch:
		if p.err != nil {
			t.Fatal(p.err)
		}
		return p
	case <-ctx.Done():
		t.Fatalf("waiting for the promotion: %v", ctx.Err())
	}
	return promotion{}
}

// failoverNotes adds to the row each acked write lost with the killed
// master, with what the clients saw of it (or that there was none).
func failoverNotes(r *Result) {
	if len(r.FailoverLosses) == 0 {
		r.note("no acked write lost with the killed master")
	}
	for i, l := range r.FailoverLosses {
		if i == 5 {
			r.note("... and %d more lost acks", len(r.FailoverLosses)-5)
			break
		}
		r.note("lost ack: %s", l)
	}
}

// resumeBound is how long after the promotion the rooms of the killed
// master may take to store a message again: the broker re-reads the slot
// map or asks the sentinels within a couple of seconds, and a refused send
// is resent after at most the SDK's MaxBackoff (2 s).
const resumeBound = 10 * time.Second

// checkResumed notes, for each room of the killed master, when its first
// send after the promotion was acknowledged, from the kill (the outage
// senders saw), and fails the scenario if one took more than resumeBound
// after the promotion. Without this bound a room down for most of a minute
// would pass or fail on "every send acked" depending on how long Finish
// waits for the sends in flight (45 s).
func checkResumed(t *testing.T, r *Result, f *Fleet, rooms []string, killed, promoted time.Time) {
	t.Helper()
	first := map[string]time.Time{}
	for _, rec := range f.Checker.ledger.snapshot() {
		if rec.acked && rec.ackedAt.After(promoted) && slices.Contains(rooms, rec.room) {
			if at, ok := first[rec.room]; !ok || rec.ackedAt.Before(at) {
				first[rec.room] = rec.ackedAt
			}
		}
	}
	var parts []string
	for _, room := range rooms {
		at, ok := first[room]
		if ok {
			parts = append(parts, fmt.Sprintf("%s %v", room, ms(at.Sub(killed))))
		} else {
			parts = append(parts, room+" never")
		}
		if !ok || at.Sub(promoted) > resumeBound {
			when := "never (until the traffic stopped)"
			if ok {
				when = fmt.Sprintf("%v after the promotion", ms(at.Sub(promoted)))
			}
			t.Errorf("%s: the first send after the promotion acknowledged in %s came %s; want within %v",
				r.Scenario, room, when, resumeBound)
		}
	}
	r.note("first ack after the promotion, from the kill: %s", strings.Join(parts, ", "))
}

// 11. kill -9 of the Cluster master that serves room 0's slot: its
// replica is promoted (cluster-node-timeout 1s), the gateways re-read the
// slot map and resubscribe, sends answered unavailable meanwhile are
// retried. What the master acknowledged and had not yet sent to its
// replica is lost with it: reported, not failed on (Checker.ExpectFailover).
func clusterMasterKill(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{Redis: RedisCluster})
	rc := c.RedisCluster
	f, tr := standard(t, ctx, c, "ckill")
	victim := rc.MasterOf(logKey(f.Rooms[0]))
	var onVictim []string
	for _, room := range f.Rooms {
		if rc.MasterOf(logKey(room)) == victim {
			onVictim = append(onVictim, room)
		}
	}
	var replica *redistest.Server
	for _, n := range rc.Nodes {
		if n != victim && n.Info(ctx, "replication", "role") == "slave" &&
			n.Info(ctx, "replication", "master_port") == strconv.Itoa(victim.Port) {
			replica = n
		}
	}
	if replica == nil {
		t.Fatalf("no replica of the master %s", victim.Addr())
	}
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	promo := watchPromotion(wctx, replica.Addr(), nil)

	f.Checker.FaultStart()
	killed := time.Now()
	victim.Stop()
	p := awaitPromotion(t, ctx, promo)
	// "Caught up" is measured from the kill, to the first message the
	// promoted replica stores in each of its rooms (the others: their
	// heads now).
	if err := f.Checker.FaultEndAt(ctx, killed, onVictim); err != nil {
		t.Fatal(err)
	}
	f.Checker.ExpectFailover(onVictim, killed, p.promoted)
	rc.WaitHealthy(30 * time.Second)
	agreed := time.Since(killed)
	now := rc.MasterOf(logKey(f.Rooms[0]))

	r := finish(t, ctx, c, f, "cluster-master-kill-9", tr)
	r.note("killed master %s (slot %d of %s; rooms on it: %s); replica %s promoted %v after the kill, every node agreed by %v; room 0's slot now on %s",
		victim.Addr(), redistest.Slot(logKey(f.Rooms[0])), f.Rooms[0], strings.Join(onVictim, " "), replica.Addr(),
		ms(p.promoted.Sub(killed)), ms(agreed), now.Addr())
	checkResumed(t, r, f, onVictim, killed, p.promoted)
	failoverNotes(r)
	if now != replica {
		t.Errorf("room 0's slot is served by %s after the failover, want its promoted replica %s", now.Addr(), replica.Addr())
	}
	return r
}

// 12. The slots of rooms 0 and 1 move to other masters under traffic
// (MIGRATE of their keys, then CLUSTER SETSLOT NODE), then room 0's slot
// moves back: 3 moves. Redis pushes sunsubscribe when a slot moves; the
// gateways resubscribe on the new master and repair from history. Sends
// that meet the move get unavailable (TRYAGAIN, ASK) and are retried.
// Expected: nothing lost or duplicated, everyone caught up.
func clusterSlotMigration(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{Redis: RedisCluster})
	rc := c.RedisCluster
	f, tr := standard(t, ctx, c, "cmove")
	slot0, slot1 := redistest.Slot(logKey(f.Rooms[0])), redistest.Slot(logKey(f.Rooms[1]))
	home0 := rc.MasterServing(slot0)
	// elsewhere is a master other than the one serving slot now.
	elsewhere := func(slot int) *redistest.Server {
		cur := rc.MasterServing(slot)
		for _, m := range rc.Masters() {
			if m != cur {
				return m
			}
		}
		t.Fatalf("no master other than %s", cur.Addr())
		return nil
	}
	type move struct {
		room string
		slot int
		to   func() *redistest.Server
	}
	var moves []move
	for range reps(1) {
		moves = append(moves,
			move{f.Rooms[0], slot0, func() *redistest.Server { return elsewhere(slot0) }},
			move{f.Rooms[1], slot1, func() *redistest.Server { return elsewhere(slot1) }},
			move{f.Rooms[0], slot0, func() *redistest.Server { return home0 }},
		)
	}
	f.Checker.FaultStart()
	var figures []string
	for i, mv := range moves {
		from, to := rc.MasterServing(mv.slot), mv.to()
		keys := countKeys(t, ctx, from, mv.slot)
		before := f.Checker.sendTrouble()
		start := time.Now()
		if err := rc.MigrateSlot(ctx, mv.slot, to); err != nil {
			t.Fatalf("move %d: %v", i+1, err)
		}
		took := time.Since(start)
		// Sends that met the move are retried with a backoff of 200 ms
		// and more: count their errors until the next move, a second on.
		if !sleepCtx(ctx, time.Second) {
			t.Fatal(ctx.Err())
		}
		errs := diffCodes(before, f.Checker.sendTrouble())
		if got := rc.MasterServing(mv.slot); got != to {
			t.Fatalf("move %d: slot %d is on %s after the move, want %s", i+1, mv.slot, got.Addr(), to.Addr())
		}
		e := "none"
		if len(errs) > 0 {
			e = mapText(errs)
		}
		figures = append(figures, fmt.Sprintf("move %d: slot %d (%s, %d keys) %s→%s in %v, send errors %s",
			i+1, mv.slot, mv.room, keys, from.Addr(), to.Addr(), ms(took), e))
	}
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "cluster-slot-migration", tr)
	for _, fig := range figures {
		r.note("%s", fig)
	}
	return r
}

// countKeys is CLUSTER COUNTKEYSINSLOT on the master s.
func countKeys(t *testing.T, ctx context.Context, s *redistest.Server, slot int) int64 {
	t.Helper()
	cl := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	defer cl.Close()
	n, err := cl.ClusterCountKeysInSlot(ctx, slot).Result()
	if err != nil {
		t.Fatalf("CLUSTER COUNTKEYSINSLOT %d on %s: %v", slot, s.Addr(), err)
	}
	return n
}

// diffCodes returns after minus before, by code, without the zeros.
func diffCodes(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// 13. Every pub/sub connection on every Cluster node killed (CLIENT KILL
// TYPE pubsub), 4 times 1.5 s apart, as pubsub-killed does on one Redis:
// the gateways reconnect to each master, resubscribe and repair from
// history; nobody gets 1013.
func clusterPubsubKilled(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{Redis: RedisCluster})
	f, tr := standard(t, ctx, c, "cpubsub")
	f.Checker.FaultStart()
	var killed []int64
	for i := range reps(4) {
		if i > 0 && !sleepCtx(ctx, 1500*time.Millisecond) {
			t.Fatal(ctx.Err())
		}
		killed = append(killed, c.RedisCluster.KillPubSub(ctx))
	}
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "cluster-pubsub-killed", tr)
	r.note("pub/sub connections killed per round (all nodes) %v", killed)
	if r.Closes[closeTryLater] > 0 {
		t.Errorf("%d clients closed with 1013 after pub/sub kills: the gateways should repair from history", r.Closes[closeTryLater])
	}
	if killed[0] == 0 {
		t.Errorf("the first round killed no pub/sub connection: the gateways hold none?")
	}
	return r
}

// 14. kill -9 of the master the Sentinels watch: they promote its replica
// (down-after-milliseconds 1s) and the gateways follow the master they
// name. Acked writes lost with the master are reported as in
// cluster-master-kill-9.
func sentinelMasterKill(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{Redis: RedisSentinel})
	s := c.Sentinel
	f, tr := standard(t, ctx, c, "skill")
	old, err := s.MasterAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := s.Server(old)
	if len(s.Replicas) != 1 {
		t.Fatalf("%d replicas, want 1", len(s.Replicas))
	}
	replica := s.Replicas[0]
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	promo := watchPromotion(wctx, replica.Addr(), func(ctx context.Context) bool {
		addr, err := s.MasterAddr(ctx)
		return err == nil && addr == replica.Addr()
	})

	f.Checker.FaultStart()
	killed := time.Now()
	victim.Stop()
	p := awaitPromotion(t, ctx, promo)
	if err := f.Checker.FaultEndAt(ctx, killed, f.Rooms); err != nil {
		t.Fatal(err)
	}
	f.Checker.ExpectFailover(f.Rooms, killed, p.promoted)
	now := s.WaitMaster(old, 30*time.Second)
	agreed := time.Since(killed)

	r := finish(t, ctx, c, f, "sentinel-master-kill-9", tr)
	r.note("killed master %s; replica %s promoted %v after the kill, named by a sentinel after %v, by a majority by %v",
		victim.Addr(), replica.Addr(), ms(p.promoted.Sub(killed)), ms(p.named.Sub(killed)), ms(agreed))
	checkResumed(t, r, f, f.Rooms, killed, p.promoted)
	failoverNotes(r)
	if now != replica.Addr() {
		t.Errorf("the sentinels name %s after the failover, want the replica %s", now, replica.Addr())
	}
	return r
}
