package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley/pkg/gateway"
)

// The gateway serves the embedded browser client at "/" by default, while a
// WebSocket upgrade of the same path is still plain-text mode (room lobby).
func TestServesWebClient(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := http.Get(n.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}
	res, body := get("/")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		res.Header.Get("Cache-Control") != "no-cache" || !strings.Contains(body, "/app.js") {
		t.Fatalf("GET /: %s %q %q", res.Status, res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"))
	}
	if res, _ := get("/parley.js"); res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("GET /parley.js: %s %q", res.Status, res.Header.Get("Content-Type"))
	}
	if res, _ := get("/no-such-file"); res.StatusCode != 404 {
		t.Fatalf("GET /no-such-file: %s", res.Status)
	}
	if res, _ := get("/readyz"); res.StatusCode != 200 {
		t.Fatalf("GET /readyz: %s", res.Status)
	}

	// Plain-text mode on "/" still works next to the page.
	a, b := dialPlain(t, n, "/"), dialPlain(t, n, "/")
	a.writeText("plain on /")
	if got := b.text(); got != "plain on /" {
		t.Fatalf("plain client on / got %q", got)
	}

	// An embedder can replace or turn off the page.
	c.addNode("gw-quiet", func(cfg *gateway.Config) { cfg.Web = http.NotFoundHandler() })
	quiet := c.gws[len(c.gws)-1]
	res2, err := http.Get(quiet.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != 404 {
		t.Fatalf("GET / with Config.Web = NotFoundHandler: %s", res2.Status)
	}
}
