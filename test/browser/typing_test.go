package browser

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
)

// TestChatPageTyping: a member typing in the open room shows as "bot is
// typing…" under the messages, and the line goes when the message comes;
// typing in the composer sends a notice the other member receives.
func TestChatPageTyping(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := proctest.StartGateway(t, proctest.GatewayOptions{Node: "gw-1"}) // memory broker
	g.WaitReady(20 * time.Second)
	p := newTab(t, browsertest.Start(t), "uma", false)
	p.open("http://"+g.Addr+"/", "uma")
	p.join("main")

	bot := sdk(t, ctx, g, "bot")
	if _, err := bot.Join(ctx, "main", nil); err != nil {
		t.Fatal(err)
	}
	if err := bot.Typing("main"); err != nil {
		t.Fatal(err)
	}
	var text string
	p.run(step,
		chromedp.WaitVisible("#typing"),
		chromedp.Text("#typing", &text),
	)
	if text != "bot is typing…" {
		t.Fatalf("typing line %q, want %q", text, "bot is typing…")
	}
	p.screenshot("typing")
	if _, err := bot.Send(ctx, "main", "done typing"); err != nil {
		t.Fatal(err)
	}
	p.run(step, chromedp.WaitNotVisible("#typing"))

	// uma types (without sending): bot hears it.
	p.run(step, chromedp.SendKeys("#composer", "hel"))
	for {
		select {
		case ev := <-bot.Events():
			if ev.Typing == nil {
				continue
			}
			if ev.Typing.User != "uma" || ev.Typing.Room != "main" {
				t.Fatalf("bot got typing %+v, want uma in main", ev.Typing)
			}
			p.checkClean()
			return
		case <-ctx.Done():
			t.Fatal("bot never heard uma typing")
		}
	}
}
