package brokertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
)

// OutboxFactory returns a new, empty broker.Outbox; the test closes it
// (through t.Cleanup) when it ends.
type OutboxFactory func(t *testing.T) broker.Outbox

// RunOutbox runs the conformance suite of broker.Outbox.
func RunOutbox(t *testing.T, newOutbox OutboxFactory) {
	tests := []struct {
		name string
		run  func(t *testing.T, o broker.Outbox)
	}{
		{"NextIsFIFOAndDoneSettles", testOutboxFIFO},
		{"ConsumersNeverShareNewEntries", testOutboxShare},
		{"NextWaitsForAnEntry", testOutboxBlock},
		{"ReclaimAfterMinIdleOnly", testOutboxReclaim},
		{"RetryIsDueAtItsTime", testOutboxRetry},
		{"DeadListsWithLastError", testOutboxDead},
		{"ReplayPutsBackWithZeroAttempts", testOutboxReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newOutbox(t)) })
	}
}

func outboxCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func outboxEvent(i int) broker.OutboxEvent {
	return broker.OutboxEvent{Key: fmt.Sprintf("test.event/k%d", i), Type: "test.event",
		Payload: fmt.Appendf(nil, `{"n":%d,"s":"é \"q\" <&>"}`, i), Enqueued: time.UnixMilli(1_700_000_000_000 + int64(i))}
}

func enqueueN(t *testing.T, ctx context.Context, o broker.Outbox, n int) []broker.OutboxEvent {
	t.Helper()
	var evs []broker.OutboxEvent
	for i := range n {
		ev := outboxEvent(i)
		if err := o.Enqueue(ctx, ev); err != nil {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

// sameEvent compares the fields an outbox keeps (times to the ms).
func sameEvent(t *testing.T, got, want broker.OutboxEvent) {
	t.Helper()
	if got.Key != want.Key || got.Type != want.Type || string(got.Payload) != string(want.Payload) ||
		got.Attempts != want.Attempts || got.Enqueued.UnixMilli() != want.Enqueued.UnixMilli() {
		t.Fatalf("event = {%s %s %s attempts %d at %d}, want {%s %s %s attempts %d at %d}",
			got.Key, got.Type, got.Payload, got.Attempts, got.Enqueued.UnixMilli(),
			want.Key, want.Type, want.Payload, want.Attempts, want.Enqueued.UnixMilli())
	}
}

func expectNone(t *testing.T, ctx context.Context, o broker.Outbox, what string) {
	t.Helper()
	if es, err := o.Next(ctx, "c-none", 10, 0); err != nil || len(es) != 0 {
		t.Fatalf("%s: Next = %d entries, %v; want none", what, len(es), err)
	}
	if es, err := o.Reclaim(ctx, "c-none", 0, 10); err != nil || len(es) != 0 {
		t.Fatalf("%s: Reclaim = %d entries, %v; want none", what, len(es), err)
	}
}

func testOutboxFIFO(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	expectNone(t, ctx, o, "empty outbox")
	evs := enqueueN(t, ctx, o, 5)
	got, err := o.Next(ctx, "c1", 3, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("Next = %d, %v; want 3", len(got), err)
	}
	more, err := o.Next(ctx, "c1", 10, 0)
	if err != nil || len(more) != 2 {
		t.Fatalf("second Next = %d, %v; want 2", len(more), err)
	}
	got = append(got, more...)
	for i, e := range got {
		sameEvent(t, e.OutboxEvent, evs[i])
		if err := o.Done(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	expectNone(t, ctx, o, "after Done")
}

func testOutboxShare(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	evs := enqueueN(t, ctx, o, 40)
	var mu sync.Mutex
	seen := map[string]string{}
	var dup []string
	var wg sync.WaitGroup
	for c := range 3 {
		wg.Go(func() {
			name := fmt.Sprintf("c%d", c)
			for range 100 {
				es, err := o.Next(ctx, name, 2, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if len(es) == 0 {
					return
				}
				mu.Lock()
				for _, e := range es {
					if prev, ok := seen[e.Key]; ok {
						dup = append(dup, e.Key+" to "+prev+" and "+name)
					}
					seen[e.Key] = name
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(dup) > 0 || len(seen) != len(evs) {
		t.Fatalf("%d of %d entries taken; given twice: %v", len(seen), len(evs), dup)
	}
}

func testOutboxBlock(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	res := make(chan []broker.OutboxEntry, 1)
	start := time.Now()
	go func() {
		es, err := o.Next(ctx, "c1", 1, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		res <- es
	}()
	// Nothing is queued: the Next above waits until this Enqueue (or
	// returns empty after its 5 s, which fails below).
	time.Sleep(100 * time.Millisecond)
	evs := enqueueN(t, ctx, o, 1)
	es := <-res
	if len(es) != 1 {
		t.Fatalf("a waiting Next returned %d entries after %v, want the one enqueued", len(es), time.Since(start))
	}
	sameEvent(t, es[0].OutboxEvent, evs[0])
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("a waiting Next took %v to see an entry", d)
	}
}

func testOutboxReclaim(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	evs := enqueueN(t, ctx, o, 2)
	held, err := o.Next(ctx, "dying", 2, 0)
	if err != nil || len(held) != 2 {
		t.Fatalf("Next = %d, %v", len(held), err)
	}
	taken := time.Now()
	const minIdle = 400 * time.Millisecond
	if es, err := o.Reclaim(ctx, "heir", minIdle, 10); err != nil || len(es) != 0 {
		t.Fatalf("Reclaim at once = %d entries, %v; want none before %v", len(es), err, minIdle)
	}
	var got []broker.OutboxEntry
	for i := 0; len(got) < 2 && i < 200; i++ {
		es, err := o.Reclaim(ctx, "heir", minIdle, 10)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, es...)
		if len(got) < 2 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if idle := time.Since(taken); len(got) != 2 || idle < minIdle {
		t.Fatalf("reclaimed %d entries after %v; want 2, after at least %v", len(got), idle, minIdle)
	}
	for i, e := range got {
		sameEvent(t, e.OutboxEvent, evs[i])
	}
	// Reclaiming reset their idle time: no one else takes them now.
	if es, err := o.Reclaim(ctx, "third", minIdle, 10); err != nil || len(es) != 0 {
		t.Fatalf("Reclaim right after a reclaim = %d entries, %v; want none", len(es), err)
	}
	for _, e := range got {
		if err := o.Done(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// The dying consumer's late outcome changes nothing: the heir settled
	// them.
	if err := o.Retry(ctx, held[0], time.Now(), "late"); err != nil {
		t.Fatal(err)
	}
	if err := o.Dead(ctx, held[1], "late"); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Due(ctx, time.Now().Add(time.Hour), 10); err != nil || n != 0 {
		t.Fatalf("Due after a late retry of a settled entry = %d, %v; want 0", n, err)
	}
	if ds, err := o.DeadLetters(ctx, 10); err != nil || len(ds) != 0 {
		t.Fatalf("dead letters after a late dead of a settled entry = %d, %v; want none", len(ds), err)
	}
	expectNone(t, ctx, o, "after the heir settled")
}

func testOutboxRetry(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	evs := enqueueN(t, ctx, o, 2)
	es, err := o.Next(ctx, "c1", 2, 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("Next = %d, %v", len(es), err)
	}
	now := time.Now()
	at0, at1 := now.Add(time.Hour), now.Add(2*time.Hour)
	// Scheduled in the other order: due in the order of their times.
	if err := o.Retry(ctx, es[1], at0, "503 Service Unavailable"); err != nil {
		t.Fatal(err)
	}
	if err := o.Retry(ctx, es[0], at1, "timeout"); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ctx, o, "retries before their time")
	if n, err := o.Due(ctx, now, 10); err != nil || n != 0 {
		t.Fatalf("Due(now) = %d, %v; want 0", n, err)
	}
	if n, err := o.Due(ctx, at0.Add(-time.Millisecond), 10); err != nil || n != 0 {
		t.Fatalf("Due just before its time = %d, %v; want 0", n, err)
	}
	if n, err := o.Due(ctx, at0, 10); err != nil || n != 1 {
		t.Fatalf("Due at its time = %d, %v; want 1", n, err)
	}
	if n, err := o.Due(ctx, at1.Add(time.Minute), 10); err != nil || n != 1 {
		t.Fatalf("Due after the second's time = %d, %v; want 1", n, err)
	}
	got, err := o.Next(ctx, "c2", 10, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("Next after Due = %d, %v; want 2", len(got), err)
	}
	for i, want := range []broker.OutboxEvent{evs[1], evs[0]} {
		want.Attempts = 1
		sameEvent(t, got[i].OutboxEvent, want)
	}
	// A second failure counts on.
	if err := o.Retry(ctx, got[0], at0, "again"); err != nil {
		t.Fatal(err)
	}
	if err := o.Done(ctx, got[1]); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Due(ctx, at0, 10); err != nil || n != 1 {
		t.Fatalf("Due = %d, %v; want 1", n, err)
	}
	again, err := o.Next(ctx, "c2", 10, 0)
	if err != nil || len(again) != 1 || again[0].Attempts != 2 || again[0].Key != evs[1].Key {
		t.Fatalf("Next = %+v, %v; want %s with 2 attempts", again, err, evs[1].Key)
	}
}

func testOutboxDead(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	evs := enqueueN(t, ctx, o, 3)
	es, err := o.Next(ctx, "c1", 3, 0)
	if err != nil || len(es) != 3 {
		t.Fatalf("Next = %d, %v", len(es), err)
	}
	for _, i := range []int{2, 0} {
		if err := o.Dead(ctx, es[i], fmt.Sprintf("status 500 (%d)", i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // distinct failure times (ms)
	}
	if err := o.Done(ctx, es[1]); err != nil {
		t.Fatal(err)
	}
	expectNone(t, ctx, o, "after dead and done")
	ds, err := o.DeadLetters(ctx, 10)
	if err != nil || len(ds) != 2 {
		t.Fatalf("DeadLetters = %d, %v; want 2", len(ds), err)
	}
	for j, i := range []int{2, 0} {
		want := evs[i]
		want.Attempts = 1
		sameEvent(t, ds[j].OutboxEvent, want)
		if ds[j].LastError != fmt.Sprintf("status 500 (%d)", i) || ds[j].FailedAt.IsZero() {
			t.Fatalf("dead letter %d: last error %q at %v", j, ds[j].LastError, ds[j].FailedAt)
		}
	}
	if one, err := o.DeadLetters(ctx, 1); err != nil || len(one) != 1 || one[0].Key != evs[2].Key {
		t.Fatalf("DeadLetters(1) = %+v, %v; want the oldest only", one, err)
	}
}

func testOutboxReplay(t *testing.T, o broker.Outbox) {
	ctx := outboxCtx(t)
	evs := enqueueN(t, ctx, o, 3)
	es, err := o.Next(ctx, "c1", 3, 0)
	if err != nil || len(es) != 3 {
		t.Fatalf("Next = %d, %v", len(es), err)
	}
	for _, e := range es {
		e.Attempts = 4
		if err := o.Dead(ctx, e, "gone"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, err := o.Replay(ctx, []string{evs[1].Key, "no/such/key"}); err != nil || n != 1 {
		t.Fatalf("Replay(one) = %d, %v; want 1", n, err)
	}
	got, err := o.Next(ctx, "c2", 10, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("Next after a replay = %d, %v; want 1", len(got), err)
	}
	sameEvent(t, got[0].OutboxEvent, evs[1]) // attempts 0 again
	if n, err := o.Replay(ctx, nil); err != nil || n != 2 {
		t.Fatalf("Replay(all) = %d, %v; want 2", n, err)
	}
	rest, err := o.Next(ctx, "c2", 10, 0)
	if err != nil || len(rest) != 2 {
		t.Fatalf("Next after replaying all = %d, %v; want 2", len(rest), err)
	}
	keys := []string{rest[0].Key, rest[1].Key}
	if !slices.Equal(keys, []string{evs[0].Key, evs[2].Key}) {
		t.Fatalf("replayed %v, want the oldest failure first: %s, %s", keys, evs[0].Key, evs[2].Key)
	}
	if ds, err := o.DeadLetters(ctx, 10); err != nil || len(ds) != 0 {
		t.Fatalf("dead letters after replaying all = %d, %v", len(ds), err)
	}
	if n, err := o.Replay(ctx, nil); err != nil || n != 0 {
		t.Fatalf("Replay with no dead letters = %d, %v", n, err)
	}
}
