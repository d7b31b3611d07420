package redistest_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/redistest"
)

// A master, its replica and three sentinels: a write through the failover
// client reaches the replica (WAIT); the master is killed (-9), the
// sentinels promote the replica, a new failover client reads the write,
// and the first client goes on working against the new master.
func TestSentinelFailover(t *testing.T) {
	start := time.Now()
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	started := time.Since(start)
	if len(s.Replicas) != 1 || len(s.Sentinels) != 3 || len(s.Addrs()) != 3 {
		t.Fatalf("%d replicas, %d sentinels, %d addrs; want 1, 3, 3", len(s.Replicas), len(s.Sentinels), len(s.Addrs()))
	}
	ctx := context.Background()
	old := s.Master.Addr()
	if addr, err := s.MasterAddr(ctx); err != nil || addr != old {
		t.Fatalf("MasterAddr = %q, %v; want %s", addr, err, old)
	}
	if addr := s.WaitMaster("", 10*time.Second); addr != old {
		t.Fatalf("WaitMaster(\"\") = %s, want the master %s", addr, old)
	}

	cl := s.Client()
	var wait *goredis.Cmd
	if _, err := cl.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.Set(ctx, "k", "replicated", 0)
		wait = p.Do(ctx, "WAIT", 1, 1000) // on the SET's connection, to the master
		return nil
	}); err != nil {
		t.Fatalf("SET k + WAIT: %v", err)
	}
	if n, err := wait.Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 1000 = %d, %v; want 1 replica", n, err)
	}
	if v, err := s.Replicas[0].Client().Get(ctx, "k").Result(); err != nil || v != "replicated" {
		t.Fatalf("GET k on the replica = %q, %v; want replicated", v, err)
	}

	killed := time.Now()
	s.Master.Stop()
	addr := s.WaitMaster(old, 30*time.Second)
	failover := time.Since(killed)
	if s.Server(addr) != s.Replicas[0] {
		t.Fatalf("new master %s, want the replica %s", addr, s.Replicas[0].Addr())
	}
	if now, err := s.MasterAddr(ctx); err != nil || now != addr {
		t.Fatalf("MasterAddr after the failover = %q, %v; want %s", now, err, addr)
	}
	if v, err := s.Client().Get(ctx, "k").Result(); err != nil || v != "replicated" {
		t.Fatalf("GET k through a new failover client = %q, %v; want replicated", v, err)
	}

	// The first client finds the new master too, within a bounded time.
	deadline := time.Now().Add(15 * time.Second)
	for tries := 1; ; tries++ {
		var v string
		err := cl.Set(ctx, "after", "failover", 0).Err()
		if err == nil {
			if v, err = cl.Get(ctx, "after").Result(); err == nil && v == "failover" {
				t.Logf("the first failover client wrote and read after %d tries", tries)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first failover client still fails 15s after the failover: GET after = %q, %v", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v, err := s.Server(addr).Client().Get(ctx, "after").Result(); err != nil || v != "failover" {
		t.Fatalf("GET after on the new master = %q, %v; want failover", v, err)
	}
	t.Logf("sentinel setup (1 master, 1 replica, 3 sentinels) ready in %v", started.Round(time.Millisecond))
	t.Logf("sentinel failover: new master after %v", failover.Round(time.Millisecond))
}
