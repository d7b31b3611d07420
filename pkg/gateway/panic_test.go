package gateway_test

import (
	"context"
	"testing"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/protocol"
)

// panickyBroker is the real Redis broker with a bug injected: publishing
// the body "boom" panics.
type panickyBroker struct{ broker.Broker }

func (b panickyBroker) Publish(ctx context.Context, p broker.Publication) (broker.Ack, error) {
	if p.Body == "boom" {
		panic("injected: publish of boom")
	}
	return b.Broker.Publish(ctx, p)
}

// A panic while handling one client's frame closes that connection with
// 1011 and nothing else: the node, its other connections and the next
// connection of the same user keep working.
func TestPanicInARequestClosesOnlyThatConnection(t *testing.T) {
	c := newCluster(t, 0, nil)
	n := c.addNodeBroker("gw-panicky", func(h broker.Handler) (broker.Broker, error) {
		rb, err := redis.New(redis.Config{URL: c.redis.URL(), Prefix: c.prefix, Handler: h, Logger: quietLogger()})
		if err != nil {
			return nil, err
		}
		return panickyBroker{rb}, nil
	})
	bob := login(t, n, "bob", "laptop")
	bob.join("r", nil)
	alice := login(t, n, "alice", "phone")
	alice.join("r", nil)

	alice.send(protocol.Frame{Type: protocol.TypeSend, Ref: "s1", Room: "r", ID: "m1", Body: "boom"})
	code, reason := alice.closeStatus()
	if code != websocket.StatusInternalError || reason != "internal error" {
		t.Fatalf("the panicking request's connection closed with %d %q, want 1011 \"internal error\"", code, reason)
	}

	if ack, _ := bob.post("r", "m2", "still here"); ack.Type != protocol.TypeAck || ack.Seq != 1 {
		t.Fatalf("after the panic, bob's send got %+v, want an ack of seq 1", ack)
	}
	again := login(t, n, "alice", "phone")
	again.join("r", &protocol.Since{Epoch: c.epochOf(t, "r"), Seq: 0})
	if got := again.messages(1); got[0].Body != "still here" || got[0].Seq != 1 {
		t.Fatalf("alice reconnected and got %+v, want seq 1 %q", got[0], "still here")
	}
}
