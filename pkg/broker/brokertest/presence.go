package brokertest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
)

// runPresence is the suite of the Presence side.
func runPresence(t *testing.T, setup func(t *testing.T) broker.Broker) {
	ctx := context.Background()
	present := func(t *testing.T, b broker.Broker, room string, dead []string) ([]broker.PresentUser, int64, []string) {
		t.Helper()
		users, total, gone, err := b.Present(ctx, room, dead, 100)
		if err != nil {
			t.Fatalf("Present(%s): %v", room, err)
		}
		return users, total, gone
	}
	show := func(us []broker.PresentUser) string {
		out := ""
		for _, u := range us {
			out += fmt.Sprintf("%s:%d ", u.User, u.Devices)
		}
		return out
	}

	// Connections enter and exit; counts are per user and per room, and
	// entering twice counts once.
	t.Run("PresenceEnterExit", func(t *testing.T) {
		b := setup(t)
		steps := []struct {
			enter          bool
			conn, user     string
			devices, total int64
		}{
			{true, "n1/1", "alice", 1, 1},
			{true, "n2/7", "alice", 2, 2},
			{true, "n1/2", "bob", 1, 3},
			{true, "n1/2", "bob", 1, 3}, // again: no change
			{false, "n2/7", "alice", 1, 2},
			{false, "n2/7", "", 0, 2}, // again: nothing (no user named)
		}
		for i, st := range steps {
			var devices, total int64
			var err error
			if st.enter {
				node := st.conn[:2]
				devices, total, err = b.Enter(ctx, "r", node, st.conn, st.user)
			} else {
				var user string
				user, devices, total, err = b.Exit(ctx, "r", st.conn)
				if i == 4 && user != "alice" {
					t.Fatalf("Exit of alice's connection named %q", user)
				}
			}
			if err != nil || devices != st.devices || total != st.total {
				t.Fatalf("step %d (%+v): devices %d total %d err %v", i, st, devices, total, err)
			}
		}
		users, total, gone := present(t, b, "r", nil)
		if show(users) != "alice:1 bob:1 " || total != 2 || len(gone) != 0 {
			t.Fatalf("present: %s total %d gone %v", show(users), total, gone)
		}
		if users, total, _, err := b.Present(ctx, "r", nil, 0); err != nil || users != nil || total != 2 {
			t.Fatalf("Present with limit 0: %v total %d err %v, want the total only", users, total, err)
		}
		if users, total, _ := present(t, b, "empty", nil); len(users) != 0 || total != 0 {
			t.Fatalf("an empty room: %s total %d", show(users), total)
		}
	})

	// A node that stops beating is dead once its beat runs out; sweeping
	// takes its connections out, and the users who had no other one are
	// gone. Nodes dead for longer than forget are forgotten.
	t.Run("PresenceDeadNodesSwept", func(t *testing.T) {
		b := setup(t)
		for _, n := range []string{"live", "dying"} {
			if err := b.Beat(ctx, n, time.Hour); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range []struct{ node, conn, user string }{
			{"live", "live/1", "alice"}, {"dying", "dying/1", "alice"}, {"dying", "dying/2", "bob"}, {"live", "live/2", "carol"},
		} {
			if _, _, err := b.Enter(ctx, "r", e.node, e.conn, e.user); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Beat(ctx, "dying", -time.Millisecond); err != nil { // its beat ran out
			t.Fatal(err)
		}
		dead, err := b.DeadNodes(ctx, time.Hour)
		if err != nil || !slices.Equal(dead, []string{"dying"}) {
			t.Fatalf("DeadNodes = %v, %v; want [dying]", dead, err)
		}
		users, total, gone := present(t, b, "r", dead)
		if show(users) != "alice:1 carol:1 " || total != 2 || !slices.Equal(gone, []string{"bob"}) {
			t.Fatalf("after the sweep: %s total %d gone %v; want alice:1 carol:1, total 2, bob gone", show(users), total, gone)
		}
		if _, _, gone := present(t, b, "r", dead); len(gone) != 0 {
			t.Fatalf("a second sweep took %v out again", gone)
		}
		if dead, err := b.DeadNodes(ctx, 0); err != nil || len(dead) != 0 {
			t.Fatalf("DeadNodes(forget 0) = %v, %v; want the dead node forgotten", dead, err)
		}
	})

	// Connections of one user entering and exiting at once leave exact
	// counts.
	t.Run("PresenceConcurrent", func(t *testing.T) {
		b := setup(t)
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn := fmt.Sprintf("n/%d", i)
				if _, _, err := b.Enter(ctx, "r", "n", conn, "alice"); err != nil {
					t.Error(err)
				}
				if i%2 == 0 {
					if _, _, _, err := b.Exit(ctx, "r", conn); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if users, total, _ := present(t, b, "r", nil); show(users) != "alice:8 " || total != 8 {
			t.Fatalf("after 16 enters and 8 exits: %s total %d", show(users), total)
		}
	})
}
