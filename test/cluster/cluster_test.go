package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/deploy/haproxy"
	"github.com/parley-chat/parley/internal/clienttest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

const (
	room    = "lobby"
	members = 60 // 20 per gateway: the kill -9 figures cover at least 20 clients
	// checkInterval and fall give a mark-down time of 0.6-0.8 s; the drain
	// spread stays under it, as in the compose deployment (3 s under 6 s).
	checkInterval = 200 * time.Millisecond
	drainSpread   = 300 * time.Millisecond
)

// cluster is redis-server (AOF, fsync always) + 3 gateways + haproxy with a
// fourth, spare server slot for a gateway started later.
type cluster struct {
	redis *redistest.Server
	gws   map[string]*proctest.Gateway
	spare string // address of the fourth slot
	lb    *proctest.HAProxy
	url   string
}

func startCluster(t *testing.T) *cluster {
	c := &cluster{redis: redistest.Start(t, redistest.Options{AOF: true}), gws: map[string]*proctest.Gateway{}}
	var addrs []string
	for i := 1; i <= 3; i++ {
		g := c.startGateway(t, fmt.Sprintf("gw-%d", i), "")
		addrs = append(addrs, g.Addr)
	}
	for _, g := range c.gws {
		g.WaitReady(20 * time.Second)
	}
	c.spare = proctest.FreeAddr(t)
	c.lb = proctest.StartHAProxy(t, haproxy.Params{
		CheckInterval: checkInterval, Fall: 3, Rise: 1,
		Servers: append(addrs, c.spare),
	})
	c.url = "ws://" + c.lb.Addr + "/ws"
	// The spare slot has no gateway yet: wait until haproxy says so, so
	// that every connection below lands on a live gateway at first try.
	c.lb.WaitLog(t, "gateways/gw3 is DOWN", 1, 10*time.Second)
	return c
}

func (c *cluster) startGateway(t *testing.T, node, addr string) *proctest.Gateway {
	g := proctest.StartGateway(t, proctest.GatewayOptions{
		Redis: c.redis.URL(), Node: node, Addr: addr,
		Args: []string{"--drain-spread", drainSpread.String(), "--drain-timeout", "10s"},
	})
	c.gws[node] = g
	return g
}

func byNode(ms []*clienttest.Member) map[string][]*clienttest.Member {
	out := map[string][]*clienttest.Member{}
	for _, m := range ms {
		out[m.Node()] = append(out[m.Node()], m)
	}
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

// TestCluster runs one cluster through the life a deployment sees: clients
// spread over gateways, a gateway killed, one drained, one added, and
// Redis restarted. After each step every client holds every message once,
// in order.
func TestCluster(t *testing.T) {
	c := startCluster(t)
	// Processes and clients started inside the steps below belong to the
	// whole test, not to the step: they are registered on top.
	top := t
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	var ms []*clienttest.Member
	for i := range members {
		ms = append(ms, clienttest.Dial(t, ctx, c.url, fmt.Sprintf("u%02d", i), room))
	}
	var seq int64 // the last acknowledged seq
	send := func(from *clienttest.Member, body string) {
		t.Helper()
		ack, err := from.Client.Send(ctx, room, body)
		if err != nil {
			t.Fatalf("%s send %q: %v", from.Name, body, err)
		}
		if ack.Seq != seq+1 {
			t.Fatalf("%s send %q: ack seq %d, want %d", from.Name, body, ack.Seq, seq+1)
		}
		seq = ack.Seq
	}
	pick := func(node string) *clienttest.Member {
		for _, m := range ms {
			if m.Node() == node {
				return m
			}
		}
		t.Fatalf("no client on %s", node)
		return nil
	}

	t.Run("clients land on every gateway", func(t *testing.T) {
		spread := byNode(ms)
		for _, n := range []string{"gw-1", "gw-2", "gw-3"} {
			if len(spread[n]) < members/3-2 {
				t.Errorf("%s serves %d of %d clients; leastconn should give each about %d", n, len(spread[n]), members, members/3)
			}
		}
		t.Logf("clients per gateway through haproxy: gw-1 %d, gw-2 %d, gw-3 %d", len(spread["gw-1"]), len(spread["gw-2"]), len(spread["gw-3"]))
	})

	t.Run("a message crosses gateways", func(t *testing.T) {
		from := pick("gw-1")
		send(from, "hello from gw-1")
		clienttest.WaitAll(t, ctx, ms, seq)
		to := pick("gw-2")
		if got := to.Body(seq); got != "hello from gw-1" {
			t.Fatalf("client on gw-2 got %q", got)
		}
	})

	t.Run("kill -9 of a gateway: its clients resume elsewhere", func(t *testing.T) {
		victims := byNode(ms)["gw-1"]
		if len(victims) < 20 {
			t.Fatalf("only %d clients on gw-1; the figures need at least 20", len(victims))
		}
		publisher := pick("gw-2")
		killed := time.Now()
		c.gws["gw-1"].Kill()
		for i := range 10 {
			send(publisher, fmt.Sprintf("while gw-1 is dead %d", i))
		}
		published := time.Since(killed)
		clienttest.WaitAll(t, ctx, ms, seq)
		var lags []time.Duration
		for _, v := range victims {
			if n := v.Node(); n == "gw-1" {
				t.Errorf("%s is still on gw-1", v.Name)
			}
			if j := v.LastJoin(); j.Recovered == nil || !*j.Recovered {
				t.Errorf("%s resumed with %+v, want recovered:true", v.Name, j)
			}
			lags = append(lags, v.At(seq).Sub(killed))
		}
		t.Logf("kill -9 catch-up: %d clients, p50 %v, max %v from SIGKILL until each has every message acknowledged since (the 10 sends took %v)",
			len(lags), percentile(lags, 0.5).Round(time.Millisecond), percentile(lags, 1).Round(time.Millisecond), published.Round(time.Millisecond))
		for _, m := range ms {
			m.Check(t, 1, seq)
		}
	})

	t.Run("SIGTERM drains with 1012 and exits 0", func(t *testing.T) {
		victims := byNode(ms)["gw-2"]
		if len(victims) == 0 {
			t.Fatal("no client on gw-2")
		}
		g := c.gws["gw-2"]
		g.Terminate()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		code, err := g.Wait(wctx)
		wcancel()
		if err != nil || code != 0 {
			t.Fatalf("gw-2 after SIGTERM: exit %d, %v; log:\n%s", code, err, g.Logs())
		}
		for _, v := range victims {
			if err := v.WaitMoved(ctx, "gw-2"); err != nil {
				t.Fatal(err)
			}
			if code, _ := v.LastClose(); code != websocket.StatusServiceRestart {
				t.Errorf("%s: connection closed with %v, want 1012", v.Name, code)
			}
		}
		send(pick("gw-3"), "after the drain")
		clienttest.WaitAll(t, ctx, ms, seq)
		for _, m := range ms {
			m.Check(t, 1, seq)
			if m.Node() != "gw-3" {
				t.Errorf("%s is on %s; only gw-3 is left", m.Name, m.Node())
			}
		}
	})

	t.Run("a gateway started later receives new connections", func(t *testing.T) {
		g := c.startGateway(top, "gw-4", c.spare)
		g.WaitReady(20 * time.Second)
		c.lb.WaitLog(t, "gateways/gw3 is UP", 1, 10*time.Second)
		// gw-3 holds every client, gw-4 none: leastconn sends the next
		// connections to gw-4.
		for i := range 5 {
			m := clienttest.Dial(top, ctx, c.url, fmt.Sprintf("late%d", i), room)
			if m.Node() != "gw-4" {
				t.Errorf("new client %d landed on %s, want gw-4", i, m.Node())
			}
			if err := m.WaitSeq(ctx, seq); err != nil { // the backlog
				t.Fatal(err)
			}
			m.Check(t, 1, seq)
			ms = append(ms, m)
		}
		send(pick("gw-4"), "from the new gateway")
		clienttest.WaitAll(t, ctx, ms, seq)
	})

	t.Run("a frozen gateway's clients are moved on by the load balancer", func(t *testing.T) {
		g := c.gws["gw-4"]
		victims := byNode(ms)["gw-4"]
		if len(victims) == 0 {
			t.Fatal("no client on gw-4")
		}
		g.Freeze()
		// Its /readyz checks time out, haproxy marks it down and, with
		// on-marked-down shutdown-sessions, cuts its sessions.
		c.lb.WaitLog(t, "gateways/gw3 is DOWN", 2, 10*time.Second)
		for _, v := range victims {
			if err := v.WaitMoved(ctx, "gw-4"); err != nil {
				t.Fatal(err)
			}
		}
		send(pick("gw-3"), "while gw-4 is frozen")
		clienttest.WaitAll(t, ctx, ms, seq)
		for _, m := range ms {
			m.Check(t, 1, seq)
		}
		g.Thaw()
		g.WaitReady(20 * time.Second)
	})

	t.Run("Redis restarted with AOF keeps every acknowledged message", func(t *testing.T) {
		c.redis.Restart()
		for _, n := range []string{"gw-3", "gw-4"} {
			c.gws[n].WaitReady(20 * time.Second)
		}
		send(pick("gw-3"), "after the Redis restart")
		clienttest.WaitAll(t, ctx, ms, seq)
		// check also fails on an epoch change or a recovered:false resume:
		// AOF kept the room, so neither may happen.
		for _, m := range ms { // the late joiners got the whole backlog
			m.Check(t, 1, seq)
		}
		hist, err := ms[0].Client.History(ctx, room, seq+1, 200)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(hist)) != seq || hist[0].Seq != 1 || hist[len(hist)-1].Seq != seq {
			t.Fatalf("history after the restart has %d messages, want seqs 1..%d", len(hist), seq)
		}
	})
}
