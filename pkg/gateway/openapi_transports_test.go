package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/gateway"
)

// The endpoints of the other transports (history and long-poll, SSE) and
// of the webhook outbox, checked against docs/openapi.yaml like the
// server API's (apiDo checks every exchange): success and refusals.
func TestOpenAPIMessagesAndDeadLetters(t *testing.T) {
	c := newCluster(t, 1, withAPI(func(cfg *gateway.Config) {
		cfg.Webhooks = &gateway.WebhookConfig{URL: "http://127.0.0.1:9/unused", Secret: hookSecret, Workers: 1}
	}))
	n := c.gws[0]
	for i, body := range []string{"one", "two", "three"} {
		apiDo(t, n, "POST", "/v1/rooms/general/messages", bearer(apiSecret), `{"id":"m`+string(rune('1'+i))+`","from":"alice","body":"`+body+`"}`).want(t, 200, "")
	}
	var page struct {
		Epoch    string
		Seq      int64
		Next     string
		Messages []struct{ Seq int64 }
	}
	apiDo(t, n, "GET", "/v1/rooms/general/messages?limit=2", bearer(apiSecret), "").want(t, 200, "").json(t, &page)
	if len(page.Messages) != 2 || page.Messages[0].Seq != 2 || page.Next != page.Epoch+":3" {
		t.Fatalf("latest page %+v", page)
	}
	apiDo(t, n, "GET", "/v1/rooms/general/messages?after="+page.Epoch+":1&limit=10", bearer(apiSecret), "").want(t, 200, "")
	apiDo(t, n, "GET", "/v1/rooms/general/messages?before=3&limit=10", bearer(apiSecret), "").want(t, 200, "")
	// A wait that ends with nothing: the same position back.
	apiDo(t, n, "GET", "/v1/rooms/general/messages?after="+page.Next+"&wait=50ms&user=bob", "", "").want(t, 200, "")
	apiDo(t, n, "GET", "/v1/rooms/general/messages?after=nonsense", bearer(apiSecret), "").want(t, 400, "bad_request")
	apiDo(t, n, "GET", "/v1/rooms/general/messages", "", "").want(t, 401, "unauthorized")
	apiDo(t, n, "POST", "/v1/rooms", bearer(apiSecret), `{"room":"vault","kind":"private","members":["alice"]}`).want(t, 201, "")
	apiDo(t, n, "GET", "/v1/rooms/vault/messages?user=bob", "", "").want(t, 403, "forbidden")
	tok := mint(t, auth.Claims{User: "bob", Rooms: []string{"lobby"}})
	apiDo(t, n, "GET", "/v1/rooms/general/messages", bearer(tok), "").want(t, 403, "forbidden")

	// SSE: the stream's status and media type (its events are checked by
	// the SSE tests), and its refusals.
	sseStatus(t, n, "/v1/rooms/general/events?user=bob", "", 200)
	sseStatus(t, n, "/v1/events?room=general&room=lobby&user=bob", "", 200)
	apiDo(t, n, "GET", "/v1/rooms/general/events", bearer(apiSecret), "").want(t, 403, "forbidden")
	apiDo(t, n, "GET", "/v1/rooms/general/events?user=bob&since=nonsense", "", "").want(t, 400, "bad_request")
	apiDo(t, n, "GET", "/v1/rooms/vault/events?user=bob", "", "").want(t, 403, "forbidden")
	apiDo(t, n, "GET", "/v1/events", "", "").want(t, 401, "unauthorized")

	// Dead letters: none yet; replaying all of none replays 0.
	var dead struct{ Dead []any }
	apiDo(t, n, "GET", "/v1/webhooks/dead?limit=10", bearer(apiSecret), "").want(t, 200, "").json(t, &dead)
	if len(dead.Dead) != 0 {
		t.Fatalf("dead letters %+v, want none", dead)
	}
	apiDo(t, n, "POST", "/v1/webhooks/dead/replay", bearer(apiSecret), `{}`).want(t, 200, "")
	apiDo(t, n, "POST", "/v1/webhooks/dead/replay", bearer(apiSecret), `{"ids":["message.offline/x/e/1/bob"]}`).want(t, 200, "")
	apiDo(t, n, "GET", "/v1/webhooks/dead", bearer(tok), "").want(t, 403, "forbidden")
	apiDo(t, n, "GET", "/v1/webhooks/dead", "", "").want(t, 401, "unauthorized")

	// A gateway with no webhooks has no outbox to list.
	plain := newCluster(t, 1, withAPI(nil)).gws[0]
	apiDo(t, plain, "GET", "/v1/webhooks/dead", bearer(apiSecret), "").want(t, 404, "not_found")
}

// sseStatus opens an SSE stream, checks its answer's status and media
// type against the document, and closes it.
func sseStatus(t *testing.T, n *node, path, authorization string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", n.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, status)
	}
	check, _ := http.NewRequest("GET", n.srv.URL+path, nil)
	check.Header = req.Header.Clone()
	checkOpenAPI(t, check, resp, nil)
}
