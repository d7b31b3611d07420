package examples

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// TestWeChatReadAndTyping runs the mini-program's chat logic under the wx
// shim against a real gateway, next to a Go SDK client (gopher) in the same
// room. The first page session shows the backlog and marks it read (a read
// frame for the last message shown); gopher's typing shows as "gopher is
// typing…" until gopher's message arrives; keystrokes on the page reach
// gopher as one typing notice, however many there were within 2 s. After
// that session stops, gopher sends two more; a second page session of the
// same user finds them unread in welcome, joins from the read cursor and
// shows exactly those two, then marks them read.
func TestWeChatReadAndTyping(t *testing.T) {
	gws := startGateways(t, 1)
	files := serveFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	const room = "wxread"
	gw := "ws://" + gws[0].Addr + "/ws"

	gopher, err := client.Dial(ctx, client.Config{URL: gw, User: "gopher", Device: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer gopher.Close()
	if _, err := gopher.Join(ctx, room, nil); err != nil {
		t.Fatal(err)
	}
	send := func(body string) protocol.Frame {
		t.Helper()
		ack, err := gopher.Send(ctx, room, body)
		if err != nil {
			t.Fatalf("send %q: %v", body, err)
		}
		return ack
	}
	for i := 1; i <= 3; i++ {
		send(fmt.Sprintf("backlog %d", i))
	}

	b := browsertest.Start(t)
	open := func(p *browsertest.Page, readDelay string) {
		t.Helper()
		q := url.Values{"ws": {gw}, "user": {"wxuser"}, "room": {room}, "minBackoff": {"100"}, "maxBackoff": {"400"}, "readDelay": {readDelay}}
		// In front: background tabs get their timers throttled to 1 s.
		p.Run(t, 10*time.Second, page.BringToFront(), chromedp.Navigate(files.URL+"/testdata/wxshim.html?"+q.Encode()))
		waitJS(t, p, "online", `window.chat && chat.state().status === 'online'`, 10*time.Second)
	}

	// The first session: the backlog, marked read.
	p1 := b.NewPage(t)
	open(p1, "100")
	waitJS(t, p1, "the backlog shown and marked read", `chat.state().messages.length === 3 && chat.state().read && chat.state().read.seq === 3`, 10*time.Second)
	if st := readShim(t, p1); st.Connects[0].Sent[1]["since"] != nil {
		t.Errorf("first join %v: want no since (no read cursor yet)", st.Connects[0].Sent[1])
	}

	// gopher types: the page says so until gopher's message arrives.
	if err := gopher.Typing(room); err != nil {
		t.Fatal(err)
	}
	waitJS(t, p1, "the typing line", `document.getElementById('typing').textContent === 'gopher is typing\u2026'`, 10*time.Second)
	send("typed it")
	waitJS(t, p1, "the typing line to clear with the message", `chat.state().messages.length === 4 && chat.state().typing === ''`, 10*time.Second)
	waitJS(t, p1, "the read cursor at 4", `chat.state().read.seq === 4`, 10*time.Second)

	// The page's user types: gopher hears it once.
	start := time.Now()
	p1.Run(t, 5*time.Second, chromedp.SendKeys("#draft", "hello", chromedp.ByID))
	typed := time.Since(start)
	ev := awaitEvent(t, ctx, gopher, func(ev client.Event) bool { return ev.Typing != nil })
	if ev.Typing.User != "wxuser" || ev.Typing.Room != room || ev.Typing.Device != "wechat" {
		t.Errorf("gopher got typing %+v, want wxuser's wechat device in %s", ev.Typing, room)
	}
	var frames []string
	for _, f := range readShim(t, p1).Connects[0].Sent {
		frames = append(frames, fmt.Sprint(f["type"]))
	}
	// At most one per 2 s, whatever the machine's speed: one when the
	// keystrokes took less than 2 s.
	if n, most := count(frames, "typing"), 1+int(typed/(2*time.Second)); n < 1 || n > most {
		t.Errorf("5 keystrokes in %v wrote %d typing frames (%v), want 1 to %d", typed, n, frames, most)
	}
	if n := count(frames, "read"); n < 1 || n > 2 {
		t.Errorf("the first session wrote %d read frames (%v), want one or two", n, frames)
	}
	checkPage(t, p1)
	p1.Run(t, 5*time.Second, chromedp.Evaluate(`chat.stop(); true`, nil))

	// While no page is open, two more messages.
	send("while away 1")
	last := send("while away 2")

	// The second session starts from the read cursor: exactly the two.
	p2 := b.NewPage(t)
	open(p2, "1500")
	waitJS(t, p2, "the unread messages", `chat.state().messages.length === 2`, 10*time.Second)
	st := readShim(t, p2)
	want := []shownMessage{{Seq: 5, From: "gopher", Body: "while away 1"}, {Seq: 6, From: "gopher", Body: "while away 2"}}
	if !slices.Equal(st.Messages, want) {
		t.Errorf("the second session shows %+v, want %+v", st.Messages, want)
	}
	join := st.Connects[0].Sent[1]
	if join["type"] != "join" || fmt.Sprint(join["since"]) != fmt.Sprint(map[string]any{"epoch": last.Epoch, "seq": 4.0}) {
		t.Errorf("second session's join %v, want since {epoch %s, seq 4}", join, last.Epoch)
	}
	var rooms []map[string]any
	p2.Run(t, 5*time.Second, chromedp.Evaluate(`chat.state().rooms`, &rooms))
	if len(rooms) != 1 || rooms[0]["room"] != room || rooms[0]["unread"] != 2.0 {
		t.Errorf("rooms from welcome %v, want %s with 2 unread", rooms, room)
	}
	waitJS(t, p2, "the two marked read", `chat.state().read.seq === 6 && chat.state().rooms[0].unread === 0`, 10*time.Second)
	checkPage(t, p2)
}

func count(xs []string, x string) int {
	n := 0
	for _, v := range xs {
		if v == x {
			n++
		}
	}
	return n
}

// awaitEvent reads c's events until ok accepts one.
func awaitEvent(t *testing.T, ctx context.Context, c *client.Client, ok func(client.Event) bool) client.Event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, open := <-c.Events():
			if !open {
				t.Fatal("events closed")
			}
			if ok(ev) {
				return ev
			}
		case <-timeout:
			t.Fatal("no such event within 10s")
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
}
