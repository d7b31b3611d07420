package redistest_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/redistest"
)

// Slot agrees with CLUSTER KEYSLOT on keys with and without hash tags,
// including the edge cases of the tag rule (empty tag, no closing brace,
// two tags).
func TestSlot(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{ClusterNodeTimeout: time.Second})
	cl := srv.Client()
	ctx := context.Background()
	keys := []string{
		"", "a", "foo", "123456789", "{a}b", "a{}b", "{}", "a{b", "x{y}z{w}",
		"{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "}{", "{", "}", "{{}}", "room:{general}:log", "\x00\xff{\x80}",
		"héllo", "日本語{キー}",
	}
	for i := 0; len(keys) < 60; i++ {
		keys = append(keys, "room:"+strconv.Itoa(i*7919), fmt.Sprintf("{u%d}:inbox", i))
	}
	seen := map[int]bool{}
	for _, k := range keys {
		want, err := cl.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", k, err)
		}
		if got := redistest.Slot(k); int64(got) != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
		}
		seen[int(want)] = true
	}
	if redistest.Slot("123456789") != 0x31C3%16384 {
		t.Errorf("Slot(123456789) = %d, want the CRC16/XMODEM check value 0x31C3", redistest.Slot("123456789"))
	}
	if len(seen) < len(keys)/2 {
		t.Errorf("%d keys fall in only %d slots", len(keys), len(seen))
	}
}

// A slot with 2000 keys moves to another master while a client INCRs a
// key of the slot without pause: no INCR fails, the key's final value is
// the number of acknowledged INCRs, every key moved, and every master
// agrees the slot is on its new master. KillPubSub then closes a cluster
// subscriber's connection.
func TestMigrateSlotUnderWrites(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	ctx := context.Background()
	cc := c.Client()
	const counter = "{mig}counter"
	slot := redistest.Slot(counter)
	src := c.MasterServing(slot)
	masters := c.Masters()
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3", len(masters))
	}
	var to *redistest.Server
	for _, m := range masters {
		if m != src {
			to = m
			break
		}
	}
	const filled = 2000
	if _, err := cc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range filled {
			p.Set(ctx, fmt.Sprintf("{mig}:%d", i), i, 0)
		}
		return nil
	}); err != nil {
		t.Fatalf("fill the slot: %v", err)
	}

	// The writer INCRs until told to stop (at most maxIncr times) and
	// counts the acknowledged INCRs; it stops at the first error.
	const maxIncr = 200_000
	var acked atomic.Int64
	var incrErr error
	stop, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for range maxIncr {
			select {
			case <-stop:
				return
			default:
			}
			if err := cc.Incr(ctx, counter).Err(); err != nil {
				incrErr = fmt.Errorf("INCR after %d acknowledged: %w", acked.Load(), err)
				return
			}
			acked.Add(1)
		}
	}()
	waitAcked := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for acked.Load() < n {
			select {
			case <-finished:
				t.Fatalf("the writer stopped at %d acknowledged INCRs, before %d: %v", acked.Load(), n, incrErr)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d acknowledged INCRs after 10s, want %d", acked.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitAcked(100)
	began, before := time.Now(), acked.Load()
	if err := c.MigrateSlot(ctx, slot, to); err != nil {
		t.Fatalf("MigrateSlot: %v", err)
	}
	took, during := time.Since(began), acked.Load()-before
	waitAcked(acked.Load() + 100)
	close(stop)
	<-finished
	if incrErr != nil {
		t.Fatalf("the writer failed: %v", incrErr)
	}
	if during == 0 {
		t.Fatalf("no INCR was acknowledged during the migration (%v)", took)
	}

	// Some INCRs found the counter gone from the source and were sent on
	// to the new master with ASKING.
	asking := to.Info(ctx, "commandstats", "cmdstat_asking")
	if !strings.HasPrefix(asking, "calls=") || strings.HasPrefix(asking, "calls=0,") {
		t.Fatalf("the new master's cmdstat_asking = %q, want ASKING calls: no write went through an ASK redirection", asking)
	}
	if v, err := cc.Get(ctx, counter).Int64(); err != nil || v != acked.Load() {
		t.Fatalf("%s = %d, %v; want the %d acknowledged INCRs", counter, v, err, acked.Load())
	}
	if got, err := to.Client().ClusterKeySlot(ctx, counter).Result(); err != nil || got != int64(slot) {
		t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; want %d", counter, got, err, slot)
	}
	if now := c.MasterServing(slot); now != to {
		t.Fatalf("slot %d served by %s, want %s", slot, now.Addr(), to.Addr())
	}
	if n, err := to.Client().ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n != filled+1 {
		t.Fatalf("CLUSTER COUNTKEYSINSLOT on the new master = %d, %v; want %d", n, err, filled+1)
	}
	if n, err := src.Client().ClusterCountKeysInSlot(ctx, slot).Result(); err != nil || n != 0 {
		t.Fatalf("CLUSTER COUNTKEYSINSLOT on the old master = %d, %v; want 0", n, err)
	}
	gets := make([]*goredis.StringCmd, filled)
	if _, err := cc.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i := range gets {
			gets[i] = p.Get(ctx, fmt.Sprintf("{mig}:%d", i))
		}
		return nil
	}); err != nil {
		t.Fatalf("read the moved keys: %v", err)
	}
	for i, g := range gets {
		if v, err := g.Int(); err != nil || v != i {
			t.Fatalf("{mig}:%d = %d, %v; want %d", i, v, err, i)
		}
	}
	waitSlotsAgree(t, c.Masters(), slot, to.Addr())

	// KillPubSub closes a cluster subscriber's connection.
	ps := cc.Subscribe(ctx, "news")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE news: %v", err)
	}
	if n := c.KillPubSub(ctx); n != 1 {
		t.Fatalf("KillPubSub = %d, want 1", n)
	}
	calls, _, _ := strings.Cut(strings.TrimPrefix(asking, "calls="), ",")
	t.Logf("slot %d (%d keys) moved from %s to %s in %v; %d INCRs acknowledged during the migration (%s ASKING), %d in all",
		slot, filled+1, src.Addr(), to.Addr(), took.Round(time.Millisecond), during, calls, acked.Load())
}

// waitSlotsAgree waits (10s at most) until every master's CLUSTER SLOTS
// puts slot on the master at addr.
func waitSlotsAgree(t *testing.T, masters []*redistest.Server, slot int, addr string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		why := ""
		for _, m := range masters {
			cl := goredis.NewClient(&goredis.Options{Addr: m.Addr()})
			// CLUSTER SLOTS, deprecated in 7.0 for CLUSTER SHARDS, is still
			// what go-redis's cluster client routes by.
			//lint:ignore SA1019 the routing table clients read is the one to check
			ranges, err := cl.ClusterSlots(ctx).Result()
			cl.Close()
			if err != nil {
				why = fmt.Sprintf("%s: CLUSTER SLOTS: %v", m.Addr(), err)
				break
			}
			owner := ""
			for _, r := range ranges {
				if r.Start <= slot && slot <= r.End && len(r.Nodes) > 0 {
					owner = r.Nodes[0].Addr
				}
			}
			if owner != addr {
				why = fmt.Sprintf("%s puts slot %d on %q", m.Addr(), slot, owner)
				break
			}
		}
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the masters do not agree on slot %d after 10s: %s", slot, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
