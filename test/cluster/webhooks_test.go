package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/protocol"
	"github.com/parley-chat/parley/pkg/webhook"
)

const (
	hookSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	hookAttempts = 4
	hookN        = 300 // message.offline events of the first phase
	hookK        = 10  // users whose webhooks always fail in the second
)

// hookReceiver is a slow, flaky webhook receiver that verifies every
// request and dedupes by webhook-id.
type hookReceiver struct {
	t      *testing.T
	secret webhook.Secret

	mu       sync.Mutex
	flaky    bool            // fail half the requests at random (never an id's last attempt)
	failFor  map[string]bool // users whose webhooks always fail
	requests map[string]int  // requests per id
	first    map[string]time.Duration
	okCount  map[string]int // 2xx answers per id: more than one is a duplicate delivery
	failures int
	badSigs  int
	changed  chan struct{} // closed and replaced on each delivery
}

func newHookReceiver(t *testing.T) (*hookReceiver, *httptest.Server) {
	s, err := webhook.ParseSecret(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{t: t, secret: s, failFor: map[string]bool{}, requests: map[string]int{},
		first: map[string]time.Duration{}, okCount: map[string]int{}, changed: make(chan struct{})}
	srv := httptest.NewServer(r) // 127.0.0.1
	t.Cleanup(srv.Close)
	return r, srv
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := webhook.Verify(r.secret, req.Header, body, 0); err != nil {
		r.mu.Lock()
		r.badSigs++
		r.mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	select { // slow: 20-50 ms
	case <-time.After(time.Duration(20+rand.IntN(31)) * time.Millisecond):
	case <-req.Context().Done():
		return
	}
	var ev struct {
		Timestamp string `json:"timestamp"`
		Data      struct {
			User string `json:"user"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	id := req.Header.Get(webhook.HeaderID)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[id]++
	if r.failFor[ev.Data.User] || (r.flaky && r.requests[id] < hookAttempts && rand.IntN(2) == 0) {
		r.failures++
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if r.okCount[id] == 0 {
		at, err := protocol.ParseTime(ev.Timestamp)
		if err != nil {
			r.t.Errorf("webhook %s: timestamp %q: %v", id, ev.Timestamp, err)
		}
		r.first[id] = time.Since(at)
	}
	r.okCount[id]++
	close(r.changed)
	r.changed = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}

// waitFor waits until cond (called with r.mu held) holds, or fails after
// timeout.
func (r *hookReceiver) waitFor(what string, timeout time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-time.After(500 * time.Millisecond): // a condition on the store, not on deliveries
		case <-deadline:
			r.t.Fatalf("%s: not after %v", what, timeout)
		}
	}
}

// delivered counts the ids in want delivered at least once.
func (r *hookReceiver) deliveredLocked(want []string) int {
	n := 0
	for _, id := range want {
		if r.okCount[id] > 0 {
			n++
		}
	}
	return n
}

// dmAll sends one direct message from the raw client to each user and
// returns the message.offline ids they set off.
func dmAll(t *testing.T, ctx context.Context, alice *raw, users []string) []string {
	t.Helper()
	var ids []string
	for i, u := range users {
		ref := fmt.Sprintf("s-%s-%d", u, i)
		room := protocol.DirectRoomOf("alice", u)
		alice.write(ctx, protocol.Frame{Type: "send", Ref: ref, Room: room, ID: ref, Body: "are you there, " + u + "?"})
		for {
			f := alice.read(ctx)
			if f.Type == protocol.TypeError {
				t.Fatalf("send to %s: %+v", u, f)
			}
			if f.Type == protocol.TypeAck && f.Ref == ref {
				ids = append(ids, fmt.Sprintf("message.offline/%s/%s/%d/%s", room, f.Epoch, f.Seq, u))
				break
			}
		}
	}
	return ids
}

// Three gateways deliver message.offline webhooks from one outbox to a slow
// receiver that fails half the requests: every event arrives (a receiver
// deduping by webhook-id sees each once), even though one gateway is
// killed mid-delivery (the others take its events over after
// --webhook-claim-idle). Events whose every attempt fails become dead
// letters, exactly those, and a replay delivers them.
func TestWebhooksCluster(t *testing.T) {
	rs := redistest.Start(t, redistest.Options{})
	recv, srv := newHookReceiver(t)
	recv.flaky = true
	gws := map[string]*proctest.Gateway{}
	for i := 1; i <= 3; i++ {
		node := fmt.Sprintf("gw-%d", i)
		gws[node] = proctest.StartGateway(t, proctest.GatewayOptions{Redis: rs.URL(), Node: node, Args: []string{
			"--rate-limit", "1000", "--rate-burst", "2000",
			"--webhook-url", srv.URL + "/hooks", "--webhook-secret", hookSecret,
			"--webhook-attempts", fmt.Sprint(hookAttempts), "--webhook-retry-base", "50ms", "--webhook-retry-max", "400ms",
			"--webhook-claim-idle", "3s", "--api-key", "ops:" + hookAPISecret,
		}})
	}
	for _, g := range gws {
		g.WaitReady(20 * time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice := dialRaw(t, ctx, gws["gw-1"].Addr, "alice")

	// Phase 1: N events, a gateway killed mid-delivery.
	var users []string
	for i := 1; i <= hookN; i++ {
		users = append(users, fmt.Sprintf("bob%d", i))
	}
	start := time.Now()
	ids := dmAll(t, ctx, alice, users)
	sent := time.Since(start)
	recv.waitFor("a third of the events delivered", 60*time.Second, func() bool { return recv.deliveredLocked(ids) >= hookN/3 })
	recv.mu.Lock()
	atKill := recv.deliveredLocked(ids)
	recv.mu.Unlock()
	gws["gw-2"].Kill()
	killed := time.Now()
	recv.waitFor("every event delivered", 90*time.Second, func() bool { return recv.deliveredLocked(ids) == hookN })
	elapsed := time.Since(start)
	tookOver := strings.Count(gws["gw-1"].Logs()+gws["gw-3"].Logs(), "took over events")

	recv.mu.Lock()
	var lat []time.Duration
	dups, retries := 0, recv.failures
	for _, id := range ids {
		lat = append(lat, recv.first[id])
		dups += recv.okCount[id] - 1
	}
	badSigs := recv.badSigs
	recv.flaky = false
	recv.mu.Unlock()
	if badSigs != 0 {
		t.Fatalf("%d requests with a bad signature", badSigs)
	}
	if tookOver == 0 {
		t.Fatalf("no gateway took over the killed gateway's events")
	}
	t.Logf("phase 1: %d events (%d sent in %v) delivered in %v: %.0f events/s; %d retries (500s answered); %d duplicates "+
		"(after kill -9 of gw-2 at %d delivered, %v before the last delivery; %d takeovers logged); enqueue to first success p50 %v p99 %v",
		hookN, hookN, sent.Round(time.Millisecond), elapsed.Round(time.Millisecond), float64(hookN)/elapsed.Seconds(), retries, dups,
		atKill, time.Since(killed).Round(time.Millisecond), tookOver, percentile(lat, 0.5).Round(time.Millisecond), percentile(lat, 0.99).Round(time.Millisecond))

	// Phase 2: K users whose every webhook fails, and K healthy ones.
	var doomed, fine []string
	recv.mu.Lock()
	for i := 1; i <= hookK; i++ {
		doomed = append(doomed, fmt.Sprintf("kim%d", i))
		fine = append(fine, fmt.Sprintf("fay%d", i))
		recv.failFor[doomed[i-1]] = true
	}
	recv.mu.Unlock()
	doomedIDs := dmAll(t, ctx, alice, doomed)
	fineIDs := dmAll(t, ctx, alice, fine)
	recv.waitFor("the healthy users' events delivered", 30*time.Second, func() bool { return recv.deliveredLocked(fineIDs) == hookK })
	// The dead letters and their replay, through a live gateway's server
	// API.
	api := "http://" + gws["gw-1"].Addr
	var deadIDs []string
	recv.waitFor("the dead letters", 30*time.Second, func() bool {
		ds := deadLetters(t, ctx, api)
		deadIDs = deadIDs[:0]
		for _, d := range ds {
			deadIDs = append(deadIDs, d.ID)
			if d.Attempts != hookAttempts || !strings.Contains(d.LastError, "500") {
				t.Fatalf("dead letter %s: %d attempts, last error %q", d.ID, d.Attempts, d.LastError)
			}
		}
		return len(ds) >= hookK
	})
	slices.Sort(deadIDs)
	want := slices.Sorted(slices.Values(doomedIDs))
	if !slices.Equal(deadIDs, want) {
		t.Fatalf("dead letters %v, want exactly %v", deadIDs, want)
	}

	// Replay with the receiver healthy.
	recv.mu.Lock()
	clear(recv.failFor)
	recv.mu.Unlock()
	var replayed struct{ Replayed int }
	hookAPI(t, ctx, "POST", api+"/v1/webhooks/dead/replay", `{}`, &replayed)
	n := replayed.Replayed
	if n != hookK {
		t.Fatalf("replayed %d, want %d", n, hookK)
	}
	recv.waitFor("the replayed events delivered", 30*time.Second, func() bool { return recv.deliveredLocked(doomedIDs) == hookK })
	if ds := deadLetters(t, ctx, api); len(ds) != 0 {
		t.Fatalf("dead letters after the replay: %d", len(ds))
	}
	recv.mu.Lock()
	dups = 0
	for _, n := range recv.okCount {
		dups += n - 1
	}
	recv.mu.Unlock()
	t.Logf("phase 2: %d dead letters after %d attempts each, exactly the failing users'; replayed %d, all delivered; %d duplicate deliveries in all",
		len(deadIDs), hookAttempts, n, dups)
}

// hookAPISecret is the test's API key, for the dead letters.
const hookAPISecret = "ops-secret-0123456789"

// deadLetter is one entry of GET /v1/webhooks/dead.
type deadLetter struct {
	ID        string `json:"id"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
}

// deadLetters lists the outbox's dead letters through the server API.
func deadLetters(t *testing.T, ctx context.Context, api string) []deadLetter {
	t.Helper()
	var out struct{ Dead []deadLetter }
	hookAPI(t, ctx, "GET", api+"/v1/webhooks/dead?limit=100", "", &out)
	return out.Dead
}

// hookAPI makes a server API call with the test's key and decodes its 200
// answer into v.
func hookAPI(t *testing.T, ctx context.Context, method, url, body string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+hookAPISecret)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s %s: %s: %v", method, url, b, err)
	}
}
