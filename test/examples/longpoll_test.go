package examples

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/clienttest"
)

// TestLongPollPage runs examples/longpoll/index.html, the tutorials' Ajax
// long-polling chat rewritten against the HTTP API, in Chromium. The page
// uses two gateways in turn, one request each, as a load balancer without
// sticky sessions would; a Go SDK client on the second gateway shares the
// room over WebSocket. The page shows the backlog, then each live message
// as it is posted (the poll was waiting), in order, as text; a line typed
// on the page reaches the SDK client. Then the first gateway is killed
// (SIGKILL) while the page polls: its requests to it fail and are retried
// with the same position, and the page ends with every message exactly
// once, in seq order.
func TestLongPollPage(t *testing.T) {
	gws := startGateways(t, 2)
	files := serveFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	sdk := clienttest.Dial(t, ctx, "ws://"+gws[1].Addr+"/ws", "gopher", "chat")
	var want []string
	post := func(body string) {
		t.Helper()
		if _, err := sdk.Client.Send(ctx, "chat", body); err != nil {
			t.Fatalf("SDK send %q: %v", body, err)
		}
		want = append(want, body)
	}
	for _, body := range []string{"backlog one", "backlog two", "backlog three"} {
		post(body)
	}

	b := browsertest.Start(t)
	p := b.NewPage(t)
	api := "http://" + gws[0].Addr + ",http://" + gws[1].Addr
	p.Run(t, 10*time.Second, chromedp.Navigate(files.URL+"/examples/longpoll/index.html?room=chat&user=poller&api="+url.QueryEscape(api)))
	waitJS(t, p, "the page's first poll", `document.getElementById('status').dataset.state === 'open'`, 10*time.Second)
	shows := func(n int) {
		t.Helper()
		waitJS(t, p, fmt.Sprintf("%d messages on the page", n), `document.querySelectorAll('#messages .msg').length >= `+strconv.Itoa(n), 20*time.Second)
		if got := texts(t, p, "#messages .msg .body"); !slices.Equal(got, want) {
			t.Fatalf("page shows %q, want %q", got, want)
		}
	}
	shows(3)

	// Live: each message answers a poll that was waiting for it.
	post(`live <img src=x onerror="window.pwned = true"> stays text`)
	shows(4)
	post("live two, 第二")
	shows(5)

	// Page to SDK: typed, POSTed, and polled back as the page's own line.
	p.Run(t, 5*time.Second,
		chromedp.SendKeys("#message-input", "hello from the ajax page", chromedp.ByID),
		chromedp.Click("#send", chromedp.ByID),
	)
	if err := sdk.WaitSeq(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if got := sdk.Body(6); got != "hello from the ajax page" {
		t.Fatalf("SDK client got seq 6 = %q, want the page's line", got)
	}
	want = append(want, "hello from the ajax page")
	shows(6)
	if got := texts(t, p, "#messages .mine .body"); !slices.Equal(got, []string{"hello from the ajax page"}) {
		t.Fatalf("page's own lines: %q", got)
	}
	checkPage(t, p) // before the kill: the failed requests after it are logged by the browser

	// A gateway dies mid-poll: the page retries and goes on, exactly.
	gws[0].Kill()
	for i := 1; i <= 5; i++ {
		post(fmt.Sprintf("after the kill %d", i))
	}
	shows(len(want))
	var seqs []string
	p.Run(t, 5*time.Second, chromedp.Evaluate(`Array.from(document.querySelectorAll('#messages .msg'), (e) => e.dataset.seq)`, &seqs))
	for i, s := range seqs {
		if s != strconv.Itoa(i+1) {
			t.Fatalf("page seqs %v: want 1..%d, each once", seqs, len(want))
		}
	}
	var injected bool
	p.Run(t, 5*time.Second, chromedp.Evaluate(`document.querySelector('#messages img') !== null || window.pwned === true`, &injected))
	if injected {
		t.Fatal("a message's markup was rendered as HTML")
	}
	t.Logf("long-poll page: %d messages in order across two gateways, one killed mid-poll; seqs %v", len(want), seqs)
}
