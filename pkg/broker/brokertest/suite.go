// Package brokertest is the conformance suite that every broker.Broker
// implementation passes. An implementation's test calls Run with a factory
// that returns a fresh, empty broker wired to the given handler.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Factory returns a new empty broker that delivers to h, keeping at most
// retention messages per room. The broker is closed by the suite.
type Factory func(t *testing.T, h broker.Handler, retention int) broker.Broker

// Recorder is a broker.Handler that records what it is given.
type Recorder struct {
	mu         sync.Mutex
	envs       []broker.Envelope
	subscribed []string
	lost       int
	changed    chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{}, 1)} }

func (r *Recorder) note() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Deliver implements broker.Handler.
func (r *Recorder) Deliver(env broker.Envelope) {
	r.mu.Lock()
	r.envs = append(r.envs, env)
	r.mu.Unlock()
	r.note()
}

// Subscribed implements broker.Handler.
func (r *Recorder) Subscribed(room string) {
	r.mu.Lock()
	r.subscribed = append(r.subscribed, room)
	r.mu.Unlock()
	r.note()
}

// Disconnected implements broker.Handler.
func (r *Recorder) Disconnected(error) {
	r.mu.Lock()
	r.lost++
	r.mu.Unlock()
	r.note()
}

// Envelopes returns a copy of what was delivered.
func (r *Recorder) Envelopes() []broker.Envelope {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]broker.Envelope(nil), r.envs...)
}

// WaitFor waits until cond holds over the recorder's state or fails the test
// after timeout with msg.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, msg string, cond func(envs []broker.Envelope, subscribed []string) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r.envs, r.subscribed)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, msg)
		}
	}
}

// AssertOnly waits until the envelope with id sentinel of room arrives and
// then requires that nothing but it was delivered and that room is the only
// room Subscribed was called for. The Handler is called in delivery order,
// so the sentinel, published last, closes the check: nothing else arrived
// before it. Tests of what must not be delivered publish it last.
func (r *Recorder) AssertOnly(t testing.TB, room, sentinel string) {
	t.Helper()
	var envs []broker.Envelope
	var subscribed []string
	r.WaitFor(t, 10*time.Second, "the sentinel "+room+"/"+sentinel, func(e []broker.Envelope, s []string) bool {
		envs, subscribed = append(envs[:0], e...), append(subscribed[:0], s...)
		return len(e) > 0 && e[len(e)-1].Room == room && e[len(e)-1].ID == sentinel
	})
	if len(envs) != 1 {
		t.Errorf("%d envelope(s) arrived before the sentinel, want none:", len(envs)-1)
		for _, e := range envs[:len(envs)-1] {
			t.Errorf("  %s", e.Raw)
		}
	}
	for _, s := range subscribed {
		if s != room {
			t.Errorf("Subscribed(%q) was called; only %q was subscribed (all calls: %q)", s, room, subscribed)
			break
		}
	}
}

// Run runs the conformance suite.
func Run(t *testing.T, newBroker Factory) {
	ctx := context.Background()
	setup := func(t *testing.T, retention int) (broker.Broker, *Recorder) {
		rec := NewRecorder()
		b := newBroker(t, rec, retention)
		t.Cleanup(func() {
			if err := b.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return b, rec
	}
	pub := func(t *testing.T, b broker.Broker, room, from, id, body string) broker.Ack {
		t.Helper()
		ack, err := b.Publish(ctx, broker.Publication{Room: room, ID: id, From: from, Device: "d1", Body: body})
		if err != nil {
			t.Fatalf("Publish %s/%s: %v", room, id, err)
		}
		return ack
	}

	t.Run("EmptyRoomHead", func(t *testing.T) {
		b, _ := setup(t, 10)
		pos, err := b.Head(ctx, "nothing-here")
		if err != nil {
			t.Fatal(err)
		}
		if pos != (broker.Position{}) {
			t.Fatalf("empty room head = %+v, want zero (seq 0, epoch \"\")", pos)
		}
		r, err := b.After(ctx, "nothing-here", 0, 0)
		if err != nil || len(r.Messages) != 0 || r.Seq != 0 {
			t.Fatalf("After on empty room = %+v, %v", r, err)
		}
	})

	t.Run("SeqStartsAtOneAndStepsByOne", func(t *testing.T) {
		b, _ := setup(t, 100)
		var epoch string
		for i := 1; i <= 20; i++ {
			ack := pub(t, b, "r", "alice", fmt.Sprintf("m%d", i), fmt.Sprintf("body %d", i))
			if ack.Seq != int64(i) || ack.Duplicate {
				t.Fatalf("publish %d: ack %+v, want seq %d", i, ack, i)
			}
			if i == 1 {
				epoch = ack.Epoch
				if epoch == "" {
					t.Fatal("first publish created no epoch")
				}
			} else if ack.Epoch != epoch {
				t.Fatalf("epoch changed from %q to %q", epoch, ack.Epoch)
			}
			if _, err := protocol.ParseTime(ack.TS); err != nil {
				t.Fatalf("ack ts %q: %v", ack.TS, err)
			}
		}
		pos, _ := b.Head(ctx, "r")
		if pos.Seq != 20 || pos.First != 1 || pos.Epoch != epoch {
			t.Fatalf("head = %+v, want seq 20 first 1 epoch %s", pos, epoch)
		}
		// Rooms are independent.
		if ack := pub(t, b, "other", "alice", "m1", "x"); ack.Seq != 1 {
			t.Fatalf("other room first seq = %d", ack.Seq)
		}
	})

	t.Run("EnvelopeIsTheMessageFrame", func(t *testing.T) {
		b, _ := setup(t, 10)
		body := "hé \"quoted\" <img src=x> \\ \n tab\t emoji 🎉"
		ack := pub(t, b, "env", "alice", "id-1", body)
		r, err := b.After(ctx, "env", 0, 0)
		if err != nil || len(r.Messages) != 1 {
			t.Fatalf("After = %+v, %v", r, err)
		}
		m, err := protocol.DecodeMessage(r.Messages[0].Raw)
		if err != nil {
			t.Fatal(err)
		}
		want := protocol.Message{Type: "message", Room: "env", Seq: 1, Epoch: ack.Epoch, ID: "id-1", From: "alice", Device: "d1", TS: ack.TS, Body: body}
		if *m != want {
			t.Fatalf("envelope = %+v\nwant %+v", *m, want)
		}
		if *r.Messages[0].Message != want {
			t.Fatalf("decoded fields = %+v", *r.Messages[0].Message)
		}
	})

	t.Run("IdempotentPublish", func(t *testing.T) {
		b, rec := setup(t, 10)
		if err := b.Subscribe(ctx, "idem"); err != nil {
			t.Fatal(err)
		}
		a1 := pub(t, b, "idem", "alice", "same", "first")
		a2 := pub(t, b, "idem", "alice", "same", "resent")
		if !a2.Duplicate || a2.Seq != a1.Seq || a2.TS != a1.TS || a2.Epoch != a1.Epoch {
			t.Fatalf("resend ack = %+v, want the original %+v marked duplicate", a2, a1)
		}
		// Another sender may use the same id.
		a3 := pub(t, b, "idem", "bob", "same", "bob's")
		if a3.Duplicate || a3.Seq != 2 {
			t.Fatalf("other sender's ack = %+v, want fresh seq 2", a3)
		}
		r, _ := b.After(ctx, "idem", 0, 0)
		if len(r.Messages) != 2 || r.Messages[0].Body != "first" || r.Messages[1].Body != "bob's" {
			t.Fatalf("history after resend = %v", bodies(r.Messages))
		}
		rec.WaitFor(t, 5*time.Second, "two deliveries", func(e []broker.Envelope, _ []string) bool { return len(e) >= 2 })
		if envs := rec.Envelopes(); len(envs) != 2 || envs[0].Seq != 1 || envs[1].Seq != 2 {
			t.Fatalf("delivered %v, want seqs 1,2 once each", bodies(envs))
		}
	})

	// The idempotency key is the pair (From, ID), and both may contain ':'
	// (user names follow the room-name rule; ids are printable ASCII): user
	// "a" with id "b:c" and user "a:b" with id "c" are two different sends.
	t.Run("IdempotencyKeySeparatesUserFromID", func(t *testing.T) {
		b, _ := setup(t, 10)
		a1 := pub(t, b, "idem-pair", "a", "b:c", "from a")
		a2 := pub(t, b, "idem-pair", "a:b", "c", "from a:b")
		if a1.Duplicate || a1.Seq != 1 || a2.Duplicate || a2.Seq != 2 {
			t.Fatalf("acks = %+v and %+v, want both fresh with seqs 1 and 2", a1, a2)
		}
		r, err := b.After(ctx, "idem-pair", 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := bodies(r.Messages); len(got) != 2 || got[0] != "1:from a" || got[1] != "2:from a:b" {
			t.Fatalf("history = %q, want [1:from a 2:from a:b]", got)
		}
		if m := r.Messages[1]; m.From != "a:b" || m.ID != "c" {
			t.Fatalf("second message is from %q with id %q, want a:b and c", m.From, m.ID)
		}
		// A real resend of either is still recognised.
		for _, c := range []struct {
			from, id string
			orig     broker.Ack
		}{{"a", "b:c", a1}, {"a:b", "c", a2}} {
			again := pub(t, b, "idem-pair", c.from, c.id, "resent")
			want := c.orig
			want.Duplicate = true
			if again != want {
				t.Fatalf("resend of (%s, %s): ack %+v, want the original %+v marked duplicate", c.from, c.id, again, want)
			}
		}
		if pos, _ := b.Head(ctx, "idem-pair"); pos.Seq != 2 {
			t.Fatalf("head after resends = %+v, want seq 2", pos)
		}
	})

	t.Run("RetentionTrims", func(t *testing.T) {
		b, _ := setup(t, 5)
		for i := 1; i <= 12; i++ {
			pub(t, b, "trim", "u", fmt.Sprintf("m%d", i), fmt.Sprintf("%d", i))
		}
		r, err := b.After(ctx, "trim", 2, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != 12 || r.First != 8 {
			t.Fatalf("position = %+v, want seq 12 first 8", r.Position)
		}
		if got := seqs(r.Messages); got != "8,9,10,11,12" {
			t.Fatalf("After(2) = %s, want the retained 8..12", got)
		}
	})

	t.Run("AfterAndBefore", func(t *testing.T) {
		b, _ := setup(t, 100)
		for i := 1; i <= 30; i++ {
			pub(t, b, "page", "u", fmt.Sprintf("m%d", i), fmt.Sprintf("%d", i))
		}
		cases := []struct {
			name string
			get  func() (broker.Range, error)
			want string
		}{
			{"after 25", func() (broker.Range, error) { return b.After(ctx, "page", 25, 0) }, "26,27,28,29,30"},
			{"after 10 limit 3", func() (broker.Range, error) { return b.After(ctx, "page", 10, 3) }, "11,12,13"},
			{"after head", func() (broker.Range, error) { return b.After(ctx, "page", 30, 0) }, ""},
			{"after beyond head", func() (broker.Range, error) { return b.After(ctx, "page", 99, 0) }, ""},
			{"before 10 limit 3", func() (broker.Range, error) { return b.Before(ctx, "page", 10, 3) }, "7,8,9"},
			{"before 3 limit 5", func() (broker.Range, error) { return b.Before(ctx, "page", 3, 5) }, "1,2"},
			{"before 0 (head) limit 2", func() (broker.Range, error) { return b.Before(ctx, "page", 0, 2) }, "29,30"},
			{"before 1", func() (broker.Range, error) { return b.Before(ctx, "page", 1, 5) }, ""},
		}
		for _, c := range cases {
			r, err := c.get()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if got := seqs(r.Messages); got != c.want {
				t.Errorf("%s = [%s], want [%s]", c.name, got, c.want)
			}
			if r.Seq != 30 || r.First != 1 {
				t.Errorf("%s: position %+v", c.name, r.Position)
			}
		}
	})

	t.Run("SubscribeDeliversInOrder", func(t *testing.T) {
		b, rec := setup(t, 1000)
		pub(t, b, "live", "u", "before", "published before subscribe")
		if err := b.Subscribe(ctx, "live"); err != nil {
			t.Fatal(err)
		}
		rec.WaitFor(t, 5*time.Second, "Subscribed(live)", func(_ []broker.Envelope, s []string) bool { return contains(s, "live") })
		if err := b.Subscribe(ctx, "other"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 25 {
					room := "live"
					if i%5 == 0 {
						room = "other"
					}
					if _, err := b.Publish(ctx, broker.Publication{Room: room, ID: fmt.Sprintf("w%d-%d", w, i), From: "u", Body: "x"}); err != nil {
						t.Errorf("publish: %v", err)
					}
				}
			}()
		}
		wg.Wait()
		pub(t, b, "unsubscribed-room", "u", "x", "not delivered")
		rec.WaitFor(t, 10*time.Second, "100 live deliveries", func(e []broker.Envelope, _ []string) bool { return len(e) >= 100 })
		last := map[string]int64{"live": 1, "other": 0}
		for _, e := range rec.Envelopes() {
			if e.Room == "unsubscribed-room" {
				t.Fatalf("delivered a message of a room never subscribed")
			}
			if e.Seq != last[e.Room]+1 {
				t.Fatalf("room %s: delivered seq %d after %d", e.Room, e.Seq, last[e.Room])
			}
			last[e.Room] = e.Seq
		}
		if last["live"] != 81 || last["other"] != 20 {
			t.Fatalf("last seqs = %v, want live 81, other 20", last)
		}
		if err := b.Unsubscribe(ctx, "live"); err != nil {
			t.Fatal(err)
		}
		pub(t, b, "live", "u", "after-unsub", "x")
		pub(t, b, "other", "u", "marker", "x")
		rec.WaitFor(t, 5*time.Second, "marker in other", func(e []broker.Envelope, _ []string) bool {
			return len(e) > 0 && e[len(e)-1].ID == "marker"
		})
		for _, e := range rec.Envelopes() {
			if e.ID == "after-unsub" {
				t.Fatal("delivered a message published after Unsubscribe")
			}
		}
	})

	// A Subscribe that fails leaves nothing behind: the caller treats the
	// room as not subscribed and never unsubscribes it. Nothing of the room
	// reaches the Handler, neither Subscribed nor its messages; a control
	// room subscribed afterwards and published to last shows that
	// everything before it has been handled.
	t.Run("FailedSubscribeLeavesNothing", func(t *testing.T) {
		b, rec := setup(t, 10)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		err := b.Subscribe(cancelled, "failed")
		if err == nil {
			t.Fatal("Subscribe with a cancelled context succeeded")
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Subscribe with a cancelled context: %v, want an error wrapping context.Canceled", err)
		}
		if err := b.Subscribe(ctx, "control"); err != nil {
			t.Fatal(err)
		}
		pub(t, b, "failed", "u", "m1", "must not arrive")
		pub(t, b, "control", "u", "sentinel", "last")
		rec.AssertOnly(t, "control", "sentinel")
	})

	t.Run("ConcurrentPublishersGetDistinctSeqs", func(t *testing.T) {
		b, _ := setup(t, 1000)
		const workers, each = 8, 25
		var mu sync.Mutex
		got := map[int64]string{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					id := fmt.Sprintf("w%d-%d", w, i)
					ack, err := b.Publish(ctx, broker.Publication{Room: "race", ID: id, From: "u", Body: id})
					if err != nil {
						t.Errorf("publish: %v", err)
						return
					}
					mu.Lock()
					if prev, dup := got[ack.Seq]; dup {
						t.Errorf("seq %d given to %s and %s", ack.Seq, prev, id)
					}
					got[ack.Seq] = id
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		r, _ := b.After(ctx, "race", 0, 0)
		if len(r.Messages) != workers*each {
			t.Fatalf("history has %d messages, want %d", len(r.Messages), workers*each)
		}
		for i, m := range r.Messages {
			if m.Seq != int64(i+1) || got[m.Seq] != m.ID {
				t.Fatalf("history[%d] = seq %d id %s, ack said %s", i, m.Seq, m.ID, got[m.Seq])
			}
		}
	})

	t.Run("Ready", func(t *testing.T) {
		b, _ := setup(t, 10)
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := b.Ready(ctx)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not ready after 5s: %v", err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func seqs(envs []broker.Envelope) string {
	s := make([]string, len(envs))
	for i, e := range envs {
		s[i] = fmt.Sprint(e.Seq)
	}
	return strings.Join(s, ",")
}

func bodies(envs []broker.Envelope) []string {
	s := make([]string, len(envs))
	for i, e := range envs {
		s[i] = fmt.Sprintf("%d:%s", e.Seq, e.Body)
	}
	return s
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
