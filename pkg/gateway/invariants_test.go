package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Invariant 1: an acked message is in history and reaches every joined
// connection exactly once, in seq order, across gateways; seq steps by 1.
func TestInvariant1_AckedMeansDurableAndDelivered(t *testing.T) {
	c := newCluster(t, 3, nil)
	var clients []*tclient
	for i, n := range c.gws {
		cl := login(t, n, fmt.Sprintf("user%d", i), "phone")
		if j := cl.join("general", nil); j.Seq != 0 || j.Epoch != "" || j.Recovered != nil {
			t.Fatalf("join of an empty room = %+v, want seq 0, epoch \"\", no recovered", j)
		}
		clients = append(clients, cl)
	}
	const each = 10
	want := map[int64]string{}
	var got = make([][]protocol.Frame, len(clients))
	for k := range each {
		for i, cl := range clients {
			body := fmt.Sprintf("m%d from %d", k, i)
			ack, before := cl.post("general", fmt.Sprintf("c%d-%d", i, k), body)
			got[i] = append(got[i], before...)
			if ack.Seq <= 0 || ack.TS == "" || ack.Room != "general" {
				t.Fatalf("ack %+v", ack)
			}
			want[ack.Seq] = body
		}
	}
	total := each * len(clients)
	if len(want) != total {
		t.Fatalf("%d distinct seqs for %d sends", len(want), total)
	}
	for i, cl := range clients {
		got[i] = append(got[i], cl.messages(total-len(got[i]))...)
		for k, m := range got[i] {
			if m.Seq != int64(k+1) || m.Body != want[m.Seq] || m.Epoch == "" {
				t.Fatalf("client %d message %d = seq %d %q, want seq %d %q", i, k, m.Seq, m.Body, k+1, want[int64(k+1)])
			}
		}
	}
	// Durable: history holds exactly what was acked.
	h := clients[0]
	h.send(protocol.Frame{Type: "history", Ref: "h", Room: "general", Before: 0, Limit: 200})
	hist := h.expect("history")
	if len(hist.Messages) != total {
		t.Fatalf("history has %d messages, want %d", len(hist.Messages), total)
	}
	for k, m := range hist.Messages {
		if m.Seq != int64(k+1) || m.Body != want[m.Seq] {
			t.Fatalf("history[%d] = seq %d %q", k, m.Seq, m.Body)
		}
	}
	sentinel(t, c.gws[0], "general", clients...)
}

// Invariant 2 at the gateway: what a client receives live is byte for byte
// what history holds (the one envelope the publish script built).
// The one-script property itself is TestPublishIsOneScriptCall in
// pkg/broker/redis.
func TestInvariant2_OneAtomicPublish(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := login(t, c.gws[0], "alice", "phone")
	b := login(t, c.gws[1], "bob", "laptop")
	b.join("r", nil)
	ack, _ := a.post("r", "x1", "hello <b>\"world\"</b>")
	ctx := context.Background()
	var live []byte
	select {
	case live = <-b.frames:
	case <-time.After(10 * time.Second):
		t.Fatal("bob got no message")
	}
	store := c.store()
	stored, err := store.LRange(ctx, c.prefix+":{r}:log", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0] != string(live) {
		t.Fatalf("live frame %s\nstored %v", live, stored)
	}
	meta, _ := store.HGetAll(ctx, c.prefix+":{r}:meta").Result()
	if meta["seq"] != fmt.Sprint(ack.Seq) || meta["epoch"] == "" {
		t.Fatalf("meta = %v, ack seq %d", meta, ack.Seq)
	}
}

// Invariant 3: a resend with the same id, through another gateway, gets the
// original ack and stores and delivers nothing new.
func TestInvariant3_IdempotentResendThroughAnotherGateway(t *testing.T) {
	c := newCluster(t, 2, nil)
	watcher := login(t, c.gws[1], "bob", "laptop")
	watcher.join("r", nil)
	a1 := login(t, c.gws[0], "alice", "phone")
	ack1, _ := a1.post("r", "c-123", "hi")
	// alice's phone reconnects to the other gateway and resends.
	a2 := login(t, c.gws[1], "alice", "phone")
	ack2, _ := a2.post("r", "c-123", "hi")
	if ack2.Seq != ack1.Seq || ack2.TS != ack1.TS || ack2.ID != "c-123" {
		t.Fatalf("resend ack %+v, want the original %+v", ack2, ack1)
	}
	ack3, _ := a2.post("r", "c-124", "next")
	if ack3.Seq != ack1.Seq+1 {
		t.Fatalf("next send got seq %d, want %d", ack3.Seq, ack1.Seq+1)
	}
	ms := watcher.messages(2)
	if seqsOf(ms) != "1,2" || bodiesOf(ms) != "hi,next" {
		t.Fatalf("watcher got %s / %s, want each message once", seqsOf(ms), bodiesOf(ms))
	}
	sentinel(t, c.gws[0], "r", watcher)
}

// Invariant 4: resume on another gateway after missed messages, while new
// messages keep flowing: subscribe, then read, merge, no gap, no duplicate.
func TestInvariant4_ResumeOnAnotherGatewayWhileMessagesFlow(t *testing.T) {
	c := newCluster(t, 3, nil)
	sender := login(t, c.gws[0], "bob", "laptop")
	phone := login(t, c.gws[1], "alice", "phone")
	phone.join("general", nil)
	for i := 1; i <= 5; i++ {
		sender.post("general", fmt.Sprintf("a%d", i), fmt.Sprintf("a%d", i))
	}
	seen := phone.messages(5)
	last := seen[4]
	_ = phone.ws.CloseNow()

	for i := 1; i <= 7; i++ { // missed while offline
		sender.post("general", fmt.Sprintf("b%d", i), fmt.Sprintf("b%d", i))
	}
	// Keep publishing from another goroutine while the phone resumes.
	// The goroutine reports its failure instead of calling t.Fatal.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	bgErr := make(chan error, 1)
	bg := login(t, c.gws[0], "carol", "bot")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= 30; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("c%d", i)
			bg.send(protocol.Frame{Type: "send", Ref: id, Room: "general", ID: id, Body: id})
			for {
				f, err := bg.tryNext(10 * time.Second)
				if err != nil {
					bgErr <- fmt.Errorf("carol's send %s: %w", id, err)
					return
				}
				if f.Type == "ack" && f.Ref == id {
					break
				}
			}
		}
	}()
	phone2 := login(t, c.gws[2], "alice", "phone")
	j := phone2.join("general", &protocol.Since{Epoch: last.Epoch, Seq: last.Seq})
	if j.Recovered == nil || !*j.Recovered || j.Epoch != last.Epoch || j.First != 1 {
		t.Fatalf("resume joined = %+v, want recovered true in epoch %s", j, last.Epoch)
	}
	wg.Wait()
	close(stop)
	select {
	case err := <-bgErr:
		t.Fatal(err)
	default:
	}
	// 7 missed + 30 concurrent, from seq 6 to 42, each once in order.
	ms := phone2.messages(37)
	for k, m := range ms {
		if m.Seq != int64(6+k) {
			t.Fatalf("resumed stream: message %d has seq %d, want %d (stream %s)", k, m.Seq, 6+k, seqsOf(ms))
		}
	}
	sentinel(t, c.gws[0], "general", phone2)
}

// Invariant 4: a new device (no since) gets the last Backlog messages, in
// order, and then live ones.
func TestInvariant4_NewDeviceGetsBacklog(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.Backlog = 5 })
	a := login(t, c.gws[0], "alice", "phone")
	for i := 1; i <= 12; i++ {
		a.post("general", fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i))
	}
	tablet := login(t, c.gws[1], "alice", "tablet")
	j := tablet.join("general", nil)
	if j.Seq != 12 || j.First != 1 || j.Recovered != nil {
		t.Fatalf("joined = %+v, want seq 12 first 1", j)
	}
	ms := tablet.messages(5)
	if seqsOf(ms) != "8,9,10,11,12" {
		t.Fatalf("backlog = %s, want 8..12", seqsOf(ms))
	}
	a.post("general", "m13", "m13")
	if m := tablet.messages(1)[0]; m.Seq != 13 || m.From != "alice" || m.Device != "phone" {
		t.Fatalf("live message = %+v", m)
	}
}

// Invariant 4: a hole history can no longer fill is reported.
func TestInvariant4_TrimmedHistoryReportsNotRecovered(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.gws[0].g.Close() // replace with a gateway whose Redis keeps 5
	n := c.addNodeWithRetention(t, 5)
	a := login(t, n, "alice", "phone")
	var epoch string
	for i := 1; i <= 12; i++ {
		ack, _ := a.post("r", fmt.Sprintf("m%d", i), fmt.Sprintf("m%d", i))
		epoch = ack.Epoch
	}
	if epoch == "" {
		t.Fatal("ack carries no epoch")
	}
	b := login(t, n, "bob", "phone")
	// The same epoch, resuming after seq 2 of which history keeps only
	// 8..12: the trimmed branch, not the epoch-changed one.
	j := b.join("r", &protocol.Since{Epoch: epoch, Seq: 2})
	if j.Recovered == nil || *j.Recovered || j.First != 8 || j.Seq != 12 || j.Epoch != epoch {
		t.Fatalf("joined after trim = %+v, want recovered false, first 8, seq 12", j)
	}
	if ms := b.messages(5); seqsOf(ms) != "8,9,10,11,12" {
		t.Fatalf("got %s", seqsOf(ms))
	}
}

// Redis restarted without persistence: the room's epoch is gone, and the
// next resume is answered with recovered: false; joined clients are told
// when the new epoch's first message arrives.
func TestRedisLostData_ResumeNotRecovered(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := login(t, c.gws[0], "alice", "phone")
	b := login(t, c.gws[1], "bob", "laptop")
	b.join("r", nil)
	for i := 1; i <= 3; i++ {
		a.post("r", fmt.Sprintf("m%d", i), "old")
	}
	old := b.messages(3)
	c.redis.Restart()
	for _, n := range c.gws {
		waitReady(t, n.g)
	}
	// A client resuming in the old epoch is told it was not recovered.
	d := login(t, c.gws[0], "dave", "phone")
	j := d.join("r", &protocol.Since{Epoch: old[2].Epoch, Seq: 3})
	if j.Recovered == nil || *j.Recovered || j.Epoch == old[2].Epoch {
		t.Fatalf("resume after data loss = %+v, want recovered false and a new epoch", j)
	}
	// A new message starts a new epoch; bob (joined across the loss) gets
	// a fresh joined with recovered false, then the message.
	var ack protocol.Frame
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.n++
		a.send(protocol.Frame{Type: "send", Ref: "retry", Room: "r", ID: "new1", Body: "new"})
		f := a.next()
		if f.Type == "ack" {
			ack = f
			break
		}
		if f.Type != "error" || f.Code != protocol.CodeUnavailable || time.Now().After(deadline) {
			t.Fatalf("send after restart: %+v", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ack.Seq != 1 {
		t.Fatalf("first message after data loss has seq %d, want 1", ack.Seq)
	}
	jf := b.expect("joined")
	if jf.Recovered == nil || *jf.Recovered || jf.Epoch == old[2].Epoch || jf.Seq != 0 {
		t.Fatalf("epoch change notice = %+v", jf)
	}
	if m := b.messages(1)[0]; m.Seq != 1 || m.Body != "new" || m.Epoch != jf.Epoch {
		t.Fatalf("after epoch change got %+v", m)
	}
}

// Invariant 5: the gateway's pub/sub connection is killed while messages
// flow; every message is still delivered exactly once, in order.
func TestInvariant5_PubSubKilledWhileMessagesFlow(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.RateLimit, cfg.RateBurst = 10000, 10000 })
	recv := login(t, c.gws[1], "bob", "laptop")
	recv.join("r", nil)
	const total = 200
	errc := make(chan error, 1)
	s := login(t, c.gws[0], "alice", "phone")
	go func() {
		for i := 1; i <= total; i++ {
			s.n++
			s.send(protocol.Frame{Type: "send", Ref: "s", Room: "r", ID: fmt.Sprintf("m%d", i), Body: fmt.Sprint(i)})
			if f, err := s.tryNext(10 * time.Second); err != nil || f.Type != "ack" {
				errc <- fmt.Errorf("send %d: %+v %v", i, f, err)
				return
			}
		}
		errc <- nil
	}()
	killed := int64(0)
	var got []protocol.Frame
	for range 3 {
		got = append(got, recv.messages(20)...)
		// The receiver may already hold the next 20 messages (repaired from
		// history) while the gateways are still reconnecting from the last
		// kill: wait until both have their pub/sub connection (each holds
		// its users' topics) and kill them.
		waitFor(t, 10*time.Second, "both gateways' pub/sub connections", func() bool {
			return c.redis.PubSubClients(context.Background()) == 2
		})
		killed += c.redis.KillPubSub(context.Background())
	}
	if killed != 6 {
		t.Fatalf("killed %d pub/sub connections, want 6 (two gateways, three times)", killed)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got = append(got, recv.messages(total-60)...)
	for k, m := range got {
		if m.Seq != int64(k+1) || m.Body != fmt.Sprint(k+1) {
			t.Fatalf("with pub/sub killed 3 times: message %d is seq %d %q, want seq %d", k, m.Seq, m.Body, k+1)
		}
	}
	sentinel(t, c.gws[0], "r", recv)
	waitFor(t, 10*time.Second, "parley_pubsub_reconnects_total >= 3", func() bool {
		return scrapeValue(t, c.gws[1], "parley_pubsub_reconnects_total") >= 3
	})
}

// Invariant 5 and 9: a Redis outage costs sends, not connections. /readyz
// (the load balancer's check) stays 200, so no load balancer cuts the
// node's clients; /healthz/deep and parley_redis_up say Redis is down;
// sends get "unavailable" naming their ref, never a hang; when Redis is
// back the same connection works again.
func TestInvariant5_RedisOutageKeepsConnections(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.HealthInterval = 50 * time.Millisecond })
	n := c.gws[0]
	a := login(t, n, "alice", "phone")
	a.join("r", nil)
	if code := get(t, n, "/readyz"); code != 200 {
		t.Fatalf("/readyz = %d with Redis up", code)
	}
	waitFor(t, 10*time.Second, "/healthz/deep to pass", func() bool { return get(t, n, "/healthz/deep") == 200 })
	c.redis.Stop()
	waitFor(t, 10*time.Second, "/healthz/deep to turn 503", func() bool { return get(t, n, "/healthz/deep") == 503 })
	if v := scrapeValue(t, n, "parley_redis_up"); v != 0 {
		t.Fatalf("parley_redis_up = %v with Redis down", v)
	}
	if get(t, n, "/readyz") != 200 || get(t, n, "/healthz") != 200 {
		t.Fatal("/readyz and /healthz must stay 200 while Redis is down")
	}
	a.send(protocol.Frame{Type: "send", Ref: "x", Room: "r", ID: "down1", Body: "lost?"})
	if f := a.expect("error"); f.Code != protocol.CodeUnavailable || f.Ref != "x" {
		t.Fatalf("send with Redis down = %+v, want unavailable", f)
	}
	c.redis.Restart()
	waitFor(t, 15*time.Second, "/healthz/deep to come back", func() bool { return get(t, n, "/healthz/deep") == 200 })
	// The same connection, never closed: the resend of the refused
	// message is stored once.
	ack, before := a.post("r", "down1", "lost?")
	if ack.Seq != 1 {
		t.Fatalf("ack after recovery = %+v", ack)
	}
	// The message may reach alice before her ack does.
	if len(before) == 0 {
		before = a.messages(1)
	}
	if m := before[0]; m.Type != "message" || m.Seq != 1 || m.ID != "down1" {
		t.Fatalf("message after recovery = %+v", m)
	}
}

// frozenReady is a broker whose health check never answers, as a
// SIGSTOPped Redis does.
type frozenReady struct{ broker.Broker }

func (frozenReady) Ready(ctx context.Context) error {
	<-ctx.Done()
	return fmt.Errorf("frozen: %w", broker.ErrUnavailable)
}

// /readyz and /healthz/deep answer from state the gateway holds: a broker
// that never answers its health check cannot make them hang.
func TestHealthEndpointsNeverWaitOnTheBroker(t *testing.T) {
	g, err := gateway.New(gateway.Config{
		NodeID: "frozen", DevAuth: true, Logger: quietLogger(),
		HealthInterval: time.Hour, // one check, that never ends before Close
		NewBroker: func(h broker.Handler) (broker.Broker, error) {
			return frozenReady{memory.New(memory.Config{Handler: h})}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() { srv.Close(); _ = g.Close() })
	hc := http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/readyz", "/healthz/deep", "/healthz"} {
		resp, err := hc.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("%s did not answer: %v", path, err)
		}
		resp.Body.Close()
		want := 200
		if path == "/healthz/deep" {
			want = 503 // not checked yet
		}
		if resp.StatusCode != want {
			t.Fatalf("%s = %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// Invariant 6: Drain turns readiness off and closes clients with 1012; they
// resume on another gateway with nothing lost.
func TestInvariant6_DrainCloses1012AndClientsResume(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.DrainSpread = 200 * time.Millisecond })
	sender := login(t, c.gws[1], "bob", "laptop")
	var clients []*tclient
	for i := range 3 {
		cl := login(t, c.gws[0], fmt.Sprintf("u%d", i), "phone")
		cl.join("r", nil)
		clients = append(clients, cl)
	}
	ack1, _ := sender.post("r", "m1", "one")
	for _, cl := range clients {
		cl.messages(1)
	}
	epoch := ""
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- c.gws[0].g.Drain(ctx)
	}()
	waitFor(t, 5*time.Second, "readyz false while draining", func() bool { return get(t, c.gws[0], "/readyz") == 503 })
	for _, cl := range clients {
		if code, reason := cl.closeStatus(); code != protocol.CloseServiceRestart {
			t.Fatalf("drain closed with %d %q, want 1012", code, reason)
		}
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	sender.post("r", "m2", "two")
	for i := range clients {
		cl := login(t, c.gws[1], fmt.Sprintf("u%d", i), "phone")
		if epoch == "" {
			epoch = c.epochOf(t, "r")
		}
		j := cl.join("r", &protocol.Since{Epoch: epoch, Seq: ack1.Seq})
		if j.Recovered == nil || !*j.Recovered {
			t.Fatalf("resume after drain = %+v", j)
		}
		if m := cl.messages(1)[0]; m.Seq != 2 || m.Body != "two" {
			t.Fatalf("resumed message %+v", m)
		}
	}
	// A draining gateway refuses new WebSockets.
	if _, resp, err := dialRaw(t, c.gws[0].wsURL("/ws"), protocol.Subprotocol); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial during drain: %v", err)
	}
}

// Invariant 7: a client that stops reading is closed with 1013 while the
// others keep receiving.
func TestInvariant7_SlowConsumerClosed1013(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) {
		cfg.OutboundQueue = 8
		cfg.RateLimit, cfg.RateBurst = 10000, 10000
		cfg.MaxBodyBytes = 64 << 10
	})
	n := c.gws[0]
	slow := connectBuf(t, n, 1)
	slow.send(protocol.Frame{Type: "hello", User: "slow"})
	slow.expect("welcome")
	slow.join("r", nil)
	fast := login(t, n, "fast", "phone")
	fast.join("r", nil)
	sender := login(t, n, "sender", "bot")
	big := strings.Repeat("x", 32<<10)
	// The slow client reads nothing; the TCP buffers fill, then its queue.
	for i := 1; i <= 400; i++ {
		sender.post("r", fmt.Sprintf("m%d", i), big)
		if scrapeValue(t, n, "parley_slow_consumer_closes_total") >= 1 {
			break
		}
	}
	waitFor(t, 10*time.Second, "a slow-consumer close", func() bool { return scrapeValue(t, n, "parley_slow_consumer_closes_total") >= 1 })
	code, reason := slow.closeStatus()
	if code != protocol.CloseTryAgainLater {
		t.Fatalf("slow client closed with %d %q, want 1013", code, reason)
	}
	// The fast client still receives everything, in order.
	ack, _ := sender.post("r", "last", "last")
	got := fast.messages(int(ack.Seq))
	for k, m := range got {
		if m.Seq != int64(k+1) {
			t.Fatalf("fast client: message %d has seq %d", k, m.Seq)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, n *node, path string) int {
	t.Helper()
	resp, err := http.Get(n.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var _ = websocket.StatusNormalClosure

// Invariants 4 and 7 together: a resume owed a full history (1000
// messages, twice the outbound queue) is delivered whole; the catch-up is
// not mistaken for a slow consumer.
func TestInvariant4_ResumeOwedFullHistoryIsNotSlowConsumer(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	ctx := context.Background()
	var epoch string
	for i := 1; i <= 1000; i++ {
		ack, err := n.g.Broker().Publish(ctx, broker.Publication{Room: "big", ID: fmt.Sprint(i), From: "bot", Body: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		epoch = ack.Epoch
	}
	cl := login(t, n, "alice", "phone")
	j := cl.join("big", &protocol.Since{Epoch: epoch, Seq: 0})
	if j.Recovered == nil || !*j.Recovered || j.Seq != 1000 {
		t.Fatalf("joined = %+v", j)
	}
	ms := cl.messages(1000)
	if ms[0].Seq != 1 || ms[999].Seq != 1000 {
		t.Fatalf("catch-up from %d to %d", ms[0].Seq, ms[999].Seq)
	}
	// Live delivery still works after the big catch-up.
	cl.post("big", "live", "live")
}

func TestHistoryEmptyPageIsAnEmptyList(t *testing.T) {
	c := newCluster(t, 1, nil)
	cl := login(t, c.gws[0], "alice", "phone")
	cl.sendRaw([]byte(`{"type":"history","ref":"a}b","room":"empty"}`))
	var raw []byte
	select {
	case raw = <-cl.frames:
	case <-time.After(10 * time.Second):
		t.Fatal("no history reply")
	}
	if string(raw) != `{"type":"history","ref":"a}b","room":"empty","messages":[]}` {
		t.Fatalf("empty history reply = %s", raw)
	}
}
