package redis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/brokertest"
	"github.com/parley-chat/parley/pkg/broker/redis"
)

// switchProxy forwards each new connection to its target of the moment;
// connections already open stay where they are. It is how a client is
// moved to a new server (a failover's new master behind one name) while
// an old connection lingers on the old one.
type switchProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			to := p.target
			p.mu.Unlock()
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *switchProxy) switchTo(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
}

// A pub/sub connection that stays open on a server where nothing is
// published any more (the old master, after the client moved to a new
// one) answers PING as ever; only a probe published the way messages are
// shows it receives nothing. The broker then drops it, reports its topics
// lost with broker.ErrSilent, subscribes them where publishes go, and
// what is published there arrives.
func TestSilentConnectionIsProbedAndReplaced(t *testing.T) {
	a := redistest.Start(t, redistest.Options{})
	b := redistest.Start(t, redistest.Options{})
	p := startSwitchProxy(t, a.Addr())
	rec := brokertest.NewRecorder()
	br, err := redis.New(redis.Config{
		URL:          "redis://" + p.ln.Addr().String() + "/0",
		Prefix:       fmt.Sprintf("t%d", time.Now().UnixNano()),
		Handler:      rec,
		PingInterval: 300 * time.Millisecond,
		ProbeTimeout: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	room := broker.Room("r")
	if err := br.Subscribe(ctx, room); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 5*time.Second, "Subscribed", func(l brokertest.Log) bool { return len(l.Subscribed()) == 1 })
	if _, err := br.Publish(ctx, broker.Publication{Room: "r", ID: "1", From: "u", Body: "on a"}); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 5*time.Second, "the message on a", func(l brokertest.Log) bool { return len(l.Envelopes()) == 1 })

	// Move the client to b: new connections go there, and a's ordinary
	// connections are cut so the pool dials again; the pub/sub connection
	// stays on a.
	p.switchTo(b.Addr())
	ac := a.Client()
	defer ac.Close()
	if err := ac.ClientKillByFilter(ctx, "TYPE", "normal").Err(); err != nil {
		t.Fatal(err)
	}
	if n := a.PubSubClients(ctx); n != 1 {
		t.Fatalf("a has %d pub/sub connections, want the broker's 1", n)
	}
	rec.WaitFor(t, 10*time.Second, "Lost (silent) then Subscribed again", func(l brokertest.Log) bool {
		return len(l.Lost()) >= 1 && len(l.Subscribed()) >= 2
	})
	lost := rec.Calls().Lost()[0]
	if !errors.Is(lost.Err, broker.ErrSilent) {
		t.Fatalf("Lost with %v, want broker.ErrSilent", lost.Err)
	}
	if n := b.PubSubClients(ctx); n != 1 {
		t.Fatalf("b has %d pub/sub connections, want the broker's 1", n)
	}
	if _, err := br.Publish(ctx, broker.Publication{Room: "r", ID: "2", From: "u", Body: "on b"}); err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 5*time.Second, "the message on b", func(l brokertest.Log) bool { return len(l.Envelopes()) == 2 })
	if got := rec.Envelopes()[1].Body; got != "on b" {
		t.Fatalf("second delivery %q, want %q", got, "on b")
	}
	if err := br.Ready(ctx); err != nil {
		t.Fatalf("not ready after the replacement: %v", err)
	}
}

// While a probe fails the broker is not ready: Ready says the connection
// is down until the new one is subscribed.
func TestFrozenRedisFailsTheProbe(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := brokertest.NewRecorder()
	br, err := redis.New(redis.Config{URL: srv.URL(), Prefix: fmt.Sprintf("t%d", time.Now().UnixNano()), Handler: rec,
		PingInterval: 200 * time.Millisecond, ProbeTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	ctx := context.Background()
	if err := br.Subscribe(ctx, broker.Room("r")); err != nil {
		t.Fatal(err)
	}
	srv.Freeze()
	rec.WaitFor(t, 10*time.Second, "Lost", func(l brokertest.Log) bool { return len(l.Lost()) == 1 })
	if err := rec.Calls().Lost()[0].Err; !errors.Is(err, broker.ErrSilent) {
		t.Errorf("Lost with %v, want broker.ErrSilent", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := br.Ready(rctx); err == nil {
		t.Error("ready while Redis is frozen")
	}
	cancel()
	srv.Thaw()
	rec.WaitFor(t, 10*time.Second, "Subscribed again", func(l brokertest.Log) bool { return len(l.Subscribed()) == 2 })
	deadline := time.Now().Add(10 * time.Second)
	for br.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 10s after the thaw: %v", br.Ready(ctx))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
