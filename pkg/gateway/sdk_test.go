package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// switchLB is an in-process stand-in for the load balancer: it hands each
// new request to the gateway it currently points at.
type switchLB struct {
	to atomic.Pointer[gateway.Gateway]
}

func (s *switchLB) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.to.Load().ServeHTTP(w, r) }

// The Go SDK through a load balancer: its gateway drains, it reconnects to
// another one, re-joins from its last seq, resends its unacked send with the
// same id, and sees every message exactly once, in order.
func TestClientSDKResumesAcrossGateways(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.DrainSpread = 10 * time.Millisecond })
	lb := &switchLB{}
	lb.to.Store(c.gws[0].g)
	srv := httptest.NewServer(lb)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", User: "alice", Device: "phone",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if w := cl.Welcome(); w.Node != "gw-1" {
		t.Fatalf("welcome from %q, want gw-1", w.Node)
	}
	if _, err := cl.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	bob := login(t, c.gws[1], "bob", "laptop")
	for i := 1; i <= 5; i++ {
		bob.post("general", fmt.Sprintf("b%d", i), fmt.Sprintf("b%d", i))
	}
	var got []*protocol.Message
	next := func() *protocol.Message {
		t.Helper()
		for {
			select {
			case ev, ok := <-cl.Events():
				if !ok {
					t.Fatal("events closed")
				}
				if ev.Message != nil {
					return ev.Message
				}
			case <-ctx.Done():
				t.Fatalf("no message; got so far %d", len(got))
			}
		}
	}
	for range 5 {
		got = append(got, next())
	}
	// gw-1 goes away; new connections land on gw-2.
	lb.to.Store(c.gws[1].g)
	go func() { _ = c.gws[0].g.Drain(ctx) }()
	for i := 6; i <= 10; i++ {
		bob.post("general", fmt.Sprintf("b%d", i), fmt.Sprintf("b%d", i))
	}
	ack, err := cl.SendID(ctx, "general", "a-1", "alice after the move")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := cl.SendID(ctx, "general", "a-1", "alice after the move"); err != nil || again.Seq != ack.Seq {
		t.Fatalf("resend of a-1: %+v %v, want the original seq %d", again, err, ack.Seq)
	}
	for len(got) < 11 {
		got = append(got, next())
	}
	for k, m := range got {
		if m.Seq != int64(k+1) {
			t.Fatalf("message %d has seq %d: the SDK stream must be gapless", k, m.Seq)
		}
	}
	if cl.Welcome().Node != "gw-2" {
		t.Fatalf("after the drain the SDK is on %q, want gw-2", cl.Welcome().Node)
	}
	if got[10].Body != "alice after the move" || got[10].Seq != ack.Seq {
		t.Fatalf("own message %+v, ack %+v", got[10], ack)
	}
}

// A client in many rooms resumes within the rate limit: its re-joins after
// a reconnect go out a few at a time, not in one burst that the gateway
// would refuse past its burst of 40 and close as a flood (1008, which the
// SDK takes as fatal). 100 rooms, resumed on a gateway with the default
// limits; one message in each room afterwards arrives.
func TestClientSDKResumesManyRoomsWithinTheRateLimit(t *testing.T) {
	c := newCluster(t, 0, nil)
	roomy := c.addNode("gw-1", func(cfg *gateway.Config) {
		cfg.RateLimit, cfg.RateBurst, cfg.DrainSpread = 10000, 10000, time.Millisecond
	})
	strict := c.addNode("gw-2", nil) // the default 20 frames/s, burst 40
	lb := &switchLB{}
	lb.to.Store(roomy.g)
	srv := httptest.NewServer(lb)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws", User: "alice",
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const rooms = 100
	for i := range rooms {
		if _, err := cl.Join(ctx, fmt.Sprintf("room-%03d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	lb.to.Store(strict.g)
	go func() { _ = roomy.g.Drain(ctx) }()
	// Wait for the resume on gw-2, then one message per room.
	for cl.Welcome().Node != "gw-2" {
		select {
		case ev, ok := <-cl.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if ev.State == client.StateClosed {
				t.Fatalf("the client gave up: %v", ev.Err)
			}
			if ev.State == client.StateReconnecting && ev.Err != nil && strings.Contains(ev.Err.Error(), "flood") {
				t.Fatalf("the client was closed as a flood: %v", ev.Err)
			}
		case <-ctx.Done():
			t.Fatal("no resume on gw-2")
		}
	}
	for i := range rooms {
		publish(t, strict, fmt.Sprintf("room-%03d", i), fmt.Sprintf("m%d", i))
	}
	seen := map[string]bool{}
	for len(seen) < rooms {
		select {
		case ev, ok := <-cl.Events():
			if !ok {
				t.Fatalf("events closed after %d rooms", len(seen))
			}
			if ev.Message != nil {
				seen[ev.Message.Room] = true
			}
			if ev.State == client.StateReconnecting || ev.State == client.StateClosed {
				t.Fatalf("connection lost after the resume: %v", ev.Err)
			}
		case <-ctx.Done():
			t.Fatalf("messages arrived in %d of %d rooms", len(seen), rooms)
		}
	}
}
