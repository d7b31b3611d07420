package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
)

// line is one message as the test expects a page to show it.
type line struct {
	Seq  int64  `json:"seq"`
	From string `json:"from"`
	Body string `json:"body"`
}

// shown is one .msg element as a page shows it.
type shown struct {
	Seq     string `json:"seq"` // "" while pending
	From    string `json:"from"`
	Body    string `json:"body"`
	Pending bool   `json:"pending"`
	Sent    bool   `json:"sent"`
}

// tab is one chat page in a browser.
type tab struct {
	*browsertest.Page
	t       *testing.T
	name    string
	dialogs atomic.Int32 // JavaScript dialogs opened (alert, confirm, ...)
}

const (
	phoneW, phoneH = 390, 844
	step           = 15 * time.Second // the bound of one UI step
)

// newTab opens a tab in b; phone makes it a 390x844 touch screen.
// Any JavaScript dialog is counted and dismissed.
func newTab(t *testing.T, b *browsertest.Browser, name string, phone bool) *tab {
	t.Helper()
	p := &tab{Page: b.NewPage(t), t: t, name: name}
	chromedp.ListenTarget(p.Ctx, func(ev any) {
		if _, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			p.dialogs.Add(1)
			go func() { _ = chromedp.Run(p.Ctx, page.HandleJavaScriptDialog(false)) }()
		}
	})
	if phone {
		p.Run(t, step, chromedp.EmulateViewport(phoneW, phoneH, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
	}
	return p
}

// run runs actions, failing the test with the page's state on error.
func (p *tab) run(timeout time.Duration, actions ...chromedp.Action) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, timeout)
	defer cancel()
	// Background tabs pause CSS transitions and throttle timers: act on
	// the tab in front, as a user would.
	actions = append([]chromedp.Action{page.BringToFront()}, actions...)
	if err := chromedp.Run(ctx, actions...); err != nil {
		if os.Getenv("PARLEY_DEBUG_SHOTS") != "" {
			p.screenshot("debug-" + p.name + ".png")
		}
		p.t.Fatalf("%s: %v\n%s", p.name, err, p.describe())
	}
}

// eval evaluates a JavaScript expression into out.
func (p *tab) eval(expr string, out any) {
	p.t.Helper()
	p.run(step, chromedp.Evaluate(expr, out))
}

// describe summarises the page for failure messages.
func (p *tab) describe() string {
	ctx, cancel := context.WithTimeout(p.Ctx, 3*time.Second)
	defer cancel()
	var s string
	_ = chromedp.Run(ctx, chromedp.Evaluate(`JSON.stringify({
		badge: document.getElementById('badge')?.dataset.state,
		node: document.getElementById('node')?.textContent,
		online: [...document.querySelectorAll('#online-list li')].map(li => li.textContent),
		rooms: [...document.querySelectorAll('.room-log')].map(l => ({room: l.dataset.room,
			msgs: [...l.querySelectorAll('.msg')].map(e => (e.dataset.seq ?? 'pending') + ' ' + e.dataset.from + ': ' + e.querySelector('.body').textContent)})),
	}, null, 1)`, &s))
	return "page state: " + s + "\nconsole:\n" + p.Console()
}

// open loads url and signs in as user unless the page signs in by itself
// (a name remembered in this browser's localStorage); it returns once the
// badge says connected.
func (p *tab) open(url, user string) {
	p.t.Helper()
	var view string
	p.run(step,
		chromedp.Navigate(url),
		chromedp.Poll(`(() => {
			if (!document.getElementById('login-view').hidden) return 'login';
			if (!document.getElementById('chat-view').hidden) return 'chat';
			return '';
		})()`, &view, chromedp.WithPollingInterval(20*time.Millisecond)),
	)
	if view == "login" {
		p.run(step,
			chromedp.SendKeys("#login-name", user),
			chromedp.Click("#login-go"),
		)
	}
	p.waitState("connected")
	var me string
	p.eval(`document.getElementById('me').textContent`, &me)
	if me != user {
		p.t.Fatalf("%s: signed in as %q, want %q", p.name, me, user)
	}
}

func (p *tab) waitState(state string) {
	p.t.Helper()
	p.run(step, chromedp.WaitVisible(fmt.Sprintf(`#badge[data-state=%q]`, state)))
}

// node is the gateway the page says serves it.
func (p *tab) node() string {
	p.t.Helper()
	var n string
	p.eval(`document.getElementById('node').textContent`, &n)
	return n
}

func (p *tab) isPhone() bool {
	var w int
	p.eval(`window.innerWidth`, &w)
	return w <= phoneW
}

// join joins (or creates) room through the room form and waits until it
// is the room shown.
func (p *tab) join(room string) {
	p.t.Helper()
	p.openDrawer()
	p.run(step,
		chromedp.SendKeys("#room-input", room),
		chromedp.Click("#room-join"),
		chromedp.WaitVisible(fmt.Sprintf(`.room-log[data-room=%q]`, room)),
		chromedp.WaitVisible("#composer"),
	)
	var title string
	p.eval(`document.getElementById('room-title').textContent`, &title)
	if title != "# "+room {
		p.t.Fatalf("%s: title %q after joining %s", p.name, title, room)
	}
}

// openDrawer opens the room list on a phone-sized page and waits until it
// has slid in (a click during the slide would miss).
func (p *tab) openDrawer() {
	p.t.Helper()
	if !p.isPhone() {
		return
	}
	p.run(step,
		drawerClosed(), // a drawer still sliding out would take the click
		chromedp.Click("#rooms-toggle"),
		chromedp.WaitVisible("#room-input"),
		chromedp.Poll(`document.getElementById('sidebar').getBoundingClientRect().left === 0`, nil,
			chromedp.WithPollingInterval(20*time.Millisecond)),
	)
}

// drawerClosed waits until a phone-sized page's room list has slid out.
func drawerClosed() chromedp.Action {
	return chromedp.Poll(`document.getElementById('sidebar').getBoundingClientRect().right <= 0`, nil,
		chromedp.WithPollingInterval(20*time.Millisecond))
}

// selectRoom shows a room already in the list.
func (p *tab) selectRoom(room string) {
	p.t.Helper()
	p.openDrawer()
	p.run(step,
		chromedp.Click(fmt.Sprintf(`#room-list li[data-room=%q] .room-name`, room)),
		chromedp.WaitVisible(fmt.Sprintf(`.room-log[data-room=%q]`, room)),
	)
	if p.isPhone() {
		p.run(step, drawerClosed())
	}
}

// type_ types body into the composer and presses Enter.
func (p *tab) type_(body string) {
	p.t.Helper()
	p.run(step, chromedp.SendKeys("#composer", body), pressEnter(false))
}

// pressEnter presses Enter (with Shift when shift is set) in the focused
// element the way a keyboard does: one keyDown carrying the text, whose
// default action (a new line) the page may prevent, then keyUp.
// (chromedp's KeyEvent sends the text as a separate char event, which
// no page can prevent.)
func pressEnter(shift bool) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var mods input.Modifier
		if shift {
			mods = input.ModifierShift
		}
		down := input.DispatchKeyEvent(input.KeyDown).WithKey("Enter").WithCode("Enter").
			WithWindowsVirtualKeyCode(13).WithNativeVirtualKeyCode(13).WithText("\r").WithUnmodifiedText("\r").WithModifiers(mods)
		if err := down.Do(ctx); err != nil {
			return err
		}
		return input.DispatchKeyEvent(input.KeyUp).WithKey("Enter").WithCode("Enter").
			WithWindowsVirtualKeyCode(13).WithNativeVirtualKeyCode(13).WithModifiers(mods).Do(ctx)
	})
}

// say sends body from the composer and waits for its ack: the line turns
// from pending to sent and gets its seq, which say returns.
func (p *tab) say(room, body string) int64 {
	p.t.Helper()
	p.type_(body)
	return p.waitSent(room, body)
}

// waitSent waits until this page's own line with body is marked sent.
func (p *tab) waitSent(room, body string) int64 {
	p.t.Helper()
	var seq string
	ctx, cancel := context.WithTimeout(p.Ctx, step)
	defer cancel()
	err := chromedp.Run(ctx, chromedp.PollFunction(`(room, body) => {
		for (const e of document.querySelectorAll('.room-log[data-room="' + room + '"] .msg.sent')) {
			if (e.querySelector('.body').textContent === body && e.dataset.seq) return e.dataset.seq;
		}
		return false;
	}`, &seq, chromedp.WithPollingArgs(room, body), chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if err != nil {
		p.t.Fatalf("%s: %q not acknowledged: %v\n%s", p.name, body, err, p.describe())
	}
	n, _ := strconv.ParseInt(seq, 10, 64)
	return n
}

// messages returns the .msg elements of room, in page order.
func (p *tab) messages(room string) []shown {
	p.t.Helper()
	var out []shown
	p.eval(fmt.Sprintf(`[...document.querySelectorAll('.room-log[data-room=%q] .msg')].map(e => ({
		seq: e.dataset.seq ?? '', from: e.dataset.from, body: e.querySelector('.body').textContent,
		pending: e.classList.contains('pending'), sent: e.classList.contains('sent')}))`, room), &out)
	return out
}

// expect waits until room shows exactly want: every line once, in seq
// order, nothing pending, nothing else.
func (p *tab) expect(room string, want []line) {
	p.t.Helper()
	if want == nil {
		want = []line{}
	}
	wantJSON, _ := json.Marshal(want)
	ctx, cancel := context.WithTimeout(p.Ctx, step)
	defer cancel()
	var ok bool
	err := chromedp.Run(ctx, chromedp.PollFunction(`(room, want) => {
		const got = [...document.querySelectorAll('.room-log[data-room="' + room + '"] .msg')].map(e =>
			({seq: e.dataset.seq === undefined ? -1 : Number(e.dataset.seq), from: e.dataset.from, body: e.querySelector('.body').textContent}));
		return JSON.stringify(got) === JSON.stringify(JSON.parse(want));
	}`, &ok, chromedp.WithPollingArgs(room, string(wantJSON)), chromedp.WithPollingInterval(30*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if err != nil {
		got := p.messages(room)
		var b strings.Builder
		for _, s := range got {
			fmt.Fprintf(&b, "  seq %-4s %-6s %q pending=%v\n", s.Seq, s.From, s.Body, s.Pending)
		}
		p.t.Fatalf("%s: room %s does not show the %d expected lines (%v); it shows:\n%swant: %s\n%s",
			p.name, room, len(want), err, b.String(), wantJSON, p.describe())
	}
	// Exactly once: a seq appears on one element only.
	seen := map[string]bool{}
	for _, s := range p.messages(room) {
		if seen[s.Seq] {
			p.t.Fatalf("%s: seq %s shown twice", p.name, s.Seq)
		}
		seen[s.Seq] = true
	}
}

// checkClean fails the test if the page threw or opened a dialog.
func (p *tab) checkClean() {
	p.t.Helper()
	if pr := p.Problems(); len(pr) > 0 {
		p.t.Errorf("%s: JavaScript problems: %v", p.name, pr)
	}
	if n := p.dialogs.Load(); n > 0 {
		p.t.Errorf("%s: %d JavaScript dialog(s) opened", p.name, n)
	}
}

// screenshot writes the visible page as artifacts/screenshots/name at the
// repository root and returns the path.
func (p *tab) screenshot(name string) string {
	p.t.Helper()
	var png []byte
	p.run(step, chromedp.CaptureScreenshot(&png))
	dir := filepath.Join(repoRoot(p.t), "artifacts", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return path
}

func repoRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no go.mod above %s", dir)
		}
	}
}
