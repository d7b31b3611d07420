package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// gatedBroker is the real Redis broker with a gate on After for one room.
// While armed, each After call for that room reads Redis at once, reports
// itself on entered, and then returns only when the test says so on
// release: nil returns what was read, an error returns that error. A
// cancelled context ends the wait.
type gatedBroker struct {
	broker.Broker
	room    string
	armed   atomic.Bool
	entered chan struct{}
	release chan error
}

func (b *gatedBroker) After(ctx context.Context, room string, after int64, limit int) (broker.Range, error) {
	rng, err := b.Broker.After(ctx, room, after, limit)
	if room != b.room || !b.armed.Load() {
		return rng, err
	}
	select {
	case b.entered <- struct{}{}:
	case <-ctx.Done():
		return broker.Range{}, ctx.Err()
	}
	select {
	case e := <-b.release:
		if e != nil {
			return broker.Range{}, e
		}
		return rng, err
	case <-ctx.Done():
		return broker.Range{}, ctx.Err()
	}
}

// waitEntered waits for a gated After call to start.
func (b *gatedBroker) waitEntered(t *testing.T, what string) {
	t.Helper()
	select {
	case <-b.entered:
	case <-time.After(10 * time.Second):
		t.Fatalf("no history read of room %s within 10s (%s)", b.room, what)
	}
}

// lossyHandler stands in for pub/sub losing messages: the envelopes of
// room whose seqs are in lose never reach the gateway. They are stored in
// Redis as usual, so only a history read finds them.
type lossyHandler struct {
	broker.Handler
	room string
	lose map[int64]bool // read-only after construction
}

func (h lossyHandler) Deliver(env broker.Envelope) {
	if env.Room == h.room && h.lose[env.Seq] {
		return
	}
	h.Handler.Deliver(env)
}

// addGatedNode adds a gateway whose real Redis broker loses the given seqs
// of room on pub/sub and gates its history reads of room. RequestTimeout
// is long, so that only the test ends a gated read.
func addGatedNode(t *testing.T, c *cluster, room string, tweak func(*gateway.Config), lose ...int64) (*node, *gatedBroker) {
	t.Helper()
	gb := &gatedBroker{room: room, entered: make(chan struct{}), release: make(chan error)}
	lost := make(map[int64]bool)
	for _, s := range lose {
		lost[s] = true
	}
	n := c.addNode("gw-gated", func(cfg *gateway.Config) {
		cfg.RequestTimeout = 30 * time.Second
		cfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			rb, err := redis.New(redis.Config{URL: c.redis.URL(), Prefix: c.prefix,
				Handler: lossyHandler{Handler: h, room: room, lose: lost}, Logger: quietLogger()})
			if err != nil {
				return nil, err
			}
			gb.Broker = rb
			return gb, nil
		}
		if tweak != nil {
			tweak(cfg)
		}
	})
	return n, gb
}

// publish stores and publishes one message through n's broker.
func publish(t *testing.T, n *node, room, body string) broker.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := n.g.Broker().Publish(ctx, broker.Publication{Room: room, ID: body, From: "bot", Body: body})
	if err != nil {
		t.Fatalf("publish %s to %s: %v", body, room, err)
	}
	return ack
}

// expectPrompt reads one message within d and checks its seq and body.
func expectPrompt(t *testing.T, c *tclient, d time.Duration, seq int64, body string) {
	t.Helper()
	f, err := c.tryNext(d)
	if err != nil {
		t.Fatalf("%s: want message seq %d %q within %v: %v", c.name, seq, body, d, err)
	}
	if f.Type != "message" || f.Seq != seq || f.Body != body {
		t.Fatalf("%s: got %+v, want message seq %d %q", c.name, f, seq, body)
	}
}

// flowB publishes to room b and checks that bob gets each message
// promptly. Pub/sub delivers one connection's messages in order, so once
// bob has them, everything published before them has reached the hub too.
func flowB(t *testing.T, n *node, bob *tclient, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		body := fmt.Sprintf("b%d", i)
		publish(t, n, "b", body)
		expectPrompt(t, bob, 3*time.Second, int64(i), body)
	}
}

func wantSeqs(t *testing.T, who string, got []protocol.Frame, from int64) {
	t.Helper()
	for k, m := range got {
		if want := from + int64(k); m.Seq != want || m.Body != fmt.Sprintf("a%d", want) {
			t.Fatalf("%s: message %d is seq %d %q, want seq %d (stream %s)", who, k, m.Seq, m.Body, want, seqsOf(got))
		}
	}
}

// Invariant 5 without stalls: while room a's history repair waits on
// Redis, room b on the same gateway keeps receiving live messages at once,
// and a new joiner of a is answered. Once the read returns, a's member
// gets every seq exactly once, in order: the repaired ones, the ones
// published during the repair, and one more lost during the repair, which
// a second round reads.
func TestRepair_SlowReadStallsNoOtherRoom(t *testing.T) {
	c := newCluster(t, 0, nil)
	n, gb := addGatedNode(t, c, "a", nil, 3, 6)
	alice := login(t, n, "alice", "phone")
	alice.join("a", nil)
	bob := login(t, n, "bob", "laptop")
	bob.join("b", nil)
	gb.armed.Store(true)

	publish(t, n, "a", "a1")
	publish(t, n, "a", "a2")
	wantSeqs(t, "alice", alice.messages(2), 1)
	publish(t, n, "a", "a3") // lost on pub/sub
	publish(t, n, "a", "a4") // the gap shows: a repair reads history (head 4) and waits
	gb.waitEntered(t, "the live gap before seq 4")

	publish(t, n, "a", "a5")
	publish(t, n, "a", "a6") // lost too: after the read, so the buffer has a hole
	publish(t, n, "a", "a7")
	flowB(t, n, bob, 1, 5)

	// A new joiner of a is not held up by a's repair.
	dave := login(t, n, "dave", "tablet")
	if j := dave.join("a", nil); j.Seq != 7 || j.First != 1 {
		t.Fatalf("dave joined %+v during the repair, want seq 7 first 1", j)
	}
	wantSeqs(t, "dave", dave.messages(7), 1)
	// Alice gets nothing past the hole while the repair waits.
	alice.nothingQueued()

	gb.release <- nil // round 1: history 3,4; buffered 5; 7 follows a hole
	gb.waitEntered(t, "a second round for seq 6, lost after the first read")
	gb.release <- nil
	wantSeqs(t, "alice", alice.messages(5), 3)

	gb.armed.Store(false)
	publish(t, n, "a", "a8")
	expectPrompt(t, alice, 5*time.Second, 8, "a8")
	expectPrompt(t, dave, 5*time.Second, 8, "a8") // 3..7 were duplicates for dave
	sentinel(t, n, "a", alice, dave)
	flowB(t, n, bob, 6, 6)
	if v := scrapeValue(t, n, "parley_gaps_repaired_total"); v != 2 {
		t.Fatalf("parley_gaps_repaired_total = %v, want 2 (seqs 3 and 6)", v)
	}
}

// A repair whose history reads keep failing gives up instead of wedging
// the room: its member is closed with 1013 (the hole is reported, never
// hidden), other rooms flow meanwhile, and the room works again after.
func TestRepair_ReadErrorsDoNotWedgeTheRoom(t *testing.T) {
	c := newCluster(t, 0, nil)
	n, gb := addGatedNode(t, c, "a", nil, 3)
	alice := login(t, n, "alice", "phone")
	alice.join("a", nil)
	bob := login(t, n, "bob", "laptop")
	bob.join("b", nil)
	gb.armed.Store(true)

	// Fail every gated read until the test is done with the error path.
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-gb.entered:
				failed.Add(1)
				gb.release <- fmt.Errorf("test: %w", broker.ErrUnavailable)
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	publish(t, n, "a", "a1")
	publish(t, n, "a", "a2")
	wantSeqs(t, "alice", alice.messages(2), 1)
	publish(t, n, "a", "a3") // lost
	publish(t, n, "a", "a4") // gap: the repair's reads fail
	flowB(t, n, bob, 1, 3)

	// Alice gets no message past seq 2, then a 1013 telling her to resume.
	var got []protocol.Frame
	for {
		f, err := alice.tryNext(15 * time.Second)
		if err != nil {
			if !strings.Contains(err.Error(), "connection ended") {
				t.Fatalf("alice: neither closed nor served after failed repairs: %v", err)
			}
			break
		}
		got = append(got, f)
	}
	if len(got) != 0 {
		t.Fatalf("alice got %+v past the hole", got)
	}
	if code, reason := alice.closeStatus(); code != protocol.CloseTryAgainLater || !strings.Contains(reason, "resume") {
		t.Fatalf("alice closed with %d %q, want 1013 and resume", code, reason)
	}
	if k := failed.Load(); k < 2 || k > 10 {
		t.Fatalf("%d failed history reads, want a few retries (2..10)", k)
	}
	flowB(t, n, bob, 4, 4)

	// The room is not wedged: alice resumes from seq 2 and gets the rest,
	// then live messages.
	gb.armed.Store(false)
	alice2 := login(t, n, "alice", "phone")
	j := alice2.join("a", &protocol.Since{Epoch: c.epochOf(t, "a"), Seq: 2})
	if j.Recovered == nil || !*j.Recovered || j.Seq != 4 {
		t.Fatalf("resume after the failed repair: joined %+v, want recovered at seq 4", j)
	}
	wantSeqs(t, "alice", alice2.messages(2), 3)
	publish(t, n, "a", "a5")
	expectPrompt(t, alice2, 5*time.Second, 5, "a5")
	sentinel(t, n, "a", alice2)
}

// A repair that waits long enough for its buffer to overflow drops it and
// reads history through to the head: the member still sees every seq in
// order, each once, and is never closed: a merge is a catch-up, which does
// not count against the member's outbound limits (its queue holds 16).
func TestRepair_BufferOverflowReadsThroughToHead(t *testing.T) {
	c := newCluster(t, 0, nil)
	const queue = 16 // the repair buffer holds one queue: 16 envelopes
	n, gb := addGatedNode(t, c, "a", func(cfg *gateway.Config) { cfg.OutboundQueue = queue }, 3)
	alice := login(t, n, "alice", "phone")
	alice.join("a", nil)
	bob := login(t, n, "bob", "laptop")
	bob.join("b", nil)
	gb.armed.Store(true)

	publish(t, n, "a", "a1")
	publish(t, n, "a", "a2")
	wantSeqs(t, "alice", alice.messages(2), 1)
	publish(t, n, "a", "a3") // lost
	publish(t, n, "a", "a4")
	gb.waitEntered(t, "the live gap before seq 4")
	const last = 150 // well past the buffer's 16
	for i := 5; i <= last; i++ {
		publish(t, n, "a", fmt.Sprintf("a%d", i))
	}
	flowB(t, n, bob, 1, 1) // every a message has reached the hub
	gb.armed.Store(false)  // later rounds read freely
	gb.release <- nil

	// The merge is a catch-up, however much of it there is: alice, who
	// reads, gets every seq in order and is never closed.
	got := alice.messages(last - 2)
	wantSeqs(t, "alice", got, 3)
	publish(t, n, "a", fmt.Sprintf("a%d", last+1))
	expectPrompt(t, alice, 5*time.Second, last+1, fmt.Sprintf("a%d", last+1))
	sentinel(t, n, "a", alice)
}

// Close ends a repair that waits on Redis and waits for its goroutine
// (the goroutine-leak check in TestMain sees none left).
func TestRepair_CloseEndsAWaitingRepair(t *testing.T) {
	c := newCluster(t, 0, nil)
	n, gb := addGatedNode(t, c, "a", nil, 2)
	alice := login(t, n, "alice", "phone")
	alice.join("a", nil)
	gb.armed.Store(true)
	publish(t, n, "a", "a1")
	expectPrompt(t, alice, 5*time.Second, 1, "a1")
	publish(t, n, "a", "a2") // lost
	publish(t, n, "a", "a3")
	gb.waitEntered(t, "the live gap before seq 3")

	done := make(chan error, 1)
	go func() { done <- n.g.Close() }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, broker.ErrClosed) {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waiting after 10s for a repair blocked on Redis")
	}
}
