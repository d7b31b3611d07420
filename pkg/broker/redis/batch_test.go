package redis_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
)

// waitUntil polls cond until it holds, failing the test with what after
// timeout.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// waitGroup waits for wg, failing the test with what after timeout.
func waitGroup(t testing.TB, wg *sync.WaitGroup, timeout time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("%s: still running after %v", what, timeout)
	}
}

// commandCalls returns the calls= figure of one command in INFO
// commandstats (0 when the command has not run).
func commandCalls(t testing.TB, srv *redistest.Server, name string) int {
	t.Helper()
	stats := srv.Info(context.Background(), "commandstats", "cmdstat_"+name)
	if stats == "" {
		return 0
	}
	var n int
	if _, err := fmt.Sscanf(strings.SplitN(stats, ",", 2)[0], "calls=%d", &n); err != nil {
		t.Fatalf("commandstats for %s: %q: %v", name, stats, err)
	}
	return n
}

// warm publishes once to a room of its own, so the script is in Redis's
// script cache before a test counts commands.
func warm(t testing.TB, b *redis.Broker) {
	t.Helper()
	if _, err := b.Publish(context.Background(), broker.Publication{Room: "warm", ID: "warm", From: "u", Body: "x"}); err != nil {
		t.Fatalf("warm-up publish: %v", err)
	}
}

// 500 publishes from 50 goroutines to one room: every one is acked, seqs
// are exactly 1..500, history holds them in seq order, every message is its
// own EVALSHA (client hook and server commandstats agree), and they shared
// round trips: fewer pipelines than messages.
func TestConcurrentPublishesShareRoundTrips(t *testing.T) {
	const senders, each = 50, 10
	const n = senders * each
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 1000)
	defer b.Close()
	warm(t, b)
	ctx := context.Background()
	if err := srv.Client().ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	hook := &countingHook{}
	b.Client().AddHook(hook)

	acks := make(chan broker.Ack, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			<-start
			for i := range each {
				ack, err := b.Publish(ctx, broker.Publication{Room: "busy", ID: fmt.Sprintf("s%d-%d", s, i), From: "u", Body: fmt.Sprintf("m %d %d", s, i)})
				if err != nil {
					t.Errorf("sender %d publish %d: %v", s, i, err)
					return
				}
				acks <- ack
			}
		})
	}
	close(start)
	waitGroup(t, &wg, 30*time.Second, "500 concurrent publishes")
	close(acks)

	var seqs []int64
	for a := range acks {
		if a.Duplicate {
			t.Errorf("ack %+v is marked duplicate; every ID was new", a)
		}
		seqs = append(seqs, a.Seq)
	}
	slices.Sort(seqs)
	if len(seqs) != n {
		t.Fatalf("%d acks, want %d", len(seqs), n)
	}
	for i, s := range seqs {
		if s != int64(i+1) {
			t.Fatalf("sorted acked seqs[%d] = %d, want %d: seqs must be exactly 1..%d with no duplicates", i, s, i+1, n)
		}
	}
	if got := hook.count("evalsha"); got != n || hook.cmds.Load() != n {
		t.Fatalf("client sent %d EVALSHA of %d commands (%v), want exactly %d of %d", got, hook.cmds.Load(), hook.names(), n, n)
	}
	if got := commandCalls(t, srv, "evalsha"); got != n {
		t.Fatalf("Redis ran EVALSHA %d times, want %d", got, n)
	}
	if got := commandCalls(t, srv, "publish"); got != n {
		t.Fatalf("Redis ran PUBLISH %d times, want %d (once per script call)", got, n)
	}
	rng, err := b.After(ctx, "busy", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rng.Seq != n || len(rng.Messages) != n {
		t.Fatalf("history: head %d with %d messages, want %d and %d", rng.Seq, len(rng.Messages), n, n)
	}
	for i, m := range rng.Messages {
		if m.Seq != int64(i+1) {
			t.Fatalf("history[%d] has seq %d, want %d", i, m.Seq, i+1)
		}
	}

	pipes := hook.pipes.Load()
	sizes := hook.pipelineSizes()
	t.Logf("%d publishes from %d goroutines went out in %d pipelines (largest %d commands)", n, senders, pipes, slices.Max(sizes))
	if pipes >= n {
		t.Fatalf("%d publishes took %d round trips; concurrent publishes must share them", n, pipes)
	}
}

// A lone publish on an idle broker is sent at once as a pipeline of one
// command: nothing waits for company.
func TestLonePublishIsOnePipelineOfOne(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	warm(t, b)
	hook := &countingHook{}
	b.Client().AddHook(hook)
	start := time.Now()
	ack, err := b.Publish(context.Background(), broker.Publication{Room: "quiet", ID: "1", From: "u", Body: "x"})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if ack.Seq != 1 {
		t.Fatalf("ack %+v, want seq 1", ack)
	}
	if sizes := hook.pipelineSizes(); len(sizes) != 1 || sizes[0] != 1 || hook.cmds.Load() != 1 {
		t.Fatalf("a lone publish went out as pipelines %v (%d commands: %v), want one pipeline of one EVALSHA", sizes, hook.cmds.Load(), hook.names())
	}
	t.Logf("lone publish took %v", took)
}

// A caller whose context has ended before its batch is formed is answered
// with ErrUnavailable wrapping the context error, and nothing is sent.
func TestPublishWithEndedContextIsNotSent(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	warm(t, b)
	hook := &countingHook{}
	b.Client().AddHook(hook)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "gone", From: "u", Body: "x"})
	if !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("publish with a cancelled context: %v, want ErrUnavailable wrapping context.Canceled", err)
	}
	// On an idle broker the cancelled publish was dealt with before Publish
	// returned: the only script call is the live one.
	ack, err := b.Publish(context.Background(), broker.Publication{Room: "r", ID: "live", From: "u", Body: "y"})
	if err != nil {
		t.Fatal(err)
	}
	if ack.Seq != 1 || hook.count("evalsha") != 1 {
		t.Fatalf("after a cancelled and a live publish: ack %+v and %d EVALSHA (%v), want seq 1 and 1", ack, hook.count("evalsha"), hook.names())
	}
}

// An empty script cache (SCRIPT FLUSH, as after a Redis restart) is
// recovered: the script is loaded again and the publishes that met NOSCRIPT
// are sent again, both for a lone publish and for a concurrent burst.
func TestPublishRecoversFromEmptyScriptCache(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 1000)
	defer b.Close()
	ctx := context.Background()
	c := srv.Client()
	warm(t, b)
	hook := &countingHook{}
	b.Client().AddHook(hook)

	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ack, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "lone", From: "u", Body: "x"})
	if err != nil {
		t.Fatalf("lone publish after SCRIPT FLUSH: %v", err)
	}
	if ack.Seq != 1 {
		t.Fatalf("lone publish after SCRIPT FLUSH: ack %+v, want seq 1", ack)
	}
	if loads := hook.count("script"); loads != 1 {
		t.Fatalf("lone publish after SCRIPT FLUSH loaded the script %d times (%v), want 1", loads, hook.names())
	}

	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const senders, each = 20, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[int64]bool{}
	start := make(chan struct{})
	for s := range senders {
		wg.Go(func() {
			<-start
			for i := range each {
				ack, err := b.Publish(ctx, broker.Publication{Room: "r", ID: fmt.Sprintf("s%d-%d", s, i), From: "u", Body: "x"})
				if err != nil {
					t.Errorf("publish after SCRIPT FLUSH: %v", err)
					return
				}
				mu.Lock()
				if seen[ack.Seq] {
					t.Errorf("seq %d acked twice", ack.Seq)
				}
				seen[ack.Seq] = true
				mu.Unlock()
			}
		})
	}
	close(start)
	waitGroup(t, &wg, 30*time.Second, "publishes after SCRIPT FLUSH")
	if len(seen) != senders*each {
		t.Fatalf("%d distinct seqs acked after SCRIPT FLUSH, want %d", len(seen), senders*each)
	}
	for s := int64(2); s <= senders*each+1; s++ {
		if !seen[s] {
			t.Fatalf("seq %d missing: want exactly 2..%d", s, senders*each+1)
		}
	}
	// Several pipelines may meet NOSCRIPT at once; each loads the script
	// once, never more than there were pipelines.
	t.Logf("burst after SCRIPT FLUSH: %d SCRIPT LOAD for %d pipelines", hook.count("script")-1, hook.pipes.Load())
	if exists, err := c.ScriptExists(ctx, redis.PublishScriptHash()).Result(); err != nil || !exists[0] {
		t.Fatalf("publish script not in the cache after recovery: %v %v", exists, err)
	}
}

// Redis stopped under load: publishes fail with ErrUnavailable within a
// bounded time (none hangs); Redis back, empty: publishes succeed again.
func TestPublishRedisDownUnderLoad(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 1000)
	defer b.Close()
	warm(t, b)

	const senders = 20
	const bound = 10 * time.Second // dial timeout 2s, one retry, queueing
	var ok, failed atomic.Int64
	var slowest atomic.Int64 // ns, of a failed publish
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				_, err := b.Publish(ctx, broker.Publication{Room: fmt.Sprintf("r%d", s%4), ID: fmt.Sprintf("s%d-%d", s, i), From: "u", Body: "x"})
				took := time.Since(start)
				cancel()
				if err == nil {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				if !errors.Is(err, broker.ErrUnavailable) {
					t.Errorf("publish with Redis down: %v, want ErrUnavailable", err)
				}
				for {
					cur := slowest.Load()
					if int64(took) <= cur || slowest.CompareAndSwap(cur, int64(took)) {
						break
					}
				}
				if took > bound {
					t.Errorf("a failed publish took %v, want under %v", took, bound)
				}
			}
		})
	}
	defer func() {
		close(stop)
		waitGroup(t, &wg, 2*bound, "publishers")
	}()

	waitUntil(t, 10*time.Second, "200 publishes with Redis up", func() bool { return ok.Load() >= 200 })
	srv.Stop()
	okAtStop := ok.Load()
	waitUntil(t, 2*bound, "100 failed publishes with Redis down", func() bool { return failed.Load() >= 100 })
	if got := ok.Load() - okAtStop; got > senders {
		t.Fatalf("%d publishes succeeded after Redis was stopped; at most the %d in flight may", got, senders)
	}
	srv.Run()
	okAtRestart := ok.Load()
	waitUntil(t, 15*time.Second, "200 publishes after Redis came back", func() bool { return ok.Load() >= okAtRestart+200 })
	t.Logf("ok %d, failed %d, slowest failure %v", ok.Load(), failed.Load(), time.Duration(slowest.Load()))
}

// Close under load: every Publish returns (acked or ErrClosed), the
// pipeliners stop, and a Publish after Close gets ErrClosed.
func TestCloseUnderLoad(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 1000)
	warm(t, b)
	var ok, closed atomic.Int64
	var wg sync.WaitGroup
	for s := range 30 {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := b.Publish(context.Background(), broker.Publication{Room: "r", ID: fmt.Sprintf("s%d-%d", s, i), From: "u", Body: "x"})
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, broker.ErrClosed):
					closed.Add(1)
					return
				default:
					t.Errorf("publish while closing: %v, want success or ErrClosed", err)
					return
				}
			}
		})
	}
	waitUntil(t, 10*time.Second, "300 publishes", func() bool { return ok.Load() >= 300 })
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitGroup(t, &wg, 10*time.Second, "publishers after Close")
	if _, err := b.Publish(context.Background(), broker.Publication{Room: "r", ID: "late", From: "u", Body: "x"}); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("publish after Close: %v, want ErrClosed", err)
	}
	t.Logf("ok %d, closed %d", ok.Load(), closed.Load())
}

// gateHook holds the first pipeline sent after it is added until release is
// closed.
type gateHook struct {
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (h *gateHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *gateHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }

func (h *gateHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		first := false
		h.once.Do(func() { first = true })
		if first {
			close(h.entered)
			<-h.release
		}
		return next(ctx, cmds)
	}
}

// With every pipeline busy, publishes queue. A queued caller stops waiting
// when its context ends, and its request, whose context has ended by the
// time its batch is formed, is never sent; the others are.
func TestQueuedPublishWithEndedContext(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b, err := redis.New(redis.Config{URL: srv.URL(), Prefix: "q", PublishPipelines: 1})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			b.Close()
		}
	}()
	warm(t, b)
	hook := &countingHook{}
	gate := &gateHook{entered: make(chan struct{}), release: make(chan struct{})}
	b.Client().AddHook(hook)
	b.Client().AddHook(gate)
	ctx := context.Background()

	var wg sync.WaitGroup
	publish := func(ctx context.Context, id string, errc chan<- error) {
		wg.Go(func() {
			_, err := b.Publish(ctx, broker.Publication{Room: "r", ID: id, From: "u", Body: id})
			errc <- err
		})
	}
	errA, errB, errC := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	publish(ctx, "a", errA) // takes the only pipeline and is held in the gate
	select {
	case <-gate.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first publish never reached Redis")
	}
	ctxB, cancelB := context.WithCancel(ctx)
	defer cancelB()
	publish(ctx, "c", errC)
	publish(ctxB, "b", errB)
	// The pipeliner holds one of b and c waiting for the pipeline; the
	// other waits in the queue.
	waitUntil(t, 5*time.Second, "one publish queued behind the held pipeline", func() bool { return b.QueueLen() == 1 })
	cancelB()
	select {
	case err := <-errB:
		if !errors.Is(err, broker.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("queued publish whose context was cancelled: %v, want ErrUnavailable wrapping context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a queued publish kept waiting after its context was cancelled")
	}
	close(gate.release)
	for name, errc := range map[string]chan error{"a": errA, "c": errC} {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatalf("publish %s: %v", name, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("publish %s did not return after the pipeline was released", name)
		}
	}
	waitGroup(t, &wg, 5*time.Second, "publishers")
	closed = true
	if err := b.Close(); err != nil { // waits for the pipeliner: b has been dealt with
		t.Fatal(err)
	}
	if got := hook.count("evalsha"); got != 2 {
		t.Fatalf("%d script calls (%v), want 2: the cancelled publish must not be sent", got, hook.names())
	}
	rng, err := srv.Client().LRange(ctx, "q:{r}:log", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if all := strings.Join(rng, ""); len(rng) != 2 || strings.Contains(all, `"id":"b"`) ||
		!strings.Contains(all, `"id":"a"`) || !strings.Contains(all, `"id":"c"`) {
		t.Fatalf("history %v, want the two messages a and c only", rng)
	}
}
