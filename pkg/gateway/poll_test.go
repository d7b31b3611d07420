package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

var pubSeq atomic.Int64

// pub publishes body to room through n's broker, as user "pub".
func pub(t *testing.T, n *node, room, body string) broker.Ack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := n.g.Broker().Publish(ctx, broker.Publication{Room: room, ID: fmt.Sprintf("p%d", pubSeq.Add(1)), From: "pub", Body: body})
	if err != nil {
		t.Fatalf("publish %s: %v", body, err)
	}
	return ack
}

// pollResult is a poll's answer as a client reads it.
type pollResult struct {
	Room      string             `json:"room"`
	Epoch     string             `json:"epoch"`
	Seq       int64              `json:"seq"`
	First     int64              `json:"first"`
	Recovered *bool              `json:"recovered"`
	Messages  []protocol.Message `json:"messages"`
	Next      string             `json:"next"`
	Code      string             `json:"code"`
	Message   string             `json:"message"`

	status int
	node   string
}

func (p pollResult) bodies() string {
	s := make([]string, len(p.Messages))
	for i, m := range p.Messages {
		s[i] = m.Body
	}
	return strings.Join(s, ",")
}

// poll GETs /v1/rooms/{room}/messages?query on n, with a bearer token when
// token is set.
func poll(t *testing.T, n *node, room, query, token string) pollResult {
	t.Helper()
	req, _ := http.NewRequest("GET", n.srv.URL+"/v1/rooms/"+url.PathEscape(room)+"/messages?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("poll %s?%s: %v", room, query, err)
		return pollResult{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var pr pollResult
	if err := json.Unmarshal(b, &pr); err != nil {
		t.Errorf("poll %s?%s: %d %q: %v", room, query, resp.StatusCode, b, err)
	}
	pr.status, pr.node = resp.StatusCode, resp.Header.Get("X-Parley-Node")
	return pr
}

// awaitValue waits until n's metric name reads want.
func awaitValue(t *testing.T, n *node, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for scrapeValue(t, n, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s is %v after 10s, want %v", name, n.g.NodeID(), scrapeValue(t, n, name), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPollAnswersAtOnce(t *testing.T) {
	c := newCluster(t, 2, nil)
	var acks []broker.Ack
	for i := 1; i <= 5; i++ {
		acks = append(acks, pub(t, c.gws[0], "r", fmt.Sprintf("m%d", i)))
	}
	epoch := acks[0].Epoch
	// After a position: what follows, oldest first, from any gateway.
	p := poll(t, c.gws[1], "r", "user=ann&after="+epoch+":2", "")
	if p.status != 200 || p.bodies() != "m3,m4,m5" || p.Next != epoch+":5" || p.Recovered == nil || !*p.Recovered ||
		p.Seq != 5 || p.Epoch != epoch || p.node != "gw-2" {
		t.Fatalf("after 2: %+v", p)
	}
	// limit cuts it; next continues from the last one returned.
	p = poll(t, c.gws[0], "r", "user=ann&limit=2&after="+epoch+":1", "")
	if p.bodies() != "m2,m3" || p.Next != epoch+":3" {
		t.Fatalf("after 1 limit 2: %+v", p)
	}
	// Neither: the last limit messages, next the last one's position.
	p = poll(t, c.gws[0], "r", "user=ann&limit=3", "")
	if p.bodies() != "m3,m4,m5" || p.Next != epoch+":5" || p.Recovered != nil {
		t.Fatalf("tail page: %+v", p)
	}
	// before: a page back, with no next.
	p = poll(t, c.gws[0], "r", "user=ann&before=4&limit=2", "")
	if p.bodies() != "m2,m3" || p.Next != "" || p.Seq != 5 {
		t.Fatalf("before 4: %+v", p)
	}
	// At the head with wait=0: nothing, next unchanged.
	p = poll(t, c.gws[0], "r", "user=ann&after="+epoch+":5", "")
	if p.status != 200 || len(p.Messages) != 0 || p.Next != epoch+":5" {
		t.Fatalf("at the head: %+v", p)
	}
	// An empty room.
	p = poll(t, c.gws[0], "empty", "user=ann", "")
	if p.status != 200 || len(p.Messages) != 0 || p.Next != "" || p.Messages == nil {
		t.Fatalf("empty room: %+v", p)
	}
}

func TestPollBadRequests(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.MaxPollWait = 200 * time.Millisecond })
	n := c.gws[0]
	for _, q := range []string{"after=e:1&before=3", "before=0", "before=x", "limit=0", "limit=1001",
		"wait=-1", "wait=soon", "before=3&wait=1s", "after=nocolon", "after=e:-1"} {
		if p := poll(t, n, "r", "user=ann&"+q, ""); p.status != 400 || p.Code != protocol.CodeBadRequest {
			t.Errorf("%s: %+v", q, p)
		}
	}
	if p := poll(t, n, "r", "", ""); p.status != 401 || p.Code != protocol.CodeUnauthorized {
		t.Errorf("no caller: %+v", p)
	}
	// A wait over MaxPollWait is clamped to it: "tail" mode answers empty.
	start := time.Now()
	p := poll(t, n, "r", "user=ann&wait=60", "")
	if p.status != 200 || len(p.Messages) != 0 || time.Since(start) > 5*time.Second {
		t.Fatalf("clamped wait: %+v after %v", p, time.Since(start))
	}
}

// A poll with nothing new waits, and answers with the first message
// published during the wait; one that times out answers empty with next
// unchanged.
func TestPollWaits(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := pub(t, c.gws[0], "r", "m1")
	after := protocol.Position{Epoch: a.Epoch, Seq: a.Seq}.String()
	got := make(chan pollResult, 1)
	go func() { got <- poll(t, c.gws[1], "r", "user=ann&wait=20s&after="+after, "") }()
	awaitValue(t, c.gws[1], "parley_polls_waiting", 1)
	pub(t, c.gws[0], "r", "m2")
	var p pollResult
	select {
	case p = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("the waiting poll did not answer")
	}
	if p.status != 200 || p.bodies() != "m2" || p.Next != a.Epoch+":2" || p.Recovered == nil || !*p.Recovered || p.node != "gw-2" {
		t.Fatalf("woken poll: %+v", p)
	}
	// The next poll, on the other gateway, times out: empty, next as it was.
	p = poll(t, c.gws[0], "r", "user=ann&wait=300ms&after="+p.Next, "")
	if p.status != 200 || len(p.Messages) != 0 || p.Next != a.Epoch+":2" {
		t.Fatalf("timed out poll: %+v", p)
	}
	// Tail mode: a wait without after waits for what comes after the head.
	go func() { got <- poll(t, c.gws[0], "r", "user=ann&wait=20s", "") }()
	awaitValue(t, c.gws[0], "parley_polls_waiting", 1)
	pub(t, c.gws[1], "r", "m3")
	if p = <-got; p.bodies() != "m3" || p.Next != a.Epoch+":3" {
		t.Fatalf("tail poll: %+v", p)
	}
	if v := scrapeValue(t, c.gws[0], "parley_polls_waiting"); v != 0 {
		t.Fatalf("polls waiting after the answers: %v", v)
	}
	m := scrape(t, c.gws[0])
	for _, want := range []string{`parley_polls_total{node="gw-1",result="data"} 1`, `parley_polls_total{node="gw-1",result="timeout"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// recovered is false when what follows after is gone: trimmed from
// history, or of another epoch (then the room's first retained message on).
func TestPollRecovered(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.addNodeWithRetention(t, 3)
	var last broker.Ack
	for i := 1; i <= 6; i++ {
		last = pub(t, n, "r", fmt.Sprintf("m%d", i))
	}
	for _, wait := range []string{"", "&wait=5s"} {
		p := poll(t, n, "r", "user=ann&after="+last.Epoch+":1"+wait, "")
		if p.bodies() != "m4,m5,m6" || p.Recovered == nil || *p.Recovered || p.First != 4 {
			t.Fatalf("trimmed (%q): %+v", wait, p)
		}
		p = poll(t, n, "r", "user=ann&after=gone-epoch:5"+wait, "")
		if p.bodies() != "m4,m5,m6" || p.Recovered == nil || *p.Recovered || p.Next != last.Epoch+":6" {
			t.Fatalf("another epoch (%q): %+v", wait, p)
		}
		p = poll(t, n, "r", "user=ann&after="+last.Epoch+":3"+wait, "")
		if p.bodies() != "m4,m5,m6" || p.Recovered == nil || !*p.Recovered {
			t.Fatalf("kept (%q): %+v", wait, p)
		}
	}
}

// Users read the rooms they may use (private: members only; the token's
// rooms claim); API keys read any room; a read makes no membership.
func TestPollAccess(t *testing.T) {
	key := gateway.APIKey{Name: "backend", Secret: "0123456789abcdef-secret"}
	n := tokenCluster(t, func(cfg *gateway.Config) { cfg.APIKeys = []gateway.APIKey{key} })
	alice := mint(t, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)})
	bob := mint(t, auth.Claims{User: "bob", Expires: time.Now().Add(time.Hour)})
	limited := mint(t, auth.Claims{User: "carol", Rooms: []string{"team-*"}, Expires: time.Now().Add(time.Hour)})
	cl, _ := tokenLogin(t, n, alice)
	cl.send(protocol.Frame{Type: "create", Ref: "c1", Room: "secret", Kind: "private"})
	cl.expect("created")
	cl.post("secret", "s1", "hush")
	pub(t, n, "open", "hello")

	if p := poll(t, n, "secret", "", alice); p.status != 200 || p.bodies() != "hush" {
		t.Fatalf("member: %+v", p)
	}
	if p := poll(t, n, "secret", "", bob); p.status != 403 || p.Code != protocol.CodeForbidden {
		t.Fatalf("not a member: %+v", p)
	}
	if p := poll(t, n, "secret", "token="+url.QueryEscape(alice), ""); p.status != 200 || p.bodies() != "hush" {
		t.Fatalf("member, token in the query: %+v", p)
	}
	if p := poll(t, n, "secret", "", key.Secret); p.status != 200 || p.bodies() != "hush" {
		t.Fatalf("API key: %+v", p)
	}
	if p := poll(t, n, "open", "", limited); p.status != 403 {
		t.Fatalf("rooms claim: %+v", p)
	}
	if p := poll(t, n, "open", "", bob); p.status != 200 || p.bodies() != "hello" {
		t.Fatalf("public room: %+v", p)
	}
	// bob read "open" and is no member of it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := n.g.Broker().IsMember(ctx, "open", "bob"); err != nil || ok {
		t.Fatalf("bob is a member of open after a read: %v %v", ok, err)
	}
}

// Drain answers a waiting poll at once, empty with next unchanged, and a
// draining gateway answers a new poll with wait at once (never 503).
func TestPollDrainAnswersAtOnce(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	a := pub(t, n, "r", "m1")
	after := protocol.Position{Epoch: a.Epoch, Seq: a.Seq}.String()
	got := make(chan pollResult, 1)
	go func() { got <- poll(t, n, "r", "user=ann&wait=30s&after="+after, "") }()
	awaitValue(t, n, "parley_polls_waiting", 1)
	start := time.Now()
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- n.g.Drain(ctx)
	}()
	p := <-got
	if p.status != 200 || len(p.Messages) != 0 || p.Next != after || time.Since(start) > 5*time.Second {
		t.Fatalf("drained poll: %+v after %v", p, time.Since(start))
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	p = poll(t, n, "r", "user=ann&wait=30s&after="+a.Epoch+":0", "")
	if p.status != 200 || p.bodies() != "m1" || time.Since(start) > 5*time.Second {
		t.Fatalf("poll while draining: %+v", p)
	}
	p = poll(t, n, "r", "user=ann&wait=30s&after="+after, "")
	if p.status != 200 || len(p.Messages) != 0 || p.Next != after || time.Since(start) > 5*time.Second {
		t.Fatalf("empty poll while draining: %+v after %v", p, time.Since(start))
	}
	if !strings.Contains(scrape(t, n), `parley_polls_total{node="gw-1",result="drain"} 2`) {
		t.Error("the drained polls (one waiting, one that found nothing) are not counted")
	}
}

// The next of an empty room is "", and after= (empty) polls from the
// room's start: nothing published between two polls is skipped.
func TestPollEmptyRoomNext(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	p := poll(t, n, "r", "user=ann", "")
	if p.Next != "" || len(p.Messages) != 0 {
		t.Fatalf("empty room: %+v", p)
	}
	pub(t, n, "r", "m1")
	pub(t, n, "r", "m2")
	if p = poll(t, n, "r", "user=ann&wait=5s&after="+p.Next, ""); p.bodies() != "m1,m2" || p.Recovered == nil || !*p.Recovered {
		t.Fatalf("after the empty room's next: %+v", p)
	}
}
