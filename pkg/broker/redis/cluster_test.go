package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/brokertest"
	"github.com/parley-chat/parley/pkg/broker/redis"
)

func newClusterBroker(t testing.TB, c *redistest.Cluster, h broker.Handler, retention int) *redis.Broker {
	t.Helper()
	// One seed is enough: the broker reads the rest of the cluster from it.
	b, err := redis.New(redis.Config{ClusterAddrs: c.Addrs()[:1], Prefix: fmt.Sprintf("t%d", time.Now().UnixNano()), Handler: h, Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The conformance suite on a Redis Cluster of 3 masters and 3 replicas:
// the same promises as on one Redis, with rooms spread over the masters.
func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	brokertest.Run(t, func(t *testing.T, h broker.Handler, retention int) broker.Broker {
		return newClusterBroker(t, c, h, retention)
	}, func(t *testing.T, _ broker.Broker) {
		var n int64
		for _, s := range c.Nodes {
			n += s.KillPubSub(context.Background())
		}
		if n == 0 {
			t.Fatal("no pub/sub connection to kill: the broker has subscribed nothing")
		}
	}, func(t *testing.T, b broker.Broker, room string) {
		rb := b.(*redis.Broker)
		cc := rb.Client()
		for _, k := range []string{rb.Key(room, "meta"), rb.Key(room, "log")} {
			if err := cc.Del(context.Background(), k).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestClusterOutboxConformance(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Replicas: -1})
	brokertest.RunOutbox(t, func(t *testing.T) broker.Outbox {
		b := newClusterBroker(t, c, nil, 0)
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// Rooms spread over every master, and the broker holds one pub/sub
// connection per master, whatever the number of rooms; each room's
// channel is a shard channel on its own slot's master, and a publish is
// one script call there.
func TestClusterShardsPerMaster(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Replicas: -1})
	rec := brokertest.NewRecorder()
	b := newClusterBroker(t, c, rec, 0)
	defer b.Close()
	ctx := context.Background()
	const rooms = 60
	for i := range rooms {
		if err := b.Subscribe(ctx, broker.Room("r"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	perMaster := make(map[string]int)
	for i := range rooms {
		perMaster[c.MasterOf(b.Key("r"+strconv.Itoa(i), "log")).Addr()]++
	}
	if len(perMaster) != 3 {
		t.Fatalf("60 rooms sit on %d masters, want 3: %v", len(perMaster), perMaster)
	}
	total := 0
	for _, s := range c.Nodes {
		cl := s.Client()
		chans, err := cl.PubSubShardChannels(ctx, "*").Result()
		cl.Close()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, ch := range chans {
			if !strings.Contains(ch, ":probe:") {
				n++
			}
		}
		if n != perMaster[s.Addr()] {
			t.Errorf("node %s holds %d shard channels, want %d (its rooms)", s.Addr(), n, perMaster[s.Addr()])
		}
		total += n
		if got := s.PubSubClients(ctx); got != 1 {
			t.Errorf("node %s has %d pub/sub connections, want 1", s.Addr(), got)
		}
	}
	if total != rooms {
		t.Errorf("%d shard channels in all, want %d", total, rooms)
	}
	for i := range rooms {
		room := "r" + strconv.Itoa(i)
		if _, err := b.Publish(ctx, broker.Publication{Room: room, ID: "m", From: "u", Body: room}); err != nil {
			t.Fatal(err)
		}
	}
	rec.WaitFor(t, 10*time.Second, "every room's message", func(l brokertest.Log) bool { return len(l.Envelopes()) == rooms })
	for _, env := range rec.Envelopes() {
		if env.Body != env.Room || env.Seq != 1 {
			t.Errorf("room %s got %q seq %d", env.Room, env.Body, env.Seq)
		}
	}
	// Classic pub/sub is not used: a PUBLISH in a cluster reaches every
	// node.
	for _, s := range c.Nodes {
		if got := s.Info(ctx, "stats", "pubsub_channels"); got != "0" {
			t.Errorf("node %s has %s classic channels, want 0", s.Addr(), got)
		}
	}
}

// A slot that moves to another master takes its room's channel along:
// Redis unsubscribes it on the old master, the broker reports the room
// lost, subscribes it on the new master and reports it subscribed, and
// what is published there arrives.
func TestClusterSlotMoveResubscribes(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{Replicas: -1})
	rec := brokertest.NewRecorder()
	b := newClusterBroker(t, c, rec, 0)
	defer b.Close()
	ctx := context.Background()
	room := broker.Room("moving")
	if err := b.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 10*time.Second, "Subscribed", func(l brokertest.Log) bool { return len(l.Subscribed()) == 1 })
	if _, err := b.Publish(ctx, broker.Publication{Room: "moving", ID: "1", From: "u", Body: "before"}); err != nil {
		t.Fatal(err)
	}
	key := b.Key("moving", "log")
	from := c.MasterOf(key)
	var to *redistest.Server
	for _, s := range c.Nodes {
		if s != from {
			to = s
			break
		}
	}
	if err := c.MigrateSlot(ctx, redistest.Slot(key), to); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 15*time.Second, "Lost then Subscribed again", func(l brokertest.Log) bool {
		return len(l.Lost()) >= 1 && len(l.Subscribed()) == 2
	})
	if _, err := b.Publish(ctx, broker.Publication{Room: "moving", ID: "2", From: "u", Body: "after"}); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 10*time.Second, "the message published after the move", func(l brokertest.Log) bool { return len(l.Envelopes()) == 2 })
	if got := bodies(rec.Envelopes()); got[0] != "before" || got[1] != "after" {
		t.Fatalf("got %q", got)
	}
	if got := c.MasterOf(key); got != to {
		t.Fatalf("the slot is on %s, want %s", got.Addr(), to.Addr())
	}
}

func bodies(envs []broker.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.Body
	}
	return out
}

// countingHandler counts Subscribed calls and keeps the envelopes: the
// recorder's log is too slow to search for tens of thousands of calls.
type countingHandler struct {
	subs atomic.Int64
	mu   sync.Mutex
	envs []broker.Envelope
}

func (h *countingHandler) Deliver(env broker.Envelope) {
	h.mu.Lock()
	h.envs = append(h.envs, env)
	h.mu.Unlock()
}
func (h *countingHandler) Event(broker.Event)             {}
func (h *countingHandler) Subscribed(broker.Topic)        { h.subs.Add(1) }
func (h *countingHandler) Lost(_ []broker.Topic, _ error) {}

func (h *countingHandler) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 60s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A reconnection subscribes every channel again, each with its own
// command, and their thousands of confirmations are matched to their
// commands in order.
func TestManyChannelsResubscribe(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	h := &countingHandler{}
	b := newBroker(t, srv, h, 0)
	defer b.Close()
	ctx := context.Background()
	const n = 20000
	for i := range n {
		if err := b.Subscribe(ctx, broker.Room("r"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	h.await(t, "first Subscribed of every room", func() bool { return h.subs.Load() == n })
	start := time.Now()
	if srv.KillPubSub(ctx) != 1 {
		t.Fatal("not one pub/sub connection")
	}
	h.await(t, "second Subscribed of every room", func() bool { return h.subs.Load() == 2*n })
	t.Logf("%d channels subscribed again %v after their connection was killed", n, time.Since(start).Round(time.Millisecond))
	if _, err := b.Publish(ctx, broker.Publication{Room: "r19999", ID: "1", From: "u", Body: "last"}); err != nil {
		t.Fatal(err)
	}
	h.await(t, "the message published after", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.envs) == 1 && h.envs[0].Body == "last"
	})
	if got := h.subs.Load(); got != 2*n {
		t.Fatalf("%d Subscribed calls, want %d", got, 2*n)
	}
}
