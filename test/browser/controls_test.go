package browser

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
)

// TestChatPageControls drives the chat page's controls that
// TestBrowserClient does not, against one gateway: a message in a room not
// open counts as unread (on the room, on the phone's menu button and in the
// title) until the room is opened; × leaves a room and opens the first one
// left; #name in the URL opens a room; the composer refuses a message over
// 4096 bytes and keeps it, and typing clears the error.
func TestChatPageControls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := proctest.StartGateway(t, proctest.GatewayOptions{Node: "gw-1"}) // memory broker
	g.WaitReady(20 * time.Second)
	p := newTab(t, browsertest.Start(t), "uma", false)
	p.open("http://"+g.Addr+"/", "uma") // opens lobby, the default room
	p.join("side")
	p.join("main")

	bot := sdk(t, ctx, g, "bot")
	ack, err := bot.Send(ctx, "side", "psst")
	if err != nil {
		t.Fatal(err)
	}
	var title string
	p.run(step,
		chromedp.WaitVisible(`#room-list li[data-room="side"] .count`),
		chromedp.Poll(`document.title === '(1) Parley'
			&& document.querySelector('#room-list li[data-room="side"] .count').textContent === '1'
			&& document.getElementById('unread-total').textContent === '1'`, nil,
			chromedp.WithPollingInterval(20*time.Millisecond)),
		chromedp.Text("#room-title", &title),
	)
	if title != "# main" {
		t.Fatalf("title %q: the message opened its room", title)
	}

	p.selectRoom("side")
	p.expect("side", []line{{ack.Seq, "bot", "psst"}})
	var read bool
	p.eval(`document.title === 'Parley'
		&& document.querySelector('#room-list li[data-room="side"] .count').hidden
		&& document.getElementById('unread-total').hidden`, &read)
	if !read {
		t.Fatal("the unread counts stay after opening the room")
	}

	var rooms string
	p.run(step,
		chromedp.Click(`#room-list li[data-room="side"] .leave`),
		chromedp.WaitNotPresent(`#room-list li[data-room="side"]`),
		chromedp.WaitNotPresent(`.room-log[data-room="side"]`),
		chromedp.Text("#room-title", &title),
		chromedp.Evaluate(`[...document.querySelectorAll('#room-list li')].map(li => li.dataset.room).join(',')`, &rooms),
	)
	if title != "# lobby" || rooms != "lobby,main" {
		t.Fatalf("after leaving side: title %q, rooms %s; want # lobby and lobby, main", title, rooms)
	}

	p.run(step,
		chromedp.Evaluate(`location.hash = '#from-url'`, nil),
		chromedp.WaitVisible(`.room-log[data-room="from-url"]`),
		chromedp.Text("#room-title", &title),
	)
	if title != "# from-url" {
		t.Fatalf("title %q after #from-url", title)
	}

	var errText, kept string
	p.run(step,
		chromedp.SetValue("#composer", strings.Repeat("é", 2049)), // 4098 bytes
		chromedp.Click("#send"),
		chromedp.WaitVisible("#composer-error"),
		chromedp.Text("#composer-error", &errText),
		chromedp.Value("#composer", &kept),
	)
	if !strings.Contains(errText, "Too long: 4098 bytes") || len(kept) != 4098 {
		t.Fatalf("composer error %q, %d bytes kept", errText, len(kept))
	}
	p.run(step, chromedp.SendKeys("#composer", "x"), chromedp.WaitNotVisible("#composer-error"))
	if n := len(p.messages("from-url")); n != 0 {
		t.Fatalf("%d lines in from-url: the long message was shown", n)
	}
	p.checkClean()
}
