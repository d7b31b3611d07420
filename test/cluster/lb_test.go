package cluster

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// What the load balancer shows the internet: no token of a plain-text
// client's URL reaches its log, and /metrics and /healthz/deep are not
// served through it (a gateway still serves them to whoever reaches it
// directly).
func TestLoadBalancerKeepsSecretsAndInternalsIn(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const secret = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0LXRva2Vu.c2lnbmF0dXJl"
	ws, _, err := websocket.Dial(ctx, "ws://"+c.lb.Addr+"/chat?user=bob&token="+secret, nil)
	if err != nil {
		t.Fatalf("plain-text dial: %v", err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	hc := http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/metrics", "/healthz/deep"} {
		resp, err := hc.Get("http://" + c.lb.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s through the load balancer: HTTP %d, want 404", path, resp.StatusCode)
		}
	}
	for _, g := range c.gws {
		if code := g.Status("/metrics"); code != 200 {
			t.Fatalf("%s /metrics directly: HTTP %d, want 200", g.Node, code)
		}
	}
	// The sentinel: a request logged after the plain-text one.
	resp, err := hc.Get("http://" + c.lb.Addr + "/healthz?sentinel")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.lb.WaitLog(t, "GET /healthz HTTP/1.1", 1, 10*time.Second)
	logs := c.lb.Logs()
	if !strings.Contains(logs, "GET /chat HTTP/1.1") {
		t.Fatalf("the plain-text request is not in haproxy's log:\n%s", logs)
	}
	if strings.Contains(logs, secret) || strings.Contains(logs, "token=") || strings.Contains(logs, "sentinel") {
		t.Fatalf("haproxy's log holds a query string:\n%s", logs)
	}
}

// A draining gateway is invisible to new connections at once: it stops
// accepting, and the load balancer retries another gateway, so no client
// connecting during the drain gets a 503 or lands on the draining node,
// though the load balancer still counts it up.
func TestDrainingGatewayGetsNoNewConnections(t *testing.T) {
	c := startCluster(t)
	g := c.gws["gw-1"]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g.Terminate()
	// From the moment the drain has begun: a connection that raced the
	// signal itself was accepted before it and is closed with 1012 like
	// the others.
	g.WaitLog(`"msg":"draining"`, 10*time.Second)
	deadline := time.Now().Add(1500 * time.Millisecond) // within the mark-down time
	n := 0
	for time.Now().Before(deadline) || n < 30 {
		if n >= 200 {
			break
		}
		n++
		ws, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("connection %d during the drain: HTTP %d: %v", n, status, err)
		}
		hello := fmt.Sprintf(`{"type":"hello","user":"u%d"}`, n)
		if err := ws.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
			t.Fatal(err)
		}
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("connection %d: no welcome: %v", n, err)
		}
		f, err := protocol.Decode(b)
		_ = err // a server frame is not a valid client frame; the fields are there
		if f == nil || f.Node == "gw-1" {
			t.Fatalf("connection %d during the drain landed on %s", n, b)
		}
		ws.CloseNow()
	}
	if code, err := g.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("drained gateway exited %d, %v", code, err)
	}
	t.Logf("%d connections during the drain, none refused, none on the draining gateway", n)
}
