package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/redis"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// sseEv is one event (or comment: typ ":", or retry: typ "retry") a
// stream carried.
type sseEv struct {
	id    string
	hasID bool
	typ   string
	data  string
}

// frame decodes the event's data as a v1 frame.
func (e sseEv) frame(t *testing.T) protocol.Frame {
	t.Helper()
	var f protocol.Frame
	if err := json.Unmarshal([]byte(e.data), &f); err != nil {
		t.Fatalf("event %+v: data is not a frame: %v", e, err)
	}
	return f
}

// sseReader reads a Server-Sent Events stream on its own goroutine into
// a channel; a reader whose channel is full stops reading the response.
type sseReader struct {
	t      *testing.T
	name   string
	resp   *http.Response
	cancel context.CancelFunc
	events chan sseEv
	done   chan struct{}
	lastID string // the last id seen, as a browser keeps it
	// keep presence events and comments; without it next skips them
	presence, comments bool
}

// sseOptions says how to open a stream.
type sseOptions struct {
	lastID string
	token  string // a bearer token
	buf    int    // the events channel's size (default 10000)
	client *http.Client
}

// openSSE opens path on n; a refusal returns the status and the body
// with a nil reader.
func openSSE(t *testing.T, n *node, path string, o sseOptions) (*sseReader, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", n.srv.URL+path, nil)
	if o.lastID != "" {
		req.Header.Set("Last-Event-ID", o.lastID)
	}
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	hc := o.client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET %s: headers %v", path, resp.Header)
	}
	if o.buf == 0 {
		o.buf = 10000
	}
	r := &sseReader{t: t, name: path, resp: resp, cancel: cancel, events: make(chan sseEv, o.buf), done: make(chan struct{})}
	go r.read()
	t.Cleanup(r.close)
	return r, 200, ""
}

// read parses the stream: fields until a blank line dispatch an event.
func (r *sseReader) read() {
	defer close(r.done)
	sc := bufio.NewScanner(r.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var ev sseEv
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 {
				ev.data = strings.Join(data, "\n")
				r.events <- ev
			}
			ev, data = sseEv{}, nil
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			r.events <- sseEv{typ: ":", data: value}
		case "retry":
			r.events <- sseEv{typ: "retry", data: value}
		case "id":
			ev.id, ev.hasID = value, true
		case "event":
			ev.typ = value
		case "data":
			data = append(data, value)
		}
	}
}

// close ends the stream from the client's side and waits for the reader.
func (r *sseReader) close() {
	r.cancel()
	for {
		select {
		case <-r.events:
		case <-r.done:
			r.resp.Body.Close()
			return
		}
	}
}

// next returns the next event within 10s.
func (r *sseReader) next() sseEv {
	r.t.Helper()
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case ev := <-r.events:
			if (ev.typ == "presence" && !r.presence) || (ev.typ == ":" && !r.comments) {
				continue
			}
			if ev.hasID {
				r.lastID = ev.id
			}
			return ev
		case <-r.done:
			select {
			case ev := <-r.events:
				if ev.hasID {
					r.lastID = ev.id
				}
				return ev
			default:
			}
			r.t.Fatalf("%s: the stream ended", r.name)
		case <-t.C:
			r.t.Fatalf("%s: no event within 10s", r.name)
		}
	}
}

// expect returns the next event, which must be of type typ.
func (r *sseReader) expect(typ string) sseEv {
	r.t.Helper()
	ev := r.next()
	if ev.typ != typ {
		r.t.Fatalf("%s: got %+v, want a %s event", r.name, ev, typ)
	}
	return ev
}

// message expects a message event with body and id.
func (r *sseReader) message(body, id string) {
	r.t.Helper()
	ev := r.expect("message")
	if f := ev.frame(r.t); f.Body != body || !ev.hasID || ev.id != id {
		r.t.Fatalf("%s: got %+v (%s), want message %s with id %q", r.name, ev, f.Body, body, id)
	}
}

// ended waits for the stream to end after a close event, and returns the
// close's code and reason.
func (r *sseReader) closed() (int, string) {
	r.t.Helper()
	ev := r.next()
	for ev.typ == "message" || ev.typ == "joined" {
		ev = r.next()
	}
	if ev.typ != "close" {
		r.t.Fatalf("%s: got %+v, want close", r.name, ev)
	}
	var c struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal([]byte(ev.data), &c)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.t.Fatalf("%s: the stream goes on after close", r.name)
	}
	return c.Code, c.Reason
}

// A stream resumed with Last-Event-ID on another gateway gives exactly
// the missing messages, then live ones; a drain closes it with 1012.
func TestSSEResumeOnAnotherGateway(t *testing.T) {
	c := newCluster(t, 2, nil)
	var a broker.Ack
	for i := 1; i <= 3; i++ {
		a = pub(t, c.gws[1], "r", fmt.Sprintf("m%d", i))
	}
	e := a.Epoch
	r, _, _ := openSSE(t, c.gws[0], "/v1/rooms/r/events?user=ann", sseOptions{})
	if r.resp.Header.Get("X-Parley-Node") != "gw-1" {
		t.Fatalf("node %q", r.resp.Header.Get("X-Parley-Node"))
	}
	if ev := r.next(); ev.typ != "retry" || ev.data != "1000" {
		t.Fatalf("first %+v, want retry: 1000", ev)
	}
	j := r.expect("joined")
	if f := j.frame(t); j.id != e+":0" || f.Seq != 3 || f.Epoch != e || f.Recovered != nil {
		t.Fatalf("joined %+v", j)
	}
	for i := 1; i <= 3; i++ {
		r.message(fmt.Sprintf("m%d", i), fmt.Sprintf("%s:%d", e, i))
	}
	pub(t, c.gws[1], "r", "m4")
	r.message("m4", e+":4")
	pub(t, c.gws[1], "r", "m5")
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- c.gws[0].g.Drain(ctx)
	}()
	// m5 may come before the close (queued before the drain) or not.
	var seen []string
	for {
		ev := r.next()
		if ev.typ == "message" {
			seen = append(seen, ev.frame(t).Body)
			continue
		}
		if ev.typ != "close" || !strings.Contains(ev.data, `"code":1012`) {
			t.Fatalf("got %+v, want close 1012", ev)
		}
		break
	}
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	// A stream opened on the drained node is not refused with an HTTP
	// error, which a browser's EventSource never retries: it closes at
	// once with 1012, and the browser reconnects.
	rd, status, body := openSSE(t, c.gws[0], "/v1/rooms/r/events?user=ann", sseOptions{lastID: r.lastID})
	if rd == nil {
		t.Fatalf("a stream on the drained node: %d %s, want 200 and a close", status, body)
	}
	rd.expect("retry")
	if ev := rd.expect("close"); !strings.Contains(ev.data, `"code":1012`) {
		t.Fatalf("a stream on the drained node: %+v, want close 1012", ev)
	}
	pub(t, c.gws[1], "r", "m6")
	r2, _, _ := openSSE(t, c.gws[1], "/v1/rooms/r/events?user=ann", sseOptions{lastID: r.lastID})
	r2.expect("retry")
	j = r2.expect("joined")
	if f := j.frame(t); j.id != r.lastID || f.Recovered == nil || !*f.Recovered {
		t.Fatalf("resumed joined %+v, last id %s", j, r.lastID)
	}
	for i := 5 + len(seen); i <= 6; i++ {
		r2.message(fmt.Sprintf("m%d", i), fmt.Sprintf("%s:%d", e, i))
	}
	pub(t, c.gws[0], "r", "m7") // through the drained node's broker: still one store
	r2.message("m7", e+":7")
	s := pub(t, c.gws[1], "r", "sentinel")
	r2.message("sentinel", fmt.Sprintf("%s:%d", e, s.Seq))
}

// A stream of several rooms carries every room's position in each id,
// and resumes each room from it.
func TestSSEMultiRoomIDs(t *testing.T) {
	key := gateway.APIKey{Name: "backend", Secret: "0123456789abcdef-secret"}
	c := newCluster(t, 2, func(cfg *gateway.Config) { cfg.APIKeys = []gateway.APIKey{key} })
	a1 := pub(t, c.gws[0], "a", "a1")
	b1 := pub(t, c.gws[0], "b", "b1")
	ea, eb := a1.Epoch, b1.Epoch
	r, _, _ := openSSE(t, c.gws[0], "/v1/events?room=b&room=a&room=b&user=ann", sseOptions{})
	r.expect("retry")
	for _, want := range []struct{ typ, id string }{
		{"joined", "a=" + ea + ":0,b="},
		{"message", "a=" + ea + ":1,b="},
		{"joined", "a=" + ea + ":1,b=" + eb + ":0"},
		{"message", "a=" + ea + ":1,b=" + eb + ":1"},
	} {
		if ev := r.next(); ev.typ != want.typ || ev.id != want.id {
			t.Fatalf("got %+v, want %s with id %s", ev, want.typ, want.id)
		}
	}
	pub(t, c.gws[1], "b", "b2")
	r.message("b2", "a="+ea+":1,b="+eb+":2")
	r.close()
	pub(t, c.gws[1], "a", "a2")
	r2, _, _ := openSSE(t, c.gws[1], "/v1/events?room=a&room=b&user=ann", sseOptions{lastID: "a=" + ea + ":1,b=" + eb + ":2"})
	r2.expect("retry")
	if ev := r2.expect("joined"); ev.id != "a="+ea+":1,b="+eb+":2" || !*ev.frame(t).Recovered {
		t.Fatalf("resumed a: %+v", ev)
	}
	r2.message("a2", "a="+ea+":2,b="+eb+":2")
	if ev := r2.expect("joined"); ev.frame(t).Room != "b" || !*ev.frame(t).Recovered {
		t.Fatalf("resumed b: %+v", ev)
	}
	s := pub(t, c.gws[0], "b", "sentinel")
	r2.message("sentinel", fmt.Sprintf("a=%s:2,b=%s:%d", ea, eb, s.Seq))

	// Refusals before the stream starts.
	many := "/v1/events?user=ann"
	for i := range 33 {
		many += fmt.Sprintf("&room=r%d", i)
	}
	for _, tc := range []struct {
		path, lastID, token string
		status              int
	}{
		{many, "", "", 400},
		{"/v1/events?user=ann", "", "", 400},
		{"/v1/events?room=a&user=ann", "a=nocolon", "", 400},
		{"/v1/rooms/a/events?user=ann", "a=e:1", "", 400},
		{"/v1/rooms/a/events", "", "", 401},
		{"/v1/rooms/a/events", "", key.Secret, 403},
		{"/v1/rooms/dm:bob:carol/events?user=ann", "", "", 403},
	} {
		if r, status, body := openSSE(t, c.gws[0], tc.path, sseOptions{lastID: tc.lastID, token: tc.token}); r != nil || status != tc.status || !strings.Contains(body, `"code"`) {
			t.Errorf("%s (id %q): %d %s, want %d", tc.path, tc.lastID, status, body, tc.status)
		}
	}
}

// smallRcvBuf is an HTTP client whose sockets have a small receive
// buffer: a reader that stops reading backs the gateway up sooner.
func smallRcvBuf() *http.Client {
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// A stream that does not keep up is closed with 1013 (as a WebSocket
// would be) and resumes exactly from its last id.
func TestSSESlowConsumerResumes(t *testing.T) {
	c := newCluster(t, 0, nil)
	n := c.addNode("gw-1", func(cfg *gateway.Config) {
		cfg.OutboundQueue, cfg.OutboundBytes = 16, 32<<10
		cfg.WriteTimeout = 60 * time.Second
		cfg.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return redis.New(redis.Config{URL: c.redis.URL(), Prefix: c.prefix, Handler: h, Retention: 100000, Logger: quietLogger()})
		}
	})
	r, _, _ := openSSE(t, n, "/v1/rooms/r/events?user=ann", sseOptions{buf: 1, client: smallRcvBuf()})
	r.expect("retry")
	r.expect("joined")
	body := strings.Repeat("x", 3000)
	sent := 0
	for sent < 20000 && scrapeValue(t, n, "parley_slow_consumer_closes_total") == 0 {
		for range 50 {
			pub(t, n, "r", body)
			sent++
		}
	}
	if scrapeValue(t, n, "parley_slow_consumer_closes_total") != 1 {
		t.Fatalf("no slow-consumer close after %d messages", sent)
	}
	got := int64(0)
	for {
		ev := r.next()
		if ev.typ == "message" {
			if f := ev.frame(t); f.Seq != got+1 {
				t.Fatalf("message seq %d after %d", f.Seq, got)
			}
			got++
			continue
		}
		if ev.typ != "close" || !strings.Contains(ev.data, `"code":1013`) {
			t.Fatalf("got %+v, want close 1013", ev)
		}
		break
	}
	t.Logf("published %d messages of 3 KB; the stream read %d before its close 1013", sent, got)
	r2, _, _ := openSSE(t, n, "/v1/rooms/r/events?user=ann", sseOptions{lastID: r.lastID})
	r2.expect("retry")
	if f := r2.expect("joined").frame(t); !*f.Recovered {
		t.Fatalf("resume after the slow close: %+v", f)
	}
	for got < int64(sent) {
		if f := r2.expect("message").frame(t); f.Seq != got+1 {
			t.Fatalf("resumed seq %d after %d", f.Seq, got)
		}
		got++
	}
	s := pub(t, n, "r", "sentinel")
	if f := r2.expect("message").frame(t); f.Body != "sentinel" || f.Seq != s.Seq {
		t.Fatalf("got %+v where the sentinel must come", f)
	}
}

// An idle stream gets a heartbeat comment every SSEHeartbeat.
func TestSSEHeartbeat(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.SSEHeartbeat = 100 * time.Millisecond })
	r, _, _ := openSSE(t, c.gws[0], "/v1/rooms/r/events?user=ann", sseOptions{})
	r.comments = true
	r.expect("retry")
	r.expect("joined")
	start := time.Now()
	for range 3 {
		if ev := r.expect(":"); ev.data != "ping" {
			t.Fatalf("comment %+v", ev)
		}
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Fatalf("3 heartbeats in %v", d)
	}
}

// A stream ends with close 1008 when its token expires (no refresh on
// SSE: the page opens a new stream with a fresh token); API keys may not
// open one.
func TestSSETokenExpiry(t *testing.T) {
	n := tokenCluster(t, nil)
	tok, exp := shortToken(t, "alice")
	r, _, _ := openSSE(t, n, "/v1/rooms/r/events", sseOptions{token: tok})
	r.expect("retry")
	r.expect("joined")
	code, reason := r.closed()
	if code != protocol.ClosePolicy || !strings.Contains(reason, "token expired") {
		t.Fatalf("closed %d %q", code, reason)
	}
	if late := time.Since(exp); late < 0 || late > 2*time.Second {
		t.Fatalf("closed %v after exp", late)
	}
	// The token from the query works too (EventSource sets no headers).
	r2, _, _ := openSSE(t, n, "/v1/rooms/r/events?token="+mint(t, auth.Claims{User: "alice", Expires: time.Now().Add(time.Hour)}), sseOptions{})
	r2.expect("retry")
	r2.expect("joined")
}

// Typing reaches a stream as an event without an id; the next message's
// id follows the last one.
func TestSSETyping(t *testing.T) {
	c := newCluster(t, 2, nil)
	a := pub(t, c.gws[0], "r", "m1")
	r, _, _ := openSSE(t, c.gws[0], "/v1/rooms/r/events?user=ann", sseOptions{})
	r.expect("retry")
	r.expect("joined")
	r.message("m1", a.Epoch+":1")
	bob := login(t, c.gws[1], "bob", "phone")
	bob.join("r", nil)
	bob.send(protocol.Frame{Type: "typing", Room: "r"})
	ev := r.expect("typing")
	if f := ev.frame(t); ev.hasID || f.User != "bob" || f.Room != "r" {
		t.Fatalf("typing %+v", ev)
	}
	bob.post("r", "b1", "hi")
	r.message("hi", a.Epoch+":2")
}
