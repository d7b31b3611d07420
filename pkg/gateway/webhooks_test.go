package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
	"github.com/parley-chat/parley/pkg/webhook"
)

const (
	hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	hookAPIKey = "ops:0123456789abcdef-key"
)

// hookEvent is a webhook as the receiver got it, its signature checked.
type hookEvent struct {
	ID      string
	Type    string          `json:"type"`
	Time    string          `json:"timestamp"`
	Data    json.RawMessage `json:"data"`
	Attempt int             // how many times this id came, this one included
}

// receiver is a webhook receiver: it verifies each request, answers
// fail's status (0: 204) and hands the accepted ones over in order.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	events chan hookEvent
	mu     sync.Mutex
	fail   func(id string, attempt int) int
	seen   map[string]int
}

func newReceiver(t *testing.T) *receiver {
	secret, err := webhook.ParseSecret(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, events: make(chan hookEvent, 1000), seen: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if err := webhook.Verify(secret, req.Header, body, 0); err != nil {
			t.Errorf("receiver: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := req.Header.Get(webhook.HeaderID)
		r.mu.Lock()
		r.seen[id]++
		n := r.seen[id]
		fail := r.fail
		r.mu.Unlock()
		if fail != nil {
			if status := fail(id, n); status != 0 {
				w.WriteHeader(status)
				return
			}
		}
		var ev hookEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("receiver: %s: %v", body, err)
		}
		ev.ID, ev.Attempt = id, n
		r.events <- ev
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFail(f func(id string, attempt int) int) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

// next returns the next event delivered, within 10 s.
func (r *receiver) next() hookEvent {
	r.t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(10 * time.Second):
		r.t.Fatal("no webhook within 10s")
	}
	return hookEvent{}
}

// hookCluster is one gateway with webhooks to a receiver, on real Redis.
func hookCluster(t *testing.T, events []string) (*cluster, *node, *receiver) {
	r := newReceiver(t)
	c := newCluster(t, 0, nil)
	key, _ := gateway.ParseAPIKey(hookAPIKey)
	n := c.addNode("gw-hooks", func(cfg *gateway.Config) {
		cfg.APIKeys = []gateway.APIKey{key}
		// One worker delivers in the outbox's order, so a sentinel event
		// proves that nothing queued before it is still to come.
		cfg.Webhooks = &gateway.WebhookConfig{URL: r.srv.URL, Secret: hookSecret, Events: events, Workers: 1,
			Attempts: 3, RetryBase: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond, Tick: 50 * time.Millisecond}
	})
	return c, n, r
}

// dataOf decodes an event's data.
func dataOf(t *testing.T, ev hookEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// waitOnline waits until user has n devices online.
func waitOnline(t *testing.T, n *node, user string, want int64) {
	t.Helper()
	for range 500 {
		users, _, _, err := n.g.Broker().Present(context.Background(), "@"+user, nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := int64(0)
		if len(users) > 0 {
			got = users[0].Devices
		}
		if got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never had %d devices online", user, want)
}

func TestWebhookDirectMessageToOfflineUser(t *testing.T) {
	_, n, r := hookCluster(t, nil)
	alice := login(t, n, "alice", "d1")
	ack, _ := alice.post("dm:alice:bob", "m1", "hi bob")
	ev := r.next()
	wantID := fmt.Sprintf("message.offline/dm:alice:bob/%s/%d/bob", ack.Epoch, ack.Seq)
	if ev.ID != wantID || ev.Type != gateway.EventMessageOffline || ev.Attempt != 1 {
		t.Fatalf("webhook %s %s (attempt %d), want %s", ev.ID, ev.Type, ev.Attempt, wantID)
	}
	if _, err := protocol.ParseTime(ev.Time); err != nil {
		t.Fatalf("timestamp %q: %v", ev.Time, err)
	}
	d := dataOf(t, ev)
	want := map[string]any{"user": "bob", "room": "dm:alice:bob", "epoch": ack.Epoch, "seq": float64(ack.Seq),
		"id": "m1", "from": "alice", "body": "hi bob", "ts": ack.TS}
	for k, v := range want {
		if d[k] != v {
			t.Fatalf("data[%s] = %v, want %v (data %s)", k, d[k], v, ev.Data)
		}
	}
	// A resend (the same id) is a duplicate: no second event.
	alice.post("dm:alice:bob", "m1", "hi bob")

	// Bob online: no event for him.
	bob := login(t, n, "bob", "d1")
	waitOnline(t, n, "bob", 1)
	alice.post("dm:alice:bob", "m2", "are you there?")
	// The sentinel: a DM to offline carol is the next event.
	ack3, _ := alice.post("dm:alice:carol", "m3", "hi carol")
	if ev := r.next(); ev.ID != fmt.Sprintf("message.offline/dm:alice:carol/%s/%d/carol", ack3.Epoch, ack3.Seq) {
		t.Fatalf("next webhook %s, want carol's: bob was online, m1's resend a duplicate", ev.ID)
	}
	_ = bob
}

func TestWebhookMentions(t *testing.T) {
	_, n, r := hookCluster(t, nil)
	ctx := context.Background()
	b := n.g.Broker()
	if _, err := b.EnsureRoom(ctx, "lobby", broker.PublicRoom, "alice"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob", "erin"} {
		if _, err := b.AddMember(ctx, "lobby", u); err != nil {
			t.Fatal(err)
		}
	}
	alice := login(t, n, "alice", "d1")
	alice.join("lobby", nil)
	// No '@': nothing. Bob (member) and erin (member, trailing '.') are
	// told; dave is no member, alice is the sender, mail@bob.com no
	// mention, bob once only.
	alice.post("lobby", "m0", "no mention here")
	ack, _ := alice.post("lobby", "m1", "@bob hi, and @dave and @alice: see mail@x.com, @bob again, @erin.")
	got := map[string]bool{}
	for range 2 {
		ev := r.next()
		d := dataOf(t, ev)
		got[fmt.Sprint(d["user"])] = true
		if want := fmt.Sprintf("message.offline/lobby/%s/%d/%s", ack.Epoch, ack.Seq, d["user"]); ev.ID != want || d["from"] != "alice" {
			t.Fatalf("webhook %s from %v, want %s", ev.ID, d["from"], want)
		}
	}
	if !got["bob"] || !got["erin"] {
		t.Fatalf("mentions told %v, want bob and erin", got)
	}
	ack2, _ := alice.post("dm:alice:carol", "m2", "sentinel")
	if ev := r.next(); ev.ID != fmt.Sprintf("message.offline/dm:alice:carol/%s/%d/carol", ack2.Epoch, ack2.Seq) {
		t.Fatalf("next webhook %s, want the sentinel: dave is no member", ev.ID)
	}
}

func TestWebhookMemberEvents(t *testing.T) {
	_, n, r := hookCluster(t, []string{gateway.EventMemberAdded, gateway.EventMemberRemoved})
	alice := login(t, n, "alice", "d1")
	alice.join("club", nil)
	ev := r.next()
	d := dataOf(t, ev)
	if ev.Type != gateway.EventMemberAdded || !strings.HasPrefix(ev.ID, "member.added/club/alice/") ||
		d["room"] != "club" || d["user"] != "alice" || d["kind"] != "public" {
		t.Fatalf("webhook %s %s %s, want member.added of alice to club", ev.ID, ev.Type, ev.Data)
	}
	alice.send(protocol.Frame{Type: protocol.TypeLeave, Ref: "l1", Room: "club"})
	alice.expect(protocol.TypeLeft)
	ev = r.next()
	d = dataOf(t, ev)
	if ev.Type != gateway.EventMemberRemoved || !strings.HasPrefix(ev.ID, "member.removed/club/alice/") || d["user"] != "alice" {
		t.Fatalf("webhook %s %s %s, want member.removed of alice from club", ev.ID, ev.Type, ev.Data)
	}
	// message.offline is not configured: a DM to offline bob sends only
	// the member.added of the direct room, for both.
	// The workers deliver in parallel: the two come in either order.
	alice.post("dm:alice:bob", "m1", "hi")
	added := map[string]bool{}
	for range 2 {
		ev := r.next()
		d := dataOf(t, ev)
		u := fmt.Sprint(d["user"])
		if ev.Type != gateway.EventMemberAdded || !strings.HasPrefix(ev.ID, "member.added/dm:alice:bob/"+u+"/") || added[u] {
			t.Fatalf("webhook %s %s, want one member.added of each user to the direct room", ev.ID, ev.Data)
		}
		added[u] = true
	}
	if !added["alice"] || !added["bob"] {
		t.Fatalf("member.added for %v, want alice and bob", added)
	}
}

// apiCall makes an HTTP API call with the test's key.
func apiCall(t *testing.T, n *node, method, path, body string, key bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, n.srv.URL+path, strings.NewReader(body))
	if key {
		req.Header.Set("Authorization", "Bearer "+strings.SplitN(hookAPIKey, ":", 2)[1])
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: %s: %v", method, path, b, err)
	}
	return resp.StatusCode, m
}

func TestWebhookRetriesDeadLettersAndReplay(t *testing.T) {
	c, n, r := hookCluster(t, nil)
	// bob's webhooks fail twice, then pass; zed's always fail.
	r.setFail(func(id string, attempt int) int {
		switch {
		case strings.HasSuffix(id, "/bob") && attempt <= 2:
			return http.StatusServiceUnavailable
		case strings.HasSuffix(id, "/zed"):
			return http.StatusInternalServerError
		}
		return 0
	})
	alice := login(t, n, "alice", "d1")
	alice.post("dm:alice:bob", "m1", "hi bob")
	if ev := r.next(); !strings.HasSuffix(ev.ID, "/bob") || ev.Attempt != 3 {
		t.Fatalf("webhook %s on attempt %d, want bob's on its third", ev.ID, ev.Attempt)
	}
	ack, _ := alice.post("dm:alice:zed", "m2", "hi zed")
	zedID := fmt.Sprintf("message.offline/dm:alice:zed/%s/%d/zed", ack.Epoch, ack.Seq)
	var dead []any
	for i := 0; len(dead) == 0 && i < 500; i++ {
		code, m := apiCall(t, n, "GET", "/v1/webhooks/dead?limit=10", "", true)
		if code != http.StatusOK {
			t.Fatalf("GET dead: %d %v", code, m)
		}
		dead, _ = m["dead"].([]any)
		if len(dead) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(dead) != 1 {
		t.Fatalf("dead letters %v, want zed's", dead)
	}
	d := dead[0].(map[string]any)
	payload, _ := d["payload"].(map[string]any)
	if d["id"] != zedID || d["type"] != "message.offline" || d["attempts"] != float64(3) ||
		!strings.Contains(fmt.Sprint(d["last_error"]), "500") || d["failed_at"] == "" || payload["type"] != "message.offline" {
		t.Fatalf("dead letter %v, want %s after 3 attempts, failing with 500", d, zedID)
	}
	if code, _ := apiCall(t, n, "GET", "/v1/webhooks/dead", "", false); code != http.StatusUnauthorized {
		t.Fatalf("GET dead without a key: %d, want 401", code)
	}
	// Replay with the receiver healthy: delivered.
	r.setFail(nil)
	code, m := apiCall(t, n, "POST", "/v1/webhooks/dead/replay", `{"ids":["`+zedID+`"]}`, true)
	if code != http.StatusOK || m["replayed"] != float64(1) {
		t.Fatalf("replay: %d %v", code, m)
	}
	if ev := r.next(); ev.ID != zedID || ev.Attempt != 4 {
		t.Fatalf("after the replay: %s (attempt %d), want %s on its fourth", ev.ID, ev.Attempt, zedID)
	}
	if code, m := apiCall(t, n, "GET", "/v1/webhooks/dead", "", true); code != http.StatusOK || len(m["dead"].([]any)) != 0 {
		t.Fatalf("dead letters after the replay: %d %v", code, m)
	}
	if code, m := apiCall(t, n, "POST", "/v1/webhooks/dead/replay", "", true); code != http.StatusOK || m["replayed"] != float64(0) {
		t.Fatalf("replay all of none: %d %v", code, m)
	}
	// A gateway without webhooks has no outbox to show.
	key, _ := gateway.ParseAPIKey(hookAPIKey)
	plain := c.addNode("gw-plain", func(cfg *gateway.Config) { cfg.APIKeys = []gateway.APIKey{key} })
	if code, m := apiCall(t, plain, "GET", "/v1/webhooks/dead", "", true); code != http.StatusNotFound || m["code"] != "not_found" {
		t.Fatalf("GET dead on a gateway without webhooks: %d %v", code, m)
	}
	if v := scrapeValue(t, n, "parley_webhook_dead_total"); v != 1 {
		t.Fatalf("parley_webhook_dead_total = %v, want 1", v)
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	for _, wc := range []gateway.WebhookConfig{
		{URL: "http://127.0.0.1:1/", Secret: "not-a-secret"},
		{URL: "http://127.0.0.1:1/", Secret: hookSecret, Events: []string{"message.exploded"}},
	} {
		_, err := gateway.New(gateway.Config{DevAuth: true, Logger: quietLogger(), Webhooks: &wc})
		if err == nil {
			t.Fatalf("New accepted webhooks %+v", wc)
		}
		if strings.Contains(err.Error(), "MfKQ9r8") {
			t.Fatalf("the error shows the secret: %v", err)
		}
	}
}

// A gateway that closes (after a drain, say) still enqueues the notices
// its notifier holds: only a crash loses them. 300 direct messages to
// offline users are posted through the broadcast API as fast as it takes
// them, the gateway is closed at once, and the outbox holds all 300 events.
func TestWebhookNoticesSurviveClose(t *testing.T) {
	c := newCluster(t, 0, nil)
	n := c.addNode("gw-close", withAPI(func(cfg *gateway.Config) {
		// A receiver that is never there: every event stays in the outbox.
		cfg.Webhooks = &gateway.WebhookConfig{URL: "http://127.0.0.1:9/none", Secret: hookSecret, Workers: 1,
			RetryBase: time.Hour, RetryMax: time.Hour}
	}))
	const batches, per = 3, 100
	for b := range batches {
		var rooms []string
		for i := range per {
			rooms = append(rooms, fmt.Sprintf(`"dm:alice:u%03d"`, b*per+i))
		}
		apiDo(t, n, "POST", "/v1/messages", bearer(apiSecret),
			fmt.Sprintf(`{"rooms":[%s],"id":"b%d","from":"alice","body":"ping"}`, strings.Join(rooms, ","), b)).want(t, 200, "")
	}
	if err := n.g.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rc := c.redis.Client()
	inStream, err := rc.XLen(ctx, c.prefix+":{outbox}:stream").Result()
	if err != nil {
		t.Fatal(err)
	}
	retrying, err := rc.ZCard(ctx, c.prefix+":{outbox}:retry").Result()
	if err != nil {
		t.Fatal(err)
	}
	if inStream+retrying != batches*per {
		t.Fatalf("outbox holds %d events (%d in the stream, %d waiting to retry), want %d", inStream+retrying, inStream, retrying, batches*per)
	}
}
