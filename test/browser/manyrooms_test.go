package browser

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
)

// A page in many rooms keeps to the gateway's rate limit (20 frames/s,
// bursts of 40, the defaults): parley.js has at most a few joins on the
// wire at once, on the first connection and on every re-join after a
// reconnect, so 100 rooms are joined and re-joined without a flood close
// (1008, after which a page goes offline for good).
func TestParleyJSJoinsManyRoomsWithinTheRateLimit(t *testing.T) {
	g := proctest.StartGateway(t, proctest.GatewayOptions{Node: "gw-1"}) // memory broker, default limits
	g.WaitReady(20 * time.Second)
	p := browsertest.Start(t).NewPage(t)
	p.Run(t, step, page.BringToFront(), chromedp.Navigate("http://"+g.Addr+"/"))
	var res struct {
		First, Again int
		States       []string
	}
	evalAsync(t, p, fmt.Sprintf(`(async () => {
		const { ParleyClient } = await import('/parley.js');
		const c = new ParleyClient({ url: %q, user: 'many', device: 'test' });
		const states = [];
		let offline;
		const wentOffline = new Promise((resolve) => { offline = resolve; });
		c.addEventListener('state', (e) => {
			states.push(e.detail.state);
			if (e.detail.state === 'offline') offline('offline');
		});
		c.connect();
		const rooms = Array.from({ length: 100 }, (_, i) => 'room-' + i);
		const first = await Promise.race([Promise.all(rooms.map((r) => c.join(r))), wentOffline]);
		if (first === 'offline') return { First: 0, Again: 0, States: states };
		// Re-joined after a reconnect: all 100 again, with since.
		const again = new Promise((resolve) => {
			let n = 0;
			c.addEventListener('joined', (e) => { if (e.detail.resumed && ++n === rooms.length) resolve(n); });
		});
		c._ws.close(4000, 'test: reconnect');
		const n = await Promise.race([again, wentOffline]);
		if (n === 'offline') return { First: first.length, Again: 0, States: states };
		return { First: first.length, Again: n, States: states.concat([c.state]) };
	})()`, "ws://"+g.Addr+"/ws"), &res)
	if res.First != 100 || res.Again != 100 {
		t.Fatalf("joined %d rooms, re-joined %d; want 100 and 100", res.First, res.Again)
	}
	for _, s := range res.States {
		if s == "offline" {
			t.Fatalf("the page went offline: states %v", res.States)
		}
	}
	if last := res.States[len(res.States)-1]; last != "connected" {
		t.Fatalf("state after the re-joins: %s (states %v)", last, res.States)
	}
}
