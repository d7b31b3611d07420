// Package brokertest is the conformance suite that every broker.Broker
// implementation passes. An implementation's test calls Run with a factory
// that returns a fresh, empty broker wired to the given handler, with a way
// to make that broker lose its subscriber connection, and with a way to make
// it lose a room's history (Forget).
//
// Tests that check that something is not delivered end with a sentinel,
// published last, that must arrive last: the Handler is called in the order
// of its subscriber connection, so once the sentinel is there nothing
// published before it can still come. They rely on every topic of a test
// sharing one subscriber connection, as both brokers' topics do today.
package brokertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// Interrupt makes b, made by the Factory, lose the subscriptions of every
// topic it has subscribed, as a dropped subscriber connection would, and
// returns without waiting for the broker to notice. The broker must then
// report Lost and recover on its own. The memory broker's Interrupt
// method does this; a Redis broker's test kills its pub/sub connection.
type Interrupt func(t *testing.T, b broker.Broker)

// Call is one call of a broker.Handler method, as a Recorder saw it.
type Call struct {
	Method   string          // "Deliver", "Event", "Subscribed" or "Lost"
	Envelope broker.Envelope // of Deliver
	Event    broker.Event    // of Event
	Topics   []broker.Topic  // of Subscribed (one topic) and Lost
	Err      error           // of Lost
}

// String renders the call for comparisons and failure messages:
//
//	Deliver room:r m1                 (the envelope's room and id)
//	Event user:u "data"
//	Subscribed room:r
//	Lost [room:r user:u]              (the topics sorted; the error left out)
func (c Call) String() string {
	switch c.Method {
	case "Deliver":
		return "Deliver " + broker.Room(c.Envelope.Room).String() + " " + c.Envelope.ID
	case "Event":
		return fmt.Sprintf("Event %s %q", c.Event.Topic, c.Event.Data)
	case "Subscribed":
		if len(c.Topics) == 1 {
			return "Subscribed " + c.Topics[0].String()
		}
	case "Lost":
		names := make([]string, len(c.Topics))
		for i, t := range c.Topics {
			names[i] = t.String()
		}
		slices.Sort(names)
		return "Lost [" + strings.Join(names, " ") + "]"
	}
	return fmt.Sprintf("%s %v", c.Method, c.Topics)
}

// Log is what a Recorder recorded, in the order of the calls.
type Log []Call

// pick collects what get takes from each call of method, in order.
func pick[T any](l Log, method string, get func(Call) []T) []T {
	var out []T
	for _, c := range l {
		if c.Method == method {
			out = append(out, get(c)...)
		}
	}
	return out
}

// Envelopes returns the envelopes of the Deliver calls.
func (l Log) Envelopes() []broker.Envelope {
	return pick(l, "Deliver", func(c Call) []broker.Envelope { return []broker.Envelope{c.Envelope} })
}

// Events returns the events of the Event calls.
func (l Log) Events() []broker.Event {
	return pick(l, "Event", func(c Call) []broker.Event { return []broker.Event{c.Event} })
}

// Subscribed returns the topics of the Subscribed calls.
func (l Log) Subscribed() []broker.Topic {
	return pick(l, "Subscribed", func(c Call) []broker.Topic { return c.Topics })
}

// Lost returns the Lost calls.
func (l Log) Lost() []Call {
	return pick(l, "Lost", func(c Call) []Call { return []Call{c} })
}

// Strings renders every call with Call.String.
func (l Log) Strings() []string {
	out := make([]string, len(l))
	for i, c := range l {
		out[i] = c.String()
	}
	return out
}

// Recorder is a broker.Handler that records what it is given. It keeps
// what the broker hands it as it is, without copies, so a broker that
// reused an event's Data or a Lost's topics afterwards would show.
type Recorder struct {
	mu      sync.Mutex
	calls   Log
	changed chan struct{}
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{}, 1)} }

func (r *Recorder) record(c Call) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Deliver implements broker.Handler.
func (r *Recorder) Deliver(env broker.Envelope) { r.record(Call{Method: "Deliver", Envelope: env}) }

// Event implements broker.Handler.
func (r *Recorder) Event(ev broker.Event) { r.record(Call{Method: "Event", Event: ev}) }

// Subscribed implements broker.Handler.
func (r *Recorder) Subscribed(t broker.Topic) {
	r.record(Call{Method: "Subscribed", Topics: []broker.Topic{t}})
}

// Lost implements broker.Handler.
func (r *Recorder) Lost(topics []broker.Topic, err error) {
	r.record(Call{Method: "Lost", Topics: topics, Err: err})
}

// Calls returns a copy of every call so far.
func (r *Recorder) Calls() Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Len returns how many calls were recorded so far: a mark for
// AssertSince.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// Envelopes returns a copy of what was delivered.
func (r *Recorder) Envelopes() []broker.Envelope { return r.Calls().Envelopes() }

// WaitFor waits until cond holds over the calls recorded so far or fails
// the test after timeout with msg. cond runs with the recorder locked and
// must not keep log.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, msg string, cond func(log Log) bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok := cond(r.calls)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; calls: %q", timeout, msg, r.Calls().Strings())
		}
	}
}

// AssertSince waits until the last call recorded, rendered by Call.String,
// is the last of want (the sentinel), then requires the calls from mark
// (a Len taken earlier) on to be exactly want, in order.
func (r *Recorder) AssertSince(t testing.TB, mark int, want ...string) {
	t.Helper()
	sentinel := want[len(want)-1]
	var got []string
	r.WaitFor(t, 10*time.Second, "the sentinel "+sentinel, func(l Log) bool {
		if len(l) <= mark || l[len(l)-1].String() != sentinel {
			return false
		}
		got = l[mark:].Strings()
		return true
	})
	if !slices.Equal(got, want) {
		t.Errorf("calls up to the sentinel:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// AssertOnly waits until the envelope with id sentinel of room arrives and
// then requires that nothing but it was delivered (no other envelope, no
// event) and that room is the only topic Subscribed was called for; Lost
// calls are not checked. The Handler is called in delivery order, so the
// sentinel, published last, closes the check: nothing else arrived before
// it. Tests of what must not be delivered publish it last.
func (r *Recorder) AssertOnly(t testing.TB, room, sentinel string) {
	t.Helper()
	var l Log
	r.WaitFor(t, 10*time.Second, "the sentinel "+room+"/"+sentinel, func(calls Log) bool {
		e := calls.Envelopes()
		if len(e) == 0 || e[len(e)-1].Room != room || e[len(e)-1].ID != sentinel {
			return false
		}
		l = slices.Clone(calls)
		return true
	})
	if envs := l.Envelopes(); len(envs) != 1 {
		t.Errorf("%d envelope(s) arrived before the sentinel, want none:", len(envs)-1)
		for _, e := range envs[:len(envs)-1] {
			t.Errorf("  %s", e.Raw)
		}
	}
	for _, ev := range l.Events() {
		t.Errorf("an event arrived, want none: %s %q", ev.Topic, ev.Data)
	}
	for _, s := range l.Subscribed() {
		if s != broker.Room(room) {
			t.Errorf("Subscribed(%s) was called; only %s was subscribed (all calls: %q)", s, broker.Room(room), l.Strings())
			break
		}
	}
}

// Run runs the conformance suite. Every argument is required: interrupt
// is how the suite checks the loss signal, forget how it checks what a
// room's new epoch does to users' cursors.
func Run(t *testing.T, newBroker Factory, interrupt Interrupt, forget Forget) {
	if newBroker == nil || interrupt == nil || forget == nil {
		t.Fatal("brokertest.Run needs a Factory, an Interrupt and a Forget")
	}
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
	// sub subscribes topic and waits for its Subscribed call, which may
	// come after Subscribe returns, so that Recorder.Len marks what follows.
	sub := func(t *testing.T, b broker.Broker, rec *Recorder, topic broker.Topic) {
		t.Helper()
		count := func(l Log) int {
			n := 0
			for _, s := range l.Subscribed() {
				if s == topic {
					n++
				}
			}
			return n
		}
		was := count(rec.Calls())
		if err := b.Subscribe(ctx, topic); err != nil {
			t.Fatalf("Subscribe(%s): %v", topic, err)
		}
		rec.WaitFor(t, 10*time.Second, "Subscribed("+topic.String()+")", func(l Log) bool { return count(l) > was })
	}
	emit := func(t *testing.T, b broker.Broker, topic broker.Topic, data string) {
		t.Helper()
		if err := b.Emit(ctx, broker.Event{Topic: topic, Data: []byte(data)}); err != nil {
			t.Fatalf("Emit(%s, %q): %v", topic, data, err)
		}
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
		if err := b.Subscribe(ctx, broker.Room("idem")); err != nil {
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
		rec.WaitFor(t, 5*time.Second, "two deliveries", func(l Log) bool { return len(l.Envelopes()) >= 2 })
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
		if err := b.Subscribe(ctx, broker.Room("live")); err != nil {
			t.Fatal(err)
		}
		rec.WaitFor(t, 5*time.Second, "Subscribed(live)", func(l Log) bool { return slices.Contains(l.Subscribed(), broker.Room("live")) })
		if err := b.Subscribe(ctx, broker.Room("other")); err != nil {
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
		rec.WaitFor(t, 10*time.Second, "100 live deliveries", func(l Log) bool { return len(l.Envelopes()) >= 100 })
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
		if err := b.Unsubscribe(ctx, broker.Room("live")); err != nil {
			t.Fatal(err)
		}
		pub(t, b, "live", "u", "after-unsub", "x")
		pub(t, b, "other", "u", "marker", "x")
		rec.WaitFor(t, 5*time.Second, "marker in other", func(l Log) bool {
			e := l.Envelopes()
			return len(e) > 0 && e[len(e)-1].ID == "marker"
		})
		for _, e := range rec.Envelopes() {
			if e.ID == "after-unsub" {
				t.Fatal("delivered a message published after Unsubscribe")
			}
		}
	})

	// A Subscribe that fails leaves nothing behind: the caller treats the
	// topic as not subscribed and never unsubscribes it. Nothing of the
	// topic reaches the Handler, neither Subscribed nor its messages nor
	// its events; a control room subscribed afterwards and published to
	// last shows that everything before it has been handled.
	t.Run("FailedSubscribeLeavesNothing", func(t *testing.T) {
		b, rec := setup(t, 10)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		for _, topic := range []broker.Topic{broker.Room("failed"), broker.User("failed")} {
			err := b.Subscribe(cancelled, topic)
			if err == nil {
				t.Fatalf("Subscribe(%s) with a cancelled context succeeded", topic)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Subscribe(%s) with a cancelled context: %v, want an error wrapping context.Canceled", topic, err)
			}
		}
		sub(t, b, rec, broker.Room("control"))
		pub(t, b, "failed", "u", "m1", "must not arrive")
		emit(t, b, broker.Room("failed"), "must not arrive")
		emit(t, b, broker.User("failed"), "must not arrive")
		pub(t, b, "control", "u", "sentinel", "last")
		rec.AssertOnly(t, "control", "sentinel")
	})

	// Events reach the subscribers of their topic, room or user, with
	// their data as emitted, and nobody else. A room and a user of the same
	// name are two topics.
	t.Run("EventsReachSubscribedTopics", func(t *testing.T) {
		b, rec := setup(t, 10)
		sub(t, b, rec, broker.Room("x"))
		sub(t, b, rec, broker.User("y"))
		mark := rec.Len()
		emit(t, b, broker.Room("x"), "typing")
		emit(t, b, broker.User("y"), `{"type":"joined","room":"x"}`) // looks like an envelope, is an event
		emit(t, b, broker.User("x"), "user x is not subscribed")
		emit(t, b, broker.Room("y"), "room y is not subscribed")
		emit(t, b, broker.Room("z"), "never subscribed")
		emit(t, b, broker.User("y"), "") // no data is still an event
		emit(t, b, broker.Room("x"), "!\x00\xff binary")
		// The caller may reuse its buffer once Emit returns.
		buf := []byte("first")
		if err := b.Emit(ctx, broker.Event{Topic: broker.Room("x"), Data: buf}); err != nil {
			t.Fatal(err)
		}
		copy(buf, "XXXXX")
		emit(t, b, broker.Room("x"), "sentinel")
		rec.AssertSince(t, mark,
			`Event room:x "typing"`,
			`Event user:y "{\"type\":\"joined\",\"room\":\"x\"}"`,
			`Event user:y ""`,
			`Event room:x "!\x00\xff binary"`,
			`Event room:x "first"`,
			`Event room:x "sentinel"`)
	})

	// Events are ephemeral: they take no seq, change no room's head and
	// appear in no history, whether the room has messages or none.
	t.Run("EventsAreNotStored", func(t *testing.T) {
		b, rec := setup(t, 10)
		sub(t, b, rec, broker.Room("stored"))
		for i := 1; i <= 3; i++ {
			pub(t, b, "stored", "u", fmt.Sprintf("m%d", i), "x")
		}
		type reads struct {
			after, before broker.Range
			head, empty   broker.Position
		}
		read := func() reads {
			t.Helper()
			var r reads
			var err error
			if r.after, err = b.After(ctx, "stored", 0, 0); err != nil {
				t.Fatal(err)
			}
			if r.before, err = b.Before(ctx, "stored", 0, 0); err != nil {
				t.Fatal(err)
			}
			if r.head, err = b.Head(ctx, "stored"); err != nil {
				t.Fatal(err)
			}
			if r.empty, err = b.Head(ctx, "events-only"); err != nil {
				t.Fatal(err)
			}
			return r
		}
		was := read()
		for i := range 5 {
			emit(t, b, broker.Room("stored"), fmt.Sprintf("e%d", i))
			emit(t, b, broker.Room("events-only"), fmt.Sprintf("e%d", i))
		}
		emit(t, b, broker.Room("stored"), "last")
		// Once the last event is delivered every Emit has been handled.
		rec.WaitFor(t, 10*time.Second, "the last event", func(l Log) bool {
			ev := l.Events()
			return len(ev) == 6 && string(ev[5].Data) == "last"
		})
		is := read()
		if is.head != was.head || is.after.Position != was.after.Position || is.before.Position != was.before.Position {
			t.Errorf("head after events = %+v (After %+v, Before %+v), want %+v as before them", is.head, is.after.Position, is.before.Position, was.head)
		}
		if got, want := seqs(is.after.Messages), seqs(was.after.Messages); got != want || got != "1,2,3" {
			t.Errorf("After after events = [%s], want [%s]", got, want)
		}
		if got, want := seqs(is.before.Messages), seqs(was.before.Messages); got != want || got != "1,2,3" {
			t.Errorf("Before after events = [%s], want [%s]", got, want)
		}
		if is.empty != (broker.Position{}) {
			t.Errorf("head of a room with only events = %+v, want zero", is.empty)
		}
		if ack := pub(t, b, "stored", "u", "m4", "x"); ack.Seq != 4 || ack.Epoch != was.head.Epoch {
			t.Errorf("publish after events: ack %+v, want seq 4 in epoch %s", ack, was.head.Epoch)
		}
	})

	// A room's messages and events arrive in the order they were
	// published: one topic is one ordered stream, whatever it carries.
	t.Run("MessagesAndEventsKeepPublishOrder", func(t *testing.T) {
		b, rec := setup(t, 100)
		sub(t, b, rec, broker.Room("mixed"))
		mark := rec.Len()
		var want []string
		for i := range 10 {
			// Runs of one, two and three of each kind, so that neither
			// kind can overtake the other.
			for j := range 1 + i%3 {
				id := fmt.Sprintf("m%d-%d", i, j)
				pub(t, b, "mixed", "u", id, "x")
				want = append(want, "Deliver room:mixed "+id)
			}
			for j := range 1 + (i+1)%3 {
				data := fmt.Sprintf("e%d-%d", i, j)
				emit(t, b, broker.Room("mixed"), data)
				want = append(want, fmt.Sprintf("Event room:mixed %q", data))
			}
		}
		pub(t, b, "mixed", "u", "sentinel", "last")
		want = append(want, "Deliver room:mixed sentinel")
		rec.AssertSince(t, mark, want...)
	})

	// Unsubscribe stops a topic's messages and events alike; a room left
	// subscribed carries the sentinel.
	t.Run("UnsubscribeStopsMessagesAndEvents", func(t *testing.T) {
		b, rec := setup(t, 10)
		for _, topic := range []broker.Topic{broker.Room("gone"), broker.User("gone"), broker.Room("control")} {
			sub(t, b, rec, topic)
		}
		mark := rec.Len()
		pub(t, b, "gone", "u", "m1", "x")
		emit(t, b, broker.Room("gone"), "before")
		emit(t, b, broker.User("gone"), "before")
		pub(t, b, "control", "u", "c1", "x")
		rec.AssertSince(t, mark,
			"Deliver room:gone m1",
			`Event room:gone "before"`,
			`Event user:gone "before"`,
			"Deliver room:control c1")

		for _, topic := range []broker.Topic{broker.Room("gone"), broker.User("gone")} {
			if err := b.Unsubscribe(ctx, topic); err != nil {
				t.Fatalf("Unsubscribe(%s): %v", topic, err)
			}
		}
		mark = rec.Len()
		pub(t, b, "gone", "u", "m2", "x")
		emit(t, b, broker.Room("gone"), "after")
		emit(t, b, broker.User("gone"), "after")
		pub(t, b, "control", "u", "sentinel", "x")
		rec.AssertSince(t, mark, "Deliver room:control sentinel")
	})

	// The loss of a subscriber connection is reported once, naming every
	// topic it carried and nothing else (not a topic unsubscribed before
	// it); each is then reported Subscribed again, after which messages
	// and events flow as before.
	t.Run("LossReportsTopicsThenResubscribes", func(t *testing.T) {
		b, rec := setup(t, 10)
		for _, topic := range []broker.Topic{broker.Room("a"), broker.User("u"), broker.Room("left")} {
			sub(t, b, rec, topic)
		}
		if err := b.Unsubscribe(ctx, broker.Room("left")); err != nil {
			t.Fatal(err)
		}
		mark := rec.Len()
		interrupt(t, b)
		var back []string
		rec.WaitFor(t, 20*time.Second, "Lost, then Subscribed for room:a and user:u", func(l Log) bool {
			if len(l) < mark+3 {
				return false
			}
			back = Log(l[mark:]).Strings()
			return true
		})
		if want := "Lost [room:a user:u]"; back[0] != want {
			t.Fatalf("after the interrupt: %q, want %s first", back, want)
		}
		if err := rec.Calls()[mark].Err; err == nil {
			t.Error("Lost was called with a nil error")
		}
		resub := slices.Sorted(slices.Values(back[1:3]))
		if want := []string{"Subscribed room:a", "Subscribed user:u"}; !slices.Equal(resub, want) {
			t.Fatalf("after the interrupt: %q, want Lost then %q in any order", back, want)
		}

		pub(t, b, "a", "u", "after-loss", "x")
		emit(t, b, broker.User("u"), "after-loss")
		rec.WaitFor(t, 10*time.Second, "the message and the event sent after the loss", func(l Log) bool {
			if len(l) < mark+5 {
				return false
			}
			back = Log(l[mark:]).Strings()
			return true
		})
		// Both were sent after the resubscriptions were reported, and the
		// one after the other: they close the check.
		if got, want := back[3:], []string{"Deliver room:a after-loss", `Event user:u "after-loss"`}; !slices.Equal(slices.Sorted(slices.Values(got)), want) {
			t.Fatalf("after the resubscriptions: %q, want %q", got, want)
		}
	})

	// A closed broker refuses everything with an error wrapping ErrClosed.
	// (The broker is made here, not by setup: it is closed by the test.)
	t.Run("ClosedBrokerRefuses", func(t *testing.T) {
		rec := NewRecorder()
		b := newBroker(t, rec, 10)
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := b.Emit(ctx, broker.Event{Topic: broker.Room("r"), Data: []byte("x")}); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Emit after Close: %v, want an error wrapping ErrClosed", err)
		}
		if err := b.Emit(ctx, broker.Event{Topic: broker.User("u"), Data: []byte("x")}); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Emit to a user after Close: %v, want an error wrapping ErrClosed", err)
		}
		if _, err := b.Publish(ctx, broker.Publication{Room: "r", ID: "1", From: "u", Body: "x"}); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Publish after Close: %v, want an error wrapping ErrClosed", err)
		}
		if err := b.Subscribe(ctx, broker.User("u")); !errors.Is(err, broker.ErrClosed) {
			t.Errorf("Subscribe after Close: %v, want an error wrapping ErrClosed", err)
		}
		if calls := rec.Calls(); len(calls) != 0 {
			t.Errorf("a closed broker called its Handler: %q", calls.Strings())
		}
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

	runUsers(t, func(t *testing.T, retention int) broker.Broker {
		b, _ := setup(t, retention)
		return b
	}, forget)
	runPresence(t, func(t *testing.T) broker.Broker {
		b, _ := setup(t, 10)
		return b
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
