package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/faultproxy"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/pkg/protocol"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// The steady traffic of most scenarios: 45 clients over 3 rooms, 15
// messages per second in all (each client about one every 3 s).
const (
	clients = 45
	rooms   = 3
	rate    = 15
	warm    = 2 * time.Second // the baseline window before the fault
	after   = 3 * time.Second // traffic after the fault, before the end checks
)

// TestFaults runs every scenario, each on a cluster of its own, one after
// the other, and prints the summary table at the end.
func TestFaults(t *testing.T) {
	var tb table
	defer func() { t.Logf("fault suite summary (soak x%d):\n%s", soak(), tb.String()) }()
	for _, sc := range []struct {
		name string
		run  func(t *testing.T, ctx context.Context) *Result
	}{
		{"kill-9-gateway", killGateway},
		{"sigterm-gateway", sigtermGateway},
		{"rolling-restart", rollingRestart},
		{"pubsub-killed", pubsubKilled},
		{"redis-stall-8s", func(t *testing.T, ctx context.Context) *Result { return redisStall(t, ctx, 8*time.Second) }},
		{"redis-stall-15s", func(t *testing.T, ctx context.Context) *Result { return redisStall(t, ctx, 15*time.Second) }},
		{"redis-kill-9-aof", redisKill},
		{"redis-data-lost", redisDataLost},
		{"redis-link-blackhole-6s", redisBlackhole},
		{"slow-consumer-of-300", slowConsumer},
		{"reconnect-storm-2000", reconnectStorm},
		{"rate-90pct-redis-stall", rateThroughStall},
		{"cluster-master-kill-9", clusterMasterKill},
		{"cluster-slot-migration", clusterSlotMigration},
		{"cluster-pubsub-killed", clusterPubsubKilled},
		{"sentinel-master-kill-9", sentinelMasterKill},
	} {
		t.Run(sc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute+phase(time.Minute))
			defer cancel()
			start := time.Now()
			r := sc.run(t, ctx)
			if r == nil {
				return
			}
			r.note("took %v", time.Since(start).Round(100*time.Millisecond))
			tb.add(r)
			t.Logf("%s\n%s", strings.Join(header, " | "), r.Row())
		})
	}
}

// standard starts a cluster's steady traffic: the standard fleet, its
// traffic and the baseline window.
func standard(t *testing.T, ctx context.Context, c *Cluster, name string) (*Fleet, *Traffic) {
	t.Helper()
	f := StartFleet(t, ctx, c, FleetOptions{Name: name, Clients: clients, Rooms: rooms})
	tr := f.StartTraffic(TrafficOptions{Name: name, Senders: f.Members, Rate: rate})
	f.Checker.WarmStart()
	f.Steady(ctx, warm)
	return f, tr
}

// finish runs the end checks, adds haproxy's 503 count and applies the
// shared assertions.
func finish(t *testing.T, ctx context.Context, c *Cluster, f *Fleet, name string, trs ...*Traffic) *Result {
	t.Helper()
	f.Steady(ctx, after)
	r := f.Checker.Finish(ctx, name, trs...)
	statuses, odd := c.LBStatuses()
	r.LB503 = statuses["503"]
	for _, st := range sortedKeys(odd) {
		r.note("haproxy answered %d upgrades with %s, e.g. %s", statuses[st], st, odd[st])
	}
	if w := c.GatewayWarnings(); len(w) > 0 {
		var parts []string
		for _, k := range sortedKeys(w) {
			parts = append(parts, fmt.Sprintf("%q x%d", k, w[k]))
		}
		r.note("gateway log: %s", strings.Join(parts, ", "))
	}
	if n := c.DownEvents(); n > 0 {
		r.note("haproxy marked a gateway down %d times", n)
	}
	r.check(t)
	return r
}

// notOn is a Healthy predicate: Members not on node when the fault began.
func notOn(node string) func(*Member) bool {
	return func(m *Member) bool { return m.faultNode() != node }
}

func faultEnd(t *testing.T, ctx context.Context, f *Fleet) {
	t.Helper()
	if err := f.Checker.FaultEnd(ctx); err != nil {
		t.Fatal(err)
	}
}

// 1. kill -9 of one gateway: its clients reconnect through haproxy to the
// others and resume.
func killGateway(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "kill9")
	victim := Node(0)
	victims := f.On(victim)
	f.Checker.Healthy = notOn(victim)
	f.Checker.FaultStart()
	c.Gateways[0].Kill()
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "kill-9-gateway", tr)
	moved := 0
	for _, m := range victims {
		if m.Node() != victim {
			moved++
		}
	}
	r.note("%d clients on %s, %d moved", len(victims), victim, moved)
	if moved != len(victims) {
		t.Errorf("%d of %d clients of the killed gateway did not move", len(victims)-moved, len(victims))
	}
	return r
}

// drainExpectations are scenario 2's: no reconnect gets HTTP 503 through
// haproxy, and a client closed with 1012 has resumed within 1 s (p99).
func drainExpectations(t *testing.T, r *Result) {
	t.Helper()
	if n := r.DialFails[503]; n != 0 || r.LB503 != 0 {
		t.Errorf("%s: reconnect attempts answered 503: %d seen by clients, %d in haproxy's log; want 0", r.Scenario, n, r.LB503)
	}
	if r.Resumes1012 == 0 {
		t.Errorf("%s: no client was closed with 1012", r.Scenario)
	} else if r.Resume1012P99 >= time.Second {
		t.Errorf("%s: p99 from a 1012 close to the resumed connection is %v over %d resumes, want < 1s", r.Scenario, r.Resume1012P99, r.Resumes1012)
	}
}

// 2a. SIGTERM of one gateway: it drains with 1012 spread under haproxy's
// mark-down time; its clients resume elsewhere.
func sigtermGateway(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "term")
	g := c.Gateways[0]
	f.Checker.Healthy = notOn(g.Node)
	f.Checker.FaultStart()
	g.Terminate()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	code, err := g.Wait(wctx)
	cancel()
	if err != nil || code != 0 {
		t.Fatalf("%s after SIGTERM: exit %d, %v", g.Node, code, err)
	}
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "sigterm-gateway", tr)
	drainExpectations(t, r)
	return r
}

// 2b. A rolling restart: SIGTERM one gateway, start its replacement on
// the same address, wait until haproxy has it up, then the next.
func rollingRestart(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "roll")
	f.Checker.FaultStart()
	for round := range reps(1) {
		for i := range gateways {
			g := c.Gateways[i]
			g.Terminate()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			code, err := g.Wait(wctx)
			if err != nil || code != 0 {
				cancel()
				t.Fatalf("round %d: %s after SIGTERM: exit %d, %v", round, g.Node, code, err)
			}
			err = c.Replace(wctx, i)
			cancel()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "rolling-restart", tr)
	drainExpectations(t, r)
	return r
}

// 3. Every gateway's pub/sub connection killed (CLIENT KILL TYPE pubsub),
// a few times, under traffic: the gateways resubscribe and repair from
// history.
func pubsubKilled(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "pubsub")
	f.Checker.FaultStart()
	var killed []int64
	for i := range reps(4) {
		if i > 0 && !sleepCtx(ctx, 1500*time.Millisecond) {
			t.Fatal(ctx.Err())
		}
		killed = append(killed, c.Redis.KillPubSub(ctx))
	}
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "pubsub-killed", tr)
	r.note("pub/sub connections killed per round %v", killed)
	if r.Closes[closeTryLater] > 0 {
		t.Errorf("%d clients closed with 1013 after pub/sub kills: the gateways should repair from history", r.Closes[closeTryLater])
	}
	return r
}

// stallExpectations are scenario 4's and 10's: no connection closed by a
// gateway or cut by haproxy from the stall's start until a second after
// it.
func stallExpectations(t *testing.T, f *Fleet, r *Result) {
	t.Helper()
	start, end := f.Checker.window()
	cut := f.Checker.closesIn(start, end.Add(time.Second), serverCloses...)
	timeouts := f.Checker.closesIn(start, end.Add(time.Second), closeTimeout)
	r.note("during the stall: %d connections closed by the server or cut (%s), %d dropped by the SDK's AckTimeout",
		sum(cut), mapText(cut), timeouts[closeTimeout])
	if sum(cut) != 0 {
		t.Errorf("%s: %d connections closed by a gateway or cut by haproxy during the Redis stall (%s); want none: sends should get unavailable and be retried",
			r.Scenario, sum(cut), mapText(cut))
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// 4. Redis stopped (SIGSTOP) for d, then continued.
func redisStall(t *testing.T, ctx context.Context, d time.Duration) *Result {
	c := StartCluster(t, ClusterOptions{})
	name := fmt.Sprintf("stall%d", int(d.Seconds()))
	f, tr := standard(t, ctx, c, name)
	f.Checker.FaultStart()
	c.Redis.Freeze()
	if !sleepCtx(ctx, d) {
		c.Redis.Thaw()
		t.Fatal(ctx.Err())
	}
	c.Redis.Thaw()
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, fmt.Sprintf("redis-stall-%ds", int(d.Seconds())), tr)
	stallExpectations(t, f, r)
	return r
}

// 5. Redis killed (kill -9) and restarted on the same port and directory:
// the append-only file (fsync every second) brings every room back.
func redisKill(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "rkill")
	f.Checker.FaultStart()
	c.Redis.Restart()
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "redis-kill-9-aof", tr)
	if r.NotRecovered != 0 {
		t.Errorf("%d recovered:false after a Redis restart with its AOF", r.NotRecovered)
	}
	return r
}

// 6. Redis loses its data (restarted without its append-only files): the
// rooms start a new epoch, and every client in them is told with
// recovered:false; nothing else breaks.
func redisDataLost(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "wipe")
	f.Checker.DataLoss = true
	f.Checker.FaultStart()
	c.Redis.RestartWithoutData()
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "redis-data-lost", tr)
	if r.Excused == 0 {
		t.Errorf("no acknowledged message was lost with Redis's data: the scenario did not wipe anything")
	}
	return r
}

// 7. The link between one gateway and Redis blackholed for 6 s (nothing
// passes, nothing closes), with a hot room whose backlog on that
// gateway's pub/sub connection outgrows a connection's outbound queue (512
// frames): when the link heals the backlog lands at once.
func redisBlackhole(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{ProxiedGateway: 1})
	f, tr := standard(t, ctx, c, "hole")
	node := Node(0)
	local := f.On(node)
	f.Checker.Healthy = notOn(node)
	var hotSenders []*Member
	for _, m := range f.Members {
		if m.Rooms[0] == f.Rooms[0] && m.Node() != node {
			hotSenders = append(hotSenders, m)
		}
	}
	const hotRate = 110 // over 6 s: about 660 messages, more than 512
	if len(hotSenders) < 7 {
		t.Fatalf("only %d clients of %s off %s to send %d msgs/s under the rate limit", len(hotSenders), f.Rooms[0], node, hotRate)
	}
	f.Checker.FaultStart()
	hot := f.StartTraffic(TrafficOptions{Name: "hot", Senders: hotSenders, Rate: hotRate})
	if err := c.RedisProxy.Blackhole(ctx, 6*time.Second); err != nil {
		t.Fatal(err)
	}
	start, _ := f.Checker.window()
	stayed := 0 // clients of gw-1 not dropped since the fault began
	for _, m := range local {
		if f.Checker.dropsSince(m, start) == 0 {
			stayed++
		}
	}
	faultEnd(t, ctx, f)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	hot.Stop(sctx)
	cancel()
	r := finish(t, ctx, c, f, "redis-link-blackhole-6s", tr)
	closed := map[string]int{}
	for _, m := range local {
		m.mu.Lock()
		for _, cl := range m.closes {
			closed[cl.class]++
		}
		m.mu.Unlock()
	}
	r.note("%d clients on %s (%d in the hot room), %d still on it when the link healed; their drops: %s",
		len(local), node, countIn(local, f.Rooms[0]), stayed, mapText(closed))
	if closed[closeTryLater] > 0 {
		t.Errorf("%d fast readers on %s closed with 1013 when the backlog landed; want none", closed[closeTryLater], node)
	}
	// The backlog lands only on clients still connected to the gateway: if
	// haproxy cut them meanwhile, the check above saw nothing.
	if stayed < len(local) {
		t.Errorf("only %d of %d clients of %s were still on it when the link healed (haproxy cut the rest: %s): the backlog landed on nobody, so the 1013 expectation was not exercised",
			stayed, len(local), node, mapText(closed))
	}
	return r
}

func countIn(ms []*Member, room string) int {
	n := 0
	for _, m := range ms {
		if m.Rooms[0] == room {
			n++
		}
	}
	return n
}

// 8. A slow consumer among hundreds: 300 clients over 3 rooms, plus a hot
// room where 10 fast clients exchange 100 msgs/s of 4 KB and one raw
// client joined and stopped reading. The stalled one must be closed with
// 1013; nobody else may be closed, and the others keep their latency. The
// stalled client connects to gw-1 directly: through haproxy, its two more
// socket buffers (several MB on loopback) would hold minutes of the hot
// room before the gateway's queue filled, and the gateway's ping would
// drop the client first.
func slowConsumer(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f := StartFleet(t, ctx, c, FleetOptions{Name: "slow", Clients: 300, Rooms: rooms})
	tr := f.StartTraffic(TrafficOptions{Name: "slow", Senders: f.Members, Rate: rate})
	fire := "slow-fire"
	f.Rooms = append(f.Rooms, fire)
	fast, err := f.Add(ctx, "fire", 10, []string{fire})
	if err != nil {
		t.Fatal(err)
	}
	f.Checker.WarmStart()
	f.Steady(ctx, warm)

	const user = "slow-stalled"
	g := c.Gateways[0]
	s, err := dialStalled(ctx, "ws://"+g.Addr+"/ws", user, fire)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	f.Checker.FaultStart()
	hose := f.StartTraffic(TrafficOptions{Name: "fire", Senders: fast, Rate: 100, BodyBytes: 4000})
	// Wait for the gateway's own word that it closed the stalled client.
	closed := false
	for deadline := time.Now().Add(45 * time.Second); time.Now().Before(deadline); {
		if logged(g.Logs(), "closing slow consumer", user) {
			closed = true
			break
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			break
		}
	}
	took := time.Since(mustStart(f))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	hose.Stop(sctx)
	cancel()
	faultEnd(t, ctx, f)
	dctx, dcancel := context.WithTimeout(ctx, readDeadline)
	code, frames, derr := s.drain(dctx)
	dcancel()
	r := finish(t, ctx, c, f, "slow-consumer-of-300", tr)
	how := "never closed as a slow consumer"
	if closed {
		how = "closed as a slow consumer"
	}
	r.note("stalled client %s after %v; it then read %d frames and %s",
		how, took.Round(100*time.Millisecond), frames, closeText(code, derr))
	if !closed {
		t.Errorf("the stalled client was not closed as a slow consumer within 45 s")
	}
	if code != websocket.StatusTryAgainLater && code != -1 {
		t.Errorf("the stalled client's connection ended with %v, want 1013 (or no close frame: the gateway cannot write one to a full socket)", code)
	}
	if n := sum(r.Closes); n != 0 {
		t.Errorf("%d other clients' connections were closed (%s); want none", n, r.closesText())
	}
	if limit := max(4*r.P99Base, 500*time.Millisecond); r.P99Fault > limit {
		t.Errorf("the others' p99 went from %v to %v while the stalled client filled up; want at most %v", r.P99Base, r.P99Fault, limit)
	}
	return r
}

// logged reports whether a gateway's JSON log has a line with msg about
// user.
func logged(logs, msg, user string) bool {
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"`+msg+`"`) && strings.Contains(line, `"user":"`+user+`"`) {
			return true
		}
	}
	return false
}

func mustStart(f *Fleet) time.Time {
	start, _ := f.Checker.window()
	return start
}

func closeText(code websocket.StatusCode, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case code == -1:
		return "the connection ended without a close frame"
	default:
		return fmt.Sprintf("the close code was %d", int(code))
	}
}

// 9. A reconnect storm: 2000 clients over 20 rooms, connected through a
// proxy in front of haproxy, all cut at once; they reconnect and resume.
func reconnectStorm(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	p, err := faultproxy.Start(c.LB.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	dialStart := time.Now()
	f := StartFleet(t, ctx, c, FleetOptions{Name: "storm", Clients: 2000, Rooms: 20, URL: "ws://" + p.Addr() + "/ws", Buffer: 64, Concurrency: 64})
	dialed := time.Since(dialStart)
	tr := f.StartTraffic(TrafficOptions{Name: "storm", Senders: f.Members, Rate: 20})
	f.Checker.WarmStart()
	f.Steady(ctx, warm)
	f.Checker.FaultStart()
	cut := p.Cut()
	faultEnd(t, ctx, f)
	f.Steady(ctx, 2*time.Second)
	r := finish(t, ctx, c, f, "reconnect-storm-2000", tr)
	var took []time.Duration
	for _, m := range f.Members {
		m.mu.Lock()
		for _, ev := range m.resumes {
			took = append(took, ev.took)
		}
		m.mu.Unlock()
	}
	r.note("dialed 2000 in %v; %d connections cut at once; %d resumes, p50 %v, p99 %v, max %v",
		dialed.Round(100*time.Millisecond), cut, len(took), ms(percentile(took, 0.5)), ms(percentile(took, 0.99)), ms(percentile(took, 1)))
	if len(took) < cut {
		t.Errorf("%d resumes after %d cuts", len(took), cut)
	}
	return r
}

// 10. A client sending at 90% of its rate limit (18 of 20 frames/s)
// through a Redis stall of 8 s: it gets no rate_limited error, is not
// closed, and every one of its sends is acknowledged exactly once.
func rateThroughStall(t *testing.T, ctx context.Context) *Result {
	c := StartCluster(t, ClusterOptions{})
	f, tr := standard(t, ctx, c, "rate")
	ms, err := f.Add(ctx, "rate-fast", 1, []string{f.Rooms[0]})
	if err != nil {
		t.Fatal(err)
	}
	fast := ms[0]
	ftr := f.StartTraffic(TrafficOptions{Name: "fast", Senders: ms, Rate: 18})
	// A raw client that does not wait for its acks (the SDK does): its
	// frames keep arriving at 18/s while the gateway waits on Redis.
	pc, err := dialPacer(ctx, c.URL, "rate-pacer", "pace", 18)
	if err != nil {
		t.Fatal(err)
	}
	const paced = 18 * 14 // 14 s at 18/s: before, through and after the stall
	paceDone := make(chan error, 1)
	go func() { paceDone <- pc.run(ctx, paced) }()
	f.Steady(ctx, warm)
	f.Checker.FaultStart()
	c.Redis.Freeze()
	if !sleepCtx(ctx, 8*time.Second) {
		c.Redis.Thaw()
		t.Fatal(ctx.Err())
	}
	c.Redis.Thaw()
	faultEnd(t, ctx, f)
	r := finish(t, ctx, c, f, "rate-90pct-redis-stall", tr, ftr)
	stallExpectations(t, f, r)

	sent, acked, retried := 0, 0, 0
	for _, rec := range f.Checker.ledger.snapshot() {
		if rec.user == fast.Name {
			sent++
			if rec.acked {
				acked++
			}
			retried += rec.attempts
		}
	}
	fast.mu.Lock()
	rateLimited := fast.errs["rate_limited"]
	var closes []string
	for _, cl := range fast.closes {
		closes = append(closes, cl.class)
	}
	fast.mu.Unlock()
	r.note("the 18/s client: %d sends, %d acked, %d error answers retried, %d rate_limited, drops %v", sent, acked, retried, rateLimited, closes)
	if rateLimited != 0 {
		t.Errorf("the 18/s client got %d rate_limited errors; want none", rateLimited)
	}
	if len(closes) != 0 {
		t.Errorf("the 18/s client's connection dropped %d times (%v); want never", len(closes), closes)
	}
	if acked != sent {
		t.Errorf("the 18/s client: %d of %d sends acknowledged", acked, sent)
	}

	perr := <-paceDone
	pc.mu.Lock()
	pLimited, pUnavail, pAcked, pOther, pClosed := pc.rateLimited, pc.unavailable, len(pc.acked), pc.other, pc.closed
	pc.mu.Unlock()
	_ = pc.ws.CloseNow()
	stored, herr := c.Redis.Client().LRange(ctx, "parley:{pace}:log", 0, -1).Result()
	ids := map[string]int{}
	for _, env := range stored {
		var m protocol.Message
		if json.Unmarshal([]byte(env), &m) == nil {
			ids[m.ID]++
		}
	}
	r.note("the raw 18/s client (no waiting for acks): %d sends, %d acked, %d unavailable answers resent, %d rate_limited, %d stored", paced, pAcked, pUnavail, pLimited, len(stored))
	switch {
	case perr != nil:
		t.Errorf("the raw 18/s client: %v (closed: %v)", perr, pClosed)
	case pLimited != 0:
		t.Errorf("the raw 18/s client got %d rate_limited errors; want none", pLimited)
	case len(pOther) > 0:
		t.Errorf("the raw 18/s client got other errors: %v", pOther)
	case herr != nil || len(stored) != paced || len(ids) != paced:
		t.Errorf("the raw 18/s client: %d messages stored, %d distinct ids, want %d each (%v)", len(stored), len(ids), paced, herr)
	}
	return r
}
