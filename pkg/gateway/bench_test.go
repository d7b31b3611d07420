package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// BenchmarkPublishThroughGateway: one client sends and waits for its ack,
// through a gateway and a real Redis (one EVALSHA per message).
func BenchmarkPublishThroughGateway(b *testing.B) {
	c := newClusterB(b, 1)
	cl := loginB(b, c.gws[0], "bench")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		msg := fmt.Appendf(nil, `{"type":"send","room":"bench","id":"m%d","body":"hello"}`, i)
		if err := cl.Write(ctx, websocket.MessageText, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := cl.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFanOut1000: one message published (through Redis) and delivered
// to 1,000 WebSocket connections joined to the room on one gateway. One op
// is one message fully delivered to all 1,000.
func BenchmarkFanOut1000(b *testing.B) {
	const members = 1000
	c := newClusterB(b, 1)
	n := c.gws[0]
	var received atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	conns := make([]*websocket.Conn, members)
	for i := range members {
		ws := loginB(b, n, fmt.Sprintf("u%d", i))
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"join","room":"fan"}`)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil { // joined
			b.Fatal(err)
		}
		conns[i] = ws
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	br := n.g.Broker()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := br.Publish(ctx, broker.Publication{Room: "fan", ID: fmt.Sprint(i), From: "bench", Body: "fan-out benchmark body"}); err != nil {
			b.Fatal(err)
		}
		want := int64(i+1) * members
		deadline := time.Now().Add(30 * time.Second)
		for received.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("only %d of %d deliveries", received.Load(), want)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
	cancel()
	for _, ws := range conns {
		ws.CloseNow()
	}
	wg.Wait()
}

func newClusterB(b *testing.B, n int) *cluster {
	return newCluster(b, n, func(cfg *gateway.Config) { cfg.RateLimit, cfg.RateBurst = 1e9, 1<<30 })
}

func loginB(b *testing.B, n *node, user string) *websocket.Conn {
	b.Helper()
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, n.wsURL("/ws"), &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		b.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"hello","user":%q}`, user)); err != nil {
		b.Fatal(err)
	}
	if _, _, err := ws.Read(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ws.CloseNow() })
	return ws
}

// BenchmarkWelcome200Rooms: a user who is a member of 200 rooms connects
// and says hello; one op is the dial, the hello and the welcome that lists
// the 200 rooms with their unread counts (two round trips to Redis for the
// list, whatever its length).
func BenchmarkWelcome200Rooms(b *testing.B) {
	c := newClusterB(b, 1)
	n := c.gws[0]
	br := n.g.Broker()
	ctx := context.Background()
	for i := range 200 {
		room := fmt.Sprintf("room-%03d", i)
		if _, err := br.EnsureRoom(ctx, room, broker.PublicRoom, ""); err != nil {
			b.Fatal(err)
		}
		if _, err := br.AddMember(ctx, room, "many"); err != nil {
			b.Fatal(err)
		}
		if _, err := br.Publish(ctx, broker.Publication{Room: room, ID: "m", From: "bob", Body: "hello"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ws, _, err := websocket.Dial(ctx, n.wsURL("/ws"), &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
		if err != nil {
			b.Fatal(err)
		}
		ws.SetReadLimit(1 << 20)
		if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","user":"many"}`)); err != nil {
			b.Fatal(err)
		}
		_, data, err := ws.Read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var f protocol.Frame
		if err := json.Unmarshal(data, &f); err != nil || f.Type != protocol.TypeWelcome || f.Rooms == nil || len(*f.Rooms) != 200 {
			b.Fatalf("welcome: %.200s (%v)", data, err)
		}
		ws.CloseNow()
	}
}
