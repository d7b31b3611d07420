package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Invariant 9: a well-behaved client is never cut, whatever the server's
// own stalls, repairs and bursts.

// stallBroker holds every Publish while stalled, as a frozen Redis does.
type stallBroker struct {
	broker.Broker
	stalled atomic.Bool
	entered chan struct{} // one value when the first stalled Publish waits
	once    sync.Once
	release chan struct{} // closed to let every held Publish go
}

func (b *stallBroker) Publish(ctx context.Context, p broker.Publication) (broker.Ack, error) {
	if b.stalled.Load() {
		b.once.Do(func() { close(b.entered) })
		select {
		case <-b.release:
		case <-ctx.Done():
			return broker.Ack{}, ctx.Err()
		}
	}
	return b.Broker.Publish(ctx, p)
}

// A client sending under the rate limit through a broker stall is never
// limited: its frames are charged when they arrive, not when the gateway,
// done waiting, reads them back to back. 120 sends at 40/s against a limit
// of 50/s with a burst of 20, all while the first one is held: the old
// reader (one frame at a time, charged when read) refused ~100 of them
// and closed the client for flooding.
func TestRateLimitChargesFramesWhenTheyArrive(t *testing.T) {
	c := newCluster(t, 0, nil)
	sb := &stallBroker{entered: make(chan struct{}), release: make(chan struct{})}
	n := c.addNode("stall", func(cfg *gateway.Config) {
		cfg.RateLimit, cfg.RateBurst = 50, 20
		cfg.RequestTimeout = time.Minute // the stall ends by release, not by timeout
		cfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			rb, err := redis.New(redis.Config{URL: c.redis.URL(), Prefix: c.prefix, Handler: h, Logger: quietLogger()})
			sb.Broker = rb
			return sb, err
		}
	})
	a := login(t, n, "alice", "phone")
	sb.stalled.Store(true)
	const total = 120
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for i := 1; i <= total; i++ {
		if i > 1 {
			<-tick.C
		}
		a.send(protocol.Frame{Type: "send", Ref: fmt.Sprintf("s%d", i), Room: "r", ID: fmt.Sprintf("m%d", i), Body: "b"})
		if i == 1 {
			<-sb.entered
		}
	}
	sb.stalled.Store(false)
	close(sb.release)
	for i := 1; i <= total; i++ {
		f := a.next()
		if f.Type != protocol.TypeAck || f.Ref != fmt.Sprintf("s%d", i) || f.Seq != int64(i) {
			t.Fatalf("reply %d = %+v, want the ack of s%d with seq %d", i, f, i, i)
		}
	}
	// The connection is open and served: a ping is answered.
	a.send(protocol.Frame{Type: "ping", Ref: "last"})
	if f := a.next(); f.Type != protocol.TypePong || f.Ref != "last" {
		t.Fatalf("after the stall: %+v, want pong", f)
	}
}

// A frame over the limit is answered rate_limited naming its ref, with
// when to send again; the frames within it are answered as usual.
func TestRateLimitedNamesTheRefusedRequest(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.RateLimit, cfg.RateBurst = 1, 2 })
	a := login(t, c.gws[0], "alice", "phone")
	for _, ref := range []string{"p1", "p2", "p3"} {
		a.send(protocol.Frame{Type: "ping", Ref: ref})
	}
	got := map[string]protocol.Frame{}
	for range 3 {
		f := a.next()
		got[f.Ref] = f
	}
	if got["p1"].Type != protocol.TypePong || got["p2"].Type != protocol.TypePong {
		t.Fatalf("within the burst: %+v", got)
	}
	e := got["p3"]
	if e.Type != protocol.TypeError || e.Code != protocol.CodeRateLimited || e.RetryAfterMS < 1 || e.RetryAfterMS > 1000 {
		t.Fatalf("over the limit: %+v, want rate_limited for p3 with retry_after_ms in 1..1000", e)
	}
	// Waiting as told is enough.
	time.Sleep(time.Duration(e.RetryAfterMS) * time.Millisecond)
	a.send(protocol.Frame{Type: "ping", Ref: "p3"})
	if f := a.next(); f.Type != protocol.TypePong || f.Ref != "p3" {
		t.Fatalf("resent after retry_after_ms: %+v, want pong", f)
	}
}

// heldHandler holds the broker's deliveries while held and hands them to
// the gateway in one burst on flush, as a pub/sub connection does when a
// network stall between the gateway and Redis ends.
type heldHandler struct {
	broker.Handler
	mu   sync.Mutex
	held bool
	buf  []broker.Envelope
}

func (h *heldHandler) Deliver(env broker.Envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held {
		h.buf = append(h.buf, env)
		return
	}
	h.Handler.Deliver(env)
}

func (h *heldHandler) hold() { h.mu.Lock(); h.held = true; h.mu.Unlock() }

func (h *heldHandler) count() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.buf) }

func (h *heldHandler) flush() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, env := range h.buf {
		h.Handler.Deliver(env)
	}
	h.buf, h.held = nil, false
}

// A burst of live messages (a pub/sub backlog landing at once) does not
// close a reader that reads: it is not a slow consumer. 1200 messages in
// one burst overflowed the old 512-frame queue.
func TestPubSubBurstKeepsFastReaders(t *testing.T) {
	c := newCluster(t, 0, nil)
	hh := &heldHandler{}
	n := c.addNode("burst", func(cfg *gateway.Config) {
		cfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			hh.Handler = h
			return redis.New(redis.Config{URL: c.redis.URL(), Prefix: c.prefix, Handler: hh, Logger: quietLogger()})
		}
	})
	var readers []*tclient
	for i := range 5 {
		r := login(t, n, fmt.Sprintf("reader%d", i), "phone")
		r.join("r", nil)
		readers = append(readers, r)
	}
	hh.hold()
	const total = 1200 // over the old 512-frame queue, twice
	for i := 1; i <= total; i++ {
		publish(t, n, "r", fmt.Sprintf("a%d", i))
	}
	waitFor(t, 10*time.Second, "the burst to be held", func() bool { return hh.count() == total })
	hh.flush()
	publish(t, n, "r", "sentinel")
	for i, r := range readers {
		ms := r.messages(total + 1)
		wantSeqs(t, fmt.Sprintf("reader%d", i), ms[:total], 1)
		if ms[total].Body != "sentinel" {
			t.Fatalf("reader%d: last = %+v, want the sentinel", i, ms[total])
		}
	}
	if v := scrapeValue(t, n, "parley_slow_consumer_closes_total"); v != 0 {
		t.Fatalf("parley_slow_consumer_closes_total = %v after a burst to fast readers", v)
	}
}

// Plain-text clients' message ids are unique across a restart of their
// gateway: the restarted node numbers connections from 1 again, and its
// first client's first message must not be taken for a resend of the old
// one's (and dropped) within the idempotency window.
func TestPlainTextIDsSurviveARestart(t *testing.T) {
	c := newCluster(t, 0, nil)
	post := func(body string) {
		n := c.addNode("gw-1", nil)
		ws, _, err := dialRaw(t, n.wsURL("/chat"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := ws.Write(ctx, websocket.MessageText, []byte(body)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the message to be stored", func() bool {
			rng, err := n.g.Broker().After(ctx, "chat", 0, 0)
			return err == nil && len(rng.Messages) > 0 && rng.Messages[len(rng.Messages)-1].Body == body
		})
		ws.CloseNow()
		_ = n.g.Close() // the "restart": the next node has the same name
	}
	post("before the restart")
	post("after the restart")
	rng, err := redisBroker(t, c).After(context.Background(), "chat", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rng.Messages) != 2 || rng.Messages[0].ID == rng.Messages[1].ID || rng.Messages[0].From == rng.Messages[1].From {
		t.Fatalf("history = %+v, want two messages with their own ids and guest names", rng.Messages)
	}
}

func redisBroker(t *testing.T, c *cluster) *redis.Broker {
	b, err := redis.New(redis.Config{URL: c.redis.URL(), Prefix: c.prefix, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// One user may hold MaxConnsPerUser connections on a node; the next is
// told why and closed with 1008, and a freed slot is usable again.
func TestConnectionsPerUserAreLimited(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxConnsPerUser = 2 })
	n := c.gws[0]
	first := login(t, n, "alice", "a")
	login(t, n, "alice", "b")
	login(t, n, "bob", "a") // another user is not affected
	third := connect(t, n)
	third.send(protocol.Frame{Type: "hello", Ref: "h", User: "alice", Device: "c"})
	if f := third.next(); f.Type != protocol.TypeError || f.Ref != "h" || !strings.Contains(f.Message, "too many connections") {
		t.Fatalf("third connection of alice: %+v, want an error naming the limit", f)
	}
	if code, _ := third.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("third connection closed with %d, want 1008", code)
	}
	first.ws.Close(websocket.StatusNormalClosure, "")
	waitFor(t, 5*time.Second, "a slot to free", func() bool {
		return scrapeValue(t, n, "parley_connections") == 2
	})
	login(t, n, "alice", "d")
}

// One address may hold MaxConnsPerIP connections on a node; behind a
// trusted proxy the address is the one X-Forwarded-For ends with.
func TestConnectionsPerAddressAreLimited(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) {
		cfg.MaxConnsPerIP = 2
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	})
	n := c.gws[0]
	dial := func(xff string) (*websocket.Conn, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, n.wsURL("/ws"), &websocket.DialOptions{
			Subprotocols: []string{protocol.Subprotocol},
			HTTPHeader:   http.Header{"X-Forwarded-For": {"203.0.113.9, " + xff}},
		})
		if err != nil {
			if resp == nil {
				t.Fatalf("dial: %v", err)
			}
			return nil, resp.StatusCode
		}
		t.Cleanup(func() { ws.CloseNow() })
		return ws, 101
	}
	for i := range 2 {
		if _, code := dial("198.51.100.1"); code != 101 {
			t.Fatalf("connection %d from 198.51.100.1: HTTP %d", i+1, code)
		}
	}
	if _, code := dial("198.51.100.1"); code != http.StatusTooManyRequests {
		t.Fatalf("third connection from 198.51.100.1: HTTP %d, want 429", code)
	}
	if _, code := dial("198.51.100.2"); code != 101 {
		t.Fatalf("another address: HTTP %d", code)
	}
}

// An embedder's registry that holds the Go collectors already is fine.
func TestMetricsOnAnEmbeddersRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	c := newCluster(t, 0, nil)
	n := c.addNode("embedded", func(cfg *gateway.Config) { cfg.Registerer, cfg.Gatherer = reg, reg })
	login(t, n, "alice", "phone")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "parley_connections" {
			found = true
		}
	}
	if !found {
		t.Fatal("parley_connections is not in the embedder's registry")
	}
}
