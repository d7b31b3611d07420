package redis_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/brokertest"
	"github.com/parley-chat/parley/pkg/broker/redis"
)

func newSentinelBroker(t testing.TB, s *redistest.Sentinel, h broker.Handler, retention int) *redis.Broker {
	t.Helper()
	b, err := redis.New(redis.Config{SentinelMaster: s.Name, SentinelAddrs: s.Addrs(), Prefix: fmt.Sprintf("t%d", time.Now().UnixNano()), Handler: h, Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The conformance suite on a master watched by three sentinels.
func TestSentinelConformance(t *testing.T) {
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	brokertest.Run(t, func(t *testing.T, h broker.Handler, retention int) broker.Broker {
		return newSentinelBroker(t, s, h, retention)
	}, func(t *testing.T, _ broker.Broker) {
		if n := s.Master.KillPubSub(context.Background()); n == 0 {
			t.Fatal("no pub/sub connection to kill: the broker has subscribed nothing")
		}
	}, func(t *testing.T, b broker.Broker, room string) {
		rb := b.(*redis.Broker)
		if err := rb.Client().Del(context.Background(), rb.Key(room, "meta"), rb.Key(room, "log")).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// failover runs one broker through the loss of its master: the rooms are
// reported lost, subscribed again on the new master, and a message
// published there arrives after the ones published before.
func failover(t *testing.T, b *redis.Broker, rec *brokertest.Recorder, kill func() (time.Time, time.Duration)) {
	t.Helper()
	ctx := context.Background()
	if err := b.Subscribe(ctx, broker.Room("r")); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 10*time.Second, "Subscribed", func(l brokertest.Log) bool { return len(l.Subscribed()) == 1 })
	if _, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "1", From: "u", Body: "before"}); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 5*time.Second, "the first message", func(l brokertest.Log) bool { return len(l.Envelopes()) == 1 })
	start, promoted := kill()
	rec.WaitFor(t, 30*time.Second, "Lost then Subscribed again", func(l brokertest.Log) bool {
		return len(l.Lost()) >= 1 && len(l.Subscribed()) >= 2
	})
	resubscribed := time.Since(start)
	var ack broker.Ack
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		if ack, err = b.Publish(ctx, broker.Publication{Room: "r", ID: "2", From: "u", Body: "after"}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rec.WaitFor(t, 10*time.Second, "the message published after the failover", func(l brokertest.Log) bool { return len(l.Envelopes()) == 2 })
	if env := rec.Envelopes()[1]; env.Body != "after" || env.Seq != 2 || ack.Seq != 2 {
		t.Fatalf("after the failover: delivered %q seq %d, ack seq %d; want \"after\" seq 2 (the first message was replicated)", env.Body, env.Seq, ack.Seq)
	}
	for b.Ready(ctx) != nil {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("not ready 30s after the kill: %v", b.Ready(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("master killed -9: new master after %v, room resubscribed after %v, ready after %v",
		promoted.Round(time.Millisecond), resubscribed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// waitReplicated waits until m's first replica has everything m wrote.
func waitReplicated(t *testing.T, m *redistest.Server) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for {
		want := m.Info(ctx, "replication", "master_repl_offset")
		for _, kv := range strings.Split(m.Info(ctx, "replication", "slave0"), ",") {
			if got, ok := strings.CutPrefix(kv, "offset="); ok && got == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica of %s is not caught up after 10s", m.Addr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSentinelFailoverResubscribes(t *testing.T) {
	s := redistest.StartSentinel(t, redistest.SentinelOptions{})
	rec := brokertest.NewRecorder()
	b := newSentinelBroker(t, s, rec, 0)
	defer b.Close()
	failover(t, b, rec, func() (time.Time, time.Duration) {
		// The first message must be on the replica before its master dies:
		// what was not replicated is lost with it (asynchronous replication).
		waitReplicated(t, s.Master)
		start := time.Now()
		old := s.Master.Addr()
		s.Master.Stop()
		s.WaitMaster(old, 30*time.Second)
		return start, time.Since(start)
	})
}

func TestClusterFailoverResubscribes(t *testing.T) {
	c := redistest.StartCluster(t, redistest.ClusterOptions{})
	rec := brokertest.NewRecorder()
	b := newClusterBroker(t, c, rec, 0)
	defer b.Close()
	failover(t, b, rec, func() (time.Time, time.Duration) {
		key := b.Key("r", "log")
		m := c.MasterOf(key)
		waitReplicated(t, m)
		start := time.Now()
		m.Stop()
		c.WaitHealthy(30 * time.Second) // the replica serves the slots
		took := time.Since(start)
		if s := c.MasterServing(redistest.Slot(key)); s == m {
			t.Fatal("the killed master still serves the room's slot")
		}
		return start, took
	})
}
