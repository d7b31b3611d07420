package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// A typing notice reaches the room's other members on every gateway, once
// per TypingInterval per connection however many are sent, never the
// sender's own connections, never a connection outside the room, and it
// is not replayed on resume. Typing in a room not joined is bad_request.
func TestTypingRelayedToOtherMembersOnce(t *testing.T) {
	const interval = 300 * time.Millisecond
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.TypingInterval = interval })
	gw1, gw2 := c.gws[0], c.gws[1]
	phone := login(t, gw1, "alice", "phone")
	laptop := login(t, gw2, "alice", "laptop")
	bob := login(t, gw2, "bob", "web")
	carol := login(t, gw1, "carol", "web")
	for _, m := range []*tclient{phone, laptop, bob} {
		m.join("r", nil)
	}
	carol.join("elsewhere", nil)

	// A burst of notices: the first goes out, the rest fall within the
	// interval. The pong says all three were handled.
	for range 3 {
		phone.send(protocol.Frame{Type: "typing", Room: "r"})
	}
	phone.nothingQueued()
	f := bob.next()
	if f.Type != "typing" || f.Room != "r" || f.User != "alice" || f.Device != "phone" {
		t.Fatalf("bob got %+v, want alice/phone typing in r", f)
	}
	// Exactly one reached bob, none reached alice's devices.
	sentinel(t, gw1, "r", bob, laptop, phone)
	carol.nothingQueued()

	// After the interval the next notice goes out again.
	time.Sleep(interval)
	phone.send(protocol.Frame{Type: "typing", Room: "r"})
	if f := bob.next(); f.Type != "typing" || f.User != "alice" {
		t.Fatalf("bob got %+v, want alice typing again after the interval", f)
	}

	// Not joined: refused, and nothing is relayed.
	carol.send(protocol.Frame{Type: "typing", Room: "r", Ref: "t1"})
	if f := carol.next(); f.Type != "error" || f.Code != protocol.CodeBadRequest || f.Ref != "t1" {
		t.Fatalf("carol got %+v, want bad_request for t1", f)
	}

	// A resume replays messages, never typing.
	last := sentinelSeq(t, gw1, "r", bob, laptop, phone)
	bob2 := login(t, gw1, "bob", "phone")
	j := bob2.join("r", &protocol.Since{Epoch: c.epochOf(t, "r"), Seq: last - 1})
	if j.Recovered == nil || !*j.Recovered {
		t.Fatalf("resume: %+v, want recovered", j)
	}
	if m := bob2.next(); m.Type != "message" || m.Seq != last {
		t.Fatalf("resume: got %+v, want message %d and nothing else", m, last)
	}
	bob2.nothingQueued()
	sentinel(t, gw2, "r", bob, laptop, phone)
}

// sentinelSeq publishes a message in room, requires it to be the next
// frame of every c and returns its seq.
func sentinelSeq(t *testing.T, n *node, room string, cs ...*tclient) int64 {
	t.Helper()
	ack, _ := login(t, n, "sentinel-poster", "x").post(room, "seqmark", "seqmark")
	for _, c := range cs {
		if m := c.next(); m.Type != "message" || m.Seq != ack.Seq {
			t.Fatalf("%s: got %+v, want message %d", c.name, m, ack.Seq)
		}
	}
	return ack.Seq
}

// The Go SDK sends typing notices, one per TypingInterval however often
// Typing is called, and delivers another member's as Event.Typing, in
// order with the room's messages.
func TestClientSDKTyping(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, client.Config{URL: n.wsURL("/ws"), User: "bob", Device: "sdk"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Join(ctx, "r", nil); err != nil {
		t.Fatal(err)
	}
	alice := login(t, n, "alice", "phone")
	alice.join("r", nil)
	for range 5 {
		if err := cl.Typing("r"); err != nil {
			t.Fatal(err)
		}
	}
	// The SDK's writer sends in order: what it sent before this history
	// request has been handled once the request is answered.
	if _, err := cl.History(ctx, "r", 0, 1); err != nil {
		t.Fatal(err)
	}
	if f := alice.next(); f.Type != "typing" || f.User != "bob" || f.Device != "sdk" {
		t.Fatalf("alice got %+v, want bob/sdk typing", f)
	}
	sentinel(t, n, "r", alice) // one notice only
	if err := cl.Typing("no-such-room"); err != nil {
		t.Fatalf("Typing in a room not joined: %v, want nil (nothing sent)", err)
	}
	if err := cl.Typing("bad room"); err == nil {
		t.Fatal("Typing with an invalid room name: no error")
	}

	alice.send(protocol.Frame{Type: "typing", Room: "r"})
	alice.nothingQueued()
	ack, _ := alice.post("r", "m1", "hello")
	var got []string
	for len(got) < 3 {
		select {
		case ev := <-cl.Events():
			switch {
			case ev.Typing != nil:
				got = append(got, "typing "+ev.Typing.User+"/"+ev.Typing.Device+" in "+ev.Typing.Room)
			case ev.Message != nil:
				got = append(got, fmt.Sprintf("message %d", ev.Message.Seq))
			}
		case <-ctx.Done():
			t.Fatalf("events so far %q: %v", got, ctx.Err())
		}
	}
	want := []string{"message 1", "typing alice/phone in r", fmt.Sprintf("message %d", ack.Seq)}
	if !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}
