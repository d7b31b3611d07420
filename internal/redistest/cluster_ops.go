package redistest

import (
	"context"
	"fmt"
	"net"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/broker/redis"
)

// Slot returns key's Redis Cluster hash slot, as CLUSTER KEYSLOT does: the
// broker's own computation (redis.Slot), which TestSlot checks against a
// real Redis.
func Slot(key string) int { return redis.Slot(key) }

// self reads s's own line of CLUSTER NODES.
func self(ctx context.Context, s *Server) (clusterNode, error) {
	ns, err := nodes(ctx, s)
	if err != nil {
		return clusterNode{}, fmt.Errorf("CLUSTER NODES on %s: %w", s.Addr(), err)
	}
	for _, n := range ns {
		if n.myself {
			return n, nil
		}
	}
	return clusterNode{}, fmt.Errorf("CLUSTER NODES on %s: no myself line", s.Addr())
}

// masterServing returns the running master that owns slot: of the running
// masters that say they serve it, the one with the highest config epoch,
// as the cluster itself settles a conflict.
func (c *Cluster) masterServing(ctx context.Context, slot int) (*Server, error) {
	var owner *Server
	var epoch int64
	for _, s := range c.Nodes {
		if s.cmd == nil {
			continue
		}
		n, err := self(ctx, s)
		if err != nil {
			return nil, err
		}
		if n.master && servesSlot(n.slots, int64(slot)) && (owner == nil || n.epoch > epoch) {
			owner, epoch = s, n.epoch
		}
	}
	if owner == nil {
		return nil, fmt.Errorf("no running master serves slot %d", slot)
	}
	return owner, nil
}

// masters returns the running nodes that say they are masters.
func (c *Cluster) masters(ctx context.Context) ([]*Server, error) {
	var out []*Server
	for _, s := range c.Nodes {
		if s.cmd == nil {
			continue
		}
		n, err := self(ctx, s)
		if err != nil {
			return nil, err
		}
		if n.master {
			out = append(out, s)
		}
	}
	return out, nil
}

// MasterServing returns the master that owns slot now, as the running
// nodes' CLUSTER NODES say: of the masters that say they serve it, the
// one with the highest config epoch (during a migration both ends may
// claim the slot for a moment; the cluster settles it the same way).
func (c *Cluster) MasterServing(slot int) *Server {
	c.t.Helper()
	s, err := c.masterServing(context.Background(), slot)
	if err != nil {
		c.t.Fatalf("redistest: the master of slot %d: %v", slot, err)
	}
	return s
}

// Masters returns the running nodes that are masters now, in the order of
// Nodes.
func (c *Cluster) Masters() []*Server {
	c.t.Helper()
	ms, err := c.masters(context.Background())
	if err != nil {
		c.t.Fatalf("redistest: the masters: %v", err)
	}
	return ms
}

// MigrateSlot moves slot, with its keys, from the master that serves it to
// the master to, as `redis-cli --cluster reshard` does: CLUSTER SETSLOT
// IMPORTING on to, MIGRATING on the source, MIGRATE of the slot's keys 100
// at a time, then SETSLOT NODE on to, on the source and on every other
// master. Clients may go on using the slot's keys meanwhile: the source
// answers -ASK for a key it no longer has, and to serves it after ASKING.
// Moving a slot to the master that has it does nothing.
func (c *Cluster) MigrateSlot(ctx context.Context, slot int, to *Server) error {
	if slot < 0 || slot >= 16384 {
		return fmt.Errorf("redistest: migrate slot %d: no such slot", slot)
	}
	src, err := c.masterServing(ctx, slot)
	if err != nil {
		return fmt.Errorf("redistest: migrate slot %d: %w", slot, err)
	}
	if src == to {
		return nil
	}
	dst, err := self(ctx, to)
	if err != nil {
		return fmt.Errorf("redistest: migrate slot %d: %w", slot, err)
	}
	if !dst.master {
		return fmt.Errorf("redistest: migrate slot %d: %s is not a master", slot, to.Addr())
	}
	from, err := self(ctx, src)
	if err != nil {
		return fmt.Errorf("redistest: migrate slot %d: %w", slot, err)
	}
	tc := nodeClient(to)
	defer tc.Close()
	// MIGRATE waits up to its 5s timeout for to: read longer than that.
	sc := goredis.NewClient(&goredis.Options{Addr: src.Addr(), MaxRetries: -1,
		DialTimeout: 300 * time.Millisecond, ReadTimeout: 10 * time.Second})
	defer sc.Close()
	setslot := func(cl *goredis.Client, args ...any) error {
		cmd := append([]any{"CLUSTER", "SETSLOT", slot}, args...)
		if err := cl.Do(ctx, cmd...).Err(); err != nil {
			return fmt.Errorf("redistest: migrate slot %d: CLUSTER SETSLOT %d %v on %s: %w",
				slot, slot, args, cl.Options().Addr, err)
		}
		return nil
	}
	if err := setslot(tc, "IMPORTING", from.id); err != nil {
		return err
	}
	if err := setslot(sc, "MIGRATING", dst.id); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(to.Addr())
	if err != nil {
		return fmt.Errorf("redistest: migrate slot %d: %w", slot, err)
	}
	for {
		keys, err := sc.ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			return fmt.Errorf("redistest: migrate slot %d: CLUSTER GETKEYSINSLOT on %s: %w", slot, src.Addr(), err)
		}
		if len(keys) == 0 {
			break
		}
		cmd := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			cmd = append(cmd, k)
		}
		if err := sc.Do(ctx, cmd...).Err(); err != nil {
			return fmt.Errorf("redistest: migrate slot %d: MIGRATE %d keys from %s to %s: %w",
				slot, len(keys), src.Addr(), to.Addr(), err)
		}
	}
	if err := setslot(tc, "NODE", dst.id); err != nil {
		return err
	}
	if err := setslot(sc, "NODE", dst.id); err != nil {
		return err
	}
	ms, err := c.masters(ctx)
	if err != nil {
		return fmt.Errorf("redistest: migrate slot %d: %w", slot, err)
	}
	for _, m := range ms {
		if m == src || m == to {
			continue
		}
		mc := nodeClient(m)
		err := setslot(mc, "NODE", dst.id)
		mc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// KillPubSub closes every pub/sub connection on every running node (CLIENT
// KILL TYPE pubsub) and returns how many were killed in all.
func (c *Cluster) KillPubSub(ctx context.Context) int64 {
	c.t.Helper()
	var n int64
	for _, s := range c.Nodes {
		if s.cmd != nil {
			n += s.KillPubSub(ctx)
		}
	}
	return n
}
