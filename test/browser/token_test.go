package browser

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/protocol"
)

// TestParleyJSRefreshesItsToken: parley.js with a tokenSource signs in
// with the token it gives, and when the gateway says the token is expiring
// (a minute before its exp) fetches a fresh one and sends it as refresh;
// the connection carries on (a send is acknowledged).
func TestParleyJSRefreshesItsToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	g := proctest.StartGateway(t, proctest.GatewayOptions{Node: "gw-1", Args: []string{"--jwt-secret", string(secret)}})
	g.WaitReady(20 * time.Second)
	signer, err := auth.NewHMACSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	first, err := signer.Mint("alice", 62*time.Second) // token_expiring comes 2 s in
	if err != nil {
		t.Fatal(err)
	}
	freshExp := time.Now().Add(time.Hour).Truncate(time.Second)
	fresh, err := signer.Sign(auth.Claims{User: "alice", Expires: freshExp})
	if err != nil {
		t.Fatal(err)
	}

	p := browsertest.Start(t).NewPage(t)
	p.Run(t, step, page.BringToFront(), chromedp.Navigate("http://"+g.Addr+"/parley.js"))
	var user string
	evalAsync(t, p, fmt.Sprintf(`(async () => {
		const { ParleyClient } = await import('/parley.js');
		const tokens = [%q, %q];
		const c = new ParleyClient({ url: 'ws://%s/ws', device: 'web', tokenSource: async () => tokens.shift() });
		window.c = c;
		window.events = [];
		c.addEventListener('tokenexpiring', () => events.push('expiring'));
		c.addEventListener('tokenrefreshed', (e) => events.push('refreshed ' + e.detail.expires));
		c.addEventListener('fatal', (e) => events.push('fatal ' + e.detail.reason));
		const welcomed = new Promise((resolve) => c.addEventListener('welcome', (e) => resolve(e.detail.user), { once: true }));
		c.connect();
		return welcomed;
	})()`, first, fresh, g.Addr), &user)
	if user != "alice" {
		t.Fatalf("welcome for %q, want alice (from the tokenSource's first token)", user)
	}
	var events []string
	p.Run(t, 20*time.Second, chromedp.Poll(`events.length >= 2 && events`, &events, chromedp.WithPollingInterval(50*time.Millisecond)))
	want := []string{"expiring", "refreshed " + protocol.FormatTime(freshExp)}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q", events, want)
	}
	var seq int
	evalAsync(t, p, `(async () => { await c.join('general'); const a = await c.send('general', 'still here'); return a.seq; })()`, &seq)
	if seq != 1 {
		t.Fatalf("send after the refresh: seq %d, want 1", seq)
	}
}
