package redistest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/redistest"
)

// A cluster of 3 masters and 3 replicas forms and serves keys on every
// shard; when the master of a key is killed (-9), its replica is promoted
// and serves the key's acknowledged, replicated write.
func TestClusterFailover(t *testing.T) {
	start := time.Now()
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	formed := time.Since(start)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	ctx := context.Background()
	cc := c.Client()
	masters := map[string]bool{}
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		masters[c.MasterOf(k).Addr()] = true
	}
	if len(masters) != 3 {
		t.Fatalf("30 keys live on %d masters, want 3", len(masters))
	}
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		if v, err := cc.Get(ctx, k).Int(); err != nil || v != i {
			t.Fatalf("GET %s = %d, %v; want %d", k, v, err, i)
		}
	}

	// The key's write reached its replica (WAIT), then its master dies.
	old := c.MasterOf("k7")
	if err := cc.Set(ctx, "k7", "replicated", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := old.Client().Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v; want 1 replica", n, err)
	}
	killed := time.Now()
	old.Stop()
	c.WaitHealthy(30 * time.Second)
	failover := time.Since(killed)
	if now := c.MasterOf("k7"); now == old {
		t.Fatalf("k7 still served by the killed node %s", old.Addr())
	}
	fresh := c.Client()
	if v, err := fresh.Get(ctx, "k7").Result(); err != nil || v != "replicated" {
		t.Fatalf("GET k7 after the failover = %q, %v; want replicated", v, err)
	}
	t.Logf("cluster of 6 formed in %v; a master killed -9, its replica promoted and the cluster ok in %v",
		formed.Round(time.Millisecond), failover.Round(time.Millisecond))
}
