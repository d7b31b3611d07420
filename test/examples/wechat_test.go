package examples

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/clienttest"
)

// shownMessage is one message as the mini-program's logic shows it.
type shownMessage struct {
	Seq  int64  `json:"seq"`
	From string `json:"from"`
	Body string `json:"body"`
	Mine bool   `json:"mine"`
}

// shimState is what the wx shim page exposes to the test.
type shimState struct {
	Status   string         `json:"status"`
	Node     string         `json:"node"`
	Warning  string         `json:"warning"`
	Epoch    string         `json:"epoch"` // of the first message
	Messages []shownMessage `json:"messages"`
	Pending  []struct {
		Body string `json:"body"`
	} `json:"pending"`
	Connects []struct {
		URL      string           `json:"url"`
		Protocol *string          `json:"protocol"`
		Sent     []map[string]any `json:"sent"`
	} `json:"connects"`
}

func readShim(t *testing.T, p *browsertest.Page) shimState {
	t.Helper()
	var st shimState
	p.Run(t, 5*time.Second, chromedp.Evaluate(
		`(() => {
			const s = window.chat.state();
			return {...s, epoch: s.messages.length ? s.messages[0].epoch : '', connects: window.wxShim.connects};
		})()`, &st))
	return st
}

// TestWeChatMiniProgram runs the mini-program's chat logic
// (examples/wechat/pages/chat/chat.js) in Chromium under a wx shim whose
// SocketTask is a real WebSocket. It speaks protocol v1 to gw-1 while a Go
// SDK client on gw-2 shares the room: messages go both ways. Then gw-1 is
// killed (SIGKILL); while the mini-program is away the SDK client sends
// three messages through gw-2 and the mini-program's user sends one, which
// waits in its outbox. The shim then routes reconnects to gw-2: the logic
// resumes with since, shows every missed message exactly once, in order,
// and delivers its queued message.
func TestWeChatMiniProgram(t *testing.T) {
	gws := startGateways(t, 2)
	files := serveFiles(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	const room = "wechat"
	sdk := clienttest.Dial(t, ctx, "ws://"+gws[1].Addr+"/ws", "gopher", room)

	b := browsertest.Start(t)
	p := b.NewPage(t)
	q := url.Values{
		"ws":         {"ws://" + gws[0].Addr + "/ws"},
		"user":       {"wxuser"},
		"room":       {room},
		"minBackoff": {"100"},
		"maxBackoff": {"400"},
	}
	p.Run(t, 10*time.Second, chromedp.Navigate(files.URL+"/testdata/wxshim.html?"+q.Encode()))
	waitJS(t, p, "online on gw-1", `window.chat && chat.state().status === 'online' && chat.state().node === 'gw-1'`, 10*time.Second)

	// Mini-program to SDK: send with an id, acknowledged, shown once.
	typeAndSend := func(text string) {
		t.Helper()
		p.Run(t, 5*time.Second,
			chromedp.SetValue("#draft", text, chromedp.ByID),
			chromedp.Click("#send", chromedp.ByID),
		)
	}
	first := "你好 from the mini-program"
	typeAndSend(first)
	if err := sdk.WaitSeq(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := sdk.Body(1); got != first {
		t.Fatalf("SDK client got seq 1 = %q, want %q", got, first)
	}
	// Acked: the outbox is empty and the message is shown as our own.
	waitJS(t, p, "own message acked and shown", `chat.state().pending.length === 0 && chat.state().messages.length === 1`, 5*time.Second)

	// SDK to mini-program.
	want := []shownMessage{{Seq: 1, From: "wxuser", Body: first, Mine: true}}
	sdkSend := func(body string) {
		t.Helper()
		ack, err := sdk.Client.Send(ctx, room, body)
		if err != nil {
			t.Fatalf("SDK send %q: %v", body, err)
		}
		want = append(want, shownMessage{Seq: ack.Seq, From: "gopher", Body: body})
		if ack.Seq != int64(len(want)) {
			t.Fatalf("SDK send %q: ack seq %d, want %d", body, ack.Seq, len(want))
		}
	}
	sdkSend("hello back from Go")
	waitJS(t, p, "the SDK client's message", `chat.state().messages.length === 2`, 5*time.Second)
	if got := readShim(t, p).Messages; !slices.Equal(got, want) {
		t.Fatalf("mini-program shows %+v, want %+v", got, want)
	}

	// Kill the mini-program's gateway. While it is away, three messages go
	// through gw-2, and the mini-program's user writes one more.
	gws[0].Kill()
	waitJS(t, p, "the logic to notice the close", `chat.state().status !== 'online'`, 5*time.Second)
	for i := 1; i <= 3; i++ {
		sdkSend(fmt.Sprintf("missed %d", i))
	}
	offline := "written while offline"
	typeAndSend(offline)
	waitJS(t, p, "the offline message to wait in the outbox", `chat.state().pending.length === 1`, 5*time.Second)
	if st := readShim(t, p); len(st.Messages) != 2 || st.Status == "online" {
		t.Fatalf("while gw-1 is down the mini-program shows %+v (status %s), want the 2 earlier messages", st.Messages, st.Status)
	}

	// Reconnects now reach gw-2 (as a load balancer would send them).
	gw2 := "ws://" + gws[1].Addr + "/ws"
	p.Run(t, 5*time.Second, chromedp.Evaluate(fmt.Sprintf(`wxShim.setURLs([%q])`, gw2), nil))
	waitJS(t, p, "resumed on gw-2 with the queued send acked",
		`chat.state().status === 'online' && chat.state().node === 'gw-2' && chat.state().pending.length === 0 && chat.state().messages.length >= 6`,
		10*time.Second)

	want = append(want, shownMessage{Seq: 6, From: "wxuser", Body: offline, Mine: true})
	st := readShim(t, p)
	if !slices.Equal(st.Messages, want) {
		t.Errorf("after the resume the mini-program shows\n%+v\nwant every message once, in order:\n%+v", st.Messages, want)
	}
	if st.Warning != "" {
		t.Errorf("resume warning %q, want none (every missed message was recoverable)", st.Warning)
	}
	// Every connection negotiated protocol v1; the last one is on gw-2.
	opened := 0
	for _, c := range st.Connects {
		if c.Protocol == nil {
			continue // an attempt at the dead gw-1 that never opened
		}
		opened++
		if *c.Protocol != "parley.v1" {
			t.Errorf("connection to %s negotiated subprotocol %q, want parley.v1", c.URL, *c.Protocol)
		}
	}
	if last := st.Connects[len(st.Connects)-1]; last.URL != gw2 || opened != 2 {
		t.Errorf("connections %+v: want one to gw-1 then, after failed attempts, one to gw-2", st.Connects)
	}
	// The resume: on gw-2 the logic said hello, joined with since = the last
	// message it had shown (seq 2), then wrote its queued send.
	if last := st.Connects[len(st.Connects)-1]; len(last.Sent) < 3 ||
		last.Sent[0]["type"] != "hello" ||
		last.Sent[1]["type"] != "join" || fmt.Sprint(last.Sent[1]["since"]) != fmt.Sprint(map[string]any{"epoch": st.Epoch, "seq": 2.0}) ||
		last.Sent[2]["type"] != "send" || last.Sent[2]["body"] != offline {
		t.Errorf("frames written on gw-2: %v; want hello, join with since.seq 2, then the queued send", last.Sent)
	}
	// The page renders what the logic holds, as text.
	var bodies []string
	for _, m := range want {
		bodies = append(bodies, m.Body)
	}
	if got := texts(t, p, "#messages li"); !slices.Equal(got, bodies) {
		t.Errorf("page lines %q, want %q", got, bodies)
	}

	if err := sdk.WaitSeq(ctx, 6); err != nil {
		t.Fatal(err)
	}
	if got := sdk.Body(6); got != offline {
		t.Errorf("SDK client got seq 6 = %q, want %q", got, offline)
	}
	sdk.Check(t, 1, 6)
	checkPage(t, p)
}
