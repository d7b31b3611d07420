package examples

import (
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/fakegw"
	"github.com/parley-chat/parley/pkg/protocol"
)

// TestWeChatRefusals runs the mini-program's chat logic under the wx shim
// against a fake gateway (internal/fakegw) that refuses requests the way
// the gateway's rate limiter (rate_limited with retry_after_ms) and an
// unreachable Redis (unavailable) do. The logic must join again after a
// refused join instead of staying stuck in "joining"; write a send refused
// with rate_limited again, with the same id, no sooner than
// retry_after_ms; not let the message sent after it overtake it; and
// resend sends refused with unavailable, in order, once the store is back.
func TestWeChatRefusals(t *testing.T) {
	gw := fakegw.Start(t, fakegw.Options{Node: "fake"})
	refuse := gw.Refusals()
	refuse.RateLimitNext(protocol.TypeJoin, 200*time.Millisecond)
	files := serveFiles(t)

	p := browsertest.Start(t).NewPage(t)
	q := url.Values{"ws": {gw.URL()}, "user": {"wxuser"}, "room": {"wechat"}, "minBackoff": {"100"}, "maxBackoff": {"400"}}
	// In front: background tabs get their timers throttled to 1 s.
	p.Run(t, 10*time.Second, page.BringToFront(), chromedp.Navigate(files.URL+"/testdata/wxshim.html?"+q.Encode()))
	waitJS(t, p, "online after the refused join", `window.chat && chat.state().status === 'online'`, 10*time.Second)
	var joins []fakegw.Received
	for _, r := range gw.Received() {
		if r.Frame.Type == protocol.TypeJoin {
			joins = append(joins, r)
		}
	}
	if len(joins) != 2 || joins[0].Conn != 1 || joins[1].Conn != 1 || joins[1].At.Sub(joins[0].At) < 200*time.Millisecond {
		t.Fatalf("joins received %+v, want the refused one and, 200 ms later, another on the same connection", joins)
	}

	// A send refused with rate_limited, and one made right after it.
	const after = 300 * time.Millisecond
	refuse.RateLimitNext(protocol.TypeSend, after)
	p.Run(t, 5*time.Second, chromedp.Evaluate(`chat.send('one'); chat.send('two'); true`, nil))
	waitJS(t, p, "both acked and shown", `chat.state().pending.length === 0 && chat.state().messages.length === 2`, 10*time.Second)
	sends := gw.Sends()
	if len(sends) != 3 || sends[0].Frame.Body != "one" || sends[1].Frame.ID != sends[0].Frame.ID || sends[2].Frame.Body != "two" {
		t.Fatalf("sends received %+v, want one (refused), one again with its id, then two", sends)
	}
	if gap := sends[1].At.Sub(sends[0].At); gap < after {
		t.Errorf("resent %v after the refusal, want at least retry_after_ms (%v)", gap, after)
	}

	// The store is unreachable: sends are refused with unavailable until it
	// is back.
	refuse.StoreDown(true)
	p.Run(t, 5*time.Second, chromedp.Evaluate(`chat.send('three'); chat.send('four'); true`, nil))
	gw.Await(t, "three resent after a refusal", 10*time.Second, func(rs []fakegw.Received) bool {
		n := 0
		for _, r := range rs {
			if r.Frame.Type == protocol.TypeSend && r.Frame.Body == "three" {
				n++
			}
		}
		return n >= 2
	})
	if st := readShim(t, p); len(st.Pending) != 2 || st.Status != "online" {
		t.Fatalf("while the store is down: status %s, pending %+v; want online with both waiting", st.Status, st.Pending)
	}
	refuse.StoreDown(false)
	waitJS(t, p, "three and four acked and shown", `chat.state().pending.length === 0 && chat.state().messages.length === 4`, 10*time.Second)

	want := []shownMessage{
		{Seq: 1, From: "wxuser", Body: "one", Mine: true},
		{Seq: 2, From: "wxuser", Body: "two", Mine: true},
		{Seq: 3, From: "wxuser", Body: "three", Mine: true},
		{Seq: 4, From: "wxuser", Body: "four", Mine: true},
	}
	if got := readShim(t, p).Messages; !slices.Equal(got, want) {
		t.Errorf("the mini-program shows %+v, want %+v", got, want)
	}
	var stored []string
	for _, m := range gw.Messages("wechat") {
		stored = append(stored, m.Body)
	}
	if !slices.Equal(stored, []string{"one", "two", "three", "four"}) {
		t.Errorf("the gateway stored %q, want one, two, three, four", stored)
	}
	var bodies []string
	for _, s := range gw.Sends()[3:] {
		bodies = append(bodies, s.Frame.Body)
	}
	if n := len(bodies); n < 3 || bodies[n-1] != "four" || slices.Index(bodies, "four") != n-1 {
		t.Errorf("sends received after the outage began: %q, want three until stored, then four once", bodies)
	}
	checkPage(t, p)
}
