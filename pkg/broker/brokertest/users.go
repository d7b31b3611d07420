package brokertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Forget makes b lose one room's history and head, as a store that lost
// the room's data would, while rooms' kinds and members and users' cursors
// stay: the room's next message starts a new epoch, and a cursor of the old
// one meets it. The memory broker's Reset does this (for every room); a
// Redis broker's test deletes the room's meta and log keys.
type Forget func(t *testing.T, b broker.Broker, room string)

// runUsers is the suite of the Users side.
func runUsers(t *testing.T, setup func(t *testing.T, retention int) broker.Broker, forget Forget) {
	ctx := context.Background()
	pubN := func(t *testing.T, b broker.Broker, room string, n int) broker.Ack {
		t.Helper()
		var ack broker.Ack
		for range n {
			var err error
			ack, err = b.Publish(ctx, broker.Publication{Room: room, ID: broker.NewEpoch(), From: "u", Body: "x"})
			if err != nil {
				t.Fatalf("Publish %s: %v", room, err)
			}
		}
		return ack
	}
	ensure := func(t *testing.T, b broker.Broker, room string, kind broker.RoomKind, creator string) broker.RoomInfo {
		t.Helper()
		info, err := b.EnsureRoom(ctx, room, kind, creator)
		if err != nil {
			t.Fatalf("EnsureRoom(%s, %s): %v", room, kind, err)
		}
		return info
	}
	add := func(t *testing.T, b broker.Broker, room, user string) bool {
		t.Helper()
		added, err := b.AddMember(ctx, room, user)
		if err != nil {
			t.Fatalf("AddMember(%s, %s): %v", room, user, err)
		}
		return added
	}
	markRead := func(t *testing.T, b broker.Broker, user, room string, pos protocol.Position) protocol.Position {
		t.Helper()
		cur, err := b.MarkRead(ctx, user, room, pos)
		if err != nil {
			t.Fatalf("MarkRead(%s, %s, %+v): %v", user, room, pos, err)
		}
		return cur
	}
	memberships := func(t *testing.T, b broker.Broker, user string) []broker.Membership {
		t.Helper()
		ms, err := b.Memberships(ctx, user)
		if err != nil {
			t.Fatalf("Memberships(%s): %v", user, err)
		}
		return ms
	}
	roomInfo := func(t *testing.T, b broker.Broker, room string) broker.RoomInfo {
		t.Helper()
		info, ok, err := b.RoomInfo(ctx, room)
		if err != nil || !ok {
			t.Fatalf("RoomInfo(%s) = %+v, %v, %v; want the room", room, info, ok, err)
		}
		return info
	}

	t.Run("EnsureRoomCreatesOnce", func(t *testing.T) {
		b := setup(t, 10)
		info := ensure(t, b, "r", broker.PrivateRoom, "alice")
		if info.Room != "r" || info.Kind != broker.PrivateRoom || info.Creator != "alice" || info.Members != 0 {
			t.Fatalf("created %+v, want private room r by alice with no members", info)
		}
		if _, err := protocol.ParseTime(info.Created); err != nil {
			t.Fatalf("created %q: %v", info.Created, err)
		}
		// The existing room wins: kind, creator and time.
		if again := ensure(t, b, "r", broker.PublicRoom, "bob"); again != info {
			t.Fatalf("second EnsureRoom = %+v, want the first's %+v", again, info)
		}
		if got := roomInfo(t, b, "r"); got != info {
			t.Fatalf("RoomInfo = %+v, want %+v", got, info)
		}
		if _, err := b.EnsureRoom(ctx, "bad", "secret", "alice"); err == nil {
			t.Fatal("EnsureRoom accepted the kind \"secret\"")
		}
		if _, ok, _ := b.RoomInfo(ctx, "bad"); ok {
			t.Fatal("a refused EnsureRoom created the room")
		}
		// A public room created implicitly has no creator.
		if pub := ensure(t, b, "lobby", broker.PublicRoom, ""); pub.Kind != broker.PublicRoom || pub.Creator != "" {
			t.Fatalf("implicit public room = %+v", pub)
		}
	})

	t.Run("EnsureRoomConcurrentAgree", func(t *testing.T) {
		b := setup(t, 10)
		kinds := []broker.RoomKind{broker.PublicRoom, broker.PrivateRoom, broker.DirectRoom}
		for round := range 5 {
			room := fmt.Sprintf("contested-%d", round)
			infos := make([]broker.RoomInfo, 8)
			var wg sync.WaitGroup
			for i := range infos {
				wg.Add(1)
				go func() {
					defer wg.Done()
					info, err := b.EnsureRoom(ctx, room, kinds[(i+round)%3], fmt.Sprintf("user%d", i))
					if err != nil {
						t.Errorf("EnsureRoom: %v", err)
					}
					infos[i] = info
				}()
			}
			wg.Wait()
			for i, info := range infos {
				if info != infos[0] {
					t.Fatalf("%s: goroutine %d got %+v, goroutine 0 got %+v", room, i, info, infos[0])
				}
			}
			if got := roomInfo(t, b, room); got != infos[0] {
				t.Fatalf("%s: RoomInfo = %+v, the creators agreed on %+v", room, got, infos[0])
			}
			rooms, _, err := b.Directory(ctx, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			listed := slices.ContainsFunc(rooms, func(r broker.RoomInfo) bool { return r.Room == room })
			if listed != (infos[0].Kind == broker.PublicRoom) {
				t.Fatalf("%s is %s and listed in the directory: %v", room, infos[0].Kind, listed)
			}
		}
	})

	t.Run("UnknownRoom", func(t *testing.T) {
		b := setup(t, 10)
		info, ok, err := b.RoomInfo(ctx, "never")
		if err != nil || ok || info != (broker.RoomInfo{}) {
			t.Fatalf("RoomInfo(never) = %+v, %v, %v; want zero, false, nil", info, ok, err)
		}
		// Publishing does not create a room's info: the caller does.
		pubN(t, b, "published-only", 1)
		if _, ok, _ := b.RoomInfo(ctx, "published-only"); ok {
			t.Fatal("Publish created the room's info")
		}
		if _, err := b.AddMember(ctx, "never", "alice"); !errors.Is(err, broker.ErrNoRoom) {
			t.Fatalf("AddMember to an unknown room: %v, want an error wrapping ErrNoRoom", err)
		}
		if ok, err := b.IsMember(ctx, "never", "alice"); ok || err != nil {
			t.Fatalf("IsMember of an unknown room = %v, %v", ok, err)
		}
		if removed, err := b.RemoveMember(ctx, "never", "alice"); removed || err != nil {
			t.Fatalf("RemoveMember of an unknown room = %v, %v", removed, err)
		}
		if ms := memberships(t, b, "alice"); len(ms) != 0 {
			t.Fatalf("a failed AddMember left memberships %+v", ms)
		}
	})

	t.Run("Members", func(t *testing.T) {
		b := setup(t, 10)
		ensure(t, b, "team", broker.PrivateRoom, "alice")
		if !add(t, b, "team", "alice") || add(t, b, "team", "alice") {
			t.Fatal("AddMember: want added the first time only")
		}
		if !add(t, b, "team", "bob") {
			t.Fatal("AddMember(bob) not added")
		}
		if n := roomInfo(t, b, "team").Members; n != 2 {
			t.Fatalf("members = %d, want 2", n)
		}
		for user, want := range map[string]bool{"alice": true, "bob": true, "carol": false} {
			if ok, err := b.IsMember(ctx, "team", user); ok != want || err != nil {
				t.Fatalf("IsMember(%s) = %v, %v; want %v", user, ok, err, want)
			}
		}
		for i, want := range []bool{true, false} {
			if removed, err := b.RemoveMember(ctx, "team", "alice"); removed != want || err != nil {
				t.Fatalf("RemoveMember(alice) #%d = %v, %v; want %v", i+1, removed, err, want)
			}
		}
		if removed, err := b.RemoveMember(ctx, "team", "carol"); removed || err != nil {
			t.Fatalf("RemoveMember(carol), never a member = %v, %v", removed, err)
		}
		if ok, _ := b.IsMember(ctx, "team", "alice"); ok {
			t.Fatal("alice is a member after RemoveMember")
		}
		if n := roomInfo(t, b, "team").Members; n != 1 {
			t.Fatalf("members = %d, want 1", n)
		}
		if ms := memberships(t, b, "alice"); len(ms) != 0 {
			t.Fatalf("alice's memberships after leaving = %+v, want none", ms)
		}
		if ms := memberships(t, b, "bob"); len(ms) != 1 || ms[0].Room != "team" || ms[0].Kind != broker.PrivateRoom {
			t.Fatalf("bob's memberships = %+v, want team (private)", ms)
		}
		// Leaving drops the cursor: a member again starts with none.
		pubN(t, b, "team", 3)
		head, _ := b.Head(ctx, "team")
		markRead(t, b, "bob", "team", protocol.Position{Epoch: head.Epoch, Seq: 3})
		if _, err := b.RemoveMember(ctx, "team", "bob"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.MarkRead(ctx, "bob", "team", protocol.Position{Epoch: head.Epoch, Seq: 3}); !errors.Is(err, broker.ErrNotMember) {
			t.Fatalf("MarkRead after leaving: %v, want an error wrapping ErrNotMember", err)
		}
		add(t, b, "team", "bob")
		if ms := memberships(t, b, "bob"); len(ms) != 1 || !ms[0].Read.IsZero() || ms[0].Unread != 3 {
			t.Fatalf("bob back in team: %+v, want no cursor and 3 unread", ms)
		}
	})

	t.Run("Memberships", func(t *testing.T) {
		b := setup(t, 10)
		for _, r := range []struct {
			room string
			kind broker.RoomKind
			msgs int
		}{{"c-room", broker.PublicRoom, 12}, {"a-room", broker.PrivateRoom, 5}, {"empty", broker.PublicRoom, 0}, {"dm:alice:bob", broker.DirectRoom, 3}} {
			ensure(t, b, r.room, r.kind, "alice")
			add(t, b, r.room, "alice")
			pubN(t, b, r.room, r.msgs)
		}
		heads := map[string]broker.Position{}
		for _, room := range []string{"a-room", "c-room", "dm:alice:bob", "empty"} {
			heads[room], _ = b.Head(ctx, room)
		}
		markRead(t, b, "alice", "a-room", protocol.Position{Epoch: heads["a-room"].Epoch, Seq: 2})
		// c-room retains 3..12; a cursor at 1 is behind what is retained.
		markRead(t, b, "alice", "c-room", protocol.Position{Epoch: heads["c-room"].Epoch, Seq: 1})
		ms := memberships(t, b, "alice")
		want := []broker.Membership{
			{Room: "a-room", Kind: broker.PrivateRoom, Head: broker.Position{Epoch: heads["a-room"].Epoch, Seq: 5, First: 1}, Read: protocol.Position{Epoch: heads["a-room"].Epoch, Seq: 2}, Unread: 3},
			{Room: "c-room", Kind: broker.PublicRoom, Head: broker.Position{Epoch: heads["c-room"].Epoch, Seq: 12, First: 3}, Read: protocol.Position{Epoch: heads["c-room"].Epoch, Seq: 1}, Unread: 10},
			{Room: "dm:alice:bob", Kind: broker.DirectRoom, Head: broker.Position{Epoch: heads["dm:alice:bob"].Epoch, Seq: 3, First: 1}, Unread: 3},
			{Room: "empty", Kind: broker.PublicRoom, Unread: 0},
		}
		if !slices.Equal(ms, want) {
			t.Fatalf("memberships:\n  %s\nwant:\n  %s", showMemberships(ms), showMemberships(want))
		}
		// Unread is capped by retention: more than the retention published
		// after the cursor counts what is retained.
		markRead(t, b, "alice", "a-room", protocol.Position{Epoch: heads["a-room"].Epoch, Seq: 5})
		pubN(t, b, "a-room", 20)
		ms = memberships(t, b, "alice")
		if m := ms[0]; m.Room != "a-room" || m.Head.Seq != 25 || m.Head.First != 16 || m.Unread != 10 {
			t.Fatalf("a-room after 20 more = %+v, want head 25, first 16, 10 unread", m)
		}
		markRead(t, b, "alice", "a-room", protocol.Position{Epoch: heads["a-room"].Epoch, Seq: 25})
		if m := memberships(t, b, "alice")[0]; m.Unread != 0 {
			t.Fatalf("a-room read to its head: %+v, want 0 unread", m)
		}
		// A user with no rooms gets an empty list, not nil.
		if ms, err := b.Memberships(ctx, "nobody"); err != nil || ms == nil || len(ms) != 0 {
			t.Fatalf("Memberships(nobody) = %#v, %v; want an empty list", ms, err)
		}
	})

	t.Run("MembershipsEpochChange", func(t *testing.T) {
		b := setup(t, 10)
		ensure(t, b, "phoenix", broker.PublicRoom, "")
		add(t, b, "phoenix", "alice")
		old := pubN(t, b, "phoenix", 3)
		markRead(t, b, "alice", "phoenix", protocol.Position{Epoch: old.Epoch, Seq: 3})
		if m := memberships(t, b, "alice")[0]; m.Unread != 0 {
			t.Fatalf("read to the head: %+v", m)
		}
		forget(t, b, "phoenix")
		now := pubN(t, b, "phoenix", 2)
		if now.Epoch == old.Epoch || now.Seq != 2 {
			t.Fatalf("after the loss the room went on at %+v, want seq 2 in a new epoch", now)
		}
		// The cursor of the old epoch read nothing of the new one.
		m := memberships(t, b, "alice")[0]
		if m.Read != (protocol.Position{Epoch: old.Epoch, Seq: 3}) || m.Head != (broker.Position{Epoch: now.Epoch, Seq: 2, First: 1}) || m.Unread != 2 {
			t.Fatalf("after the epoch change: %+v, want the old cursor, head 2 of the new epoch and 2 unread", m)
		}
		// A position in the new epoch replaces the cursor though its seq is lower.
		if cur := markRead(t, b, "alice", "phoenix", protocol.Position{Epoch: now.Epoch, Seq: 1}); cur != (protocol.Position{Epoch: now.Epoch, Seq: 1}) {
			t.Fatalf("MarkRead in the new epoch = %+v", cur)
		}
		if m := memberships(t, b, "alice")[0]; m.Unread != 1 {
			t.Fatalf("after marking 1 of the new epoch: %+v, want 1 unread", m)
		}
	})

	t.Run("MarkReadForwardOnly", func(t *testing.T) {
		b := setup(t, 10)
		ensure(t, b, "r", broker.PublicRoom, "")
		add(t, b, "r", "alice")
		e := func(epoch string, seq int64) protocol.Position { return protocol.Position{Epoch: epoch, Seq: seq} }
		for _, c := range []struct{ pos, want protocol.Position }{
			{e("e1", 5), e("e1", 5)},
			{e("e1", 3), e("e1", 5)}, // behind: stays
			{e("e1", 5), e("e1", 5)}, // at: stays
			{e("e1", 7), e("e1", 7)},
			{e("", 0), e("e1", 7)},   // no epoch (an empty room): stays
			{e("e2", 2), e("e2", 2)}, // another epoch: replaces
			{e("e1", 9), e("e1", 9)}, // and back: replaces again
		} {
			if got := markRead(t, b, "alice", "r", c.pos); got != c.want {
				t.Fatalf("MarkRead(%+v) = %+v, want %+v", c.pos, got, c.want)
			}
		}
		if m := memberships(t, b, "alice"); len(m) != 1 || m[0].Read != e("e1", 9) {
			t.Fatalf("memberships = %+v, want the cursor e1:9", m)
		}
		if _, err := b.MarkRead(ctx, "bob", "r", e("e1", 1)); !errors.Is(err, broker.ErrNotMember) {
			t.Fatalf("MarkRead of a non-member: %v, want an error wrapping ErrNotMember", err)
		}
		if m := memberships(t, b, "bob"); len(m) != 0 {
			t.Fatalf("a refused MarkRead made bob a member: %+v", m)
		}
	})

	// Devices racing never move the cursor back: each call returns a
	// cursor at or past its own pos, and the cursor ends at the greatest
	// pos sent.
	t.Run("MarkReadRace", func(t *testing.T) {
		b := setup(t, 10)
		ensure(t, b, "r", broker.PublicRoom, "")
		add(t, b, "r", "alice")
		const workers, each = 16, 20
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var last int64
				for i := range each {
					seq := rand.Int64N(1000) + 1
					if w == workers-1 && i == each-1 {
						seq = 1001 // the max, sent last by one of them
					}
					cur, err := b.MarkRead(ctx, "alice", "r", protocol.Position{Epoch: "e", Seq: seq})
					if err != nil {
						t.Errorf("MarkRead: %v", err)
						return
					}
					if cur.Epoch != "e" || cur.Seq < seq || cur.Seq < last {
						t.Errorf("MarkRead(%d) = %+v after %d: moved back", seq, cur, last)
					}
					last = cur.Seq
				}
			}()
		}
		wg.Wait()
		if m := memberships(t, b, "alice"); len(m) != 1 || m[0].Read != (protocol.Position{Epoch: "e", Seq: 1001}) {
			t.Fatalf("after the race: %+v, want the cursor at e:1001", m)
		}
	})

	t.Run("DirectoryPages", func(t *testing.T) {
		b := setup(t, 10)
		var publics []string
		for i := range 12 {
			room := fmt.Sprintf("p%02d", i)
			publics = append(publics, room)
			ensure(t, b, room, broker.PublicRoom, "")
			for u := range i % 3 {
				add(t, b, room, fmt.Sprintf("u%d", u))
			}
		}
		ensure(t, b, "p05-secret", broker.PrivateRoom, "alice")
		ensure(t, b, "dm:a:b", broker.DirectRoom, "a")
		dir := func(after string, limit int) ([]string, string) {
			t.Helper()
			rooms, next, err := b.Directory(ctx, after, limit)
			if err != nil {
				t.Fatalf("Directory(%q, %d): %v", after, limit, err)
			}
			names := make([]string, len(rooms))
			for i, r := range rooms {
				names[i] = r.Room
				var n int
				fmt.Sscanf(r.Room, "p%d", &n)
				if r.Kind != broker.PublicRoom || r.Members != int64(n%3) {
					t.Errorf("Directory lists %+v, want a public room with %d members", r, n%3)
				}
			}
			return names, next
		}
		var all []string
		pages := 0
		for after := ""; ; pages++ {
			names, next := dir(after, 5)
			all = append(all, names...)
			if next == "" {
				break
			}
			if next != names[len(names)-1] {
				t.Fatalf("next %q is not the last room of the page %v", next, names)
			}
			after = next
		}
		if !slices.Equal(all, publics) || pages != 2 {
			t.Fatalf("paged by 5 in %d pages: %v, want %v in 3 pages", pages+1, all, publics)
		}
		if names, next := dir("p05", 3); !slices.Equal(names, []string{"p06", "p07", "p08"}) || next != "p08" {
			t.Fatalf("after p05 by 3: %v next %q", names, next)
		}
		if names, next := dir("p05-", 2); !slices.Equal(names, []string{"p06", "p07"}) || next != "p07" {
			t.Fatalf("after p05- (no such room) by 2: %v next %q", names, next)
		}
		if names, next := dir("p11", 5); len(names) != 0 || next != "" {
			t.Fatalf("after the last: %v next %q", names, next)
		}
		if names, next := dir("p07", 5); !slices.Equal(names, publics[8:]) || next != "" {
			t.Fatalf("the last page, exactly 4 of 5: %v next %q", names, next)
		}
	})

	t.Run("DirectoryLimits", func(t *testing.T) {
		b := setup(t, 10)
		for i := range 201 {
			ensure(t, b, fmt.Sprintf("r%03d", i), broker.PublicRoom, "")
		}
		for _, c := range []struct {
			limit, want int
		}{{0, 50}, {-3, 50}, {1, 1}, {200, 200}, {1000, 200}} {
			rooms, next, err := b.Directory(ctx, "", c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(rooms) != c.want || next != rooms[len(rooms)-1].Room || rooms[0].Room != "r000" {
				t.Fatalf("Directory(limit %d) = %d rooms from %s, next %q; want %d from r000, next the last", c.limit, len(rooms), rooms[0].Room, next, c.want)
			}
		}
		rooms, next, err := b.Directory(ctx, "r199", 1000)
		if err != nil || len(rooms) != 1 || rooms[0].Room != "r200" || next != "" {
			t.Fatalf("the last page = %+v, %q, %v", rooms, next, err)
		}
	})
}

func showMemberships(ms []broker.Membership) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = fmt.Sprintf("%+v", m)
	}
	return strings.Join(s, "\n  ")
}
