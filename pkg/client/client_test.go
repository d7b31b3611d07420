package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/parley-chat/parley/pkg/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testConfig(url, user string) Config {
	return Config{
		URL:        url,
		User:       user,
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		AckTimeout: waitTimeout,
	}
}

func dial(t *testing.T, cfg Config) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// nextEvent returns the next event, failing the test if none comes.
func nextEvent(t *testing.T, c *Client, waitingFor string) Event {
	t.Helper()
	select {
	case ev, ok := <-c.Events():
		if !ok {
			t.Fatalf("Events closed while waiting for %s", waitingFor)
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", waitingFor)
	}
	panic("unreachable")
}

// nextMessage returns the next message event, failing on any other event.
func nextMessage(t *testing.T, c *Client) *protocol.Message {
	t.Helper()
	ev := nextEvent(t, c, "a message")
	if ev.Message == nil {
		t.Fatalf("want a message event, got %s", describe(ev))
	}
	return ev.Message
}

func describe(ev Event) string {
	switch {
	case ev.Message != nil:
		return "message " + ev.Message.Room + " " + ev.Message.Epoch + "/" + itoa(ev.Message.Seq) + " " + ev.Message.Body
	case ev.Joined != nil:
		return "joined " + ev.Joined.Room + " " + ev.Joined.Epoch + "/" + itoa(ev.Joined.Seq)
	case ev.Error != nil:
		return "error " + ev.Error.Code + ": " + ev.Error.Message
	default:
		s := "state " + ev.State.String()
		if ev.Err != nil {
			s += ": " + ev.Err.Error()
		}
		return s
	}
}

func itoa(n int64) string {
	b, _ := protocol.Encode(n)
	return string(b)
}

func checkMessage(t *testing.T, m *protocol.Message, epoch string, seq int64, body string) {
	t.Helper()
	if m.Epoch != epoch || m.Seq != seq || m.Body != body {
		t.Fatalf("got message %s/%d %q, want %s/%d %q", m.Epoch, m.Seq, m.Body, epoch, seq, body)
	}
}

func TestJoinSendReceive(t *testing.T) {
	s := newFakeServer(t)
	alice := dial(t, testConfig(s.url(), "alice"))
	bob := dial(t, testConfig(s.url(), "bob"))
	ctx := testCtx(t)

	if w := alice.Welcome(); w.Type != protocol.TypeWelcome || w.User != "alice" || w.Node == "" {
		t.Fatalf("Welcome() = %+v", w)
	}
	for _, c := range []*Client{alice, bob} {
		j, err := c.Join(ctx, "general", nil)
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		if j.Type != protocol.TypeJoined || j.Room != "general" || j.Seq != 0 {
			t.Fatalf("Join returned %+v", j)
		}
		if ev := nextEvent(t, c, "the joined event"); ev.Joined == nil || ev.Joined.Room != "general" {
			t.Fatalf("want the joined event, got %s", describe(ev))
		}
	}

	ack, err := alice.Send(ctx, "general", "hi bob")
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if ack.Type != protocol.TypeAck || ack.Seq != 1 || ack.ID == "" {
		t.Fatalf("Send returned %+v", ack)
	}
	for _, c := range []*Client{alice, bob} {
		m := nextMessage(t, c)
		checkMessage(t, m, "e1", 1, "hi bob")
		if m.From != "alice" || m.ID != ack.ID {
			t.Fatalf("message from %q id %q, want alice %q", m.From, m.ID, ack.ID)
		}
	}

	if _, err := bob.SendID(ctx, "general", "bob-1", "hi alice"); err != nil {
		t.Fatalf("SendID: %v", err)
	}
	checkMessage(t, nextMessage(t, alice), "e1", 2, "hi alice")

	hist, err := bob.History(ctx, "general", 0, 1)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 1 || hist[0].Seq != 2 || hist[0].ID != "bob-1" {
		t.Fatalf("History(before 0, limit 1) = %+v", hist)
	}

	if err := bob.Leave(ctx, "general"); err != nil {
		t.Fatalf("Leave: %v", err)
	}

	// The server saw valid frames (the fake decodes them with
	// protocol.Decode) carrying distinct refs.
	fs := s.frames(1)
	var types []string
	refs := map[string]bool{}
	for _, f := range fs {
		types = append(types, f.Type)
		if f.Type == protocol.TypeHello {
			if f.User != "alice" || f.Device != "go" || f.Ref != "" {
				t.Errorf("hello = %+v", f)
			}
			continue
		}
		if f.Ref == "" || refs[f.Ref] {
			t.Errorf("frame %+v: missing or repeated ref", f)
		}
		refs[f.Ref] = true
	}
	if got, want := strings.Join(types, ","), "hello,join,send"; got != want {
		t.Fatalf("alice's connection received %s, want %s", got, want)
	}
}

func TestErrorReply(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	_, err := c.Join(ctx, "secret", nil)
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeForbidden || perr.Msg != "not for you" {
		t.Fatalf("Join(secret) error = %v, want *protocol.Error forbidden", err)
	}
	if _, ok := err.(*protocol.Error); !ok {
		t.Fatalf("Join(secret) error has type %T, want *protocol.Error", err)
	}
	_, err = c.Send(ctx, "bad room!", "x")
	if !errors.As(err, &perr) || perr.Code != protocol.CodeBadRequest {
		t.Fatalf("Send to an invalid room: error = %v, want bad_request", err)
	}
	// The connection is still fine.
	if _, err := c.Send(ctx, "general", "still here"); err != nil {
		t.Fatalf("Send after errors: %v", err)
	}
}

// TestReconnectResumes: the server stores a send but restarts (1012) before
// acking it; another send is made while no server is reachable. The client
// must reconnect, re-join with since = its last delivered position, resend
// the unacked send with the same id and then the queued one, get the
// original ack, and deliver every message exactly once.
func TestReconnectResumes(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatalf("Join: %v", err)
	}
	nextEvent(t, c, "the joined event")
	if _, err := c.Send(ctx, "general", "one"); err != nil {
		t.Fatalf("Send one: %v", err)
	}
	checkMessage(t, nextMessage(t, c), "e1", 1, "one")

	// "two" is stored, but neither acked nor delivered.
	s.set(func(s *fakeServer) { s.holdAcks = true })
	type sendResult struct {
		ack protocol.Frame
		err error
	}
	two := make(chan sendResult, 1)
	go func() {
		ack, err := c.Send(ctx, "general", "two")
		two <- sendResult{ack, err}
	}()
	s.await(t, "send two", func() bool { return s.countLocked(protocol.TypeSend) == 2 })
	firstTwo := s.frames(1)[3] // hello, join, send one, send two

	// The gateway restarts, and stays unreachable for a while.
	s.set(func(s *fakeServer) { s.holdAcks = false; s.down = true })
	s.closeAll(websocket.StatusServiceRestart, "restart")

	ev := nextEvent(t, c, "StateReconnecting")
	if ev.State != StateReconnecting || ev.Err == nil {
		t.Fatalf("want StateReconnecting with Err, got %s", describe(ev))
	}
	if msg := ev.Err.Error(); !strings.Contains(msg, "1012") || !strings.Contains(msg, "restart") {
		t.Fatalf("Reconnecting Err = %q, want the close code 1012 and reason", msg)
	}
	if websocket.CloseStatus(ev.Err) != websocket.StatusServiceRestart {
		t.Fatalf("CloseStatus(%v) = %v", ev.Err, websocket.CloseStatus(ev.Err))
	}

	// A send while reconnecting is queued.
	three := make(chan sendResult, 1)
	go func() {
		ack, err := c.SendID(ctx, "general", "alice-3", "three")
		three <- sendResult{ack, err}
	}()
	awaitPending(t, c, 2)
	s.set(func(s *fakeServer) { s.down = false })

	s.await(t, "the resent sends", func() bool { return s.countLocked(protocol.TypeSend) == 4 })
	got := s.frames(2)
	if len(got) != 4 {
		t.Fatalf("second connection received %d frames, want 4:\n%s", len(got), s.dump())
	}
	if got[0].Type != protocol.TypeHello || got[0].User != "alice" {
		t.Fatalf("frame 1 = %+v, want hello", got[0])
	}
	if j := got[1]; j.Type != protocol.TypeJoin || j.Room != "general" || j.Since == nil ||
		*j.Since != (protocol.Since{Epoch: "e1", Seq: 1}) {
		t.Fatalf("frame 2 = %+v (since %+v), want join general since e1/1", j, j.Since)
	}
	if f := got[2]; f.Type != protocol.TypeSend || f.ID != firstTwo.ID || f.Body != "two" || f.Room != "general" {
		t.Fatalf("frame 3 = %+v, want the resend of %+v", f, firstTwo)
	}
	if f := got[3]; f.Type != protocol.TypeSend || f.ID != "alice-3" || f.Body != "three" {
		t.Fatalf("frame 4 = %+v, want the queued send three", f)
	}

	for _, want := range []struct {
		ch  chan sendResult
		seq int64
	}{{two, 2}, {three, 3}} {
		select {
		case r := <-want.ch:
			if r.err != nil || r.ack.Seq != want.seq {
				t.Fatalf("Send: ack %+v, error %v; want seq %d", r.ack, r.err, want.seq)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("Send (seq %d) did not return after the reconnect", want.seq)
		}
	}

	// Events: the re-join, "two" from the replay and "three" live, and
	// StateConnected somewhere after the joined frame.
	var connected, joined bool
	var msgs []*protocol.Message
	for len(msgs) < 2 || !connected {
		ev := nextEvent(t, c, "the resumed events")
		switch {
		case ev.Joined != nil:
			if joined || len(msgs) > 0 || connected {
				t.Fatalf("unexpected %s", describe(ev))
			}
			if ev.Joined.Recovered == nil || !*ev.Joined.Recovered {
				t.Fatalf("re-join not recovered: %+v", ev.Joined)
			}
			joined = true
		case ev.Message != nil:
			if !joined {
				t.Fatalf("%s before the joined event", describe(ev))
			}
			msgs = append(msgs, ev.Message)
		case ev.State == StateConnected && !connected && joined:
			connected = true
		default:
			t.Fatalf("unexpected %s", describe(ev))
		}
	}
	checkMessage(t, msgs[0], "e1", 2, "two")
	checkMessage(t, msgs[1], "e1", 3, "three")

	// Nothing was stored twice, and later sends go straight through.
	if _, err := c.Send(ctx, "general", "four"); err != nil {
		t.Fatalf("Send four: %v", err)
	}
	checkMessage(t, nextMessage(t, c), "e1", 4, "four")
}

// awaitPending waits until the client has n calls pending.
func awaitPending(t *testing.T, c *Client, n int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		c.mu.Lock()
		got := len(c.pending)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client has %d pending calls, want %d", got, n)
		}
		time.Sleep(time.Millisecond) // no event marks a call being queued
	}
}

func TestDuplicatesDropped(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)
	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatalf("Join: %v", err)
	}
	nextEvent(t, c, "the joined event")

	msg := func(room, epoch string, seq int64, body string) *protocol.Frame {
		return &protocol.Frame{Type: protocol.TypeMessage, Room: room, Epoch: epoch, Seq: seq, ID: body, From: "bob", TS: protocol.FormatTime(time.Now()), Body: body}
	}
	for _, f := range []*protocol.Frame{
		msg("general", "e1", 1, "a"),
		msg("general", "e1", 1, "a"),
		msg("general", "e1", 2, "b"),
		msg("general", "e1", 1, "a"),
		msg("elsewhere", "e1", 3, "not joined"),
		msg("general", "e1", 2, "b"),
		msg("general", "e1", 3, "c"),
	} {
		s.push(f)
	}
	checkMessage(t, nextMessage(t, c), "e1", 1, "a")
	checkMessage(t, nextMessage(t, c), "e1", 2, "b")
	checkMessage(t, nextMessage(t, c), "e1", 3, "c")

	// The room's epoch changes (Redis lost its data): seqs start over.
	s.push(&protocol.Frame{Type: protocol.TypeJoined, Room: "general", Epoch: "e2", Seq: 1, First: 1, Recovered: protocol.Bool(false)})
	s.push(msg("general", "e2", 1, "new a"))
	s.push(msg("general", "e2", 1, "new a"))
	s.push(msg("general", "e1", 3, "c"))
	s.push(msg("general", "e2", 2, "new b"))
	ev := nextEvent(t, c, "the epoch change")
	if ev.Joined == nil || ev.Joined.Epoch != "e2" {
		t.Fatalf("want joined e2, got %s", describe(ev))
	}
	checkMessage(t, nextMessage(t, c), "e2", 1, "new a")
	// A stale message of the old epoch is not a duplicate of the new one's;
	// the protocol never sends one after the new joined frame.
	checkMessage(t, nextMessage(t, c), "e1", 3, "c")
	checkMessage(t, nextMessage(t, c), "e2", 2, "new b")
}

func TestDialPolicyViolation(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) { s.rejectHello = "invalid token" })

	c, err := Dial(testCtx(t), testConfig(s.url(), "mallory"))
	if err == nil {
		_ = c.Close()
		t.Fatal("Dial succeeded, want an error")
	}
	if msg := err.Error(); !strings.Contains(msg, "1008") || !strings.Contains(msg, "invalid token") {
		t.Fatalf("Dial error %q does not name close code 1008 and its reason", msg)
	}
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("CloseStatus(%v) = %v, want 1008", err, websocket.CloseStatus(err))
	}
}

func TestReconnectPolicyViolationIsFatal(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	s.set(func(s *fakeServer) { s.holdAcks = true })
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, "general", "never acked")
		sent <- err
	}()
	s.await(t, "the send", func() bool { return s.countLocked(protocol.TypeSend) == 1 })

	s.set(func(s *fakeServer) { s.rejectHello = "token expired" })
	s.closeAll(websocket.StatusServiceRestart, "restart")

	if ev := nextEvent(t, c, "StateReconnecting"); ev.State != StateReconnecting {
		t.Fatalf("want StateReconnecting, got %s", describe(ev))
	}
	ev := nextEvent(t, c, "StateClosed")
	if ev.State != StateClosed || ev.Err == nil || !strings.Contains(ev.Err.Error(), "1008") ||
		!strings.Contains(ev.Err.Error(), "token expired") || !errors.Is(ev.Err, ErrClosed) {
		t.Fatalf("want StateClosed with a 1008 error, got %s", describe(ev))
	}
	select {
	case err := <-sent:
		if !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "1008") {
			t.Fatalf("pending Send returned %v, want ErrClosed naming 1008", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("pending Send did not fail after the fatal close")
	}
	select {
	case ev, ok := <-c.Events():
		if ok {
			t.Fatalf("event after StateClosed: %s", describe(ev))
		}
	case <-time.After(waitTimeout):
		t.Fatal("Events not closed after StateClosed")
	}
	if _, err := c.Send(ctx, "general", "after"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after the fatal close returned %v, want ErrClosed", err)
	}
	s.mu.Lock()
	hellos := s.countLocked(protocol.TypeHello)
	s.mu.Unlock()
	if hellos != 2 {
		t.Fatalf("server received %d hellos, want 2 (no retry after 1008)", hellos)
	}
}

// TestAckTimeoutResends: a send left unanswered for AckTimeout makes the
// client drop the connection and resend it, with the same id, on a new one.
func TestAckTimeoutResends(t *testing.T) {
	s := newFakeServer(t)
	cfg := testConfig(s.url(), "alice")
	cfg.AckTimeout = 200 * time.Millisecond
	c := dial(t, cfg)
	ctx := testCtx(t)

	s.set(func(s *fakeServer) { s.holdAcks = true })
	ack, err := c.SendID(ctx, "general", "slow-1", "slow")
	if err != nil {
		t.Fatalf("SendID: %v", err)
	}
	if ack.Seq != 1 || ack.ID != "slow-1" {
		t.Fatalf("ack = %+v", ack)
	}
	ev := nextEvent(t, c, "StateReconnecting")
	if ev.State != StateReconnecting || !errors.Is(ev.Err, errReplyTimeout) {
		t.Fatalf("want StateReconnecting for the reply timeout, got %s", describe(ev))
	}
	if got := s.frames(2); len(got) != 2 || got[1].Type != protocol.TypeSend || got[1].ID != "slow-1" {
		t.Fatalf("second connection received %+v, want hello and the resend", got)
	}
	if ev := nextEvent(t, c, "StateConnected"); ev.State != StateConnected {
		t.Fatalf("want StateConnected, got %s", describe(ev))
	}
}

func TestCloseFailsPendingCalls(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	s.set(func(s *fakeServer) { s.holdAcks = true })
	sent := make(chan error, 1)
	go func() {
		_, err := c.Send(ctx, "general", "x")
		sent <- err
	}()
	s.await(t, "the send", func() bool { return s.countLocked(protocol.TypeSend) == 1 })
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-sent:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Send returned %v, want ErrClosed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("pending Send did not return after Close")
	}
	var last Event
	for ev := range c.Events() {
		last = ev
	}
	if last.State != StateClosed || last.Err != nil {
		t.Fatalf("last event %s, want StateClosed without Err", describe(last))
	}
	if _, err := c.Join(ctx, "general", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Join after Close returned %v, want ErrClosed", err)
	}
	s.await(t, "the connection to close", func() bool { return len(s.closes) == 1 })
	s.mu.Lock()
	code := s.closes[0]
	s.mu.Unlock()
	if code != websocket.StatusNormalClosure {
		t.Fatalf("server saw close code %v, want 1000", code)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestResumeRejoinsJoinedRoomsOnly: after a drop (1013 here), only the rooms
// still joined are re-joined, each from its own position.
func TestResumeRejoinsJoinedRoomsOnly(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	ctx := testCtx(t)

	for _, room := range []string{"a", "b", "c"} {
		if _, err := c.Join(ctx, room, nil); err != nil {
			t.Fatalf("Join %s: %v", room, err)
		}
		nextEvent(t, c, "the joined event")
	}
	for i, room := range []string{"a", "a", "b"} {
		if _, err := c.Send(ctx, room, "x"); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		nextMessage(t, c)
	}
	if err := c.Leave(ctx, "c"); err != nil {
		t.Fatalf("Leave: %v", err)
	}

	s.closeAll(websocket.StatusTryAgainLater, "slow consumer")
	if ev := nextEvent(t, c, "StateReconnecting"); ev.State != StateReconnecting ||
		websocket.CloseStatus(ev.Err) != websocket.StatusTryAgainLater {
		t.Fatalf("want StateReconnecting for 1013, got %s", describe(ev))
	}
	for i := 0; i < 2; i++ {
		if ev := nextEvent(t, c, "a re-join"); ev.Joined == nil || !*ev.Joined.Recovered {
			t.Fatalf("want a recovered joined event, got %s", describe(ev))
		}
	}
	if ev := nextEvent(t, c, "StateConnected"); ev.State != StateConnected {
		t.Fatalf("want StateConnected, got %s", describe(ev))
	}
	got := s.frames(2)
	want := []protocol.Frame{
		{Type: protocol.TypeHello},
		{Type: protocol.TypeJoin, Room: "a", Since: &protocol.Since{Epoch: "e1", Seq: 2}},
		{Type: protocol.TypeJoin, Room: "b", Since: &protocol.Since{Epoch: "e1", Seq: 1}},
	}
	if len(got) != len(want) {
		t.Fatalf("second connection received %d frames, want %d:\n%s", len(got), len(want), s.dump())
	}
	for i := range want {
		if got[i].Type != want[i].Type || got[i].Room != want[i].Room ||
			(want[i].Since != nil && (got[i].Since == nil || *got[i].Since != *want[i].Since)) {
			t.Fatalf("frame %d = %+v (since %+v), want %+v (since %+v)", i, got[i], got[i].Since, want[i], want[i].Since)
		}
	}
	// Live traffic continues in the re-joined rooms.
	if _, err := c.Send(ctx, "b", "y"); err != nil {
		t.Fatalf("Send after resume: %v", err)
	}
	checkMessage(t, nextMessage(t, c), "e1", 2, "y")
}

func TestCallContextEnds(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))

	s.set(func(s *fakeServer) { s.holdAcks = true })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.SendID(ctx, "general", "id-1", "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send returned %v, want context.DeadlineExceeded", err)
	}
	c.mu.Lock()
	n := len(c.pending)
	c.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d calls still pending after their ctx ended", n)
	}
	// Retrying with the same id returns the original ack.
	s.set(func(s *fakeServer) { s.holdAcks = false })
	ack, err := c.SendID(testCtx(t), "general", "id-1", "x")
	if err != nil || ack.Seq != 1 {
		t.Fatalf("retry: ack %+v, error %v; want seq 1", ack, err)
	}
}

func TestUnsolicitedError(t *testing.T) {
	s := newFakeServer(t)
	c := dial(t, testConfig(s.url(), "alice"))
	s.push(protocol.ErrorFrame("", protocol.CodeRateLimited, "slow down"))
	ev := nextEvent(t, c, "the error event")
	if ev.Error == nil || ev.Error.Code != protocol.CodeRateLimited || ev.Error.Message != "slow down" {
		t.Fatalf("want the error event, got %s", describe(ev))
	}
}

func TestBackoff(t *testing.T) {
	b := &backoff{min: 100 * time.Millisecond, max: time.Second}
	for i := 0; i < 50; i++ {
		ceil := b.max
		if i < 10 {
			ceil = min(b.max, b.min<<(i+1))
		}
		if d := b.next(); d < b.min || d > ceil {
			t.Fatalf("attempt %d: delay %v outside [%v, %v]", i, d, b.min, ceil)
		}
	}
	b.reset()
	if d := b.next(); d > 200*time.Millisecond {
		t.Fatalf("after reset: delay %v, want at most 200ms", d)
	}
	fixed := &backoff{min: time.Second, max: time.Second}
	if d := fixed.next(); d != time.Second {
		t.Fatalf("min == max: delay %v, want 1s", d)
	}
}

// TestRetryDial: with RetryDial, Dial keeps trying a gateway that answers
// 503 until it accepts; a refused token still fails at once, and a ctx that
// ends first makes Dial return the last failure. Without it, the first
// failure is Dial's error.
func TestRetryDial(t *testing.T) {
	s := newFakeServer(t)
	s.set(func(s *fakeServer) { s.down = true })
	if c, err := Dial(testCtx(t), testConfig(s.url(), "alice")); err == nil || !strings.Contains(err.Error(), "503") {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("Dial without RetryDial: %v, want the 503", err)
	}

	cfg := testConfig(s.url(), "alice")
	cfg.RetryDial = true
	type dialResult struct {
		c   *Client
		err error
	}
	dialed := make(chan dialResult, 1)
	go func() {
		c, err := Dial(testCtx(t), cfg)
		dialed <- dialResult{c, err}
	}()
	s.await(t, "three more refused upgrades", func() bool { return s.upgrades >= 4 })
	s.set(func(s *fakeServer) { s.down = false })
	r := <-dialed
	if r.err != nil {
		t.Fatalf("Dial with RetryDial: %v", r.err)
	}
	t.Cleanup(func() { _ = r.c.Close() })
	if ack, err := r.c.Send(testCtx(t), "general", "made it"); err != nil || ack.Seq != 1 {
		t.Fatalf("Send after the retried dial: ack %+v, error %v", ack, err)
	}

	s.set(func(s *fakeServer) { s.rejectHello = "token expired" })
	before := s.received()
	if _, err := Dial(testCtx(t), cfg); err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Fatalf("Dial with a refused token: %v, want the 1008 at once", err)
	}
	hellos := 0
	for _, f := range s.received()[len(before):] {
		if f.f.Type == protocol.TypeHello {
			hellos++
		}
	}
	if hellos != 1 {
		t.Fatalf("%d hellos for a refused token, want 1 (no retry)", hellos)
	}

	s.set(func(s *fakeServer) { s.rejectHello = ""; s.down = true })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "503") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial until ctx ends: %v, want the last failure (503) and the deadline", err)
	}
}
