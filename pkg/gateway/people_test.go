package gateway_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// roomsOf returns welcome's rooms by name, failing when welcome has none.
func roomsOf(t *testing.T, w protocol.Frame) map[string]protocol.RoomState {
	t.Helper()
	if w.Rooms == nil {
		t.Fatalf("welcome %+v has no rooms", w)
	}
	out := make(map[string]protocol.RoomState)
	for _, r := range *w.Rooms {
		out[r.Room] = r
	}
	return out
}

// hello logs in and returns the welcome frame.
func hello(t *testing.T, n *node, user, device string) (*tclient, protocol.Frame) {
	t.Helper()
	c := connect(t, n)
	c.name = user + "/" + device
	c.sync = true
	c.send(protocol.Frame{Type: "hello", User: user, Device: device})
	return c, c.expect("welcome")
}

func (c *tclient) read(room, epoch string, seq int64) protocol.Frame {
	c.t.Helper()
	c.n++
	ref := fmt.Sprintf("r%d", c.n)
	c.send(protocol.Frame{Type: "read", Ref: ref, Room: room, Epoch: epoch, Seq: seq})
	f := c.next()
	if f.Ref != ref {
		c.t.Fatalf("%s: got %+v, want the answer to read %s", c.name, f, ref)
	}
	return f
}

// A user's rooms and read cursors follow the user across devices and
// gateways: a join makes a membership, welcome on another device lists it
// with the unread count derived from the head and the cursor, the cursor
// moves forward only, and a leave ends the membership everywhere.
func TestMembershipsAndReadCursorsAcrossDevices(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.RateLimit, cfg.RateBurst = 1000, 1000 })
	gw1, gw2 := c.gws[0], c.gws[1]

	phone, w := hello(t, gw1, "alice", "phone")
	if rs := roomsOf(t, w); len(rs) != 0 {
		t.Fatalf("a new user's welcome lists rooms: %+v", rs)
	}
	phone.join("general", nil)
	bob := login(t, gw2, "bob", "web")
	for i := 1; i <= 60; i++ {
		bob.post("general", fmt.Sprintf("b%d", i), fmt.Sprintf("m%d", i))
	}
	got := phone.messages(60)
	epoch := got[0].Epoch

	if f := phone.read("general", epoch, 40); f.Type != "read" || f.Seq != 40 || f.Epoch != epoch || f.Unread != 20 {
		t.Fatalf("read 40: %+v, want cursor 40 and unread 20", f)
	}

	laptop, w := hello(t, gw2, "alice", "laptop")
	g := roomsOf(t, w)["general"]
	want := protocol.RoomState{Room: "general", Kind: "public", Epoch: epoch, Seq: 60, First: 1, Read: 40, Unread: 20}
	if g != want {
		t.Fatalf("laptop's welcome: general %+v, want %+v", g, want)
	}
	// One request brings exactly the unread messages.
	j := laptop.join("general", &protocol.Since{Epoch: epoch, Seq: g.Read})
	if j.Recovered == nil || !*j.Recovered {
		t.Fatalf("join from the cursor: %+v, want recovered", j)
	}
	if ms := laptop.messages(20); ms[0].Seq != 41 || ms[19].Seq != 60 {
		t.Fatalf("caught up %s, want 41-60", seqsOf(ms))
	}
	laptop.nothingQueued()

	if f := laptop.read("general", epoch, 60); f.Seq != 60 || f.Unread != 0 {
		t.Fatalf("read 60: %+v, want cursor 60, unread 0", f)
	}
	// The phone, on the other gateway, hears of it at once.
	if f := phone.next(); f.Type != "read" || f.Ref != "" || f.Room != "general" || f.Seq != 60 || f.Epoch != epoch || f.Unread != 0 {
		t.Fatalf("phone: %+v, want the laptop's read of 60", f)
	}
	// Behind the cursor: the cursor stays (a racing device never moves it back).
	if f := phone.read("general", epoch, 30); f.Type != "read" || f.Seq != 60 || f.Unread != 0 {
		t.Fatalf("read 30 after 60: %+v, want the cursor left at 60", f)
	}
	// Beyond the head; a room not a member of; a stale epoch.
	if f := phone.read("general", epoch, 61); f.Type != "error" || f.Code != protocol.CodeBadRequest {
		t.Fatalf("read beyond the head: %+v, want bad_request", f)
	}
	if f := phone.read("elsewhere", "", 0); f.Type != "error" || f.Code != protocol.CodeForbidden {
		t.Fatalf("read in a room not joined: %+v, want forbidden", f)
	}
	if f := phone.read("general", "gone-epoch", 5); f.Type != "read" || f.Seq != 60 || f.Epoch != epoch {
		t.Fatalf("read in a stale epoch: %+v, want the cursor left at %s/60", f, epoch)
	}

	// The phone comes back on the other gateway: unread 0, cursor at the head.
	phone2, w := hello(t, gw2, "alice", "phone2")
	if g := roomsOf(t, w)["general"]; g.Read != 60 || g.Unread != 0 {
		t.Fatalf("phone's welcome after reading on the laptop: %+v, want read 60, unread 0", g)
	}

	// A new room joined on the laptop is the user's on every device, live.
	laptop.join("news", nil)
	for _, d := range []*tclient{phone, phone2} {
		if f := d.next(); f.Type != "membership" || f.Room != "news" || f.State != "member" || f.Kind != "public" {
			t.Fatalf("%s: %+v, want membership of news", d.name, f)
		}
	}

	// Leaving ends the membership on every device.
	laptop.send(protocol.Frame{Type: "leave", Ref: "l1", Room: "general"})
	if f := laptop.next(); f.Type != "left" || f.Ref != "l1" {
		t.Fatalf("leave: %+v", f)
	}
	for _, d := range []*tclient{phone, phone2} {
		if f := d.next(); f.Type != "membership" || f.Room != "general" || f.State != "left" {
			t.Fatalf("%s: %+v, want general left", d.name, f)
		}
	}
	laptop.nothingQueued() // its own leave's event did not come back to it
	_, w = hello(t, gw1, "alice", "tablet")
	if rs := roomsOf(t, w); len(rs) != 1 || rs["news"].Room != "news" {
		t.Fatalf("after leaving general, welcome lists %+v, want news only", rs)
	}
}

// A store that cannot be read at hello costs the room list, not the
// connection: welcome comes without rooms, and the connection works once
// the store is back.
func TestWelcomeWithoutRoomsWhileTheStoreIsDown(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.RequestTimeout = 300 * time.Millisecond })
	n := c.gws[0]
	alice := login(t, n, "alice", "phone")
	alice.join("general", nil)

	c.redis.Freeze()
	cl, w := hello(t, n, "alice", "laptop")
	c.redis.Thaw()
	if w.Rooms != nil {
		t.Fatalf("welcome while the store was frozen lists rooms: %+v", *w.Rooms)
	}
	cl.nothingQueued()
	cl.join("general", nil)
	_, w = hello(t, n, "alice", "tablet")
	if _, ok := roomsOf(t, w)["general"]; !ok {
		t.Fatalf("welcome once the store is back: %+v, want general", *w.Rooms)
	}
}

// A direct room dm:<a>:<b> is its two users' only: the first message
// creates it and makes both members, their devices hear of it live, the
// other one's welcome lists it with the unread message, and a third user
// can neither join, send to nor read it.
func TestDirectRoom(t *testing.T) {
	c := newCluster(t, 2, nil)
	gw1, gw2 := c.gws[0], c.gws[1]
	alice, _ := hello(t, gw1, "alice", "phone")
	bobWeb, _ := hello(t, gw2, "bob", "web")
	room := protocol.DirectRoomOf("bob", "alice")
	if room != "dm:alice:bob" {
		t.Fatalf("DirectRoomOf = %q", room)
	}

	ack, _ := alice.post(room, "d1", "hi bob")
	if f := bobWeb.next(); f.Type != "membership" || f.Room != room || f.Kind != "direct" || f.State != "member" {
		t.Fatalf("bob's open device: %+v, want membership of %s", f, room)
	}
	alice.nothingQueued() // alice's own device did it and was not told

	_, w := hello(t, gw1, "bob", "laptop")
	if d := roomsOf(t, w)[room]; d.Kind != "direct" || d.Seq != ack.Seq || d.Unread != 1 {
		t.Fatalf("bob's welcome: %+v, want %s direct with unread 1", d, room)
	}
	j := bobWeb.join(room, nil)
	if m := bobWeb.messages(1)[0]; j.Seq != ack.Seq || m.Body != "hi bob" || m.From != "alice" {
		t.Fatalf("bob joined %+v and got %+v", j, m)
	}

	carol, _ := hello(t, gw2, "carol", "web")
	for _, f := range []protocol.Frame{
		{Type: "join", Ref: "c1", Room: room},
		{Type: "send", Ref: "c2", Room: room, ID: "c2", Body: "let me in"},
		{Type: "history", Ref: "c3", Room: room},
		{Type: "read", Ref: "c4", Room: room},
	} {
		carol.send(f)
		if e := carol.next(); e.Type != "error" || e.Code != protocol.CodeForbidden || e.Ref != f.Ref {
			t.Fatalf("carol's %s: %+v, want forbidden", f.Type, e)
		}
	}
	sentinel(t, gw1, room, bobWeb) // nothing of carol's reached the room
	carol.nothingQueued()
}

// ask sends f with a fresh ref and returns the answer to it.
func (c *tclient) ask(f protocol.Frame) protocol.Frame {
	c.t.Helper()
	c.n++
	f.Ref = fmt.Sprintf("a%d", c.n)
	c.send(f)
	a := c.next()
	if a.Ref != f.Ref {
		c.t.Fatalf("%s: got %+v, want the answer to %s %s", c.name, a, f.Type, f.Ref)
	}
	return a
}

// A private room is its members' only: created by one, joined, read and
// posted to by members, who invite others; the invited user's devices
// hear of it live; the directory lists public rooms only.
func TestPrivateRoomsAndDirectory(t *testing.T) {
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.MaxRoomMembers = 2 })
	gw1, gw2 := c.gws[0], c.gws[1]
	alice, _ := hello(t, gw1, "alice", "phone")
	bob, _ := hello(t, gw2, "bob", "web")
	carol, _ := hello(t, gw2, "carol", "web")

	if f := alice.ask(protocol.Frame{Type: "create", Room: "team", Kind: "private"}); f.Type != "created" || f.Room != "team" || f.Kind != "private" {
		t.Fatalf("create: %+v", f)
	}
	for _, f := range []protocol.Frame{
		{Type: "join", Room: "team"},
		{Type: "send", Room: "team", ID: "b1", Body: "let me in"},
		{Type: "history", Room: "team"},
		{Type: "invite", Room: "team", User: "carol"},
		{Type: "create", Room: "team", Kind: "private"},
	} {
		if a := bob.ask(f); a.Type != "error" || a.Code != protocol.CodeForbidden {
			t.Fatalf("bob's %s before the invite: %+v, want forbidden", f.Type, a)
		}
	}
	if f := alice.ask(protocol.Frame{Type: "invite", Room: "team", User: "bob"}); f.Type != "invited" || f.User != "bob" {
		t.Fatalf("invite: %+v", f)
	}
	if f := bob.next(); f.Type != "membership" || f.Room != "team" || f.Kind != "private" || f.State != "member" {
		t.Fatalf("bob's device: %+v, want membership of team", f)
	}
	alice.join("team", nil)
	bob.join("team", nil)
	ack, _ := bob.post("team", "b2", "thanks")
	if m := alice.messages(1)[0]; m.Seq != ack.Seq || m.From != "bob" {
		t.Fatalf("alice got %+v", m)
	}
	// Full at two members.
	if f := alice.ask(protocol.Frame{Type: "invite", Room: "team", User: "carol"}); f.Type != "error" || f.Code != protocol.CodeForbidden {
		t.Fatalf("invite past MaxRoomMembers: %+v, want forbidden", f)
	}
	if f := alice.ask(protocol.Frame{Type: "invite", Room: "nowhere", User: "carol"}); f.Type != "error" || f.Code != protocol.CodeNotFound {
		t.Fatalf("invite to no room: %+v, want not_found", f)
	}
	// A public room by use cannot be taken as a private one.
	carol.post("general", "c1", "hello")
	if f := alice.ask(protocol.Frame{Type: "create", Room: "general", Kind: "private"}); f.Type != "error" || f.Code != protocol.CodeForbidden {
		t.Fatalf("create private over a used room: %+v, want forbidden", f)
	}
	// A plain-text client is no member: refused at the door.
	ws, _, err := dialRaw(t, gw1.wsURL("/team?user=carol"))
	if err != nil {
		t.Fatal(err)
	}
	pl := wrap(t, ws, 10)
	if code, _ := pl.closeStatus(); code != 1008 {
		t.Fatalf("plain-text join of a private room: close %d, want 1008", code)
	}

	// The directory: public rooms only, paged.
	carol.join("lobby", nil)
	alice.join("general", nil)
	f := carol.ask(protocol.Frame{Type: "rooms", Limit: 1})
	if f.Type != "rooms" || f.Rooms == nil || len(*f.Rooms) != 1 || (*f.Rooms)[0].Room != "general" || (*f.Rooms)[0].Members != 1 || f.Next != "general" {
		t.Fatalf("directory page 1: %+v", f)
	}
	f = carol.ask(protocol.Frame{Type: "rooms", After: f.Next, Limit: 1})
	if f.Rooms == nil || len(*f.Rooms) != 1 || (*f.Rooms)[0].Room != "lobby" || (*f.Rooms)[0].Members != 1 {
		t.Fatalf("directory page 2: %+v", f)
	}
	if f = carol.ask(protocol.Frame{Type: "rooms", After: "lobby"}); f.Rooms == nil || len(*f.Rooms) != 0 || f.Next != "" {
		t.Fatalf("directory past the end: %+v", f)
	}
}

// sync joins every room of the user at its head at once: a joined frame
// for each (sorted by name, no backlog), then synced; live messages follow.
func TestSyncJoinsAllTheUsersRooms(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	phone := login(t, n, "alice", "phone")
	for _, r := range []string{"c-room", "a-room", "b-room"} {
		phone.join(r, nil)
		if _, before := phone.post(r, "m-"+r, "hello "+r); len(before) == 0 {
			phone.messages(1) // its own message, after the ack
		}
	}
	laptop := login(t, n, "alice", "laptop")
	laptop.join("b-room", nil) // joined already: sync leaves it
	laptop.messages(1)         // its backlog
	laptop.send(protocol.Frame{Type: "sync", Ref: "s1"})
	for _, r := range []string{"a-room", "c-room"} {
		f := laptop.next()
		if f.Type != "joined" || f.Room != r || f.Seq != 1 || f.Recovered == nil || !*f.Recovered {
			t.Fatalf("sync: %+v, want %s joined at its head 1", f, r)
		}
	}
	if f := laptop.next(); f.Type != "synced" || f.Ref != "s1" || f.Count != 2 {
		t.Fatalf("sync: %+v, want synced s1 with 2 rooms joined", f)
	}
	ack, _ := phone.post("c-room", "m2", "live")
	if m := laptop.messages(1)[0]; m.Room != "c-room" || m.Seq != ack.Seq {
		t.Fatalf("after sync: %+v, want the live message of c-room", m)
	}
}

// A room whose kind the gateway cached is joined without asking the store
// again; when the store lost the room meanwhile, the join makes it again
// instead of failing.
func TestJoinAfterTheStoreLostACachedRoom(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	login(t, n, "alice", "phone").join("kept", nil)
	ctx := context.Background()
	rc := c.redis.Client()
	if err := rc.Del(ctx, c.prefix+":{kept}:info", c.prefix+":{kept}:members").Err(); err != nil {
		t.Fatal(err)
	}
	bob, _ := hello(t, n, "bob", "web")
	bob.join("kept", nil)
	if ok, err := n.g.Broker().IsMember(ctx, "kept", "bob"); err != nil || !ok {
		t.Fatalf("bob a member of the recreated room: %v, %v", ok, err)
	}
}
