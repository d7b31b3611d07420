package examples

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// pageOrigins is the --allowed-origins value that lets pages served by
// serveFiles (http://127.0.0.1:<any port>) open WebSockets to the gateways.
// The patterns are path.Match patterns on the Origin's host:port.
const pageOrigins = "127.0.0.1:*"

// startGateways starts a redis-server and n gateways named gw-1..gw-n that
// accept pages from pageOrigins, and waits until all are ready.
func startGateways(t *testing.T, n int) []*proctest.Gateway {
	t.Helper()
	r := redistest.Start(t, redistest.Options{})
	var gws []*proctest.Gateway
	for i := 1; i <= n; i++ {
		gws = append(gws, proctest.StartGateway(t, proctest.GatewayOptions{
			Redis: r.URL(),
			Node:  fmt.Sprintf("gw-%d", i),
			Args:  []string{"--allowed-origins", pageOrigins},
		}))
	}
	for _, g := range gws {
		g.WaitReady(20 * time.Second)
	}
	return gws
}

// serveFiles serves ../../examples under /examples/ and ./testdata under
// /testdata/ on a loopback port.
func serveFiles(t *testing.T) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/examples/", http.StripPrefix("/examples/", http.FileServer(http.Dir("../../examples"))))
	mux.Handle("/testdata/", http.StripPrefix("/testdata/", http.FileServer(http.Dir("testdata"))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// pollEvery makes chromedp.Poll evaluate on a timer rather than on
// animation frames, which a headless background tab may throttle.
var pollEvery = chromedp.WithPollingInterval(25 * time.Millisecond)

// waitJS waits until the JavaScript expression is truthy on the page.
func waitJS(t *testing.T, p *browsertest.Page, what, expr string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, timeout)
	defer cancel()
	err := chromedp.Run(ctx, chromedp.Poll(expr, nil, pollEvery, chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		var state string
		_ = chromedp.Run(p.Ctx, chromedp.Evaluate(`document.body.innerText`, &state))
		t.Fatalf("waiting for %s (%s): %v\npage text:\n%s\nconsole:\n%s", what, expr, err, state, p.Console())
	}
}

// texts returns the textContent of every element matching sel, in document
// order.
func texts(t *testing.T, p *browsertest.Page, sel string) []string {
	t.Helper()
	var out []string
	p.Run(t, 5*time.Second, chromedp.Evaluate(
		fmt.Sprintf(`Array.from(document.querySelectorAll(%q), (e) => e.textContent)`, sel), &out))
	return out
}

// checkPage fails the test if the page threw an uncaught exception or
// logged an error.
func checkPage(t *testing.T, p *browsertest.Page) {
	t.Helper()
	for _, pr := range p.Problems() {
		t.Errorf("page: %s", pr)
	}
	for _, line := range strings.Split(p.Console(), "\n") {
		if strings.HasPrefix(line, "error:") {
			t.Errorf("page console: %s", line)
		}
	}
}
