package client_test

// Tests against a real gateway (in process, memory broker): rooms, read
// cursors, private rooms, the directory and token refresh.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/memgw"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// realGateway runs a gateway on a memory broker and returns its URL.
func realGateway(t *testing.T, tweak func(*gateway.Config)) string {
	t.Helper()
	url, _ := memgw.Start(t, "gw-sdk", tweak)
	return url
}

func dialReal(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// await reads c's events until ok accepts one.
func await(t *testing.T, c *client.Client, what string, ok func(client.Event) bool) client.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, open := <-c.Events():
			if !open {
				t.Fatalf("events closed waiting for %s", what)
			}
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s", what)
		}
	}
}

func room(rooms []protocol.RoomState, name string) *protocol.RoomState {
	for i := range rooms {
		if rooms[i].Room == name {
			return &rooms[i]
		}
	}
	return nil
}

func TestRoomsReadAndSync(t *testing.T) {
	url := realGateway(t, nil)
	ctx := ctx10(t)
	phone := dialReal(t, client.Config{URL: url, User: "alice", Device: "phone"})
	if rs := phone.Rooms(); rs == nil || len(rs) != 0 {
		t.Fatalf("new user's rooms %+v, want empty", rs)
	}
	if _, err := phone.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	var last protocol.Frame
	for i := range 3 {
		a, err := phone.Send(ctx, "general", "m"+string(rune('1'+i)))
		if err != nil {
			t.Fatal(err)
		}
		last = a
	}
	// The laptop's welcome lists general with 3 unread.
	laptop := dialReal(t, client.Config{URL: url, User: "alice", Device: "laptop"})
	g := room(laptop.Rooms(), "general")
	if g == nil || g.Kind != "public" || g.Seq != 3 || g.Unread != 3 || g.Epoch != last.Epoch {
		t.Fatalf("laptop's general %+v", g)
	}
	// The phone reads up to 2; the laptop hears of it.
	r, err := phone.Read(ctx, "general", protocol.Position{Epoch: last.Epoch, Seq: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Seq != 2 || r.Unread != 1 || r.Epoch != last.Epoch {
		t.Fatalf("read answer %+v", r)
	}
	if g := room(phone.Rooms(), "general"); g == nil || g.Read != 2 || g.Unread != 1 {
		t.Fatalf("phone's general after read %+v", g)
	}
	ev := await(t, laptop, "read sync", func(ev client.Event) bool { return ev.ReadSync != nil })
	if ev.ReadSync.Room != "general" || ev.ReadSync.Seq != 2 || ev.ReadSync.Unread != 1 {
		t.Fatalf("read sync %+v", ev.ReadSync)
	}
	if g := room(laptop.Rooms(), "general"); g == nil || g.Read != 2 || g.Unread != 1 {
		t.Fatalf("laptop's general after sync %+v", g)
	}
	// A message delivered to a joined room counts as unread.
	if _, err := laptop.Join(ctx, "general", &protocol.Since{Epoch: last.Epoch, Seq: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Send(ctx, "general", "m4"); err != nil {
		t.Fatal(err)
	}
	await(t, laptop, "m4", func(ev client.Event) bool { return ev.Message != nil && ev.Message.Body == "m4" })
	if g := room(laptop.Rooms(), "general"); g == nil || g.Seq != 4 || g.Unread != 2 {
		t.Fatalf("laptop's general after m4 %+v", g)
	}

	// A join on the phone reaches the laptop as a membership.
	if _, err := phone.Join(ctx, "news", nil); err != nil {
		t.Fatal(err)
	}
	if room(phone.Rooms(), "news") == nil {
		t.Fatalf("phone's rooms lack news: %+v", phone.Rooms())
	}
	ev = await(t, laptop, "membership", func(ev client.Event) bool { return ev.Membership != nil })
	if m := ev.Membership; m.Room != "news" || m.State != "member" || m.Kind != "public" {
		t.Fatalf("membership %+v", m)
	}
	if room(laptop.Rooms(), "news") == nil {
		t.Fatalf("laptop's rooms lack news: %+v", laptop.Rooms())
	}
	// Leaving general on the phone drops it on the laptop, which leaves it
	// too (it had joined it).
	if err := phone.Leave(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	ev = await(t, laptop, "membership left", func(ev client.Event) bool { return ev.Membership != nil })
	if m := ev.Membership; m.Room != "general" || m.State != "left" {
		t.Fatalf("membership %+v", m)
	}
	if room(laptop.Rooms(), "general") != nil {
		t.Fatalf("laptop's rooms keep general: %+v", laptop.Rooms())
	}
}

func TestCreateInviteDirectory(t *testing.T) {
	url := realGateway(t, nil)
	ctx := ctx10(t)
	alice := dialReal(t, client.Config{URL: url, User: "alice"})
	bob := dialReal(t, client.Config{URL: url, User: "bob"})

	f, err := alice.Create(ctx, "team", "")
	if err != nil {
		t.Fatal(err)
	}
	if f.Room != "team" || f.Kind != "private" {
		t.Fatalf("created %+v", f)
	}
	if r := room(alice.Rooms(), "team"); r == nil || r.Kind != "private" {
		t.Fatalf("alice's rooms %+v", alice.Rooms())
	}
	if _, err := bob.Join(ctx, "team", nil); !isCode(err, protocol.CodeForbidden) {
		t.Fatalf("bob joins team before the invite: %v", err)
	}
	if err := alice.Invite(ctx, "team", "bob"); err != nil {
		t.Fatal(err)
	}
	ev := await(t, bob, "membership", func(ev client.Event) bool { return ev.Membership != nil })
	if m := ev.Membership; m.Room != "team" || m.State != "member" || m.Kind != "private" {
		t.Fatalf("bob's membership %+v", m)
	}
	if r := room(bob.Rooms(), "team"); r == nil || r.Kind != "private" {
		t.Fatalf("bob's rooms %+v", bob.Rooms())
	}
	if _, err := bob.Join(ctx, "team", nil); err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(ctx, "nowhere", "bob"); !isCode(err, protocol.CodeNotFound) {
		t.Fatalf("invite to a room never created: %v", err)
	}

	// The directory: public rooms only, paged.
	for _, r := range []string{"a1", "a2", "a3"} {
		if _, err := alice.Create(ctx, r, "public"); err != nil {
			t.Fatal(err)
		}
	}
	page, next, err := bob.Directory(ctx, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].Room != "a1" || page[1].Room != "a2" || next != "a2" || page[0].Members != 1 {
		t.Fatalf("first page %+v next %q", page, next)
	}
	page, next, err = bob.Directory(ctx, next, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 1 || page[0].Room != "a3" || next != "" {
		t.Fatalf("second page %+v next %q", page, next)
	}
}

func TestDirectRoomMembership(t *testing.T) {
	url := realGateway(t, nil)
	ctx := ctx10(t)
	alice := dialReal(t, client.Config{URL: url, User: "alice"})
	bob := dialReal(t, client.Config{URL: url, User: "bob"})
	dm := protocol.DirectRoomOf("bob", "alice")
	if _, err := alice.Join(ctx, dm, nil); err != nil {
		t.Fatal(err)
	}
	if r := room(alice.Rooms(), dm); r == nil || r.Kind != "direct" {
		t.Fatalf("alice's rooms %+v", alice.Rooms())
	}
	ev := await(t, bob, "membership", func(ev client.Event) bool { return ev.Membership != nil })
	if m := ev.Membership; m.Room != dm || m.Kind != "direct" {
		t.Fatalf("bob's membership %+v", m)
	}
}

func isCode(err error, code string) bool {
	var pe *protocol.Error
	return err != nil && errors.As(err, &pe) && pe.Code == code
}

// TokenSource: on token_expiring the Client fetches a token and refreshes,
// so the connection outlives its tokens.
func TestTokenSourceRefreshes(t *testing.T) {
	url := realGateway(t, func(cfg *gateway.Config) {
		cfg.DevAuth = false
		cfg.JWTSecret = testSecret
		cfg.RefreshWindow = 1500 * time.Millisecond
	})
	signer, err := auth.NewHMACSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	source := func(context.Context) (string, error) {
		calls.Add(1)
		return signer.Sign(auth.Claims{User: "alice", Expires: time.Now().Add(3 * time.Second).Truncate(time.Second)})
	}
	c := dialReal(t, client.Config{URL: url, TokenSource: source})
	first := c.Welcome().Expires
	if first == "" {
		t.Fatal("welcome without expires")
	}
	ctx := ctx10(t)
	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	// Past the first token's exp, and then some: still the first
	// connection, still working.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case ev := <-c.Events():
			if ev.State != 0 {
				t.Fatalf("state %v (%v): the connection did not outlive its token", ev.State, ev.Err)
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := calls.Load(); n < 3 {
		t.Fatalf("TokenSource called %d times, want the hello and at least two refreshes", n)
	}
	if _, err := c.Send(ctx, "general", "still here"); err != nil {
		t.Fatal(err)
	}
}

// A TokenSource that fails at refresh time: the connection ends at exp,
// and the reconnect says hello with the source's next token.
func TestTokenSourceOnReconnect(t *testing.T) {
	url := realGateway(t, func(cfg *gateway.Config) {
		cfg.DevAuth = false
		cfg.JWTSecret = testSecret
		cfg.RefreshWindow = 1500 * time.Millisecond
	})
	signer, err := auth.NewHMACSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	source := func(context.Context) (string, error) {
		switch calls.Add(1) {
		case 1:
			return signer.Sign(auth.Claims{User: "alice", Expires: time.Now().Add(2 * time.Second).Truncate(time.Second)})
		case 2:
			return "", context.DeadlineExceeded // the token service is down
		default:
			return signer.Sign(auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})
		}
	}
	c := dialReal(t, client.Config{URL: url, TokenSource: source})
	ctx := ctx10(t)
	if _, err := c.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	ev := await(t, c, "reconnecting", func(ev client.Event) bool { return ev.State != 0 })
	if ev.State != client.StateReconnecting {
		t.Fatalf("state %v (%v), want reconnecting", ev.State, ev.Err)
	}
	ev = await(t, c, "connected", func(ev client.Event) bool { return ev.State != 0 })
	if ev.State != client.StateConnected {
		t.Fatalf("state %v (%v), want connected", ev.State, ev.Err)
	}
	if _, err := c.Send(ctx, "general", "back"); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("TokenSource called %d times, want 3", n)
	}
}

// presenceOf waits for c's next presence event about user.
func presenceOf(t *testing.T, c *client.Client, user string) *protocol.Frame {
	t.Helper()
	ev := await(t, c, "presence of "+user, func(ev client.Event) bool {
		if ev.Presence == nil {
			return false
		}
		if ev.Presence.User == "" {
			t.Fatalf("presence event without a user: %+v", ev.Presence)
		}
		return ev.Presence.User == user
	})
	return ev.Presence
}

func TestPresence(t *testing.T) {
	url := realGateway(t, nil)
	ctx := ctx10(t)
	bob := dialReal(t, client.Config{URL: url, User: "bob"})
	if _, err := bob.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	phone := dialReal(t, client.Config{URL: url, User: "alice", Device: "phone"})
	laptop := dialReal(t, client.Config{URL: url, User: "alice", Device: "laptop"})
	if _, err := phone.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	if p := presenceOf(t, bob, "alice"); p.Room != "general" || p.Devices != 1 || p.State != "online" || p.Ref != "" {
		t.Fatalf("bob's first presence event %+v", p)
	}
	if _, err := laptop.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	if p := presenceOf(t, bob, "alice"); p.Devices != 2 || p.State != "online" {
		t.Fatalf("bob's second presence event %+v", p)
	}

	// The answer: every connection, users sorted by name.
	p, err := bob.Presence(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	if p.Type != protocol.TypePresence || p.Room != "general" || p.Count != 3 || p.Users == nil {
		t.Fatalf("presence answer %+v", p)
	}
	if us := *p.Users; len(us) != 2 || us[0] != (protocol.PresentUser{User: "alice", Devices: 2}) ||
		us[1] != (protocol.PresentUser{User: "bob", Devices: 1}) {
		t.Fatalf("presence users %+v", us)
	}

	// One device leaves, then the other ends: online at 1, then offline.
	if err := phone.Leave(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	if p := presenceOf(t, bob, "alice"); p.Devices != 1 || p.State != "online" {
		t.Fatalf("after the phone left %+v", p)
	}
	_ = laptop.Close()
	if p := presenceOf(t, bob, "alice"); p.Devices != 0 || p.State != "offline" {
		t.Fatalf("after the laptop closed %+v", p)
	}
	// The phone heard nothing of alice: never of the user's own devices.
	// (It may hear of bob: his join's event can reach it after its own
	// join.)
	for drained := false; !drained; {
		select {
		case ev := <-phone.Events():
			if ev.Presence != nil && ev.Presence.User == "alice" {
				t.Fatalf("the phone got a presence event about its user: %+v", ev.Presence)
			}
		default:
			drained = true
		}
	}

	// A room one may not read is forbidden; an invalid name never leaves.
	if _, err := bob.Create(ctx, "secret", "private"); err != nil {
		t.Fatal(err)
	}
	if _, err := phone.Presence(ctx, "secret"); !isCode(err, protocol.CodeForbidden) {
		t.Fatalf("presence of another's private room: %v", err)
	}
	if _, err := phone.Presence(ctx, "two words"); !isCode(err, protocol.CodeBadRequest) {
		t.Fatalf("presence of an invalid room: %v", err)
	}
}

func TestPresenceBigRoom(t *testing.T) {
	url := realGateway(t, func(cfg *gateway.Config) { cfg.PresenceDetail = 1 })
	ctx := ctx10(t)
	bob := dialReal(t, client.Config{URL: url, User: "bob"})
	alice := dialReal(t, client.Config{URL: url, User: "alice"})
	for _, c := range []*client.Client{bob, alice} {
		if _, err := c.Join(ctx, "big", nil); err != nil {
			t.Fatal(err)
		}
	}
	p, err := alice.Presence(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if p.Count != 2 || p.Users != nil {
		t.Fatalf("presence of a room over the detail size %+v", p)
	}
}
