package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// dialPlain connects the way the tutorial clients do: no subprotocol.
func dialPlain(t *testing.T, n *node, path string) *tclient {
	t.Helper()
	ws, _, err := dialRaw(t, n.wsURL(path))
	if err != nil {
		t.Fatalf("plain dial %s: %v", path, err)
	}
	if ws.Subprotocol() != "" {
		t.Fatalf("plain client got subprotocol %q", ws.Subprotocol())
	}
	c := wrap(t, ws, 1000)
	c.name = "plain" + path
	return c
}

func (c *tclient) text() string {
	c.t.Helper()
	select {
	case b := <-c.frames:
		return string(b)
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: no text within 10s", c.name)
	case <-c.done:
		c.t.Fatalf("%s: closed: %v", c.name, c.err)
	}
	return ""
}

func (c *tclient) writeText(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// The classic tutorial clients: a page on ws://host:8080 (room lobby), a
// Laravel page on /chat, a mini-program, all plain text; they talk with each
// other and with protocol-v1 clients on other gateways.
func TestPlainTextClients(t *testing.T) {
	c := newCluster(t, 2, nil)
	page := dialPlain(t, c.gws[0], "/")
	wx := dialPlain(t, c.gws[1], "/?user=wxuser")
	v1 := login(t, c.gws[1], "alice", "phone")
	v1.join("lobby", nil)

	page.writeText("hello from the page")
	if got := wx.text(); got != "hello from the page" {
		t.Fatalf("mini-program got %q", got)
	}
	m := v1.messages(1)[0]
	if m.Body != "hello from the page" || !strings.HasPrefix(m.From, "guest-") || m.Room != "lobby" {
		t.Fatalf("v1 client got %+v", m)
	}
	wx.writeText("你好")
	if got := page.text(); got != "你好" {
		t.Fatalf("page got %q", got)
	}
	if m := v1.messages(1)[0]; m.From != "wxuser" || m.Body != "你好" {
		t.Fatalf("v1 got %+v", m)
	}
	if _, own := v1.post("lobby", "v1-1", "from v1"); len(own) == 0 {
		v1.messages(1) // its own message, after the ack
	}
	if a, b := page.text(), wx.text(); a != "from v1" || b != "from v1" {
		t.Fatalf("plain clients got %q and %q", a, b)
	}
	// The sender's own text is not echoed back: the next thing the page
	// sees is the wx message, not its own line.
	page.writeText("own line")
	wx.text()
	wx.writeText("marker")
	if got := page.text(); got != "marker" {
		t.Fatalf("page saw %q, want marker (own lines are not echoed)", got)
	}
	if ms := v1.messages(2); bodiesOf(ms) != "own line,marker" {
		t.Fatalf("v1 got %s", bodiesOf(ms))
	}

	// The Laravel page's /chat is room "chat", separate from the lobby.
	lara := dialPlain(t, c.gws[0], "/chat")
	v1.join("chat", nil)
	lara.writeText("laravel says hi")
	if m := v1.messages(1)[0]; m.Room != "chat" || m.Body != "laravel says hi" {
		t.Fatalf("chat room message %+v", m)
	}

	// A new plain client gets the recent backlog as text.
	late := dialPlain(t, c.gws[1], "/chat")
	if got := late.text(); got != "laravel says hi" {
		t.Fatalf("late joiner backlog %q", got)
	}
}

func TestPlainTextBadInput(t *testing.T) {
	c := newCluster(t, 1, nil)
	n := c.gws[0]
	other := dialPlain(t, n, "/")

	bin := dialPlain(t, n, "/")
	ctx := context.Background()
	if err := bin.ws.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if code, _ := bin.closeStatus(); code != protocol.CloseUnsupportedData {
		t.Fatalf("binary frame closed with %d, want 1003", code)
	}
	big := dialPlain(t, n, "/")
	big.writeText(strings.Repeat("x", 5000))
	if code, _ := big.closeStatus(); code != websocket.StatusMessageTooBig {
		t.Fatalf("oversized text closed with %d, want 1009", code)
	}
	bad := dialPlain(t, n, "/a%20b")
	if code, _ := bad.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("bad room path closed with %d, want 1008", code)
	}
	// The other plain client is unaffected.
	sender := dialPlain(t, n, "/")
	sender.writeText("still works")
	if got := other.text(); got != "still works" {
		t.Fatalf("other client got %q", got)
	}
}

func TestPlainTextNeedsTokenWithoutDevAuth(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.DevAuth = false; cfg.JWTSecret = []byte("s") })
	cl := dialPlain(t, c.gws[0], "/chat")
	if code, reason := cl.closeStatus(); code != websocket.StatusPolicyViolation || !strings.Contains(reason, "token") {
		t.Fatalf("tokenless plain client closed with %d %q", code, reason)
	}
}

// A plain-text client cannot be told that a frame was refused, so the rate
// limit paces it instead of dropping: 12 lines sent at once against a
// limit of 5/s with a burst of 2 all arrive, in order, and the connection
// stays open.
func TestPlainTextOverTheRateIsPacedNotDropped(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.RateLimit, cfg.RateBurst = 5, 2 })
	page := dialPlain(t, c.gws[0], "/chat")
	v1 := login(t, c.gws[0], "alice", "phone")
	v1.join("chat", nil)
	for i := range 12 {
		page.writeText(strings.Repeat("x", i+1))
	}
	ms := v1.messages(12)
	for i, m := range ms {
		if m.Body != strings.Repeat("x", i+1) || m.Seq != int64(i+1) {
			t.Fatalf("message %d = seq %d %q, want seq %d with %d x", i, m.Seq, m.Body, i+1, i+1)
		}
	}
	page.writeText("still open")
	if m := v1.messages(1)[0]; m.Body != "still open" {
		t.Fatalf("after the pacing: %+v", m)
	}
}

// A Redis outage delays a plain-text client; it does not cut it or drop
// its words: the line sent while Redis is down is stored once it is back,
// and the connection goes on.
func TestPlainTextWaitsOutARedisOutage(t *testing.T) {
	c := newCluster(t, 1, nil)
	page := dialPlain(t, c.gws[0], "/chat")
	v1 := login(t, c.gws[0], "alice", "phone")
	v1.join("chat", nil) // the plain client has joined too once this one has
	page.writeText("before")
	if m := v1.messages(1)[0]; m.Body != "before" {
		t.Fatalf("got %+v", m)
	}
	c.redis.Stop()
	page.writeText("during")
	page.writeText("after")
	c.redis.Restart() // no persistence: the room starts again at seq 1
	b := redisBroker(t, c)
	waitFor(t, 30*time.Second, "the lines sent during the outage to be stored", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rng, err := b.After(ctx, "chat", 0, 0)
		return err == nil && len(rng.Messages) == 2
	})
	rng, err := b.After(context.Background(), "chat", 0, 0)
	if err != nil || rng.Messages[0].Body != "during" || rng.Messages[1].Body != "after" {
		t.Fatalf("history after the outage: %+v %v", rng.Messages, err)
	}
	select {
	case <-page.done:
		t.Fatalf("the plain-text connection was closed: %v", page.err)
	default:
	}
}
