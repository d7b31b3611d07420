package client

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/fakegw"
	"github.com/parley-chat/parley/pkg/protocol"
)

// firstOfEach refuses the first request of each type in types with answer
// and serves the rest. Called under the fake server's lock.
func firstOfEach(answer func(*protocol.Frame) *protocol.Frame, types ...string) func(*protocol.Frame) *protocol.Frame {
	seen := map[string]bool{}
	return func(f *protocol.Frame) *protocol.Frame {
		for _, t := range types {
			if f.Type == t && !seen[t] {
				seen[t] = true
				return answer(f)
			}
		}
		return nil
	}
}

// sendsReceived returns the send frames the server received, in order.
func sendsReceived(s *fakeServer) []recvFrame {
	var out []recvFrame
	for _, r := range s.received() {
		if r.f.Type == protocol.TypeSend {
			out = append(out, r)
		}
	}
	return out
}

// nextRetry returns the next event, which must be a Retry of a request of
// type typ refused with code.
func nextRetry(t *testing.T, c *Client, typ, code string) *Retry {
	t.Helper()
	ev := nextEvent(t, c, "a retry event")
	if ev.Retry == nil {
		t.Fatalf("want a retry of %s (%s), got %s", typ, code, describe(ev))
	}
	if r := ev.Retry; r.Request.Type != typ || r.Err == nil || r.Err.Code != code {
		t.Fatalf("want a retry of %s (%s), got one of %s (%v)", typ, code, r.Request.Type, r.Err)
	}
	return ev.Retry
}

// TestRateLimitedRequestsResent: a join, a send and a history request each
// refused once with rate_limited are resent on the same connection, with the
// same ref (and the send with the same id), no sooner than retry_after_ms,
// and each call returns its reply, not an error. Each refusal is reported
// on Events as a Retry.
func TestRateLimitedRequestsResent(t *testing.T) {
	const after = 150 * time.Millisecond
	s := newFakeServer(t)
	s.set(func(s *fakeServer) {
		s.refuse = firstOfEach(func(f *protocol.Frame) *protocol.Frame { return fakegw.RateLimited(f, after) },
			protocol.TypeJoin, protocol.TypeSend, protocol.TypeHistory)
	})
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if r := nextRetry(t, c, protocol.TypeJoin, protocol.CodeRateLimited); r.After != after || r.Attempt != 1 || r.Request.Room != "general" {
		t.Fatalf("join retry %+v, want after %v, attempt 1, room general", r, after)
	}
	if ev := nextEvent(t, c, "the joined event"); ev.Joined == nil {
		t.Fatalf("want the joined event, got %s", describe(ev))
	}
	ack, err := c.SendID(ctx, "general", "a-1", "one")
	if err != nil {
		t.Fatalf("SendID: %v", err)
	}
	if ack.Seq != 1 || ack.ID != "a-1" || ack.Epoch != "e1" {
		t.Fatalf("ack %+v, want seq 1 of e1, id a-1", ack)
	}
	if r := nextRetry(t, c, protocol.TypeSend, protocol.CodeRateLimited); r.Request.ID != "a-1" || r.Request.Body != "one" || r.Attempt != 1 {
		t.Fatalf("send retry %+v, want the send a-1", r)
	}
	checkMessage(t, nextMessage(t, c), "e1", 1, "one")
	hist, err := c.History(ctx, "general", 0, 10)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 1 || hist[0].ID != "a-1" {
		t.Fatalf("History = %+v, want the one message", hist)
	}
	nextRetry(t, c, protocol.TypeHistory, protocol.CodeRateLimited)
	// Sentinel: nothing else (no error event) came before it.
	if _, err := c.SendID(ctx, "general", "a-2", "sentinel"); err != nil {
		t.Fatalf("SendID sentinel: %v", err)
	}
	checkMessage(t, nextMessage(t, c), "e1", 2, "sentinel")

	got := s.frames(1)
	var kinds []string
	for _, f := range got {
		kinds = append(kinds, f.Type+":"+f.Ref)
	}
	// hello, then each request twice with its ref, then the sentinel.
	if len(got) != 8 || got[1].Ref != got[2].Ref || got[3].Ref != got[4].Ref || got[5].Ref != got[6].Ref ||
		got[1].Type != protocol.TypeJoin || got[3].Type != protocol.TypeSend || got[5].Type != protocol.TypeHistory ||
		got[4].ID != "a-1" || got[4].Body != "one" {
		t.Fatalf("server received %v, want each request twice in a row with its ref", kinds)
	}
	recv := s.received()
	for _, i := range []int{2, 4, 6} {
		if gap := recv[i].at.Sub(recv[i-1].at); gap < after {
			t.Errorf("%s resent %v after its refusal, want at least retry_after_ms (%v)", kinds[i], gap, after)
		}
	}
}

// TestRateLimitedSendNotOvertaken: a send made while an earlier one waits
// out a rate_limited answer is held until the earlier one is acked, so that
// the server, which refused the first but would accept the second, stores
// them in the order they were made.
func TestRateLimitedSendNotOvertaken(t *testing.T) {
	const after = 200 * time.Millisecond
	s := newFakeServer(t)
	s.set(func(s *fakeServer) {
		s.refuse = firstOfEach(func(f *protocol.Frame) *protocol.Frame { return fakegw.RateLimited(f, after) }, protocol.TypeSend)
	})
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	type sendResult struct {
		ack protocol.Frame
		err error
	}
	first, second := make(chan sendResult, 1), make(chan sendResult, 1)
	go func() {
		ack, err := c.SendID(ctx, "general", "first", "1")
		first <- sendResult{ack, err}
	}()
	s.await(t, "the first send", func() bool { return s.countLocked(protocol.TypeSend) == 1 })
	go func() {
		ack, err := c.SendID(ctx, "general", "second", "2")
		second <- sendResult{ack, err}
	}()
	for i, ch := range []chan sendResult{first, second} {
		r := <-ch
		if r.err != nil || r.ack.Seq != int64(i+1) {
			t.Fatalf("send %d: ack %+v, error %v; want seq %d", i+1, r.ack, r.err, i+1)
		}
	}
	var ids []string
	for _, r := range sendsReceived(s) {
		ids = append(ids, r.f.ID)
	}
	if strings.Join(ids, ",") != "first,first,second" {
		t.Fatalf("server received sends %v, want first (refused), first, second", ids)
	}
}

// TestUnavailableRetriedWithBackoff: while the store is unreachable, a send
// and a join are answered unavailable; the Client resends them, the send
// with the same id, spaced by its backoff, until the store is back, and the
// calls return their replies.
func TestUnavailableRetriedWithBackoff(t *testing.T) {
	s := newFakeServer(t)
	down := true // guarded by s.mu
	s.set(func(s *fakeServer) {
		s.refuse = func(f *protocol.Frame) *protocol.Frame {
			if down && (f.Type == protocol.TypeSend || f.Type == protocol.TypeJoin) {
				return fakegw.Unavailable(f)
			}
			return nil
		}
	})
	cfg := testConfig(s.url(), "alice")
	cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 40*time.Millisecond
	c := dial(t, cfg)
	ctx := testCtx(t)

	joined := make(chan error, 1)
	go func() {
		_, err := c.Join(ctx, "general", nil)
		joined <- err
	}()
	for i := 1; i <= 3; i++ {
		r := nextRetry(t, c, protocol.TypeJoin, protocol.CodeUnavailable)
		if r.Attempt != i || r.After < cfg.MinBackoff || r.After > cfg.MaxBackoff {
			t.Fatalf("join retry %d: %+v, want attempt %d after [%v, %v]", i, r, i, cfg.MinBackoff, cfg.MaxBackoff)
		}
	}
	sent := make(chan error, 1)
	go func() {
		ack, err := c.SendID(ctx, "general", "u-1", "while down")
		if err == nil && ack.Seq != 1 {
			err = errors.New("ack seq " + itoa(ack.Seq))
		}
		sent <- err
	}()
	// Retries of the join and of the send interleave; wait for the send's
	// third refusal.
	for n := 0; n < 3; {
		ev := nextEvent(t, c, "retry events")
		if ev.Retry == nil || ev.Retry.Err.Code != protocol.CodeUnavailable {
			t.Fatalf("want a retry (unavailable), got %s", describe(ev))
		}
		if ev.Retry.Request.Type == protocol.TypeSend {
			n++
			if ev.Retry.Attempt != n || ev.Retry.Request.ID != "u-1" {
				t.Fatalf("send retry %+v, want attempt %d of u-1", ev.Retry, n)
			}
		}
	}
	s.set(func(s *fakeServer) { down = false })
	if err := <-joined; err != nil {
		t.Fatalf("Join: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("SendID: %v", err)
	}
	sends := sendsReceived(s)
	if len(sends) < 4 {
		t.Fatalf("server received %d sends, want at least 4 (3 refused, 1 stored)", len(sends))
	}
	for i, r := range sends {
		if r.f.ID != "u-1" || r.f.Ref != sends[0].f.Ref || r.conn != 1 {
			t.Fatalf("send %d: %+v on connection %d, want u-1 resent on connection 1 with its ref", i, r.f, r.conn)
		}
		if i > 0 && r.at.Sub(sends[i-1].at) < cfg.MinBackoff {
			t.Fatalf("send %d came %v after the one before, want at least MinBackoff", i, r.at.Sub(sends[i-1].at))
		}
	}
}

// TestRefusedSendContextEnds: a send refused until its ctx ends returns the
// ctx error naming the last refusal; the send held behind it then goes.
func TestRefusedSendContextEnds(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) {
		s.refuse = func(f *protocol.Frame) *protocol.Frame {
			if f.ID == "doomed" {
				return fakegw.Unavailable(f)
			}
			return nil
		}
	})
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	short, cancel := context.WithCancel(ctx)
	defer cancel()
	doomed := make(chan error, 1)
	go func() {
		_, err := c.SendID(short, "general", "doomed", "x")
		doomed <- err
	}()
	nextRetry(t, c, protocol.TypeSend, protocol.CodeUnavailable)
	later := make(chan error, 1)
	go func() {
		ack, err := c.SendID(ctx, "general", "later", "y")
		if err == nil && ack.Seq != 1 {
			err = errors.New("ack seq " + itoa(ack.Seq))
		}
		later <- err
	}()
	awaitPending(t, c, 2)
	cancel()
	err := <-doomed
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "unavailable: message store unreachable") {
		t.Fatalf("SendID error %v, want context.Canceled naming the last refusal", err)
	}
	if err := <-later; err != nil {
		t.Fatalf("the send held behind it: %v", err)
	}
	var ids []string
	for _, r := range sendsReceived(s) {
		ids = append(ids, r.f.ID)
	}
	if ids[len(ids)-1] != "later" || strings.Count(strings.Join(ids, ","), "later") != 1 {
		t.Fatalf("server received sends %v, want the doomed ones, then later once", ids)
	}
}

// TestRateLimitedHoldsTheConnection: after a rate_limited answer the Client
// writes nothing on that connection before retry_after_ms, and the
// requests refused together are resent one per retry_after_ms, not all at
// once into an empty bucket.
func TestRateLimitedHoldsTheConnection(t *testing.T) {
	const after = 100 * time.Millisecond
	s := newFakeServer(t)
	// The three requests are held until all have arrived, then refused
	// together: the client cannot resend one before the last is written.
	s.set(func(s *fakeServer) { s.hold = func(f *protocol.Frame) bool { return f.Type == protocol.TypeHistory } })
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.History(ctx, "general", 0, 1)
			errs <- err
		}()
	}
	s.await(t, "the three requests", func() bool { return len(s.held) == 3 })
	var last time.Time // the last refusal
	s.answerHeld(func(f *protocol.Frame) *protocol.Frame {
		last = time.Now()
		return fakegw.RateLimited(f, after)
	})
	for range 3 {
		nextRetry(t, c, protocol.TypeHistory, protocol.CodeRateLimited)
	}
	// The client has taken in every refusal; a new request waits too.
	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatalf("Join: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("History: %v", err)
		}
	}

	var resent []time.Time
	for _, r := range s.received()[4:] { // after hello and the 3 refused
		if r.at.Sub(last) < after {
			t.Fatalf("%s written %v after the last refusal, want none before retry_after_ms (%v)", r.f.Type, r.at.Sub(last), after)
		}
		resent = append(resent, r.at)
	}
	if len(resent) != 4 {
		t.Fatalf("%d frames after the refusals, want 3 resent history requests and the join", len(resent))
	}
	// Spaced when written; measured on arrival, so allow for the network's
	// jitter (all at once would be microseconds apart).
	for i := 1; i < len(resent); i++ {
		if gap := resent[i].Sub(resent[i-1]); gap < after/2 {
			t.Errorf("held frame %d written %v after the one before, want them spaced by retry_after_ms", i, gap)
		}
	}
}

// TestRejoinRateLimited: after a reconnect, a re-join answered rate_limited
// is sent again on the same connection; the room stays joined and the
// connection is kept.
func TestRejoinRateLimited(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)
	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatalf("Join: %v", err)
	}
	nextEvent(t, c, "the joined event")

	s.set(func(s *fakeServer) {
		s.refuse = firstOfEach(func(f *protocol.Frame) *protocol.Frame { return fakegw.RateLimited(f, 50*time.Millisecond) }, protocol.TypeJoin)
	})
	s.closeAll(websocket.StatusServiceRestart, "restart")
	if ev := nextEvent(t, c, "StateReconnecting"); ev.State != StateReconnecting {
		t.Fatalf("want StateReconnecting, got %s", describe(ev))
	}
	if r := nextRetry(t, c, protocol.TypeJoin, protocol.CodeRateLimited); r.Request.Room != "general" || r.Request.Since == nil {
		t.Fatalf("retry %+v, want the re-join of general with since", r)
	}
	if ev := nextEvent(t, c, "the re-joined event"); ev.Joined == nil || ev.Joined.Room != "general" {
		t.Fatalf("want the re-joined event, got %s", describe(ev))
	}
	if ev := nextEvent(t, c, "StateConnected"); ev.State != StateConnected {
		t.Fatalf("want StateConnected, got %s", describe(ev))
	}
	// Still joined, on the second connection: a message sent now arrives.
	if _, err := c.Send(ctx, "general", "after"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	checkMessage(t, nextMessage(t, c), "e1", 1, "after")
	var joins []int
	for _, r := range s.received() {
		if r.f.Type == protocol.TypeJoin {
			joins = append(joins, r.conn)
		}
	}
	if !slices.Equal(joins, []int{1, 2, 2}) {
		t.Fatalf("joins on connections %v, want the first join, then the refused and the accepted re-join on connection 2", joins)
	}
}
