package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// ClusterOptions shape a Redis Cluster.
type ClusterOptions struct {
	// Masters is how many masters share the 16384 slots. Default 3.
	Masters int
	// Replicas is how many replicas each master has. Default 1.
	Replicas int
	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before its replica is promoted. Default 1s (a test's
	// failover takes a few seconds, not the production default's 15).
	NodeTimeout time.Duration
	// AOF and Fsync are as in Options, for every node.
	AOF   bool
	Fsync string
}

// Cluster is a Redis Cluster of redis-server processes on loopback,
// formed with `redis-cli --cluster create`. Its nodes are stopped when the
// test ends.
type Cluster struct {
	t     testing.TB
	opts  ClusterOptions
	Nodes []*Server // masters first, as created; roles change on failover
}

// StartCluster starts Masters*(1+Replicas) nodes, forms the cluster and
// waits until every node reports cluster_state:ok with all slots served
// and every replica attached. redis-cli is required (apt-get install -y
// redis-tools).
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Masters <= 0 {
		opts.Masters = 3
	}
	if opts.Replicas < 0 {
		opts.Replicas = 0
	} else if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = time.Second
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is not installed (apt-get install -y redis-tools): %v", err)
	}
	c := &Cluster{t: t, opts: opts}
	n := opts.Masters * (1 + opts.Replicas)
	for range n {
		// A replica's first full sync starts at once, not after Redis 7.0's
		// 5s wait for more replicas: a replica that has never synced
		// refuses to take over (its data would be empty), so a failover
		// test must not begin before it has.
		c.Nodes = append(c.Nodes, Start(t, Options{AOF: opts.AOF, Fsync: opts.Fsync, ClusterNodeTimeout: opts.NodeTimeout,
			Args: []string{"--repl-diskless-sync-delay", "0"}}))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(opts.Replicas), "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// Addrs returns every node's host:port, the seed list a cluster client
// takes.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr()
	}
	return out
}

// Client returns a cluster client, closed when the test ends.
func (c *Cluster) Client() *goredis.ClusterClient {
	cc := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: c.Addrs()})
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// nodeClient is a plain client of one node, for CLUSTER commands.
func nodeClient(s *Server) *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 300 * time.Millisecond})
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	addr     string // host:port
	master   bool
	failed   bool // fail or fail? (suspected)
	masterID string
	id       string
	slots    []string // ranges as CLUSTER NODES prints them
	myself   bool     // the line of the node that answered
	epoch    int64    // config epoch
}

// nodes reads CLUSTER NODES from s.
func nodes(ctx context.Context, s *Server) ([]clusterNode, error) {
	cl := nodeClient(s)
	defer cl.Close()
	txt, err := cl.ClusterNodes(ctx).Result()
	if err != nil {
		return nil, err
	}
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(txt), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		epoch, _ := strconv.ParseInt(f[6], 10, 64)
		out = append(out, clusterNode{
			id: f[0], addr: addr, masterID: f[3],
			master: strings.Contains(f[2], "master"),
			failed: strings.Contains(f[2], "fail"),
			myself: strings.Contains(f[2], "myself"),
			epoch:  epoch,
			slots:  f[8:],
		})
	}
	return out, nil
}

// WaitHealthy waits until every running node says cluster_state:ok with
// all 16384 slots served by running masters, no running node is marked
// failed, and, while every node runs, each master has its
// ClusterOptions.Replicas replicas attached. After a node was stopped it
// waits for the failover: its slots on a promoted replica.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var why string
	for time.Now().Before(deadline) {
		why = c.unhealthy(ctx)
		if why == "" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("redistest: the cluster is not healthy after %v: %s", timeout, why)
}

// unhealthy says what keeps the cluster from being healthy ("" when it is).
func (c *Cluster) unhealthy(ctx context.Context) string {
	running := map[string]bool{}
	for _, s := range c.Nodes {
		if s.cmd != nil {
			running[s.Addr()] = true
		}
	}
	for _, s := range c.Nodes {
		if s.cmd == nil {
			continue
		}
		cl := nodeClient(s)
		ci, err := cl.ClusterInfo(ctx).Result()
		cl.Close()
		if err != nil {
			return fmt.Sprintf("%s: %v", s.Addr(), err)
		}
		if !strings.Contains(ci, "cluster_state:ok") || !strings.Contains(ci, "cluster_slots_ok:16384") {
			f := strings.Fields(ci)
			return fmt.Sprintf("%s: %s", s.Addr(), strings.Join(f[:min(3, len(f))], " "))
		}
		ns, err := nodes(ctx, s)
		if err != nil {
			return fmt.Sprintf("%s: CLUSTER NODES: %v", s.Addr(), err)
		}
		replicas := map[string]int{}
		for _, n := range ns {
			if n.failed && running[n.addr] {
				return fmt.Sprintf("%s sees running node %s as failed", s.Addr(), n.addr)
			}
			if !n.master && running[n.addr] {
				replicas[n.masterID]++
			}
		}
		for _, n := range ns {
			if n.master && len(n.slots) > 0 && !running[n.addr] {
				return fmt.Sprintf("%s: slots still on the stopped node %s", s.Addr(), n.addr)
			}
			if n.master && len(n.slots) > 0 && !n.failed && replicas[n.id] < c.opts.Replicas && len(running) == len(c.Nodes) {
				return fmt.Sprintf("%s: master %s has %d replicas, want %d", s.Addr(), n.addr, replicas[n.id], c.opts.Replicas)
			}
		}
		// A replica counts once it has synced with its master: until then
		// it would refuse a failover.
		if role, err := info(ctx, s.Addr(), "replication", "role"); err != nil {
			return fmt.Sprintf("%s: INFO replication: %v", s.Addr(), err)
		} else if role == "slave" {
			if link, _ := info(ctx, s.Addr(), "replication", "master_link_status"); link != "up" && len(running) == len(c.Nodes) {
				return fmt.Sprintf("%s: replica not synced with its master yet (link %s)", s.Addr(), link)
			}
		}
	}
	return ""
}

// MasterOf returns the node that serves key's slot now, as the running
// nodes' CLUSTER NODES say.
func (c *Cluster) MasterOf(key string) *Server {
	c.t.Helper()
	ctx := context.Background()
	for _, s := range c.Nodes {
		if s.cmd == nil {
			continue
		}
		cl := nodeClient(s)
		slot, err := cl.ClusterKeySlot(ctx, key).Result()
		cl.Close()
		if err != nil {
			continue
		}
		ns, err := nodes(ctx, s)
		if err != nil {
			continue
		}
		for _, n := range ns {
			if n.master && !n.failed && servesSlot(n.slots, slot) {
				return c.node(n.addr)
			}
		}
	}
	c.t.Fatalf("redistest: no node serves %q", key)
	return nil
}

// servesSlot says whether slot is in ranges as CLUSTER NODES prints them
// ("0-5460", "5461"; "[...]" entries, slots in migration, are skipped).
func servesSlot(ranges []string, slot int64) bool {
	for _, r := range ranges {
		if strings.HasPrefix(r, "[") {
			continue
		}
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.ParseInt(lo, 10, 64)
		b, err2 := strconv.ParseInt(hi, 10, 64)
		if err1 == nil && err2 == nil && a <= slot && slot <= b {
			return true
		}
	}
	return false
}

// node returns the node at addr.
func (c *Cluster) node(addr string) *Server {
	for _, s := range c.Nodes {
		if s.Addr() == addr {
			return s
		}
	}
	c.t.Fatalf("redistest: %s is not a node of the cluster", addr)
	return nil
}
