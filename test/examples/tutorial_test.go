package examples

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/clienttest"
)

// TestTutorialPage runs examples/tutorial/index.html, the page the classic
// tutorials write (new WebSocket(url), raw text out, raw text in), against
// gateway gw-1 in plain-text mode, with a protocol-v1 Go SDK client on gw-2
// in the same room, so every message crosses Redis. Lines typed on the page
// reach the SDK client as messages with those bodies, in order; the SDK
// client's messages appear on the page as their bare body text, in order,
// as text (markup in them is not rendered).
func TestTutorialPage(t *testing.T) {
	gws := startGateways(t, 2)
	files := serveFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sdk := clienttest.Dial(t, ctx, "ws://"+gws[1].Addr+"/ws", "gopher", "chat")

	b := browsertest.Start(t)
	p := b.NewPage(t)
	wsURL := "ws://" + gws[0].Addr + "/chat?user=tutor"
	p.Run(t, 10*time.Second, chromedp.Navigate(files.URL+"/examples/tutorial/index.html?ws="+url.QueryEscape(wsURL)))
	waitJS(t, p, "the page's socket to open", `document.getElementById('status').dataset.state === 'open'`, 10*time.Second)

	// Page to SDK: typed into the input box and sent with the button.
	typed := []string{"hello from the tutorial page", `<b>not bold</b> & 你好`}
	for i, line := range typed {
		p.Run(t, 5*time.Second,
			chromedp.SendKeys("#message-input", line, chromedp.ByID),
			chromedp.Click("#send", chromedp.ByID),
		)
		// The page shows its own line once it has sent it.
		waitJS(t, p, "own line shown", `document.querySelectorAll('#messages .mine').length === `+strconv.Itoa(i+1), 5*time.Second)
	}
	if err := sdk.WaitSeq(ctx, int64(len(typed))); err != nil {
		t.Fatal(err)
	}
	for i, line := range typed {
		if got := sdk.Body(int64(i + 1)); got != line {
			t.Errorf("SDK client got seq %d = %q, want %q (typed on the page)", i+1, got, line)
		}
	}

	// SDK to page: each message arrives on the page as its bare body text.
	sent := []string{
		"hello back from Go",
		`<img src=x onerror="window.pwned = true">markup stays text`,
		"third line, 第三行",
	}
	for i, body := range sent {
		ack, err := sdk.Client.Send(ctx, "chat", body)
		if err != nil {
			t.Fatalf("SDK send %q: %v", body, err)
		}
		if want := int64(len(typed) + i + 1); ack.Seq != want {
			t.Fatalf("SDK send %q: ack seq %d, want %d", body, ack.Seq, want)
		}
	}
	waitJS(t, p, "the SDK client's lines", `document.querySelectorAll('#messages .in').length >= `+strconv.Itoa(len(sent)), 10*time.Second)
	if got := texts(t, p, "#messages .in"); !slices.Equal(got, sent) {
		t.Errorf("page shows received lines %q, want %q", got, sent)
	}
	if got := texts(t, p, "#messages .mine"); !slices.Equal(got, typed) {
		t.Errorf("page shows own lines %q, want %q", got, typed)
	}
	var injected bool
	p.Run(t, 5*time.Second, chromedp.Evaluate(`document.querySelector('#messages img, #messages b') !== null || window.pwned === true`, &injected))
	if injected {
		t.Error("a message body was rendered as HTML")
	}

	if err := sdk.WaitSeq(ctx, int64(len(typed)+len(sent))); err != nil {
		t.Fatal(err)
	}
	sdk.Check(t, 1, int64(len(typed)+len(sent)))
	checkPage(t, p)
}
