package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/brokertest"
	"github.com/parley-chat/parley/pkg/broker/redis"
)

// go-redis retries a failed dial in the background, one try a second,
// and stops at the next try after its client closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

func newBroker(t testing.TB, srv *redistest.Server, h broker.Handler, retention int) *redis.Broker {
	t.Helper()
	b, err := redis.New(redis.Config{URL: srv.URL(), Prefix: fmt.Sprintf("t%d", time.Now().UnixNano()), Handler: h, Retention: retention})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	brokertest.Run(t, func(t *testing.T, h broker.Handler, retention int) broker.Broker {
		return newBroker(t, srv, h, retention)
	}, func(t *testing.T, _ broker.Broker) {
		// Each subtest's broker is closed before the next starts, so the
		// only pub/sub connection on srv is the one of the broker at hand.
		if n := srv.KillPubSub(context.Background()); n == 0 {
			t.Fatal("no pub/sub connection to kill: the broker has subscribed nothing")
		}
	}, func(t *testing.T, b broker.Broker, room string) {
		// The room's history keys only, as an eviction or a partial loss
		// would: its info and members, and users' cursors, stay.
		rb := b.(*redis.Broker)
		if err := srv.Client().Del(context.Background(), rb.Key(room, "meta"), rb.Key(room, "log")).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestInvalidURL(t *testing.T) {
	_, err := redis.New(redis.Config{URL: "http://nope"})
	if err == nil {
		t.Fatal("New accepted an http:// URL")
	}
}

// The idempotency key expires after the window: asserted on the TTL Redis
// holds, not by waiting two minutes.
func TestIdempotencyKeyTTL(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b, err := redis.New(redis.Config{URL: srv.URL(), Prefix: "ttl", IdempotencyWindow: 3 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "x1", From: "alice", Body: "hi"}); err != nil {
		t.Fatal(err)
	}
	ttl, err := srv.Client().PTTL(ctx, "ttl:{r}:idem:5:alice:x1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl < 2*time.Minute || ttl > 3*time.Minute {
		t.Fatalf("idempotency key TTL = %v, want about 3m (at least 2m)", ttl)
	}
	for _, k := range []string{"ttl:{r}:meta", "ttl:{r}:log"} {
		if n, _ := srv.Client().Exists(ctx, k).Result(); n != 1 {
			t.Fatalf("key %s missing: the layout must follow the contract", k)
		}
	}
	if _, err := redis.New(redis.Config{URL: srv.URL(), IdempotencyWindow: time.Minute}); err == nil {
		t.Fatal("a 1 minute idempotency window was accepted; the contract needs at least 2")
	}
}

// Publish is one EVALSHA per message, counted on the client side with a
// go-redis hook (pipelined commands included) and on the server by
// commandstats, and PUBLISH runs only inside the script. Sequential
// publishes on an idle broker each go out as a pipeline of one.
func TestPublishIsOneScriptCall(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	ctx := context.Background()
	if _, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "warm", From: "u", Body: "x"}); err != nil {
		t.Fatal(err)
	}
	hook := &countingHook{}
	b.Client().AddHook(hook)
	c := srv.Client()
	if err := c.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := b.Publish(ctx, broker.Publication{Room: "r", ID: fmt.Sprint(i), From: "u", Body: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	if got, evalsha := hook.cmds.Load(), hook.count("evalsha"); got != 10 || evalsha != 10 {
		t.Fatalf("10 publishes sent %d commands, %d of them EVALSHA (%v), want 10 EVALSHA and nothing else", got, evalsha, hook.names())
	}
	if got := hook.pipes.Load(); got != 10 {
		t.Fatalf("10 sequential publishes went out in %d pipelines (sizes %v), want 10", got, hook.pipelineSizes())
	}
	stats, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_evalsha:calls=10,") || !strings.Contains(stats, "cmdstat_publish:calls=10,") {
		t.Fatalf("want 10 EVALSHA each doing one PUBLISH; commandstats:\n%s", stats)
	}
}

// A Redis that restarts empty: the next publish starts a new epoch at seq 1,
// and a subscribed broker is told its subscription came back.
func TestRestartNewEpochAndResubscribe(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := brokertest.NewRecorder()
	b := newBroker(t, srv, rec, 100)
	defer b.Close()
	ctx := context.Background()
	if err := b.Subscribe(ctx, broker.Room("r")); err != nil {
		t.Fatal(err)
	}
	var before int
	rec.WaitFor(t, 5*time.Second, "first subscription", func(l brokertest.Log) bool { before = len(l.Subscribed()); return before > 0 })
	a1, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "1", From: "u", Body: "x"})
	if err != nil {
		t.Fatal(err)
	}
	rec.WaitFor(t, 5*time.Second, "delivery before the restart", func(l brokertest.Log) bool { return len(l.Envelopes()) == 1 })
	srv.Restart()
	rec.WaitFor(t, 15*time.Second, "resubscription after restart", func(l brokertest.Log) bool { return len(l.Subscribed()) > before })
	var a2 broker.Ack
	deadline := time.Now().Add(10 * time.Second)
	for {
		a2, err = b.Publish(ctx, broker.Publication{Room: "r", ID: "2", From: "u", Body: "y"})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	if a2.Seq != 1 || a2.Epoch == a1.Epoch || a2.Epoch == "" {
		t.Fatalf("after an empty restart: ack %+v, want seq 1 with an epoch other than %s", a2, a1.Epoch)
	}
	rec.WaitFor(t, 5*time.Second, "delivery of the new-epoch message", func(l brokertest.Log) bool {
		e := l.Envelopes()
		return len(e) == 2 && e[1].Epoch == a2.Epoch
	})
}

// Redis down: Publish fails with ErrUnavailable quickly, never hangs.
func TestPublishUnavailable(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "1", From: "u", Body: "x"})
	if err == nil {
		t.Fatal("publish with Redis down succeeded")
	}
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("publish with Redis down: %v, want ErrUnavailable", err)
	}
	if ctx.Err() != nil {
		t.Fatal("publish with Redis down took the whole 20s")
	}
	if err := b.Ready(ctx); err == nil {
		t.Fatal("Ready with Redis down")
	}
}

// waitReady polls Ready until it answers nil, failing the test after timeout.
func waitReady(t *testing.T, b *redis.Broker, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := b.Ready(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker not ready after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitNotReady polls Ready until it answers an error: the broker has seen
// Redis go.
func waitNotReady(t *testing.T, b *redis.Broker, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := b.Ready(ctx)
		cancel()
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker still ready %v after Redis went", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Subscribes that fail while Redis is down leave nothing behind: once Redis
// is back, the broker's reconnection subscribes none of their channels and
// none of their messages reach the Handler. (The gateway treats a failed
// Subscribe as "not subscribed" and never unsubscribes, so anything left
// would stay subscribed for good.)
func TestFailedSubscribesDuringOutageLeaveNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := brokertest.NewRecorder()
	const prefix = "outage"
	b, err := redis.New(redis.Config{URL: srv.URL(), Prefix: prefix, Handler: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitReady(t, b, 10*time.Second)

	srv.Stop()
	waitNotReady(t, b, 10*time.Second)
	var rooms []string
	for i := range 20 {
		room := fmt.Sprintf("room-%02d", i)
		rooms = append(rooms, room)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := b.Subscribe(ctx, broker.Room(room))
		cancel()
		if err == nil {
			t.Fatalf("Subscribe(%s) with Redis down succeeded", room)
		}
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("Subscribe(%s) with Redis down: %v, want ErrUnavailable", room, err)
		}
	}

	srv.Run()
	// Ready means the pub/sub connection answered a PING sent after it
	// (re)subscribed go-redis's channel set, so Redis holds that set now.
	waitReady(t, b, 15*time.Second)
	ctx := context.Background()
	chans, err := topicChannels(srv.Client().PubSubChannels(ctx, prefix+":*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(chans) != 0 {
		t.Fatalf("after Redis came back the broker is subscribed to %q, want nothing: every Subscribe failed", chans)
	}

	if err := b.Subscribe(ctx, broker.Room("control")); err != nil {
		t.Fatal(err)
	}
	publishThenSentinel(t, ctx, b, rec, rooms...)
}

// publishThenSentinel publishes a message to each of rooms, then one to
// room "control", and asserts that only the control message (the
// sentinel) reached the Handler: nothing of rooms did.
func publishThenSentinel(t *testing.T, ctx context.Context, b *redis.Broker, rec *brokertest.Recorder, rooms ...string) {
	t.Helper()
	for _, room := range rooms {
		if _, err := b.Publish(ctx, broker.Publication{Room: room, ID: "m1", From: "u", Body: "must not arrive"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Publish(ctx, broker.Publication{Room: "control", ID: "sentinel", From: "u", Body: "last"}); err != nil {
		t.Fatal(err)
	}
	rec.AssertOnly(t, "control", "sentinel")
}

// A Subscribe that fails while Redis stalls has already sent SUBSCRIBE on
// the live pub/sub connection. Undoing it sends UNSUBSCRIBE behind it, and
// the confirmation that arrives once Redis resumes is not reported to the
// Handler, nor are the room's messages delivered.
func TestLateConfirmationOfFailedSubscribeIsIgnored(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := brokertest.NewRecorder()
	const prefix = "late"
	b, err := redis.New(redis.Config{URL: srv.URL(), Prefix: prefix, Handler: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitReady(t, b, 10*time.Second)

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err = b.Subscribe(ctx, broker.Room("stalled"))
	cancel()
	if !errors.Is(err, broker.ErrUnavailable) {
		t.Fatalf("Subscribe while Redis is frozen: %v, want an error wrapping ErrUnavailable", err)
	}
	srv.Thaw()

	// control's SUBSCRIBE follows stalled's SUBSCRIBE and UNSUBSCRIBE on the
	// same connection, so once it is confirmed Redis has handled them all.
	bg := context.Background()
	if err := b.Subscribe(bg, broker.Room("control")); err != nil {
		t.Fatal(err)
	}
	chans, err := topicChannels(srv.Client().PubSubChannels(bg, prefix+":*"))
	if err != nil {
		t.Fatal(err)
	}
	if want := prefix + ":{control}"; len(chans) != 1 || chans[0] != want {
		t.Fatalf("Redis has the broker subscribed to %q, want only %s", chans, want)
	}
	publishThenSentinel(t, bg, b, rec, "stalled")
}

// The gateway probes Ready every second with a 1 s timeout, so Ready must
// end with its ctx even when Redis stalls (frozen, not refusing), well
// before go-redis's 3 s read timeout. Twice: the second call finds the
// first one's PING still unanswered and must not wait for it either. The
// deferred Close, run while Redis is still frozen, must not wait for it.
func TestReadyEndsWithItsContextWhenRedisStalls(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	waitReady(t, b, 10*time.Second)

	srv.Freeze()
	t.Cleanup(srv.Thaw)
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		start := time.Now()
		err := b.Ready(ctx)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("Ready %d with Redis frozen: %v, want an error wrapping ErrUnavailable", i+1, err)
		}
		if took > 1500*time.Millisecond {
			t.Fatalf("Ready %d with Redis frozen and a 500ms context took %v (%v)", i+1, took, err)
		}
		t.Logf("Ready %d: %v after %v", i+1, err, took.Round(time.Millisecond))
	}
}

// Redis down: Emit fails with ErrUnavailable quickly, never hangs.
func TestEmitUnavailable(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, topic := range []broker.Topic{broker.Room("r"), broker.User("u")} {
		err := b.Emit(ctx, broker.Event{Topic: topic, Data: []byte("typing")})
		if !errors.Is(err, broker.ErrUnavailable) {
			t.Fatalf("Emit(%s) with Redis down: %v, want an error wrapping ErrUnavailable", topic, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("Emit with Redis down took the whole 20s")
	}
}

// The channels are part of the contract with running gateways and other
// programs: a room's is <prefix>:{R} (where the publish script publishes),
// a user's <prefix>:u:{U}, and an event is "!" and its data. A room whose
// name starts "u:" is still a room. Whatever else arrives on a channel (not
// an event, nor an envelope on a room's channel) is dropped.
func TestChannelsAndPayloads(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := brokertest.NewRecorder()
	const prefix = "chan"
	b, err := redis.New(redis.Config{URL: srv.URL(), Prefix: prefix, Handler: rec})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for _, topic := range []broker.Topic{broker.Room("x"), broker.User("x"), broker.Room("u:x")} {
		if err := b.Subscribe(ctx, topic); err != nil {
			t.Fatalf("Subscribe(%s): %v", topic, err)
		}
	}
	c := srv.Client()
	chans, err := topicChannels(c.PubSubChannels(ctx, prefix+":*"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(chans)
	if want := []string{"chan:u:{x}", "chan:{u:x}", "chan:{x}"}; !slices.Equal(chans, want) {
		t.Fatalf("subscribed channels = %q, want %q", chans, want)
	}

	// What Emit sends, as another subscriber sees it.
	raw := c.Subscribe(ctx, "chan:u:{x}")
	defer raw.Close()
	if _, err := raw.Receive(ctx); err != nil { // the confirmation
		t.Fatal(err)
	}
	mark := rec.Len()
	if err := b.Emit(ctx, broker.Event{Topic: broker.User("x"), Data: []byte("wire")}); err != nil {
		t.Fatal(err)
	}
	msg, err := raw.ReceiveMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Channel != "chan:u:{x}" || msg.Payload != "!wire" {
		t.Fatalf("Emit to user x published %q on %s, want \"!wire\" on chan:u:{x}", msg.Payload, msg.Channel)
	}

	// What the broker makes of payloads published by others.
	head, tail := broker.EnvelopeParts(broker.Publication{Room: "x", ID: "raw", From: "u", TS: broker.Now(), Body: "b"})
	envelope := broker.Assemble(head, 1, "0123456789abcdef", tail)
	for _, p := range []struct{ channel, payload string }{
		{"chan:u:{x}", "!from elsewhere"},
		{"chan:{u:x}", "!to the room u:x"},
		{"chan:{x}", "not an envelope"},
		{"chan:{x}", ""},
		{"chan:u:{x}", string(envelope)}, // an envelope on a user's channel
		{"chan:{x}", string(envelope)},
	} {
		if err := c.Publish(ctx, p.channel, p.payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Emit(ctx, broker.Event{Topic: broker.Room("x"), Data: []byte("sentinel")}); err != nil {
		t.Fatal(err)
	}
	rec.AssertSince(t, mark,
		`Event user:x "wire"`,
		`Event user:x "from elsewhere"`,
		`Event room:u:x "to the room u:x"`,
		"Deliver room:x raw",
		`Event room:x "sentinel"`)
}

func TestOutboxConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	brokertest.RunOutbox(t, func(t *testing.T) broker.Outbox {
		b := newBroker(t, srv, nil, 0)
		t.Cleanup(func() { b.Close() })
		return b
	})
}
