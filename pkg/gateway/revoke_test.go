package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Removing a member of a private room ends what that user had open on it
// without a frame to say so: a plain-text connection to the room closes
// with 1008, and a waiting long-poll of it answers 403. Neither gets what
// is posted after the removal; the other member still does.
func TestRemovedMemberPlainTextAndPollEnd(t *testing.T) {
	c := newCluster(t, 2, withAPI(nil))
	a, b := c.gws[0], c.gws[1]
	apiDo(t, a, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"team","kind":"private","members":["alice","bob"]}`).want(t, 201, "")
	plain := dialPlain(t, b, "/team?user=alice")
	bob := dialPlain(t, a, "/team?user=bob")
	apiDo(t, a, "POST", "/v1/rooms/team/messages", bearer(apiSecret), `{"id":"t1","from":"carol","body":"before"}`).want(t, 200, "")
	for _, cl := range []*tclient{plain, bob} {
		if got := cl.text(); got != "before" {
			t.Fatalf("%s got %q", cl.name, got)
		}
	}
	got := make(chan pollResult, 1)
	go func() { got <- poll(t, a, "team", "user=alice&wait=20s", "") }()
	awaitValue(t, a, "parley_polls_waiting", 1)

	apiDo(t, b, "DELETE", "/v1/rooms/team/members/alice", bearer(apiSecret), "").want(t, 200, "")
	apiDo(t, a, "POST", "/v1/rooms/team/messages", bearer(apiSecret), `{"id":"t2","from":"carol","body":"after"}`).want(t, 200, "")
	select {
	case p := <-got:
		if p.status != 403 || len(p.Messages) != 0 {
			t.Fatalf("the waiting poll of the removed member answered %d with %d messages, want 403 and none", p.status, len(p.Messages))
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting poll of the removed member did not answer")
	}
	if code, reason := plain.closeStatus(); code != websocket.StatusPolicyViolation || reason != "no longer a member of team" {
		t.Fatalf("the removed member's plain-text connection closed %d %q", code, reason)
	}
	for {
		select {
		case f := <-plain.frames:
			if strings.Contains(string(f), "after") {
				t.Fatalf("the removed member got %q", f)
			}
			continue
		default:
		}
		break
	}
	if got := bob.text(); got != "after" {
		t.Fatalf("bob got %q", got)
	}
}
