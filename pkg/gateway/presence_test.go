package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// wantPresence reads c's next frame and requires it to be the presence
// event of user with devices connections in room.
func wantPresence(t *testing.T, c *tclient, room, user string, devices int64) {
	t.Helper()
	f := c.next()
	state := "online"
	if devices == 0 {
		state = "offline"
	}
	if f.Type != "presence" || f.Ref != "" || f.Room != room || f.User != user || f.Devices != devices || f.State != state {
		t.Fatalf("%s: %+v, want presence of %s in %s: %s on %d devices", c.name, f, user, room, state, devices)
	}
}

// Presence across gateways: a room's members see who comes and goes, with
// device counts, and can ask who is there; the users of a node that stops
// beating (killed) are swept out and reported offline.
func TestPresence(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) {
		cfg.PresenceInterval, cfg.PresenceTTL = 100*time.Millisecond, 300*time.Millisecond
	})
	gw1, gw2 := c.gws[0], c.gws[1]
	bob := login(t, gw2, "bob", "web")
	bob.presence = true
	bob.join("r", nil)

	phone := login(t, gw1, "alice", "phone")
	phone.join("r", nil)
	wantPresence(t, bob, "r", "alice", 1)
	laptop := login(t, gw2, "alice", "laptop")
	laptop.join("r", nil)
	wantPresence(t, bob, "r", "alice", 2)

	f := bob.ask(protocol.Frame{Type: "presence", Room: "r"})
	if f.Type != "presence" || f.Count != 3 || f.Users == nil || len(*f.Users) != 2 ||
		(*f.Users)[0] != (protocol.PresentUser{User: "alice", Devices: 2}) || (*f.Users)[1] != (protocol.PresentUser{User: "bob", Devices: 1}) {
		t.Fatalf("presence of r: %+v, want alice on 2, bob on 1, 3 connections", f)
	}

	laptop.send(protocol.Frame{Type: "leave", Ref: "l", Room: "r"})
	wantPresence(t, bob, "r", "alice", 1)

	// A node that stops beating: its connection is swept within the TTL
	// and a beat, and its user reported offline.
	ctx := context.Background()
	br := gw1.g.Broker()
	if err := br.Beat(ctx, "ghost", 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, _, err := br.Enter(ctx, "r", "ghost", "ghost/1", "carol"); err != nil {
		t.Fatal(err)
	}
	// (No event: the ghost's gateway would have sent it.) Carol is swept
	// out once the ghost's beat has run out.
	wantPresence(t, bob, "r", "carol", 0)
	sentinel(t, gw1, "r", bob) // reported once, though two gateways swept

	// Asking about a room one may not read is refused.
	alice := login(t, gw1, "alice", "tablet")
	if f := alice.ask(protocol.Frame{Type: "create", Room: "secret"}); f.Type != "created" {
		t.Fatalf("create: %+v", f)
	}
	if f := bob.ask(protocol.Frame{Type: "presence", Room: "secret"}); f.Type != "error" || f.Code != protocol.CodeForbidden {
		t.Fatalf("presence of a private room by a non-member: %+v, want forbidden", f)
	}
}

// In a room over PresenceDetail connections presence names no one: no
// events, and a request gets the count only.
func TestPresenceOfBigRoomsIsACount(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.PresenceDetail = 2 })
	n := c.gws[0]
	bob := login(t, n, "bob", "web")
	bob.presence = true
	bob.join("big", nil)
	a := login(t, n, "alice", "phone")
	a.join("big", nil)
	wantPresence(t, bob, "big", "alice", 1) // 2 connections: still detailed
	login(t, n, "carol", "phone").join("big", nil)
	sentinel(t, n, "big", bob) // 3: no event
	f := bob.ask(protocol.Frame{Type: "presence", Room: "big"})
	if f.Type != "presence" || f.Count != 3 || f.Users != nil {
		t.Fatalf("presence of a big room: %+v, want the count 3 and no users", f)
	}
}

// A user is online while any of their devices is connected, on any
// gateway, whatever rooms they joined.
func TestUserOnline(t *testing.T) {
	c := newCluster(t, 2, nil)
	gw1, gw2 := c.gws[0], c.gws[1]
	bob := login(t, gw1, "bob", "web")
	online := func(want int64) {
		t.Helper()
		state := "online"
		if want == 0 {
			state = "offline"
		}
		f := bob.ask(protocol.Frame{Type: "presence", User: "alice"})
		if f.Type != "presence" || f.User != "alice" || f.Devices != want || f.State != state {
			t.Fatalf("alice's presence: %+v, want %s on %d devices", f, state, want)
		}
	}
	online(0)
	phone := login(t, gw1, "alice", "phone")
	laptop := login(t, gw2, "alice", "laptop")
	// Recorded off the hello's path (a chore): wait for it, then check.
	waitFor(t, 10*time.Second, "alice online on 2 devices", func() bool {
		return bob.ask(protocol.Frame{Type: "presence", User: "alice"}).Devices == 2
	})
	online(2)
	phone.ws.Close(1000, "bye")
	laptop.ws.Close(1000, "bye")
	waitFor(t, 10*time.Second, "alice offline", func() bool {
		f := bob.ask(protocol.Frame{Type: "presence", User: "alice"})
		return f.Devices == 0 && f.State == "offline"
	})
	if f := bob.ask(protocol.Frame{Type: "presence", User: "not a user"}); f.Type != "error" || f.Code != protocol.CodeBadRequest {
		t.Fatalf("presence of an invalid user name: %+v, want bad_request", f)
	}
}
