package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// apiSecret is the test backend's API key ("backend").
const apiSecret = "backend-secret-0123456789"

// withAPI gives a gateway the test's API key, and HS256 tokens of
// authSecret besides dev auth.
func withAPI(tweak func(*gateway.Config)) func(*gateway.Config) {
	return func(cfg *gateway.Config) {
		cfg.APIKeys = []gateway.APIKey{{Name: "backend", Secret: apiSecret}}
		cfg.JWTSecret = authSecret
		if tweak != nil {
			tweak(cfg)
		}
	}
}

// apiResp is an answer of the HTTP API.
type apiResp struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the answer's body into v.
func (r apiResp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d %s: %v", r.status, r.body, err)
	}
}

// code returns an error answer's code, checking its shape.
func (r apiResp) code(t *testing.T) string {
	t.Helper()
	var e struct{ Code, Message string }
	r.json(t, &e)
	if e.Code == "" || e.Message == "" {
		t.Fatalf("error answer %d %s lacks code or message", r.status, r.body)
	}
	return e.Code
}

// bearer is an Authorization header value.
func bearer(secret string) string { return "Bearer " + secret }

// apiDo makes one request of n's HTTP API (authorization: the header's
// value, "" for none; body: JSON, "" for none), checks it and its answer
// against docs/openapi.yaml, and returns the answer.
func apiDo(t *testing.T, n *node, method, path, authorization, body string) apiResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, n.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, path, err)
	}
	// The request again, for the check (its body was consumed).
	check, _ := http.NewRequest(method, n.srv.URL+path, strings.NewReader(body))
	check.Header = req.Header.Clone()
	checkOpenAPI(t, check, resp, b)
	return apiResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// want fails unless the answer has status (and, for an error, code).
func (r apiResp) want(t *testing.T, status int, code string) apiResp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d %s, want %d", r.status, r.body, status)
	}
	if code != "" {
		if got := r.code(t); got != code {
			t.Fatalf("code %q (%s), want %q", got, r.body, code)
		}
	}
	return r
}

// ack is the answer of a publish.
type ack struct {
	Room, ID, Epoch, TS string
	Seq                 int64
	Duplicate           bool
}

func TestAPIPublish(t *testing.T) {
	c := newCluster(t, 1, withAPI(nil))
	n := c.gws[0]
	alice := login(t, n, "alice", "phone")
	alice.join("general", nil)

	r := apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"m1","from":"bob","body":"hi from the backend"}`).want(t, 200, "")
	var a1 ack
	r.json(t, &a1)
	if a1.Room != "general" || a1.ID != "m1" || a1.Seq != 1 || a1.Epoch == "" || a1.TS == "" || a1.Duplicate {
		t.Fatalf("ack = %+v", a1)
	}
	m := alice.messages(1)[0]
	if m.From != "bob" || m.Device != "api:backend" || m.Body != "hi from the backend" || m.Seq != 1 || m.ID != "m1" {
		t.Fatalf("message = %+v", m)
	}

	// A resend is the same answer, marked, and delivers nothing.
	var a2 ack
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"m1","from":"bob","body":"hi from the backend"}`).want(t, 200, "").json(t, &a2)
	if !a2.Duplicate || a2.Seq != a1.Seq || a2.Epoch != a1.Epoch || a2.TS != a1.TS {
		t.Fatalf("resend ack = %+v, want %+v marked duplicate", a2, a1)
	}

	// A user's token posts as its user, device "http"; "from" may only
	// name that user.
	var a3 ack
	apiDo(t, n, "POST", "/v1/rooms/general/messages?user=carol", "", `{"id":"c1","body":"from carol"}`).want(t, 200, "").json(t, &a3)
	tok := mint(t, auth.Claims{User: "carol"})
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(tok), `{"id":"c2","from":"carol","body":"again"}`).want(t, 200, "")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(tok), `{"id":"c3","from":"bob","body":"as bob"}`).want(t, 403, "forbidden")
	ms := alice.messages(2)
	if ms[0].From != "carol" || ms[0].Device != "http" || ms[0].Seq != 2 || ms[1].Body != "again" || ms[1].Seq != 3 {
		t.Fatalf("messages = %+v", ms)
	}
	sentinel(t, n, "general", alice)

	// A backend must say whom a message is from.
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"m2","body":"anonymous"}`).want(t, 400, "bad_request")
}

func TestAPIPublishDirectRoomCreatesIt(t *testing.T) {
	c := newCluster(t, 1, withAPI(nil))
	n := c.gws[0]
	bob := login(t, n, "bob", "phone")
	bob.sync = true
	apiDo(t, n, "POST", "/v1/rooms/dm:alice:bob/messages?user=alice", "", `{"id":"d1","body":"hello bob"}`).want(t, 200, "")
	f := bob.expect("membership")
	if f.Room != "dm:alice:bob" || f.Kind != "direct" || f.State != "member" {
		t.Fatalf("membership = %+v", f)
	}
	bob.join("dm:alice:bob", nil)
	if m := bob.messages(1)[0]; m.Body != "hello bob" || m.From != "alice" {
		t.Fatalf("message = %+v", m)
	}
	// Nobody else's.
	apiDo(t, n, "POST", "/v1/rooms/dm:alice:bob/messages?user=carol", "", `{"id":"d2","body":"me too"}`).want(t, 403, "forbidden")
	apiDo(t, n, "POST", "/v1/rooms/dm:alice:bob/messages", bearer(apiSecret), `{"id":"d3","from":"carol","body":"me too"}`).want(t, 403, "forbidden")
	sentinel(t, n, "dm:alice:bob", bob)
}

func TestAPIErrors(t *testing.T) {
	c := newCluster(t, 1, withAPI(func(cfg *gateway.Config) { cfg.MaxBodyBytes = 100 }))
	n := c.gws[0]
	body := `{"id":"e1","from":"bob","body":"x"}`

	// Who calls.
	r := apiDo(t, n, "POST", "/v1/messages", "", `{"rooms":["a"],"id":"e1","from":"bob","body":"x"}`).want(t, 401, "unauthorized")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	apiDo(t, n, "POST", "/v1/messages", bearer("not-a-key-not-a-key"), `{"rooms":["a"],"id":"e1","from":"bob","body":"x"}`).want(t, 401, "unauthorized")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer("not-a-key-not-a-key"), body).want(t, 401, "unauthorized")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", "", body).want(t, 401, "unauthorized") // no dev user, no token
	apiDo(t, n, "POST", "/v1/rooms", bearer(mint(t, auth.Claims{User: "bob"})), `{"room":"x","kind":"public"}`).want(t, 403, "forbidden")

	// Forbidden rooms: by the token's rooms claim, a private room's
	// members only.
	narrow := mint(t, auth.Claims{User: "bob", Rooms: []string{"team-*"}})
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(narrow), `{"id":"e2","body":"x"}`).want(t, 403, "forbidden")
	apiDo(t, n, "POST", "/v1/rooms/team-1/messages", bearer(narrow), `{"id":"e3","body":"x"}`).want(t, 200, "")
	apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"secret","kind":"private","members":["alice"]}`).want(t, 201, "")
	apiDo(t, n, "POST", "/v1/rooms/secret/messages?user=bob", "", `{"id":"e4","body":"x"}`).want(t, 403, "forbidden")
	apiDo(t, n, "GET", "/v1/rooms/secret/presence?user=bob", "", "").want(t, 403, "forbidden")
	apiDo(t, n, "POST", "/v1/rooms/secret/messages?user=alice", "", `{"id":"e5","body":"x"}`).want(t, 200, "")

	// Bad requests, too large.
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"e6","from":"bob","body":"`+strings.Repeat("x", 101)+`"}`).want(t, 413, "too_large")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"e6","from":"bob","body":"`+strings.Repeat("x", 5000)+`"}`).want(t, 413, "too_large")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"e7","from":"bob","body":""}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), "").want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"has space","from":"bob","body":"x"}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"e8","from":"bob","body":"x","extra":1}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/rooms/bad%20room/messages", bearer(apiSecret), body).want(t, 400, "bad_request")

	// Unknown endpoints, wrong methods.
	apiDo(t, n, "GET", "/v1/nothing/here", bearer(apiSecret), "").want(t, 404, "not_found")
	resp, err := http.Post(n.srv.URL+"/v1/rooms/general/presence", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || !strings.Contains(resp.Header.Get("Allow"), "GET") {
		t.Fatalf("POST presence: %d Allow %q, want 405 naming GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestAPIRateLimited(t *testing.T) {
	c := newCluster(t, 1, withAPI(func(cfg *gateway.Config) { cfg.APIRateLimit, cfg.APIRateBurst = 0.5, 2 }))
	n := c.gws[0]
	for i := range 2 {
		apiDo(t, n, "GET", "/v1/rooms/general/presence", bearer(apiSecret), "").want(t, 200, "")
		_ = i
	}
	r := apiDo(t, n, "GET", "/v1/rooms/general/presence", bearer(apiSecret), "").want(t, 429, "rate_limited")
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
}

func TestAPIBroadcast(t *testing.T) {
	c := newCluster(t, 1, withAPI(nil))
	n := c.gws[0]
	alice := login(t, n, "alice", "phone")
	alice.join("a", nil)
	alice.join("b", nil)
	req := `{"rooms":["a","dm:carol:dave","b","bad room"],"id":"bc1","from":"bob","body":"to all"}`
	var out struct {
		Results []struct {
			Room, ID, Epoch, TS string
			Seq                 int64
			Duplicate           bool
			Error               *struct{ Code, Message string }
		}
	}
	apiDo(t, n, "POST", "/v1/messages", bearer(apiSecret), req).want(t, 200, "").json(t, &out)
	rs := out.Results
	if len(rs) != 4 || rs[0].Room != "a" || rs[0].Seq != 1 || rs[0].Error != nil ||
		rs[1].Room != "dm:carol:dave" || rs[1].Error == nil || rs[1].Error.Code != "forbidden" ||
		rs[2].Room != "b" || rs[2].Seq != 1 || rs[2].ID != "bc1" ||
		rs[3].Error == nil || rs[3].Error.Code != "bad_request" {
		t.Fatalf("results = %+v", rs)
	}
	ms := alice.messages(2)
	if ms[0].Room != "a" || ms[1].Room != "b" || ms[0].Body != "to all" || ms[1].From != "bob" {
		t.Fatalf("messages = %+v", ms)
	}
	// A resend is a duplicate in each room.
	apiDo(t, n, "POST", "/v1/messages", bearer(apiSecret), `{"rooms":["a","b"],"id":"bc1","from":"bob","body":"to all"}`).want(t, 200, "").json(t, &out)
	if !out.Results[0].Duplicate || !out.Results[1].Duplicate || out.Results[1].Seq != 1 {
		t.Fatalf("resend results = %+v", out.Results)
	}
	sentinel(t, n, "a", alice)

	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("%q", fmt.Sprint("r", i))
	}
	apiDo(t, n, "POST", "/v1/messages", bearer(apiSecret), `{"rooms":[`+strings.Join(many, ",")+`],"id":"x","from":"bob","body":"x"}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/messages", bearer(apiSecret), `{"rooms":[],"id":"x","from":"bob","body":"x"}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/messages", bearer(apiSecret), `{"rooms":["a"],"id":"","from":"bob","body":"x"}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/messages?user=bob", "", `{"rooms":["a"],"id":"x","from":"bob","body":"x"}`).want(t, 401, "unauthorized")
}

// presenceOf polls the room's presence (through the API as who) until
// want says it is right, for at most 10 s.
func presenceOf(t *testing.T, n *node, room, authorization, query string, want func(users []protocol.PresentUser, count int64) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		var p struct {
			Room  string
			Users []protocol.PresentUser
			Count int64
		}
		apiDo(t, n, "GET", "/v1/rooms/"+room+"/presence"+query, authorization, "").want(t, 200, "").json(t, &p)
		if p.Room == room && want(p.Users, p.Count) {
			return
		}
		if time.Now().After(deadline) || i > 1000 {
			t.Fatalf("presence of %s: %+v", room, p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAPIPresence(t *testing.T) {
	c := newCluster(t, 1, withAPI(nil))
	n := c.gws[0]
	alice := login(t, n, "alice", "phone")
	alice.join("general", nil)
	presenceOf(t, n, "general", bearer(apiSecret), "", func(us []protocol.PresentUser, count int64) bool {
		return count == 1 && len(us) == 1 && us[0].User == "alice" && us[0].Devices == 1
	})
	presenceOf(t, n, "general", "", "?user=bob", func(us []protocol.PresentUser, count int64) bool {
		return count == 1 && len(us) == 1 && us[0].User == "alice"
	})
	presenceOf(t, n, "empty", bearer(apiSecret), "", func(us []protocol.PresentUser, count int64) bool {
		return count == 0 && us != nil && len(us) == 0
	})
}

// roomAnswer is the answer of POST /v1/rooms.
type roomAnswer struct {
	Room, Kind string
	Members    []string
}

func TestAPIRoomsAndMembers(t *testing.T) {
	c := newCluster(t, 1, withAPI(func(cfg *gateway.Config) { cfg.MaxRoomMembers = 3 }))
	n := c.gws[0]
	alice := login(t, n, "alice", "phone")
	alice.sync = true

	var ra roomAnswer
	apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"team","kind":"private","members":["alice","bob"]}`).want(t, 201, "").json(t, &ra)
	if ra.Room != "team" || ra.Kind != "private" || strings.Join(ra.Members, ",") != "alice,bob" {
		t.Fatalf("create = %+v", ra)
	}
	if f := alice.expect("membership"); f.Room != "team" || f.Kind != "private" || f.State != "member" {
		t.Fatalf("membership = %+v", f)
	}
	// Again: the members it adds, none here.
	apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"team","kind":"private","members":["bob"]}`).want(t, 200, "").json(t, &ra)
	if len(ra.Members) != 0 {
		t.Fatalf("create again = %+v", ra)
	}
	r := apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"team","kind":"public"}`).want(t, 403, "forbidden")
	if !strings.Contains(string(r.body), "exists already, as a private room") {
		t.Fatalf("kind clash: %s", r.body)
	}
	apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"dm:a:b","kind":"private"}`).want(t, 400, "bad_request")
	apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"x","kind":"secret"}`).want(t, 400, "bad_request")

	// Members one by one.
	var ma struct {
		Room, User     string
		Added, Removed *bool
	}
	apiDo(t, n, "PUT", "/v1/rooms/team/members/carol", bearer(apiSecret), "").want(t, 200, "").json(t, &ma)
	if ma.Room != "team" || ma.User != "carol" || ma.Added == nil || !*ma.Added {
		t.Fatalf("add = %+v", ma)
	}
	apiDo(t, n, "PUT", "/v1/rooms/team/members/carol", bearer(apiSecret), "").want(t, 200, "").json(t, &ma)
	if ma.Added == nil || *ma.Added {
		t.Fatalf("add again = %+v", ma)
	}
	apiDo(t, n, "PUT", "/v1/rooms/team/members/dave", bearer(apiSecret), "").want(t, 403, "forbidden") // full: 3
	apiDo(t, n, "PUT", "/v1/rooms/nowhere/members/carol", bearer(apiSecret), "").want(t, 404, "not_found")
	apiDo(t, n, "PUT", "/v1/rooms/dm:alice:bob/members/carol", bearer(apiSecret), "").want(t, 400, "bad_request")
	apiDo(t, n, "PUT", "/v1/rooms/team/members/carol?user=alice", "", "").want(t, 401, "unauthorized")

	// A user's rooms.
	var ur struct {
		User  string
		Rooms []protocol.RoomState
	}
	apiDo(t, n, "GET", "/v1/users/alice/rooms", bearer(apiSecret), "").want(t, 200, "").json(t, &ur)
	if ur.User != "alice" || len(ur.Rooms) != 1 || ur.Rooms[0].Room != "team" || ur.Rooms[0].Kind != "private" {
		t.Fatalf("rooms = %+v", ur)
	}
	apiDo(t, n, "GET", "/v1/users/alice/rooms?user=alice", "", "").want(t, 200, "")
	apiDo(t, n, "GET", "/v1/users/alice/rooms?user=bob", "", "").want(t, 403, "forbidden")
	apiDo(t, n, "GET", "/v1/users/nobody/rooms", bearer(apiSecret), "").want(t, 200, "").json(t, &ur)
	if ur.User != "nobody" || ur.Rooms == nil || len(ur.Rooms) != 0 {
		t.Fatalf("no rooms = %+v (%s)", ur, "want []")
	}

	apiDo(t, n, "DELETE", "/v1/rooms/team/members/carol", bearer(apiSecret), "").want(t, 200, "").json(t, &ma)
	if ma.Removed == nil || !*ma.Removed {
		t.Fatalf("remove = %+v", ma)
	}
	apiDo(t, n, "DELETE", "/v1/rooms/team/members/carol", bearer(apiSecret), "").want(t, 200, "").json(t, &ma)
	if ma.Removed == nil || *ma.Removed {
		t.Fatalf("remove again = %+v", ma)
	}
	apiDo(t, n, "DELETE", "/v1/rooms/nowhere/members/carol", bearer(apiSecret), "").want(t, 404, "not_found")
	alice.nothingQueued()
}

// TestAPIRemoveMemberCutsLiveJoins: invariant 10. Alice, joined to a
// private room on two devices on two gateways, is removed from it: both
// devices hear "membership" "left", receive nothing of the room posted
// after, and their presence in it ends; a sentinel in another room proves
// nothing more came.
func TestAPIRemoveMemberCutsLiveJoins(t *testing.T) {
	c := newCluster(t, 2, withAPI(nil))
	a, b := c.gws[0], c.gws[1]
	apiDo(t, a, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"team","kind":"private","members":["alice","bob"]}`).want(t, 201, "")
	phone, laptop := login(t, a, "alice", "phone"), login(t, b, "alice", "laptop")
	for _, d := range []*tclient{phone, laptop} {
		d.join("team", nil)
		d.join("lobby", nil)
	}
	apiDo(t, a, "POST", "/v1/rooms/team/messages", bearer(apiSecret), `{"id":"t1","from":"bob","body":"before"}`).want(t, 200, "")
	for _, d := range []*tclient{phone, laptop} {
		if m := d.messages(1)[0]; m.Body != "before" {
			t.Fatalf("%s: %+v", d.name, m)
		}
		d.sync = true
	}
	presenceOf(t, a, "team", bearer(apiSecret), "", func(us []protocol.PresentUser, _ int64) bool {
		return len(us) == 1 && us[0].User == "alice" && us[0].Devices == 2
	})

	apiDo(t, b, "DELETE", "/v1/rooms/team/members/alice", bearer(apiSecret), "").want(t, 200, "")
	for i := range 3 {
		apiDo(t, a, "POST", "/v1/rooms/team/messages", bearer(apiSecret), fmt.Sprintf(`{"id":"after%d","from":"bob","body":"after"}`, i)).want(t, 200, "")
	}
	for _, d := range []*tclient{phone, laptop} {
		if f := d.expect("membership"); f.Room != "team" || f.State != "left" || f.Kind != "private" {
			t.Fatalf("%s: membership = %+v", d.name, f)
		}
	}
	sentinel(t, a, "lobby", phone, laptop)
	presenceOf(t, a, "team", bearer(apiSecret), "", func(us []protocol.PresentUser, count int64) bool {
		return count == 0
	})
	// A join of the room is refused now: not a member.
	phone.send(protocol.Frame{Type: "join", Ref: "again", Room: "team"})
	if f := phone.expect("error"); f.Ref != "again" || f.Code != "forbidden" {
		t.Fatalf("re-join = %+v", f)
	}
	// Added again, the join works.
	apiDo(t, a, "PUT", "/v1/rooms/team/members/alice", bearer(apiSecret), "").want(t, 200, "")
	if f := phone.expect("membership"); f.Room != "team" || f.State != "member" {
		t.Fatalf("membership = %+v", f)
	}
	phone.sync = false
	phone.join("team", nil)
}

// TestAPIDisconnect: a user with a v1 connection on gateway A and a
// plain-text one on gateway B is disconnected through A: both close with
// 1008 and the reason, and the Go SDK does not reconnect.
func TestAPIDisconnect(t *testing.T) {
	c := newCluster(t, 2, withAPI(nil))
	a, b := c.gws[0], c.gws[1]
	v1 := login(t, a, "alice", "phone")
	v1.join("general", nil)
	ws, _, err := dialRaw(t, b.wsURL("/general?user=alice"))
	if err != nil {
		t.Fatal(err)
	}
	plain := wrap(t, ws, 100)
	plain.name = "alice/plain"
	other := login(t, b, "bob", "phone")
	other.join("general", nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sdk, err := client.Dial(ctx, client.Config{URL: b.wsURL("/ws"), User: "alice", Device: "sdk"})
	if err != nil {
		t.Fatal(err)
	}
	defer sdk.Close()
	if _, err := sdk.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	// The plain-text connection is in: a line it sends reaches bob.
	if err := ws.Write(ctx, websocket.MessageText, []byte("plain hello")); err != nil {
		t.Fatal(err)
	}
	if m := other.messages(1)[0]; m.Body != "plain hello" {
		t.Fatalf("bob got %+v", m)
	}

	var out struct {
		User  string
		Local int
	}
	apiDo(t, a, "POST", "/v1/users/alice/disconnect", bearer(apiSecret), `{"reason":"banned for spam"}`).want(t, 200, "").json(t, &out)
	if out.User != "alice" || out.Local != 1 {
		t.Fatalf("disconnect = %+v", out)
	}
	for _, d := range []*tclient{v1, plain} {
		if code, why := d.closeStatus(); code != websocket.StatusPolicyViolation || why != "banned for spam" {
			t.Fatalf("%s closed %d %q, want 1008 banned for spam", d.name, code, why)
		}
	}
	deadline := time.After(10 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-sdk.Events():
			if !ok {
				t.Fatal("SDK events ended without StateClosed")
			}
			switch {
			case ev.State == client.StateReconnecting:
				t.Fatalf("the SDK reconnects after 1008: %v", ev.Err)
			case ev.State == client.StateClosed:
				if ev.Err == nil || !strings.Contains(ev.Err.Error(), "banned for spam") {
					t.Fatalf("StateClosed err %v", ev.Err)
				}
				done = true
			}
		case <-deadline:
			t.Fatal("the SDK did not stop")
		}
	}
	// Bob is still there; a disconnect with no body uses the default
	// reason, and counts no connection of a user with none here.
	apiDo(t, b, "POST", "/v1/users/nobody/disconnect", bearer(apiSecret), "").want(t, 200, "").json(t, &out)
	if out.User != "nobody" || out.Local != 0 {
		t.Fatalf("second disconnect = %+v", out)
	}
	other.nothingQueued()
	apiDo(t, b, "POST", "/v1/users/alice/disconnect?user=alice", "", "").want(t, 401, "unauthorized")
}

// TestAPIKeysNeverLogged: the gateway's logs, at debug, name keys but
// never show a secret, right or wrong.
func TestAPIKeysNeverLogged(t *testing.T) {
	var logs proctest.Buffer
	wrong := "wrong-secret-abcdefghijkl"
	c := newCluster(t, 1, withAPI(func(cfg *gateway.Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}))
	n := c.gws[0]
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"k1","from":"bob","body":"x"}`).want(t, 200, "")
	apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(wrong), `{"id":"k2","from":"bob","body":"x"}`).want(t, 401, "")
	apiDo(t, n, "POST", "/v1/messages", bearer(wrong), `{"rooms":["a"],"id":"k2","from":"bob","body":"x"}`).want(t, 401, "")
	apiDo(t, n, "POST", "/v1/users/bob/disconnect", bearer(apiSecret), "").want(t, 200, "")
	apiDo(t, n, "GET", "/v1/rooms/general/presence", bearer(apiSecret), "").want(t, 200, "")
	if l := logs.String(); strings.Contains(l, apiSecret) || strings.Contains(l, wrong) || l == "" {
		t.Fatalf("the logs show a secret (or are empty):\n%s", l)
	}
}

// TestLeavePrivateRoomCutsOtherDevices: a user who leaves a private room
// on one device stops receiving it on the others too (invariant 10), as a
// removal through the server API does; a public room's live joins stay.
func TestLeavePrivateRoomCutsOtherDevices(t *testing.T) {
	c := newCluster(t, 2, withAPI(nil))
	a, b := c.gws[0], c.gws[1]
	apiDo(t, a, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"team","kind":"private","members":["alice","bob"]}`).want(t, 201, "")
	phone, laptop := login(t, a, "alice", "phone"), login(t, b, "alice", "laptop")
	for _, d := range []*tclient{phone, laptop} {
		d.join("team", nil)
		d.join("lobby", nil)
	}
	laptop.sync = true
	phone.send(protocol.Frame{Type: "leave", Ref: "l1", Room: "team"})
	if f := phone.expect("left"); f.Ref != "l1" || f.Room != "team" {
		t.Fatalf("leave answer = %+v", f)
	}
	if f := laptop.expect("membership"); f.Room != "team" || f.State != "left" || f.Kind != "private" {
		t.Fatalf("laptop: membership = %+v", f)
	}
	for i := range 3 {
		apiDo(t, a, "POST", "/v1/rooms/team/messages", bearer(apiSecret), fmt.Sprintf(`{"id":"after%d","from":"bob","body":"after"}`, i)).want(t, 200, "")
	}
	// Nothing of team reaches either device: the sentinel in lobby comes
	// first and alone.
	sentinel(t, a, "lobby", phone, laptop)

	// A public room: leaving on the phone ends the membership; the
	// laptop is told, and its live join stays (anyone may read it).
	phone.send(protocol.Frame{Type: "leave", Ref: "l2", Room: "lobby"})
	phone.expect("left")
	if f := laptop.expect("membership"); f.Room != "lobby" || f.State != "left" || f.Kind != "public" {
		t.Fatalf("laptop: membership = %+v", f)
	}
	laptop.sync = false
	sentinel(t, b, "lobby", laptop)
}
