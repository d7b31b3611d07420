package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/protocol"
)

// raw is a protocol-v1 connection without the SDK's retries, to see
// exactly what the gateway answers.
type raw struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialRaw(t *testing.T, ctx context.Context, addr, user string) *raw {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	r := &raw{t: t, ws: ws}
	r.write(ctx, protocol.Frame{Type: "hello", User: user})
	if f := r.read(ctx); f.Type != "welcome" {
		t.Fatalf("want welcome, got %+v", f)
	}
	return r
}

func (r *raw) write(ctx context.Context, f protocol.Frame) {
	r.t.Helper()
	b, _ := json.Marshal(f)
	if err := r.ws.Write(ctx, websocket.MessageText, b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

func (r *raw) read(ctx context.Context) protocol.Frame {
	r.t.Helper()
	_, b, err := r.ws.Read(ctx)
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	var f protocol.Frame
	if err := json.Unmarshal(b, &f); err != nil {
		r.t.Fatalf("read: %v in %q", err, b)
	}
	return f
}

// send sends one message and returns the gateway's answer, which must come
// within 10 s: never a hang.
func (r *raw) send(ctx context.Context, id string) protocol.Frame {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.write(ctx, protocol.Frame{Type: "send", Room: "r", ID: id, Ref: id, Body: id})
	return r.read(ctx)
}

// A gateway whose Redis is down at start starts anyway, takes connections
// (/readyz 200: a Redis outage is not a reason for the load balancer to
// drop it), reports the outage on /healthz/deep and answers sends with
// "unavailable"; it recovers by itself when Redis comes. When Redis dies
// under it later, the same happens again, on the same connection, and it
// recovers again.
func TestGatewayWithoutRedis(t *testing.T) {
	rs := redistest.Prepare(t, redistest.Options{AOF: true})
	g := proctest.StartGateway(t, proctest.GatewayOptions{Redis: rs.URL(), Node: "gw-1"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	g.WaitStatus("/healthz", 200, 20*time.Second)
	if s := g.Status("/readyz"); s != 200 {
		t.Fatalf("/readyz = %d with Redis down at start, want 200", s)
	}
	g.WaitStatus("/healthz/deep", 503, 10*time.Second)
	c := dialRaw(t, ctx, g.Addr, "alice")
	if f := c.send(ctx, "early"); f.Type != "error" || f.Code != protocol.CodeUnavailable || f.Ref != "early" {
		t.Fatalf("send with Redis down: %+v, want error unavailable", f)
	}
	if !strings.Contains(g.Logs(), "serving") {
		t.Fatalf("gateway did not start serving without Redis; log:\n%s", g.Logs())
	}

	start := time.Now()
	rs.Run()
	g.WaitStatus("/healthz/deep", 200, 30*time.Second)
	t.Logf("healthy %v after Redis came", time.Since(start).Round(time.Millisecond))
	if f := c.send(ctx, "m1"); f.Type != "ack" || f.Seq != 1 {
		t.Fatalf("send after Redis came: %+v, want ack seq 1", f)
	}

	start = time.Now()
	rs.Stop()
	g.WaitStatus("/healthz/deep", 503, 30*time.Second)
	t.Logf("unhealthy %v after Redis died", time.Since(start).Round(time.Millisecond))
	if s := g.Status("/readyz"); s != 200 {
		t.Fatalf("/readyz = %d with Redis gone, want 200", s)
	}
	if f := c.send(ctx, "lost"); f.Type != "error" || f.Code != protocol.CodeUnavailable {
		t.Fatalf("send with Redis gone: %+v, want error unavailable", f)
	}

	start = time.Now()
	rs.Run() // AOF: the room is still there
	g.WaitStatus("/healthz/deep", 200, 30*time.Second)
	t.Logf("healthy %v after Redis returned", time.Since(start).Round(time.Millisecond))
	for i := 2; i <= 3; i++ {
		id := fmt.Sprint("m", i)
		if f := c.send(ctx, id); f.Type != "ack" || f.Seq != int64(i) {
			t.Fatalf("send %s after Redis returned: %+v, want ack seq %d", id, f, i)
		}
	}
}
