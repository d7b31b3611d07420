package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/deploy/haproxy"
	"github.com/parley-chat/parley/internal/faultproxy"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
)

const (
	// checkInterval and fall give haproxy a mark-down time of 0.6-0.8 s
	// (production: 2 s and 3, so 6 s); drainSpread stays under it, as in
	// production (3 s under 6 s), so a draining gateway's clients get their
	// 1012 before haproxy would cut them.
	checkInterval = 200 * time.Millisecond
	fall          = 3
	rise          = 2
	drainSpread   = 300 * time.Millisecond
	gateways      = 3
)

// RedisKind says what kind of Redis a cluster's gateways run on.
type RedisKind int

const (
	// RedisSingle is one redis-server, named by --redis (the default).
	RedisSingle RedisKind = iota
	// RedisCluster is a Redis Cluster of 3 masters with 1 replica each
	// (cluster-node-timeout 1s), named by --redis-cluster with every node's
	// address.
	RedisCluster
	// RedisSentinel is a master, 1 replica and 3 Sentinels
	// (down-after-milliseconds 1s), named by --redis-sentinel.
	RedisSentinel
)

func (k RedisKind) String() string {
	switch k {
	case RedisSingle:
		return "single"
	case RedisCluster:
		return "cluster"
	case RedisSentinel:
		return "sentinel"
	}
	return fmt.Sprintf("RedisKind(%d)", int(k))
}

// ClusterOptions vary the cluster a scenario starts.
type ClusterOptions struct {
	// Redis is the kind of Redis the gateways run on. Default RedisSingle.
	// Every kind persists with an append-only file, appendfsync everysec.
	Redis RedisKind
	// ProxiedGateway, when 1..3, is the gateway whose --redis URL points
	// at a faultproxy in front of Redis (Cluster.RedisProxy), so that the
	// link between that gateway and Redis can be blackholed. RedisSingle
	// only.
	ProxiedGateway int
}

// Cluster is Redis (by default one redis-server; see RedisKind), three
// `parley serve` processes (gw-1, gw-2, gw-3) and haproxy in front of them,
// all on loopback, owned by one test. Every Redis node keeps an append-only
// file with appendfsync everysec.
type Cluster struct {
	t testing.TB
	// Redis is the redis-server of RedisSingle (nil otherwise).
	Redis *redistest.Server
	// RedisCluster is the Redis Cluster of RedisCluster (nil otherwise).
	RedisCluster *redistest.Cluster
	// Sentinel is the master, replica and Sentinels of RedisSentinel (nil
	// otherwise).
	Sentinel   *redistest.Sentinel
	RedisProxy *faultproxy.Proxy // with ClusterOptions.ProxiedGateway
	Gateways   []*proctest.Gateway
	started    []*proctest.Gateway // every gateway process, replaced ones too
	LB         *proctest.HAProxy
	// URL is the WebSocket endpoint through haproxy.
	URL  string
	opts ClusterOptions
}

// StartCluster starts a cluster and returns once every gateway is ready
// and haproxy accepts connections. Every process is killed when t ends.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	c := &Cluster{t: t, opts: opts}
	switch opts.Redis {
	case RedisSingle:
		c.Redis = redistest.Start(t, redistest.Options{AOF: true, Fsync: "everysec"})
	case RedisCluster:
		c.RedisCluster = redistest.StartCluster(t, redistest.ClusterOptions{
			Masters: 3, Replicas: 1, NodeTimeout: time.Second, AOF: true, Fsync: "everysec",
		})
	case RedisSentinel:
		c.Sentinel = redistest.StartSentinel(t, redistest.SentinelOptions{
			Replicas: 1, Sentinels: 3, DownAfter: time.Second, AOF: true, Fsync: "everysec",
		})
	default:
		t.Fatalf("faults: unknown Redis kind %v", opts.Redis)
	}
	if opts.ProxiedGateway > 0 && opts.Redis != RedisSingle {
		t.Fatalf("faults: ProxiedGateway needs RedisSingle, not %v", opts.Redis)
	}
	if opts.ProxiedGateway > 0 {
		p, err := faultproxy.Start(c.Redis.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		c.RedisProxy = p
	}
	var addrs []string
	for i := range gateways {
		g := c.startGateway(i, proctest.FreeAddr(t))
		c.Gateways = append(c.Gateways, g)
		addrs = append(addrs, g.Addr)
	}
	for _, g := range c.Gateways {
		g.WaitReady(20 * time.Second)
	}
	c.LB = proctest.StartHAProxy(t, haproxy.Params{
		CheckInterval: checkInterval, Fall: fall, Rise: rise,
		Servers: addrs,
	})
	c.URL = "ws://" + c.LB.Addr + "/ws"
	return c
}

// Node is the node id of gateway i (0-based): gw-1, gw-2, gw-3.
func Node(i int) string { return fmt.Sprintf("gw-%d", i+1) }

func (c *Cluster) startGateway(i int, addr string) *proctest.Gateway {
	var redisURL string
	args := []string{"--drain-spread", drainSpread.String(), "--drain-timeout", "10s"}
	switch {
	case c.RedisCluster != nil:
		args = append(args, "--redis-cluster", strings.Join(c.RedisCluster.Addrs(), ","))
	case c.Sentinel != nil:
		args = append(args, "--redis-sentinel", c.Sentinel.Name+"@"+strings.Join(c.Sentinel.Addrs(), ","))
	case c.RedisProxy != nil && c.opts.ProxiedGateway == i+1:
		redisURL = "redis://" + c.RedisProxy.Addr() + "/0"
	default:
		redisURL = c.Redis.URL()
	}
	g := proctest.StartGateway(c.t, proctest.GatewayOptions{
		Redis: redisURL, Node: Node(i), Addr: addr, Args: args,
	})
	c.started = append(c.started, g)
	return g
}

// Store returns a client of the Redis the gateways use, for the Checker's
// reads of heads and histories: a plain client of the one redis-server, a
// cluster client, or a failover client that follows the master the
// Sentinels name. It is closed when the test ends.
func (c *Cluster) Store() goredis.UniversalClient {
	switch {
	case c.RedisCluster != nil:
		return c.RedisCluster.Client()
	case c.Sentinel != nil:
		return c.Sentinel.Client()
	default:
		return c.Redis.Client()
	}
}

// logLine is the part of a gateway's JSON log line the report reads.
type logLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// GatewayWarnings counts the warnings and errors every gateway process of
// the cluster logged, by level and message.
func (c *Cluster) GatewayWarnings() map[string]int {
	out := map[string]int{}
	for _, g := range c.started {
		for _, line := range strings.Split(g.Logs(), "\n") {
			var l logLine
			if json.Unmarshal([]byte(line), &l) != nil || (l.Level != "WARN" && l.Level != "ERROR") {
				continue
			}
			out[l.Level+" "+l.Msg]++
		}
	}
	return out
}

// serverName is haproxy's name for gateway i's server line.
func serverName(i int) string { return fmt.Sprintf("gateways/gw%d", i) }

// Replace starts a new gateway i on the address of the old one (which
// must have exited) and waits until it is ready and haproxy has marked it
// up again.
func (c *Cluster) Replace(ctx context.Context, i int) error {
	old := c.Gateways[i]
	select {
	case <-old.Exited():
	default:
		return fmt.Errorf("replace %s: the old process is still running", old.Node)
	}
	called := time.Now() // the old process exited before this
	g := c.startGateway(i, old.Addr)
	c.Gateways[i] = g
	if err := waitReady(ctx, g); err != nil {
		return err
	}
	// haproxy marks the old process down only after fall failed checks, so
	// whether it did is known a check interval later. Then the server is up
	// again once its UP lines have caught up with its DOWN lines.
	settle := called.Add((fall + 1) * checkInterval)
	if !sleepCtx(ctx, time.Until(settle)) {
		return fmt.Errorf("replace %s: %w", g.Node, ctx.Err())
	}
	for c.serverDown(i) {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("replace %s: haproxy does not mark it up: %w", g.Node, ctx.Err())
		}
	}
	return nil
}

// serverDown reports whether haproxy's last word on gateway i's server was
// DOWN (servers start up).
func (c *Cluster) serverDown(i int) bool {
	re := regexp.MustCompile(`(?m)^Server ` + regexp.QuoteMeta(serverName(i)) + ` is (UP|DOWN)`)
	all := re.FindAllStringSubmatch(c.LB.Logs(), -1)
	return len(all) > 0 && all[len(all)-1][1] == "DOWN"
}

// waitReady waits until the gateway's /readyz answers 200.
func waitReady(ctx context.Context, g *proctest.Gateway) error {
	for g.Status("/readyz") != http.StatusOK {
		select {
		case <-g.Exited():
			return fmt.Errorf("%s exited while starting; log:\n%s", g.Node, g.Logs())
		default:
		}
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return fmt.Errorf("%s not ready: %w", g.Node, ctx.Err())
		}
	}
	return nil
}

// frontendLine matches haproxy's httplog line of a request to the
// frontend and captures its status code:
//
//	127.0.0.1:40000 [22/Nov/2026:10:00:00.000] parley gateways/gw0 0/0/0/1/1 101 ...
var frontendLine = regexp.MustCompile(`\] parley \S+ \S+ (\d{3}) `)

// LBStatuses counts haproxy's logged responses by HTTP status, and keeps
// the first log line of each status other than 101 and 503 (the expected
// upgrade and the expected refusal) for the report.
func (c *Cluster) LBStatuses() (map[string]int, map[string]string) {
	out, odd := map[string]int{}, map[string]string{}
	for _, line := range strings.Split(c.LB.Logs(), "\n") {
		if m := frontendLine.FindStringSubmatch(line); m != nil {
			out[m[1]]++
			if _, ok := odd[m[1]]; !ok && m[1] != "101" && m[1] != "503" {
				odd[m[1]] = strings.TrimSpace(line)
			}
		}
	}
	return out, odd
}

// downLine matches haproxy's log line of a server marked down (each event
// is also printed once more as a [WARNING] line, not counted).
var downLine = regexp.MustCompile(`(?m)^Server gateways/\S+ is DOWN`)

// DownEvents counts the times haproxy marked a gateway down.
func (c *Cluster) DownEvents() int { return len(downLine.FindAllString(c.LB.Logs(), -1)) }
