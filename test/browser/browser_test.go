package browser

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/deploy/haproxy"
	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/client"
)

func TestMain(m *testing.M) { proctest.Main(m) }

// history is the gateways' retention (--history): small, so that a page
// that misses more than this while its gateway hangs is told it could not
// recover everything.
const history = 100

// cluster is redis-server + three gateways + haproxy, as in test/cluster.
type cluster struct {
	gws map[string]*proctest.Gateway
	lb  *proctest.HAProxy
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	r := redistest.Start(t, redistest.Options{AOF: true})
	c := &cluster{gws: map[string]*proctest.Gateway{}}
	var addrs []string
	for i := 1; i <= 3; i++ {
		g := proctest.StartGateway(t, proctest.GatewayOptions{
			Redis: r.URL(), Node: fmt.Sprintf("gw-%d", i),
			Args: []string{"--history", fmt.Sprint(history)},
		})
		c.gws[g.Node] = g
		addrs = append(addrs, g.Addr)
	}
	for _, g := range c.gws {
		g.WaitReady(20 * time.Second)
	}
	// Health checks every second, 3 failures to mark down: a hung gateway
	// keeps its pages for about 3 s (the kill below is what cuts them).
	c.lb = proctest.StartHAProxy(t, haproxy.Params{
		Servers: addrs, CheckInterval: time.Second, Fall: 3, Rise: 1,
	})
	return c
}

// live returns a gateway that is still running.
func (c *cluster) live(t *testing.T) *proctest.Gateway {
	t.Helper()
	for _, n := range []string{"gw-1", "gw-2", "gw-3"} {
		select {
		case <-c.gws[n].Exited():
		default:
			return c.gws[n]
		}
	}
	t.Fatal("no gateway is running")
	return nil
}

// sdk connects a Go SDK client straight to one gateway (not through the
// load balancer), for messages posted by people without a page.
func sdk(t *testing.T, ctx context.Context, g *proctest.Gateway, user string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, client.Config{URL: "ws://" + g.Addr + "/ws", User: user, Device: "bot"})
	if err != nil {
		t.Fatalf("sdk %s: %v", user, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// post sends n messages to room from each client concurrently and returns
// them as lines, in seq order.
func post(t *testing.T, ctx context.Context, room string, n int, cs map[string]*client.Client) []line {
	t.Helper()
	var (
		mu    sync.Mutex
		lines []line
		wg    sync.WaitGroup
		errs  = make(chan error, len(cs))
	)
	for user, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				body := fmt.Sprintf("%s %s %d", user, room, i+1)
				ack, err := c.Send(ctx, room, body)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", body, err)
					return
				}
				mu.Lock()
				lines = append(lines, line{Seq: ack.Seq, From: user, Body: body})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.SortFunc(lines, func(a, b line) int { return int(a.Seq - b.Seq) })
	return lines
}

// land loads url in p and signs in as user, reloading (a new connection
// through the load balancer) until the page is served by a gateway not in
// taken. leastconn normally gets it right the first time; short-lived
// requests for the page's files can skew the count, hence the retries.
func land(t *testing.T, p *tab, url, user string, taken map[string]bool) string {
	t.Helper()
	for try := 1; ; try++ {
		p.open(url, user)
		n := p.node()
		if !taken[n] {
			taken[n] = true
			t.Logf("%s: served by %s (load %d)", p.name, n, try)
			return n
		}
		if try == 6 {
			t.Fatalf("%s: served by %s after %d loads; want a gateway other than %v", p.name, n, try, taken)
		}
	}
}

func sortLines(ls []line) []line {
	slices.SortFunc(ls, func(a, b line) int { return int(a.Seq - b.Seq) })
	return ls
}

// TestBrowserClient drives the browser client through a user's life on a
// three-gateway cluster: pages of one user on two devices and of another
// user, each on its own gateway; the gateway of one page hanging and then
// killed; a fresh browser; hostile message text; scroll-back.
func TestBrowserClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startCluster(t)
	base := "http://" + c.lb.Addr + "/"

	home := browsertest.Start(t) // alice's browser: her phone and laptop tabs share its storage
	away := browsertest.Start(t) // bob's
	phone := newTab(t, home, "alice-phone", true)
	laptop := newTab(t, home, "alice-laptop", false)
	bob := newTab(t, away, "bob", false)
	tabs := []*tab{phone, laptop, bob}
	const room = "general"
	var conv []line // what every page in room must show, in seq order

	// bind makes the tabs fail the running subtest, not its parent.
	bind := func(t *testing.T) {
		for _, p := range tabs {
			p.t = t
		}
	}

	if !t.Run("three pages on three gateways", func(t *testing.T) {
		bind(t)
		taken := map[string]bool{}
		land(t, phone, base+"?device=phone", "alice", taken)
		phone.join("busy")
		phone.join(room)
		// The laptop tab finds alice's name and rooms in localStorage.
		land(t, laptop, base+"?device=laptop", "alice", taken)
		var title string
		laptop.eval(`document.getElementById('room-title').textContent`, &title)
		if title != "# "+room {
			t.Fatalf("laptop opened %q, want the room alice used last", title)
		}
		land(t, bob, base, "bob", taken)
		bob.join(room)
	}) {
		return
	}

	if !t.Run("messages flow both ways, once each", func(t *testing.T) {
		bind(t)
		seq := phone.say(room, "hi from my phone")
		conv = append(conv, line{seq, "alice", "hi from my phone"})
		for _, p := range tabs {
			p.expect(room, conv)
		}
		seq = bob.say(room, "hey alice, ça va? 😀")
		conv = append(conv, line{seq, "bob", "hey alice, ça va? 😀"})
		for _, p := range tabs {
			p.expect(room, conv)
		}
		// Shift+Enter is a new line; Enter sends.
		laptop.run(step,
			chromedp.SendKeys("#composer", "from the laptop"),
			pressEnter(true),
			chromedp.SendKeys("#composer", "second line"),
			pressEnter(false),
		)
		body := "from the laptop\nsecond line"
		seq = laptop.waitSent(room, body)
		conv = append(conv, line{seq, "alice", body})
		for _, p := range tabs {
			p.expect(room, conv)
		}
		if seqs := []int64{conv[0].Seq, conv[1].Seq, conv[2].Seq}; seqs[1] != seqs[0]+1 || seqs[2] != seqs[1]+1 {
			t.Fatalf("seqs %v, want consecutive", seqs)
		}
	}) {
		return
	}

	if !t.Run("the page's gateway hangs and is killed: it resumes elsewhere", func(t *testing.T) {
		bind(t)
		victim := c.gws[phone.node()]
		var other *proctest.Gateway
		for n, g := range c.gws {
			if n != victim.Node && (other == nil || n < other.Node) {
				other = g
			}
		}
		carol := sdk(t, ctx, other, "carol")
		posters := map[string]*client.Client{}
		for _, u := range []string{"p1", "p2", "p3"} {
			posters[u] = sdk(t, ctx, other, u)
		}
		// Record the badge's states and the moment pending lines get a seq.
		phone.eval(`(() => {
			window.__events = [];
			new MutationObserver((ms) => {
				for (const m of ms) {
					if (m.target.id === 'badge') __events.push('state:' + m.target.dataset.state);
					else if (m.attributeName === 'data-seq') __events.push('seq:' + m.target.querySelector('.body').textContent);
				}
			}).observe(document.getElementById('chat-view'), {subtree: true, attributes: true, attributeFilter: ['data-state', 'data-seq']});
			return true;
		})()`, nil)

		victim.Freeze()
		hung := time.Now()
		// A line typed now reaches the hung gateway, which never answers.
		const mine = "typed while my gateway hangs"
		phone.type_(mine)
		if got := phone.messages(room); len(got) == 0 || got[len(got)-1].Body != mine || !got[len(got)-1].Pending || got[len(got)-1].Seq != "" {
			t.Fatalf("the line just typed is not shown as pending: %+v", got)
		}
		// Meanwhile carol talks in general and 3 bots flood busy with more
		// than the history keeps.
		for i := range 5 {
			body := fmt.Sprintf("carol while alice's phone is away %d", i+1)
			ack, err := carol.Send(ctx, room, body)
			if err != nil {
				t.Fatal(err)
			}
			conv = append(conv, line{ack.Seq, "carol", body})
		}
		busy := post(t, ctx, "busy", 37, posters) // 111 messages: seqs 1..111, history keeps 12..111
		victim.Kill()
		t.Logf("gateway %s hung for %v, then killed (kill -9)", victim.Node, time.Since(hung).Round(time.Millisecond))

		seq := phone.waitSent(room, mine)
		conv = sortLines(append(conv, line{seq, "alice", mine}))
		for _, p := range tabs {
			p.expect(room, conv)
		}
		if n := phone.node(); n == victim.Node || n == "" {
			t.Fatalf("the phone still says it is served by %q", n)
		}
		var events []string
		phone.eval(`window.__events`, &events)
		reconnecting := slices.Index(events, "state:reconnecting")
		connected := -1
		for i := reconnecting + 1; reconnecting >= 0 && i < len(events); i++ {
			if events[i] == "state:connected" {
				connected = i
				break
			}
		}
		acked := slices.Index(events, "seq:"+mine)
		if reconnecting < 0 || connected < 0 || acked < connected {
			t.Fatalf("badge and ack events %v: want reconnecting, then connected, then the pending line acknowledged", events)
		}
		t.Logf("phone: %s; now served by %s", strings.Join(compact(events), " → "), phone.node())

		// busy lost its oldest messages while the phone was away: the page
		// says so and shows what history still holds, once each.
		first := busy[len(busy)-history].Seq
		phone.expect("busy", busy[len(busy)-history:])
		phone.selectRoom("busy")
		var note string
		phone.run(step, chromedp.WaitVisible("#recovery-note"), chromedp.Text("#recovery-text", &note))
		if !strings.Contains(note, "could not be recovered") {
			t.Fatalf("recovery note %q", note)
		}
		var gaps int
		phone.eval(`document.querySelectorAll('.room-log[data-room="busy"] .gap').length`, &gaps)
		if gaps != 1 {
			t.Fatalf("%d gap markers in busy, want 1", gaps)
		}
		t.Logf("wrote %s", phone.screenshot("chat-phone-recovery.png"))
		t.Logf("busy resumed from seq %d (history holds %d..%d): %q", first, first, busy[len(busy)-1].Seq, note)
		phone.selectRoom(room)
		phone.run(step, chromedp.WaitNotVisible("#recovery-note"))
	}) {
		return
	}

	if !t.Run("screenshots", func(t *testing.T) {
		bind(t)
		for _, p := range []*tab{phone, laptop} {
			p.eval(`(() => { const m = document.getElementById('messages'); m.scrollTop = m.scrollHeight; return true; })()`, nil)
		}
		t.Logf("wrote %s", laptop.screenshot("chat-desktop.png"))
		t.Logf("wrote %s", phone.screenshot("chat-phone.png"))
		// The phone's room list is a drawer: open it for a third picture.
		phone.openDrawer()
		t.Logf("wrote %s", phone.screenshot("chat-phone-rooms.png"))
		phone.run(step, chromedp.Click("#rooms-close"), chromedp.WaitNotVisible("#scrim"))
	}) {
		return
	}

	if !t.Run("a page reloaded with an empty cache shows the backlog", func(t *testing.T) {
		bind(t)
		// The HTTP cache is emptied and the page reloaded: it keeps only
		// what localStorage holds (the name and the rooms, no message), so
		// every line it shows comes from the join's backlog.
		laptop.run(step, network.ClearBrowserCache(), chromedp.Reload())
		laptop.waitState("connected")
		laptop.selectRoom(room)
		laptop.expect(room, conv)
	}) {
		return
	}

	fresh := browsertest.Start(t) // a new profile: empty cache and storage
	dave := newTab(t, fresh, "dave", false)
	tabs = append(tabs, dave)

	if !t.Run("a fresh browser shows the backlog", func(t *testing.T) {
		bind(t)
		dave.run(step, chromedp.Navigate(base), chromedp.WaitVisible("#login-name"))
		t.Logf("wrote %s", dave.screenshot("login.png"))
		dave.open(base, "dave")
		dave.join(room)
		dave.expect(room, conv)
	}) {
		return
	}

	if !t.Run("room names are checked like the server does", func(t *testing.T) {
		bind(t)
		for _, bad := range []string{"dm:alice:bob", "two words", "-dash"} {
			var errText string
			dave.run(step,
				chromedp.SendKeys("#room-input", bad),
				chromedp.Click("#room-join"),
				chromedp.WaitVisible("#room-error"),
				chromedp.Text("#room-error", &errText),
			)
			var items int
			dave.eval(fmt.Sprintf(`document.querySelectorAll('#room-list li[data-room=%q]').length`, bad), &items)
			if items != 0 || errText == "" {
				t.Fatalf("room %q: %d list items, error %q", bad, items, errText)
			}
			dave.eval(`(() => { document.getElementById('room-input').value = ''; return true; })()`, nil)
		}
	}) {
		return
	}

	if !t.Run("parley.js is a module other pages can use", func(t *testing.T) {
		bind(t)
		var res struct {
			Node    string  `json:"node"`
			Joined  int64   `json:"joined"`
			Ack     int64   `json:"ack"`
			Got     []int64 `json:"got"`
			History []int64 `json:"history"`
			Names   bool    `json:"names"`
			State   string  `json:"state"`
		}
		dave.run(step, chromedp.Evaluate(`(async () => {
			const { ParleyClient, roomNameError } = await import('/parley.js');
			const c = new ParleyClient({ user: 'erin', device: 'script' });
			const got = [];
			c.addEventListener('message', (e) => got.push(e.detail.seq));
			c.connect();
			const j = await c.join('general');
			const ack = await c.send('general', 'sent by a script');
			const history = await c.history('general', { before: ack.seq, limit: 3 });
			for (let i = 0; i < 250 && !got.includes(ack.seq); i++) await new Promise((r) => setTimeout(r, 20));
			c.close();
			return { node: c.welcome.node, joined: j.seq, ack: ack.seq, got, history: history.map((m) => m.seq),
				names: roomNameError('dm:x') !== '' && roomNameError('two words') !== '' && roomNameError('ok.room-1') === '',
				state: c.state };
		})()`, &res, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		last := conv[len(conv)-1].Seq
		var want []int64
		for s := int64(1); s <= last+1; s++ {
			want = append(want, s)
		}
		if res.Joined != last || res.Ack != last+1 || !slices.Equal(res.Got, want) ||
			!slices.Equal(res.History, []int64{last - 2, last - 1, last}) || !res.Names || res.State != "offline" || res.Node == "" {
			t.Fatalf("script client: %+v; want joined at %d, ack %d, messages %v", res, last, last+1, want)
		}
		conv = append(conv, line{res.Ack, "erin", "sent by a script"})
		for _, p := range tabs {
			p.expect(room, conv)
		}
	}) {
		return
	}

	if !t.Run("message text is shown as text and runs nothing", func(t *testing.T) {
		bind(t)
		const evil = `<img src=x onerror=alert(1)>`
		seq := bob.say(room, evil)
		conv = append(conv, line{seq, "bob", evil})
		for _, p := range tabs {
			p.expect(room, conv) // compares each line's textContent
			var imgs int
			p.eval(`document.querySelectorAll('#logs img, #logs script').length`, &imgs)
			if imgs != 0 {
				t.Fatalf("%s: %d img/script elements in the message list", p.name, imgs)
			}
		}
		// Even a dialog that took a moment would have opened by the time
		// every page has rendered the line and answered a round trip.
		for _, p := range tabs {
			var ok bool
			p.eval(`true`, &ok)
			if n := p.dialogs.Load(); n != 0 {
				t.Fatalf("%s: %d dialog(s) opened", p.name, n)
			}
		}
	}) {
		return
	}

	if !t.Run("scroll back through history", func(t *testing.T) {
		bind(t)
		posters := map[string]*client.Client{}
		for _, u := range []string{"q1", "q2"} {
			posters[u] = sdk(t, ctx, c.live(t), u)
		}
		all := post(t, ctx, "archive", 35, posters) // seqs 1..70
		dave.join("archive")
		dave.expect("archive", all[len(all)-50:]) // the backlog: the last 50
		dave.run(step, chromedp.WaitVisible("#load-older"), chromedp.Click("#load-older"))
		dave.expect("archive", all)
		dave.run(step, chromedp.WaitVisible("#log-start"), chromedp.WaitNotVisible("#load-older"))
	}) {
		return
	}

	if !t.Run("sign out forgets the name", func(t *testing.T) {
		bind(t)
		var stored bool
		dave.run(step,
			chromedp.Click("#signout"),
			chromedp.WaitVisible("#login-name"),
			chromedp.Evaluate(`localStorage.getItem('parley.identity') !== null`, &stored),
		)
		if stored {
			t.Fatal("the name is still in localStorage after signing out")
		}
	}) {
		return
	}

	bind(t)
	for _, p := range tabs {
		p.checkClean()
	}
}

// compact drops repeats of the same event in a row.
func compact(events []string) []string {
	var out []string
	for _, e := range events {
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
	}
	return out
}
