package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// joinRooms creates n public rooms r000.. with one message each and makes
// user a member of every one, with a cursor in half of them.
func joinRooms(t testing.TB, b broker.Broker, user string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		room := fmt.Sprintf("r%03d", i)
		if _, err := b.EnsureRoom(ctx, room, broker.PublicRoom, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := b.AddMember(ctx, room, user); err != nil {
			t.Fatal(err)
		}
		ack, err := b.Publish(ctx, broker.Publication{Room: room, ID: "m1", From: user, Body: "hello"})
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := b.MarkRead(ctx, user, room, protocol.Position{Epoch: ack.Epoch, Seq: ack.Seq}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Memberships takes two round trips however many rooms: HGETALL, then one
// pipeline of one EVALSHA per room. Counted twice: by a hook on the client
// (round trips) and by Redis's INFO commandstats (commands run).
func TestMemberships200RoomsTwoRoundTrips(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	ctx := context.Background()
	joinRooms(t, b, "alice", 200)
	if _, err := b.Memberships(ctx, "alice"); err != nil { // loads the script
		t.Fatal(err)
	}

	h := &countingHook{}
	b.Client().AddHook(h)
	if err := srv.Client().ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ms, err := b.Memberships(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 200 || ms[0].Room != "r000" || ms[199].Room != "r199" || ms[0].Unread != 0 || ms[1].Unread != 1 {
		t.Fatalf("memberships: %d rooms from %+v", len(ms), ms[0])
	}
	sizes := h.pipelineSizes()
	alone := int(h.cmds.Load()) - sum(sizes)
	if trips := alone + len(sizes); trips != 2 || alone != 1 || len(sizes) != 1 || sizes[0] != 200 {
		t.Fatalf("Memberships took %d round trips (%d commands alone, pipelines of %v), want 2: HGETALL, then one pipeline of 200", trips, alone, sizes)
	}
	stats := srv.Info(ctx, "commandstats", "cmdstat_evalsha")
	if !strings.HasPrefix(stats, "calls=200,") {
		t.Fatalf("EVALSHA stats %q, want 200 calls", stats)
	}
	if hg := srv.Info(ctx, "commandstats", "cmdstat_hgetall"); !strings.HasPrefix(hg, "calls=1,") {
		t.Fatalf("HGETALL stats %q, want 1 call", hg)
	}
	t.Logf("Memberships of 200 rooms: %d round trips; Redis: hgetall %s; evalsha %s", alone+len(sizes), srv.Info(ctx, "commandstats", "cmdstat_hgetall"), stats)
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// After Redis lost its script cache, Memberships loads the script and sends
// its pipeline again.
func TestMembershipsAfterScriptFlush(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	ctx := context.Background()
	joinRooms(t, b, "alice", 3)
	if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ms, err := b.Memberships(ctx, "alice")
	if err != nil || len(ms) != 3 || ms[1].Unread != 1 || ms[1].Head.Seq != 1 {
		t.Fatalf("Memberships after SCRIPT FLUSH = %+v, %v", ms, err)
	}
}

// AddMember and RemoveMember write the room side, then the user side. What
// a crash between the two leaves is harmless and repaired by the next call.
func TestMembershipHalfWritten(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	ctx := context.Background()
	rc := srv.Client()
	if _, err := b.EnsureRoom(ctx, "team", broker.PrivateRoom, "alice"); err != nil {
		t.Fatal(err)
	}

	// AddMember stopped after the room side: a member, not yet listed.
	if err := rc.SAdd(ctx, b.Key("team", "members"), "bob").Err(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.IsMember(ctx, "team", "bob"); !ok {
		t.Fatal("IsMember reads the room side: bob is a member")
	}
	if ms, _ := b.Memberships(ctx, "bob"); len(ms) != 0 {
		t.Fatalf("memberships = %+v before the repair", ms)
	}
	if added, err := b.AddMember(ctx, "team", "bob"); added || err != nil {
		t.Fatalf("AddMember again = %v, %v; want false (a member already)", added, err)
	}
	if ms, _ := b.Memberships(ctx, "bob"); len(ms) != 1 || ms[0].Room != "team" {
		t.Fatalf("memberships after the repairing AddMember = %+v, want team", ms)
	}

	// RemoveMember stopped after the room side: listed in the user's hash,
	// no longer a member, and Memberships leaves it out.
	if err := rc.SRem(ctx, b.Key("team", "members"), "bob").Err(); err != nil {
		t.Fatal(err)
	}
	if ms, _ := b.Memberships(ctx, "bob"); len(ms) != 0 {
		t.Fatalf("memberships of a half-removed member = %+v, want none", ms)
	}
	if removed, err := b.RemoveMember(ctx, "team", "bob"); removed || err != nil {
		t.Fatalf("RemoveMember again = %v, %v; want false", removed, err)
	}
	if n, _ := rc.HLen(ctx, b.UserKey("bob")).Result(); n != 0 {
		t.Fatalf("the repairing RemoveMember left %d fields in bob's hash", n)
	}
}

// The keys of the Users side, as docs/protocol.md lays them out, and what
// one user with 10 rooms costs in Redis memory.
func TestUsersLayoutAndCost(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	ctx := context.Background()
	rc := srv.Client()
	joinRooms(t, b, "alice", 10)
	p := strings.TrimSuffix(b.Key("x", "info"), ":{x}:info")

	types := map[string]string{
		p + ":{r000}:info":     "hash",
		p + ":{r000}:members":  "set",
		p + ":u:{alice}:rooms": "hash",
		p + ":rooms:public":    "zset",
	}
	for k, want := range types {
		if got, _ := rc.Type(ctx, k).Result(); got != want {
			t.Errorf("key %s is %q, want %s", k, got, want)
		}
	}
	info, _ := rc.HGetAll(ctx, p+":{r000}:info").Result()
	if info["kind"] != "public" || info["creator"] != "" || info["created"] == "" || len(info) != 3 {
		t.Errorf("info hash = %v, want kind, creator, created", info)
	}
	head, _ := b.Head(ctx, "r000")
	rooms, _ := rc.HGetAll(ctx, p+":u:{alice}:rooms").Result()
	if rooms["r000"] != head.Epoch+":1" || rooms["r001"] != "" || len(rooms) != 10 {
		t.Errorf("alice's hash = %v, want r000 at %s:1 and r001 with no cursor", rooms, head.Epoch)
	}

	usage := func(k string) int64 {
		n, err := rc.MemoryUsage(ctx, k).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		return n
	}
	user := usage(p + ":u:{alice}:rooms")
	var perRoom int64
	for i := range 10 {
		room := fmt.Sprintf("r%03d", i)
		perRoom += usage(b.Key(room, "info")) + usage(b.Key(room, "members"))
	}
	t.Logf("one user in 10 rooms (one member each): the user's hash 1 key, %d bytes; each room's info+members 2 keys, %s bytes on average; the directory (10 names) %d bytes",
		user, strconv.FormatFloat(float64(perRoom)/10, 'f', 1, 64), usage(p+":rooms:public"))
}

// BenchmarkMemberships200: Memberships of a user in 200 rooms, two round
// trips on a real Redis.
func BenchmarkMemberships200(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	br := newBroker(b, srv, nil, 1000)
	defer br.Close()
	joinRooms(b, br, "alice", 200)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ms, err := br.Memberships(ctx, "alice")
		if err != nil || len(ms) != 200 {
			b.Fatal(len(ms), err)
		}
	}
}

// What presence costs in Redis: one user present in 10 rooms on 3
// devices, and a room of 1,000 connections (1,000 users); and what a beat
// costs (one ZADD per node, whatever its rooms and connections).
func TestPresenceCost(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	b := newBroker(t, srv, nil, 100)
	defer b.Close()
	ctx := context.Background()
	rc := srv.Client()
	usage := func(k string) int64 {
		n, err := rc.MemoryUsage(ctx, k).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		return n
	}
	for i := range 10 {
		room := fmt.Sprintf("p%03d", i)
		for d := range 3 {
			if _, _, err := b.Enter(ctx, room, "gw-1.0a1b2c3d", fmt.Sprintf("gw-1.0a1b2c3d/%d", d), "alice"); err != nil {
				t.Fatal(err)
			}
		}
	}
	var ten int64
	for i := range 10 {
		room := fmt.Sprintf("p%03d", i)
		ten += usage(b.Key(room, "presence")) + usage(b.Key(room, "present"))
	}
	for i := range 1000 {
		if _, _, err := b.Enter(ctx, "big", fmt.Sprintf("gw-%d.0a1b2c3d", i%3), fmt.Sprintf("gw-%d.0a1b2c3d/%d", i%3, i), fmt.Sprintf("user-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	big := usage(b.Key("big", "presence")) + usage(b.Key("big", "present"))
	before, _ := rc.Info(ctx, "stats").Result()
	if err := b.Beat(ctx, "gw-1.0a1b2c3d", 20*time.Second); err != nil {
		t.Fatal(err)
	}
	after, _ := rc.Info(ctx, "stats").Result()
	t.Logf("presence: one user on 3 devices in 10 rooms: 2 keys a room, %d bytes in all (%.0f a room); a room of 1,000 connections of 1,000 users: 2 keys, %d bytes (%.0f a connection); a beat: %d command(s) for the node (INFO total_commands_processed %s -> %s, counting the INFO)",
		ten, float64(ten)/10, big, float64(big)/1000, 1, statField(before, "total_commands_processed"), statField(after, "total_commands_processed"))
}

func statField(info, field string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return "?"
}
