package browser

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/parley-chat/parley/internal/browsertest"
	"github.com/parley-chat/parley/internal/fakegw"
	"github.com/parley-chat/parley/pkg/protocol"
	"github.com/parley-chat/parley/web"
)

// evalAsync evaluates a JavaScript expression, awaiting the promise it
// returns, into out.
func evalAsync(t *testing.T, p *browsertest.Page, expr string, out any) {
	t.Helper()
	p.Run(t, 20*time.Second, chromedp.Evaluate(expr, out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	}))
}

// retryEvent is the detail of parley.js's retry event.
type retryEvent struct {
	Type    string `json:"type"`
	Room    string `json:"room"`
	ID      string `json:"id"`
	Code    string `json:"code"`
	After   int    `json:"after"`
	Attempt int    `json:"attempt"`
}

// TestParleyJSRefusals drives parley.js in Chromium against a fake gateway
// that refuses requests the way the gateway's rate limiter and an
// unreachable Redis do, and checks what a page using the module sees:
// join on a room already joined resolves at once; a send answered
// rate_limited is written again after retry_after_ms with the same id, and
// the send made after it is not written before it is acknowledged, so they
// are stored in the order they were made; a join or history request
// answered rate_limited is resent, not dropped; sends answered unavailable
// are resent with backoff, in order, once the store is back.
func TestParleyJSRefusals(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/blank.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!DOCTYPE html><title>parley.js</title>")
	})
	gw := fakegw.Start(t, fakegw.Options{Node: "fake", Files: mux})
	r := gw.Refusals()

	p := browsertest.Start(t).NewPage(t)
	// In front: background tabs get their timers throttled to 1 s.
	p.Run(t, step, page.BringToFront(), chromedp.Navigate(gw.HTTPURL()+"/blank.html"))
	var joined string
	evalAsync(t, p, fmt.Sprintf(`(async () => {
		const { ParleyClient } = await import('/parley.js');
		const c = new ParleyClient({ url: %q, user: 'alice', device: 'test', ackTimeout: 10000 });
		window.c = c;
		window.retries = [];
		window.failed = [];
		c.addEventListener('retry', (e) => retries.push(e.detail));
		c.addEventListener('senderror', (e) => failed.push(e.detail.id));
		c.connect();
		const j = await c.join('general');
		return j.room;
	})()`, gw.URL()), &joined)
	if joined != "general" {
		t.Fatalf("joined %q", joined)
	}
	retries := func(t *testing.T) []retryEvent {
		t.Helper()
		var got []retryEvent
		evalAsync(t, p, `retries.splice(0)`, &got)
		return got
	}

	if !t.Run("join on a room already joined resolves at once", func(t *testing.T) {
		var got string
		evalAsync(t, p, `Promise.race([
			c.join('general').then((j) => j.room + ' ' + j.type),
			new Promise((resolve) => setTimeout(() => resolve('still pending after 2s'), 2000)),
		])`, &got)
		if got != "general joined" {
			t.Fatalf("second join: %s", got)
		}
	}) {
		return
	}

	if !t.Run("a rate-limited send is resent after retry_after_ms and not overtaken", func(t *testing.T) {
		const after = 300 * time.Millisecond
		r.RateLimitNext(protocol.TypeSend, after)
		var acks [][]any
		evalAsync(t, p, `Promise.all([c.send('general', 'one'), c.send('general', 'two')])
			.then((acks) => acks.map((a) => [a.seq, a.epoch]))`, &acks)
		if fmt.Sprint(acks) != "[[1 e1] [2 e1]]" {
			t.Fatalf("acks (seq, epoch) %v, want one at 1 and two at 2, in epoch e1", acks)
		}
		sends := gw.Sends()
		if len(sends) != 3 || sends[0].Frame.Body != "one" || sends[1].Frame.ID != sends[0].Frame.ID || sends[2].Frame.Body != "two" {
			t.Fatalf("sends received %+v, want one (refused), one again with its id, then two", sends)
		}
		if gap := sends[1].At.Sub(sends[0].At); gap < after {
			t.Errorf("resent %v after the refusal, want at least retry_after_ms (%v)", gap, after)
		}
		want := []retryEvent{{Type: "send", Room: "general", ID: sends[0].Frame.ID, Code: "rate_limited", After: 300, Attempt: 1}}
		if got := retries(t); !slices.Equal(got, want) {
			t.Fatalf("retry events %+v, want %+v", got, want)
		}
	}) {
		return
	}

	if !t.Run("a rate-limited join is joined again, not dropped", func(t *testing.T) {
		r.RateLimitNext(protocol.TypeJoin, 200*time.Millisecond)
		var got struct {
			Room  string   `json:"room"`
			Rooms []string `json:"rooms"`
		}
		evalAsync(t, p, `c.join('busy').then((j) => ({ room: j.room, rooms: c.rooms() }))`, &got)
		if got.Room != "busy" || !slices.Equal(got.Rooms, []string{"general", "busy"}) {
			t.Fatalf("join busy: %+v", got)
		}
		want := []retryEvent{{Type: "join", Room: "busy", Code: "rate_limited", After: 200, Attempt: 1}}
		if got := retries(t); !slices.Equal(got, want) {
			t.Fatalf("retry events %+v, want %+v", got, want)
		}
	}) {
		return
	}

	if !t.Run("a rate-limited history request is resent", func(t *testing.T) {
		r.RateLimitNext(protocol.TypeHistory, 200*time.Millisecond)
		var seqs []int64
		evalAsync(t, p, `c.history('general', { limit: 5 }).then((ms) => ms.map((m) => m.seq))`, &seqs)
		if !slices.Equal(seqs, []int64{1, 2}) {
			t.Fatalf("history seqs %v, want [1 2]", seqs)
		}
		if got := retries(t); len(got) != 1 || got[0].Type != "history" || got[0].Code != "rate_limited" {
			t.Fatalf("retry events %+v, want one for the history request", got)
		}
	}) {
		return
	}

	if !t.Run("sends answered unavailable are resent in order once the store is back", func(t *testing.T) {
		r.StoreDown(true)
		evalAsync(t, p, `(() => {
			window.later = Promise.all([c.send('general', 'three'), c.send('general', 'four')])
				.then((acks) => acks.map((a) => a.seq));
			return true;
		})()`, nil)
		// A third copy means the first two were refused (the fake records
		// a frame before it answers it).
		gw.Await(t, "three refused twice", 10*time.Second, func(rs []fakegw.Received) bool {
			n := 0
			for _, r := range rs {
				if r.Frame.Type == protocol.TypeSend && r.Frame.Body == "three" {
					n++
				}
			}
			return n >= 3
		})
		r.StoreDown(false)
		var seqs []int64
		evalAsync(t, p, `later`, &seqs)
		if !slices.Equal(seqs, []int64{3, 4}) {
			t.Fatalf("acks %v, want three at 3 and four at 4", seqs)
		}
		var bodies []string
		for _, s := range gw.Sends()[3:] {
			bodies = append(bodies, s.Frame.Body)
		}
		if n := len(bodies); n < 4 || bodies[n-1] != "four" || strings.Count(strings.Join(bodies, " "), "four") != 1 {
			t.Fatalf("sends received %q, want three until stored, then four once", bodies)
		}
		got := retries(t)
		if len(got) < 2 || got[0].Code != "unavailable" || got[0].Attempt != 1 || got[1].Attempt != 2 || got[0].After < 500 || got[0].After > 1000 {
			t.Fatalf("retry events %+v, want unavailable refusals of three, with backoff", got)
		}
	}) {
		return
	}

	// Sentinel: everything above reached the fake, and nothing failed.
	var failed []string
	evalAsync(t, p, `failed`, &failed)
	if len(failed) != 0 {
		t.Errorf("senderror for %v", failed)
	}
	var stored []string
	for _, m := range gw.Messages("general") {
		stored = append(stored, m.Body)
	}
	if !slices.Equal(stored, []string{"one", "two", "three", "four"}) {
		t.Errorf("general holds %q, want one, two, three, four", stored)
	}
	joins := 0
	for _, rv := range gw.Received() {
		if rv.Frame.Type == protocol.TypeJoin && rv.Frame.Room == "general" {
			joins++
		}
	}
	if joins != 1 {
		t.Errorf("%d joins of general written, want 1 (joining a joined room sends nothing)", joins)
	}
	for _, pr := range p.Problems() {
		t.Errorf("page: %s", pr)
	}
}

// TestParleyJSPlace checks parley.js's place(pos, epoch, seq), the one
// position rule its client decides by (duplicates dropped, a new epoch
// taken, since), on the cases of protocol.Position.Place in Go.
func TestParleyJSPlace(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/blank.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!DOCTYPE html><title>place</title>")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	type pos struct {
		Epoch string `json:"epoch"`
		Seq   int64  `json:"seq"`
	}
	cases := []struct {
		Pos   *pos   `json:"pos"` // nil: no position (null)
		Epoch string `json:"epoch"`
		Seq   int64  `json:"seq"`
		Want  string `json:"want"`
	}{
		// The zero position (a room seen empty) and none take any epoch.
		{&pos{"", 0}, "e1", 1, "next"},
		{&pos{"", 0}, "e1", 3, "gap"},
		{&pos{"", 0}, "e1", 0, "duplicate"},
		{&pos{"", 0}, "", 1, "next"},
		{nil, "e1", 1, "next"},
		{nil, "e1", 51, "gap"},
		// Same epoch: by seq.
		{&pos{"e1", 5}, "e1", 6, "next"},
		{&pos{"e1", 5}, "e1", 5, "duplicate"},
		{&pos{"e1", 5}, "e1", 2, "duplicate"},
		{&pos{"e1", 5}, "e1", 9, "gap"},
		{&pos{"e1", 0}, "e1", 1, "next"},
		// Another epoch: seqs cannot be compared, whatever they are.
		{&pos{"e1", 5}, "e2", 1, "new-epoch"},
		{&pos{"e1", 5}, "e2", 6, "new-epoch"},
		{&pos{"e1", 5}, "e2", 3, "new-epoch"},
		{&pos{"e1", 0}, "e2", 1, "new-epoch"},
		// Only seq 0 makes the empty epoch the zero position.
		{&pos{"", 5}, "e1", 6, "new-epoch"},
		{&pos{"", 5}, "", 6, "next"},
	}
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}

	p := browsertest.Start(t).NewPage(t)
	p.Run(t, step, chromedp.Navigate(srv.URL+"/blank.html"))
	var got []string
	evalAsync(t, p, fmt.Sprintf(`(async () => {
		const { place } = await import('/parley.js');
		return %s.map((c) => place(c.pos, c.epoch, c.seq));
	})()`, in), &got)
	if len(got) != len(cases) {
		t.Fatalf("%d answers for %d cases: %q", len(got), len(cases), got)
	}
	for i, c := range cases {
		if got[i] != c.Want {
			where := "null"
			if c.Pos != nil {
				where = fmt.Sprintf("{%q, %d}", c.Pos.Epoch, c.Pos.Seq)
			}
			t.Errorf("place(%s, %q, %d) = %q, want %q", where, c.Epoch, c.Seq, got[i], c.Want)
		}
	}
	for _, pr := range p.Problems() {
		t.Errorf("page: %s", pr)
	}
}

// TestParleyJSRoomNames checks roomNameError and directRoom on direct
// rooms: dm:<a>:<b> is accepted when its two user names are distinct,
// have no ':' and are in sorted order, as the gateway requires.
func TestParleyJSRoomNames(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	p := browsertest.Start(t).NewPage(t)
	p.Run(t, step, chromedp.Navigate(srv.URL+"/parley.js"))
	var got struct {
		OK     []string `json:"ok"`
		Bad    []string `json:"bad"`
		Direct []string `json:"direct"`
	}
	evalAsync(t, p, `(async () => {
		const { roomNameError, directRoom } = await import('/parley.js');
		const names = ['general', 'ok.room-1', 'a:b', 'dm:alice:bob', 'dm:a.b:c-d',
			'dm:bob:alice', 'dm:alice:alice', 'dm:x', 'dm:a:b:c', 'dm:', 'dm::b', 'dm:a:', 'two words', '-dash'];
		return {
			ok: names.filter((n) => roomNameError(n) === ''),
			bad: names.filter((n) => roomNameError(n) !== ''),
			direct: [directRoom('bob', 'alice'), directRoom('alice', 'bob'), directRoom('alice', 'alice'), directRoom('a:b', 'c'), directRoom('', 'c')],
		};
	})()`, &got)
	if want := []string{"general", "ok.room-1", "a:b", "dm:alice:bob", "dm:a.b:c-d"}; !slices.Equal(got.OK, want) {
		t.Errorf("accepted %q, want %q", got.OK, want)
	}
	if want := []string{"dm:bob:alice", "dm:alice:alice", "dm:x", "dm:a:b:c", "dm:", "dm::b", "dm:a:", "two words", "-dash"}; !slices.Equal(got.Bad, want) {
		t.Errorf("refused %q, want %q", got.Bad, want)
	}
	if want := []string{"dm:alice:bob", "dm:alice:bob", "", "", ""}; !slices.Equal(got.Direct, want) {
		t.Errorf("directRoom: %q, want %q", got.Direct, want)
	}
}

// TestParleyJSPresence: presence(room) resolves with the answer frame (a
// rate_limited answer is waited out and the request written again; a room
// over the detail size has count only), and presence frames without ref
// are presence events, devices 0 when the frame leaves it out (offline).
func TestParleyJSPresence(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/blank.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!DOCTYPE html><title>parley.js</title>")
	})
	gw := fakegw.Start(t, fakegw.Options{Node: "fake", Files: mux})
	asked := 0
	gw.Intercept(func(c *fakegw.Conn, f *protocol.Frame) bool {
		if f.Type != protocol.TypePresence {
			return false
		}
		asked++ // on the connection's reader goroutine: one connection here
		switch {
		case asked == 1:
			c.Write(fakegw.RateLimited(f, 50*time.Millisecond))
		case f.Room == "big":
			c.Write(&protocol.Frame{Type: protocol.TypePresence, Ref: f.Ref, Room: f.Room, Count: 250})
		default:
			users := []protocol.PresentUser{{User: "alice", Devices: 1}, {User: "bob", Devices: 2}}
			c.Write(&protocol.Frame{Type: protocol.TypePresence, Ref: f.Ref, Room: f.Room, Count: 3, Users: &users})
			c.Write(&protocol.Frame{Type: protocol.TypePresence, Room: f.Room, User: "bob", State: "offline"})
			c.Write(&protocol.Frame{Type: protocol.TypePresence, Room: f.Room, User: "carol", Devices: 1, State: "online"})
		}
		return true
	})

	p := browsertest.Start(t).NewPage(t)
	p.Run(t, step, page.BringToFront(), chromedp.Navigate(gw.HTTPURL()+"/blank.html"))
	var got string
	evalAsync(t, p, fmt.Sprintf(`(async () => {
		const { ParleyClient } = await import('/parley.js');
		const c = new ParleyClient({ url: %q, user: 'alice' });
		const events = [];
		const retries = [];
		c.addEventListener('retry', (e) => retries.push(e.detail.type + ' ' + e.detail.code));
		const two = new Promise((resolve) => c.addEventListener('presence', (e) => {
			events.push(e.detail);
			if (events.length === 2) resolve();
		}));
		c.connect();
		await c.join('general');
		const a = await c.presence('general');
		await two;
		const big = await c.presence('big');
		return JSON.stringify({ a: { room: a.room, count: a.count, users: a.users }, events, retries,
			big: { room: big.room, count: big.count, users: big.users === undefined ? 'absent' : big.users } });
	})()`, gw.URL()), &got)
	want := `{"a":{"room":"general","count":3,"users":[{"user":"alice","devices":1},{"user":"bob","devices":2}]},` +
		`"events":[{"room":"general","user":"bob","devices":0,"state":"offline"},{"room":"general","user":"carol","devices":1,"state":"online"}],` +
		`"retries":["presence rate_limited"],"big":{"room":"big","count":250,"users":"absent"}}`
	if got != want {
		t.Fatalf("presence:\n got %s\nwant %s", got, want)
	}
	if pr := p.Problems(); len(pr) > 0 {
		t.Fatalf("JavaScript problems: %v", pr)
	}
}
