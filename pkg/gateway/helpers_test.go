package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
	goredis "github.com/redis/go-redis/v9"
)

var prefixSeq atomic.Int64

// cluster is several in-process gateways on one real Redis, or on a real
// Redis Cluster while onRedisCluster is set.
type cluster struct {
	t      testing.TB
	redis  *redistest.Server  // nil on a Redis Cluster
	rc     *redistest.Cluster // nil on one Redis
	prefix string
	gws    []*node
}

// onRedisCluster, when set (by TestOnRedisCluster, for the tests it runs
// again), makes newCluster put its gateways on that Redis Cluster.
var onRedisCluster *redistest.Cluster

// brokerConfig is the Redis broker's configuration for the cluster's
// store: its URL, or its Cluster's seed nodes.
func (c *cluster) brokerConfig() redis.Config {
	if c.rc != nil {
		return redis.Config{ClusterAddrs: c.rc.Addrs(), Prefix: c.prefix, Logger: quietLogger()}
	}
	return redis.Config{URL: c.redis.URL(), Prefix: c.prefix, Logger: quietLogger()}
}

// store is a client of the cluster's store, for reading what it holds.
func (c *cluster) store() goredis.UniversalClient {
	if c.rc != nil {
		return c.rc.Client()
	}
	cl := c.redis.Client()
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

type node struct {
	g   *gateway.Gateway
	srv *httptest.Server
}

func (n *node) wsURL(path string) string { return "ws" + strings.TrimPrefix(n.srv.URL, "http") + path }

func quietLogger() *slog.Logger {
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newCluster(t testing.TB, n int, tweak func(*gateway.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, rc: onRedisCluster, prefix: fmt.Sprintf("p%d", prefixSeq.Add(1))}
	if c.rc == nil {
		c.redis = redistest.Start(t, redistest.Options{})
	}
	for i := range n {
		c.addNode(fmt.Sprintf("gw-%d", i+1), tweak)
	}
	return c
}

func (c *cluster) addNode(id string, tweak func(*gateway.Config)) *node {
	c.t.Helper()
	cfg := gateway.Config{
		NodeID:  id,
		DevAuth: true,
		Logger:  quietLogger(),
		NewBroker: func(h broker.Handler) (broker.Broker, error) {
			rc := c.brokerConfig()
			rc.Handler = h
			return redis.New(rc)
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := gateway.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	n := &node{g: g, srv: httptest.NewServer(g)}
	c.t.Cleanup(func() {
		n.srv.CloseClientConnections()
		_ = g.Close()
		n.srv.Close()
	})
	waitReady(c.t, g)
	c.gws = append(c.gws, n)
	return n
}

func waitReady(t testing.TB, g *gateway.Gateway) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := g.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway %s not ready after 10s: %v", g.NodeID(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// tclient is a raw protocol-v1 test client. A reader goroutine moves frames
// into a channel; a client whose channel is full stops reading the socket,
// which is how a test makes a slow consumer.
type tclient struct {
	t      *testing.T
	ws     *websocket.Conn
	name   string
	n      int
	frames chan []byte
	done   chan struct{}
	err    error // why the reader stopped; read after done
	// sync keeps the frames that keep a user's devices in step
	// (membership, and read without a ref); without it next skips them,
	// for tests of other things that log one user in on two devices.
	sync bool
	// presence keeps the presence events of the rooms joined; without it
	// next skips them, for tests of other things.
	presence bool
}

func dialRaw(t *testing.T, url string, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: subprotocols})
}

// connect dials n as a v1 client without saying hello.
func connect(t *testing.T, n *node) *tclient { return connectBuf(t, n, 100000) }

func connectBuf(t *testing.T, n *node, buf int) *tclient {
	t.Helper()
	ws, _, err := dialRaw(t, n.wsURL("/ws"), protocol.Subprotocol)
	if err != nil {
		t.Fatalf("dial %s: %v", n.wsURL("/ws"), err)
	}
	return wrap(t, ws, buf)
}

func wrap(t *testing.T, ws *websocket.Conn, buf int) *tclient {
	ws.SetReadLimit(4 << 20)
	c := &tclient{t: t, ws: ws, frames: make(chan []byte, buf), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				c.err = err
				return
			}
			c.frames <- b
		}
	}()
	t.Cleanup(func() {
		_ = ws.CloseNow()
		for {
			select {
			case <-c.frames:
			case <-c.done:
				return
			}
		}
	})
	return c
}

// login connects and says hello as user, checking the welcome.
func login(t *testing.T, n *node, user, device string) *tclient {
	t.Helper()
	c := connect(t, n)
	c.name = user + "/" + device
	c.send(protocol.Frame{Type: "hello", User: user, Device: device})
	w := c.expect("welcome")
	if w.User != user || w.Node != n.g.NodeID() {
		t.Fatalf("welcome = %+v, want user %s node %s", w, user, n.g.NodeID())
	}
	return c
}

func (c *tclient) send(f protocol.Frame) {
	c.t.Helper()
	b, _ := json.Marshal(f)
	c.sendRaw(b)
}

func (c *tclient) sendRaw(b []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// next reads the next frame within 10s.
func (c *tclient) next() protocol.Frame {
	c.t.Helper()
	f, err := c.tryNext(10 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: reading a frame: %v", c.name, err)
	}
	return f
}

// skipped reports whether f is a frame this client's test does not look
// at (see sync and presence).
func (c *tclient) skipped(f protocol.Frame) bool {
	switch {
	case !c.sync && (f.Type == protocol.TypeMembership || (f.Type == protocol.TypeRead && f.Ref == "")):
		return true
	case !c.presence && f.Type == protocol.TypePresence && f.Ref == "":
		return true
	}
	return false
}

func (c *tclient) tryNext(d time.Duration) (protocol.Frame, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		f, err := c.readFrame(t.C)
		if err != nil || !c.skipped(f) {
			return f, err
		}
	}
}

// readFrame reads one frame, or fails when timeout fires first.
func (c *tclient) readFrame(timeout <-chan time.Time) (protocol.Frame, error) {
	var b []byte
	select {
	case b = <-c.frames:
	case <-timeout:
		return protocol.Frame{}, errors.New("no frame in time")
	case <-c.done:
		select {
		case b = <-c.frames:
		default:
			return protocol.Frame{}, fmt.Errorf("connection ended: %w", c.err)
		}
	}
	var f protocol.Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("bad frame %s: %w", b, err)
	}
	return f, nil
}

// expect reads the next frame and fails unless it has the given type.
func (c *tclient) expect(typ string) protocol.Frame {
	c.t.Helper()
	f := c.next()
	if f.Type != typ {
		c.t.Fatalf("%s: got %+v, want a %q frame", c.name, f, typ)
	}
	return f
}

func (c *tclient) join(room string, since *protocol.Since) protocol.Frame {
	c.t.Helper()
	c.n++
	ref := fmt.Sprintf("j%d", c.n)
	c.send(protocol.Frame{Type: "join", Ref: ref, Room: room, Since: since})
	f := c.expect("joined")
	if f.Ref != ref || f.Room != room {
		c.t.Fatalf("%s: joined %+v does not answer %s", c.name, f, ref)
	}
	return f
}

// post sends a message and returns its ack, skipping message frames that
// arrive first (they are returned too, in order).
func (c *tclient) post(room, id, body string) (ack protocol.Frame, before []protocol.Frame) {
	c.t.Helper()
	c.n++
	ref := fmt.Sprintf("s%d", c.n)
	c.send(protocol.Frame{Type: "send", Ref: ref, Room: room, ID: id, Body: body})
	for {
		f := c.next()
		switch {
		case f.Type == "ack" && f.Ref == ref:
			return f, before
		case f.Type == "message":
			before = append(before, f)
		default:
			c.t.Fatalf("%s: waiting for ack %s got %+v", c.name, ref, f)
		}
	}
}

// messages reads n message frames, failing on anything else.
func (c *tclient) messages(n int) []protocol.Frame {
	c.t.Helper()
	out := make([]protocol.Frame, 0, n)
	for len(out) < n {
		f := c.next()
		if f.Type != "message" {
			c.t.Fatalf("%s: want message %d of %d, got %+v", c.name, len(out)+1, n, f)
		}
		out = append(out, f)
	}
	return out
}

var sentinels atomic.Uint64

// sentinel asserts that nothing more of room reaches the clients: a
// sentinel message published to room through n, after everything the test
// published, must be the next frame each of them reads.
func sentinel(t *testing.T, n *node, room string, cs ...*tclient) {
	t.Helper()
	body := fmt.Sprintf("sentinel-%d", sentinels.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.g.Broker().Publish(ctx, broker.Publication{Room: room, ID: body, From: "sentinel", Body: body}); err != nil {
		t.Fatalf("publish the sentinel: %v", err)
	}
	for _, c := range cs {
		if f := c.next(); f.Type != "message" || f.Body != body {
			t.Fatalf("%s: got %+v where the sentinel %s must come next", c.name, f, body)
		}
	}
}

// nothingQueued asserts that nothing is on its way to c now: the answer to
// a ping sent now must be the next frame c reads.
func (c *tclient) nothingQueued() {
	c.t.Helper()
	ref := fmt.Sprintf("sentinel-%d", sentinels.Add(1))
	c.send(protocol.Frame{Type: "ping", Ref: ref})
	if f := c.next(); f.Type != "pong" || f.Ref != ref {
		c.t.Fatalf("%s: got %+v where the pong %s must come next", c.name, f, ref)
	}
}

// closeStatus discards frames until the connection ends and returns its
// close status.
func (c *tclient) closeStatus() (websocket.StatusCode, string) {
	c.t.Helper()
	t := time.NewTimer(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.frames:
		case <-c.done:
			var ce websocket.CloseError
			if asCloseError(c.err, &ce) {
				return ce.Code, ce.Reason
			}
			return -1, fmt.Sprint(c.err)
		case <-t.C:
			c.t.Fatalf("%s: connection still open after 15s", c.name)
		}
	}
}

func seqsOf(fs []protocol.Frame) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = fmt.Sprint(f.Seq)
	}
	return strings.Join(s, ",")
}

func bodiesOf(fs []protocol.Frame) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.Body
	}
	return strings.Join(s, ",")
}

func scrape(t *testing.T, n *node) string {
	t.Helper()
	resp, err := http.Get(n.srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// scrapeValue returns the value of a metric without labels other than node.
func scrapeValue(t *testing.T, n *node, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape(t, n), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
			return v
		}
	}
	return 0
}

func (c *cluster) addNodeWithRetention(t *testing.T, retention int) *node {
	return c.addNodeBroker(fmt.Sprintf("gw-r%d", retention), func(h broker.Handler) (broker.Broker, error) {
		rc := c.brokerConfig()
		rc.Prefix, rc.Handler, rc.Retention = c.prefix+"-r", h, retention
		return redis.New(rc)
	})
}

func (c *cluster) addNodeBroker(id string, nb func(broker.Handler) (broker.Broker, error)) *node {
	return c.addNode(id, func(cfg *gateway.Config) { cfg.NewBroker = nb })
}

func (c *cluster) epochOf(t *testing.T, room string) string {
	e, err := c.store().HGet(context.Background(), c.prefix+":{"+room+"}:meta", "epoch").Result()
	if err != nil {
		t.Fatalf("epoch of %s: %v", room, err)
	}
	return e
}
