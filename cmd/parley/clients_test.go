package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/fakegw"
	"github.com/parley-chat/parley/internal/memgw"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// memGateway runs an in-process gateway on a memory broker and returns its
// WebSocket URL and the httptest server.
func memGateway(t *testing.T, tweak func(*gateway.Config)) (string, *httptest.Server) {
	t.Helper()
	return memgw.Start(t, "gw-test", tweak)
}

// cutter is a TCP proxy in front of a gateway whose cut drops every
// connection through it, the way a network failure or a dead gateway does
// (httptest cannot close hijacked WebSocket connections).
type cutter struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// proxy starts a cutter in front of the gateway at url and returns the
// URL through it.
func proxy(t *testing.T, url string) (string, *cutter) {
	t.Helper()
	backend := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/ws")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", backend)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			c.wg.Add(2)
			go func() { defer c.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer c.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		c.cut()
		c.wg.Wait()
	})
	return "ws://" + ln.Addr().String() + "/ws", c
}

func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cn := range c.conns {
		cn.Close()
	}
	c.conns = nil
}

// sdk dials an SDK client as user, closed when the test ends.
func sdk(t *testing.T, url, user string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: url, User: user})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestFormatMessage(t *testing.T) {
	m := &protocol.Message{From: "bob", TS: "2026-11-22T10:04:05.123Z", Body: "hi there"}
	if got, want := formatMessage(m, "alice", time.UTC), "10:04:05 <bob> hi there"; got != want {
		t.Errorf("other's message: %q, want %q", got, want)
	}
	if got, want := formatMessage(m, "bob", time.UTC), "10:04:05 <bob (you)> hi there"; got != want {
		t.Errorf("own message: %q, want %q", got, want)
	}
	tokyo := time.FixedZone("JST", 9*3600)
	if got, want := formatMessage(m, "alice", tokyo), "19:04:05 <bob> hi there"; got != want {
		t.Errorf("local time: %q, want %q", got, want)
	}
	m.Body = "line one\nline two\x1b[2J\rover"
	if got, want := formatMessage(m, "alice", time.UTC), "10:04:05 <bob> line one\n         line two\\x1b[2J\\rover"; got != want {
		t.Errorf("multi-line with escapes: %q, want %q", got, want)
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, ünïcode 你好": "plain text, ünïcode 你好",
		"tab\there":              "tab\there",
		"bell\a":                 `bell\a`,
		"\x1b]0;pwned\x07":       `\x1b]0;pwned\a`,
		"evil\u202egnp.exe":      `evil\u202egnp.exe`,
	} {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseArgsInAnyOrderWithEnv(t *testing.T) {
	t.Setenv("PARLEY_USER", "envuser")
	t.Setenv("PARLEY_URL", "ws://env:1/ws")
	var o clientOptions
	fs := newClientFlags("tail", &o)
	since := fs.Int64("since", 0, "")
	pos, err := parseArgs(fs, []string{"--url", "ws://cli:2/ws", "general", "--since", "7", "--", "--not-a-flag"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pos, " ") != "general --not-a-flag" || *since != 7 {
		t.Errorf("positional %q since %d, want [general --not-a-flag] and 7", pos, *since)
	}
	if o.url != "ws://cli:2/ws" || o.user != "envuser" || o.device != "terminal" {
		t.Errorf("options %+v: want the command line's url, PARLEY_USER's user, device terminal", o)
	}
}

func TestClientUsageErrorsAreOneLine(t *testing.T) {
	t.Setenv("PARLEY_USER", "")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		run  func(args []string, stderr io.Writer) int
		args []string
		want string
	}{
		{"chat", chatRunner(ctx), []string{"--user", "a"}, "want exactly one ROOM"},
		{"chat", chatRunner(ctx), []string{"general"}, "set --user"},
		{"chat", chatRunner(ctx), []string{"--user", "a", "--url", "localhost:8080", "general"}, `--url "localhost:8080"`},
		{"chat", chatRunner(ctx), []string{"--user", "a", "--url", "ftp://x/ws", "general"}, "not ws or wss"},
		{"chat", chatRunner(ctx), []string{"--user", "a", "bad room!"}, "invalid room name"},
		{"chat", chatRunner(ctx), []string{"--user", "a", "--nope", "general"}, "flag provided but not defined: -nope"},
		{"send", sendRunner(ctx, ""), []string{"--user", "a"}, "want ROOM"},
		{"send", sendRunner(ctx, ""), []string{"--user", "a", "--id", "has space", "general", "x"}, "--id"},
		{"send", sendRunner(ctx, "one\ntwo\n"), []string{"--user", "a", "--id", "k1", "general"}, "--id is for one message; stdin holds 2"},
		{"tail", tailRunner(ctx), []string{"--user", "a", "general", "--since", "-3"}, "invalid value"},
		{"tail", tailRunner(ctx), []string{"--user", "a", "general", "--epoch", "e1"}, "--epoch needs --since"},
		{"tail", tailRunner(ctx), []string{"--user", "a", "one", "two"}, "want exactly one ROOM"},
	} {
		var stderr bytes.Buffer
		code := tc.run(tc.args, &stderr)
		out := stderr.String()
		if code != 2 || strings.Count(out, "\n") != 1 || !strings.Contains(out, tc.want) || !strings.HasPrefix(out, "parley "+tc.name+": ") {
			t.Errorf("parley %s %q: exit %d, stderr %q; want exit 2 and one line with %q", tc.name, tc.args, code, out, tc.want)
		}
	}
}

func chatRunner(ctx context.Context) func([]string, io.Writer) int {
	return func(args []string, stderr io.Writer) int {
		return runCmd(ctx, "chat", args, strings.NewReader(""), io.Discard, stderr)
	}
}

func sendRunner(ctx context.Context, stdin string) func([]string, io.Writer) int {
	return func(args []string, stderr io.Writer) int {
		return runCmd(ctx, "send", args, strings.NewReader(stdin), io.Discard, stderr)
	}
}

func tailRunner(ctx context.Context) func([]string, io.Writer) int {
	return func(args []string, stderr io.Writer) int { return runCmd(ctx, "tail", args, nil, io.Discard, stderr) }
}

func TestClientHelpListsFlags(t *testing.T) {
	ctx := context.Background()
	for name, run := range map[string]func([]string, io.Writer) int{
		"chat": chatRunner(ctx), "send": sendRunner(ctx, ""), "tail": tailRunner(ctx),
	} {
		var stderr bytes.Buffer
		if code := run([]string{"--help"}, &stderr); code != 0 {
			t.Errorf("%s --help: exit %d", name, code)
		}
		help := stderr.String()
		for _, want := range []string{"Usage: parley " + name, "-url", "-user", "-token", "-device", "PARLEY_URL"} {
			if !strings.Contains(help, want) {
				t.Errorf("%s --help lacks %q:\n%s", name, want, help)
			}
		}
	}
}

func TestDialFailuresAreOneLine(t *testing.T) {
	ctx := context.Background()
	jwtOnly, _ := memGateway(t, func(c *gateway.Config) { c.DevAuth, c.JWTSecret = false, []byte("s3cret") })
	for _, tc := range []struct {
		name, url, want string
	}{
		{"nothing listens", "ws://127.0.0.1:1/ws", "connection refused"},
		{"auth refused", jwtOnly, "unauthorized"},
	} {
		for name, run := range map[string]func([]string, io.Writer) int{
			"chat": chatRunner(ctx), "send": sendRunner(ctx, ""), "tail": tailRunner(ctx),
		} {
			var stderr bytes.Buffer
			args := []string{"--url", tc.url, "--user", "alice", "general"}
			if name == "send" {
				// send retries the connection for up to --timeout.
				args = append(args, "--timeout", "300ms", "hello")
			}
			code := run(args, &stderr)
			out := stderr.String()
			if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "cannot connect to "+tc.url) || !strings.Contains(out, tc.want) {
				t.Errorf("%s, %s: exit %d, stderr %q; want exit 1 and one line naming the URL and %q", tc.name, name, code, out, tc.want)
			}
		}
	}
}

func TestChatSession(t *testing.T) {
	url, _ := memGateway(t, nil)
	bob := sdk(t, url, "bob")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// History before alice arrives: the backlog shows it.
	for _, body := range []string{"old one", "old two"} {
		if _, err := bob.Send(ctx, "general", body); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}

	stdin, typing := io.Pipe()
	var out, errb proctest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- runCmd(ctx, "chat", []string{"--url", url, "--user", "alice", "general"}, stdin, &out, &errb)
	}()
	out.WaitFor(t, "-- connected to gw-test as alice", 10*time.Second)
	out.WaitFor(t, "<bob> old two", 10*time.Second)

	type_ := func(line string) {
		t.Helper()
		if _, err := io.WriteString(typing, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	type_("hello bob")
	out.WaitFor(t, "<alice (you)> hello bob", 10*time.Second)
	waitBody(t, ctx, bob, "hello bob")

	ack, err := bob.Send(ctx, "general", "hi alice")
	if err != nil {
		t.Fatal(err)
	}
	ts, _ := protocol.ParseTime(ack.TS)
	out.WaitFor(t, ts.Local().Format("15:04:05")+" <bob> hi alice", 10*time.Second)

	type_("/history 1") // the oldest shown is seq 1
	out.WaitFor(t, "-- no older messages in general", 10*time.Second)
	type_("//slash")
	waitBody(t, ctx, bob, "/slash")
	type_("/frob")
	out.WaitFor(t, "-- unknown command /frob", 10*time.Second)

	type_("/join other")
	out.WaitFor(t, "-- joined other (no messages yet)", 10*time.Second)
	type_("in other")
	out.WaitFor(t, "<alice (you)> in other", 10*time.Second)
	if _, err := bob.Send(ctx, "general", "not shown"); err != nil {
		t.Fatal(err)
	}

	typing.Close() // Ctrl-D
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit %d at end of input; stderr %q", code, errb.String())
		}
	case <-ctx.Done():
		t.Fatal("chat did not exit at end of input")
	}
	if strings.Contains(out.String(), "not shown") {
		t.Errorf("a message of the room left was shown:\n%s", out.String())
	}
	if !strings.HasSuffix(out.String(), "-- bye\n") {
		t.Errorf("output does not end with -- bye:\n%s", out.String())
	}
}

// waitBody waits until c receives a message with body.
func waitBody(t *testing.T, ctx context.Context, c *client.Client, body string) {
	t.Helper()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("client closed before a message %q", body)
			}
			if ev.Message != nil && ev.Message.Body == body {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no message %q: %v", body, ctx.Err())
		}
	}
}

func TestChatShowsResumeAndErrors(t *testing.T) {
	direct, _ := memGateway(t, func(c *gateway.Config) { c.MaxBodyBytes = 16 })
	url, link := proxy(t, direct)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stdin, typing := io.Pipe()
	defer typing.Close()
	var out, errb proctest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- runCmd(ctx, "chat", []string{"--url", url, "--user", "alice", "general"}, stdin, &out, &errb)
	}()
	out.WaitFor(t, "-- joined general (no messages yet)", 10*time.Second)
	if _, err := io.WriteString(typing, "this body is longer than sixteen bytes\nshort\n"); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, "-- error too_large: ", 10*time.Second)
	out.WaitFor(t, "<alice (you)> short", 10*time.Second)

	link.cut()
	out.WaitFor(t, "-- reconnecting: ", 10*time.Second)
	out.WaitFor(t, "-- resumed, no missed messages", 10*time.Second)
	out.WaitFor(t, "-- connected to gw-test", 10*time.Second)

	cancel() // like Ctrl-C
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d after interrupt", code)
	}
}

func TestSendAndTail(t *testing.T) {
	url, _ := memGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var sendOut, sendErr bytes.Buffer
	code := runCmd(ctx, "send", []string{"--url", url, "--user", "carol", "general"}, strings.NewReader("first\n\nsecond\n"), &sendOut, &sendErr)
	if code != 0 || sendOut.String() != "seq 1\nseq 2\n" {
		t.Fatalf("send from stdin: exit %d, stdout %q, stderr %q", code, sendOut.String(), sendErr.String())
	}
	for range 2 { // the same id twice: stored once
		sendOut.Reset()
		code = runCmd(ctx, "send", []string{"--url", url, "--user", "carol", "--id", "k-1", "general", "third", "one"}, strings.NewReader(""), &sendOut, &sendErr)
		if code != 0 || sendOut.String() != "seq 3\n" {
			t.Fatalf("send --id: exit %d, stdout %q, stderr %q", code, sendOut.String(), sendErr.String())
		}
	}

	tailURL, link := proxy(t, url)
	tctx, stop := context.WithCancel(ctx)
	var tailOut, tailErr proctest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- runCmd(tctx, "tail", []string{"--url", tailURL, "--user", "tailer", "general", "--since", "1"}, nil, &tailOut, &tailErr)
	}()
	tailErr.WaitFor(t, "following general", 10*time.Second)
	tailOut.WaitFor(t, `"seq":3`, 10*time.Second)
	link.cut()
	tailErr.WaitFor(t, "reconnecting", 10*time.Second)
	sendOut.Reset()
	if code = runCmd(ctx, "send", []string{"--url", url, "--user", "carol", "general", "fourth"}, nil, &sendOut, &sendErr); code != 0 {
		t.Fatalf("send: exit %d, stderr %q", code, sendErr.String())
	}
	tailOut.WaitFor(t, `"seq":4`, 10*time.Second)
	stop()
	if code := <-exited; code != 0 {
		t.Fatalf("tail: exit %d after interrupt; stderr %q", code, tailErr.String())
	}

	var got []protocol.Message
	for l := range strings.Lines(tailOut.String()) {
		var m protocol.Message
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		got = append(got, m)
	}
	want := []string{"second", "third one", "fourth"}
	if len(got) != len(want) {
		t.Fatalf("tail printed %d messages, want %d:\n%s", len(got), len(want), tailOut.String())
	}
	for i, m := range got {
		if m.Seq != int64(i+2) || m.Body != want[i] || m.Room != "general" || m.From != "carol" || m.Device != "terminal" || m.Epoch == "" || m.ID == "" || m.TS == "" {
			t.Errorf("tail line %d: %+v, want seq %d body %q from carol", i, m, i+2, want[i])
		}
	}
	if got[1].ID != "k-1" {
		t.Errorf("the --id message has id %q, want k-1", got[1].ID)
	}
}

func TestChatViewResumeLines(t *testing.T) {
	var out bytes.Buffer
	v := newChatView(&out, "alice")
	v.loc = time.UTC
	v.setRoom("general")
	msg := func(seq int64, epoch string) client.Event {
		return client.Event{Message: &protocol.Message{Room: "general", Seq: seq, Epoch: epoch, From: "bob", TS: "2026-11-22T10:00:00.000Z", Body: fmt.Sprint("m", seq)}}
	}
	joined := func(seq, first int64, epoch string, recovered *bool) client.Event {
		return client.Event{Joined: &protocol.Frame{Type: "joined", Room: "general", Seq: seq, First: first, Epoch: epoch, Recovered: recovered}}
	}
	for _, ev := range []client.Event{
		joined(3, 1, "e1", nil), msg(2, "e1"), msg(3, "e1"),
		{State: client.StateReconnecting, Err: errors.New("read: EOF")},
		joined(5, 1, "e1", protocol.Bool(true)), msg(4, "e1"), msg(5, "e1"),
		joined(9, 8, "e1", protocol.Bool(false)), msg(8, "e1"), msg(9, "e1"),
		joined(1, 1, "e2", protocol.Bool(false)), msg(1, "e2"),
		{Error: &protocol.Frame{Type: "error", Code: "rate_limited", Message: "more than 20 frames per second; frame dropped"}},
		{Message: &protocol.Message{Room: "elsewhere", Seq: 1, Epoch: "e3", From: "bob", Body: "not here"}},
	} {
		v.event(ev, nil)
	}
	want := `-- joined general
10:00:00 <bob> m2
10:00:00 <bob> m3
-- reconnecting: read: EOF
-- resumed, 2 missed messages
10:00:00 <bob> m4
10:00:00 <bob> m5
-- resumed, some messages were lost (history trimmed)
10:00:00 <bob> m8
10:00:00 <bob> m9
-- resumed, some messages were lost (the room's history was reset)
10:00:00 <bob> m1
-- error rate_limited: more than 20 frames per second; frame dropped
`
	if out.String() != want {
		t.Errorf("chat view printed:\n%s\nwant:\n%s", out.String(), want)
	}
	if got := v.oldest("general"); got != 1 {
		t.Errorf("oldest shown after the epoch change: %d, want 1", got)
	}
}

// TestSendReportsRefusalAtOnce: a message the server refuses (too_large,
// forbidden) ends parley send at once with exit 1 and the server's code and
// words, naming the message; it is not reported as a missing ack after
// --timeout. Messages before it were sent.
func TestSendReportsRefusalAtOnce(t *testing.T) {
	url, _ := memGateway(t, func(c *gateway.Config) { c.MaxBodyBytes = 16 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, stdin, room, stdout, stderr string
	}{
		{"too large", "short\nthis body is longer than sixteen bytes\nnever sent\n", "general", "seq 1\n",
			`parley send: message 2 "this body is longer than sixteen bytes" refused by the server: too_large: body is 38 bytes; the limit is 16`},
		{"forbidden", "hi\n", "dm:bob:carol", "",
			`parley send: message 1 "hi" refused by the server: forbidden: dm:bob:carol is the direct room of bob and carol`},
	} {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := runCmd(ctx, "send", []string{"--url", url, "--user", "alice", tc.room}, strings.NewReader(tc.stdin), &stdout, &stderr)
		took := time.Since(start)
		if code != 1 || stdout.String() != tc.stdout || stderr.String() != tc.stderr+"\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1, stdout %q, stderr %q", tc.name, code, stdout.String(), stderr.String(), tc.stdout, tc.stderr)
		}
		if took > 5*time.Second {
			t.Errorf("%s: took %v, want an answer at once, not after --timeout (30s)", tc.name, took)
		}
	}
	if n := len(memHistory(t, ctx, url, "general")); n != 1 {
		t.Errorf("general holds %d messages, want only the one before the refused one", n)
	}
}

// memHistory reads room's messages through an SDK client.
func memHistory(t *testing.T, ctx context.Context, url, room string) []*protocol.Message {
	t.Helper()
	msgs, err := sdk(t, url, "reader").History(ctx, room, 0, 200)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// TestSendRetriesAStoppingGateway: parley send's first connection meets a
// gateway that is stopping: the upgrade is answered 503, then a connection
// is closed with 1012 during hello, then one is closed with 1012 after the
// send arrived and before its ack, then another upgrade gets 503. It keeps
// trying with backoff within --timeout, resends the message with the same
// id, and prints its seq; the message is stored once.
func TestSendRetriesAStoppingGateway(t *testing.T) {
	gw := fakegw.Start(t, fakegw.Options{})
	gw.Upgrade(func(n int) int {
		if n == 1 || n == 4 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	gw.Intercept(func(c *fakegw.Conn, f *protocol.Frame) bool {
		if (c.N == 1 && f.Type == protocol.TypeHello) || (c.N == 2 && f.Type == protocol.TypeSend) {
			c.Close(websocket.StatusServiceRestart, "gateway draining")
			return true
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := runCmd(ctx, "send", []string{"--url", gw.URL(), "--user", "carol", "--timeout", "10s", "general", "deploy", "finished"}, nil, &stdout, &stderr)
	if code != 0 || stdout.String() != "seq 1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0 and seq 1", code, stdout.String(), stderr.String())
	}
	sends := gw.Sends()
	if len(sends) != 2 || sends[0].Conn != 2 || sends[1].Conn != 3 || sends[0].Frame.ID != sends[1].Frame.ID || sends[1].Frame.Body != "deploy finished" {
		t.Fatalf("sends received %+v, want the message on connection 2 and resent with the same id on connection 3", sends)
	}
	if msgs := gw.Messages("general"); len(msgs) != 1 || msgs[0].Body != "deploy finished" || msgs[0].From != "carol" {
		t.Fatalf("stored %+v, want the message once", msgs)
	}
	if !strings.Contains(stderr.String(), "reconnecting") || !strings.Contains(stderr.String(), "1012") {
		t.Errorf("stderr %q does not report the reconnect after the 1012", stderr.String())
	}
}

// flakyBroker fails Publish the way the Redis broker does while Redis is
// unreachable, as long as down is set; the gateway then answers sends with
// "unavailable".
type flakyBroker struct {
	broker.Broker
	down *atomic.Bool
}

func (b flakyBroker) Publish(ctx context.Context, p broker.Publication) (broker.Ack, error) {
	if b.down.Load() {
		return broker.Ack{}, fmt.Errorf("redis: connection refused: %w", broker.ErrUnavailable)
	}
	return b.Broker.Publish(ctx, p)
}

// startChat runs parley chat as alice in room general on url until the
// test ends; it returns the output, the typing end of its input and its
// exit status.
func startChat(t *testing.T, ctx context.Context, url string) (*proctest.Buffer, *io.PipeWriter, <-chan int) {
	t.Helper()
	stdin, typing := io.Pipe()
	t.Cleanup(func() { typing.Close() })
	out := &proctest.Buffer{}
	exited := make(chan int, 1)
	go func() {
		exited <- runCmd(ctx, "chat", []string{"--url", url, "--user", "alice", "general"}, stdin, out, io.Discard)
	}()
	return out, typing, exited
}

func typeLine(t *testing.T, w io.Writer, line string) {
	t.Helper()
	if _, err := io.WriteString(w, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// outputLines returns the lines of out that contain one of marks, in
// order.
func outputLines(out string, marks ...string) []string {
	var got []string
	for l := range strings.Lines(out) {
		for _, p := range marks {
			if strings.Contains(l, p) {
				got = append(got, strings.TrimSuffix(l, "\n"))
				break
			}
		}
	}
	return got
}

// TestChatResendsLinesUntilStored: lines typed while the gateway's store is
// unreachable are answered "unavailable"; parley chat says so once, keeps
// the prompt free for commands, resends the first line with the same id
// until it is stored, says when it went through, and then sends the lines
// typed after it, in order. Another member sees each line once, in order.
func TestChatResendsLinesUntilStored(t *testing.T) {
	var down atomic.Bool
	url, _ := memGateway(t, func(c *gateway.Config) {
		c.NewBroker = func(h broker.Handler) (broker.Broker, error) {
			return flakyBroker{Broker: memory.New(memory.Config{Handler: h}), down: &down}, nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := sdk(t, url, "bob")
	if _, err := bob.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	out, typing, exited := startChat(t, ctx, url)
	out.WaitFor(t, "-- joined general (no messages yet)", 10*time.Second)

	down.Store(true)
	typeLine(t, typing, "typed during the outage")
	typeLine(t, typing, "typed after it")
	out.WaitFor(t, "-- not sent yet (unavailable); retrying", 10*time.Second)
	typeLine(t, typing, "/help") // the prompt is not stuck behind the line
	out.WaitFor(t, "-- commands: ", 10*time.Second)
	down.Store(false)
	out.WaitFor(t, "<alice (you)> typed after it", 10*time.Second)
	typeLine(t, typing, "sentinel")
	out.WaitFor(t, "<alice (you)> sentinel", 10*time.Second)
	typing.Close()
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d at end of input:\n%s", code, out.String())
	}

	// The notes and the echoes come from two goroutines: each stream is in
	// order, the two interleave.
	notes := outputLines(out.String(), "-- not sent", "-- commands", "-- sent", "-- error")
	wantNotes := []string{
		"-- not sent yet (unavailable); retrying",
		"-- commands: " + commandList + "; //text sends \"/text\"",
		"-- sent: typed during the outage",
	}
	if !slices.Equal(notes, wantNotes) {
		t.Fatalf("chat printed the notes\n%s\nwant, in order:\n%s\nfull output:\n%s", strings.Join(notes, "\n"), strings.Join(wantNotes, "\n"), out.String())
	}
	var echoes []string
	for _, l := range outputLines(out.String(), "<alice (you)>") {
		_, body, _ := strings.Cut(l, "<alice (you)> ")
		echoes = append(echoes, body)
	}
	if want := []string{"typed during the outage", "typed after it", "sentinel"}; !slices.Equal(echoes, want) {
		t.Fatalf("chat showed alice's lines %q, want %q:\n%s", echoes, want, out.String())
	}
	var bodies []string
	for len(bodies) < 3 {
		select {
		case ev := <-bob.Events():
			if ev.Message != nil {
				if ev.Message.Seq != int64(len(bodies)+1) {
					t.Fatalf("bob got seq %d (%q), want %d", ev.Message.Seq, ev.Message.Body, len(bodies)+1)
				}
				bodies = append(bodies, ev.Message.Body)
			}
		case <-ctx.Done():
			t.Fatalf("bob got %q, then nothing", bodies)
		}
	}
	if want := []string{"typed during the outage", "typed after it", "sentinel"}; !slices.Equal(bodies, want) {
		t.Fatalf("bob got %q, want %q", bodies, want)
	}
}

// TestChatWaitsOutRateLimit: a line answered "rate_limited" is resent,
// with the same id, no sooner than retry_after_ms, and the line typed after
// it is not sent before it.
func TestChatWaitsOutRateLimit(t *testing.T) {
	const after = 300 * time.Millisecond
	gw := fakegw.Start(t, fakegw.Options{})
	gw.Refusals().RateLimitNext(protocol.TypeSend, after)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, typing, exited := startChat(t, ctx, gw.URL())
	out.WaitFor(t, "-- joined general (no messages yet)", 10*time.Second)
	typeLine(t, typing, "one")
	typeLine(t, typing, "two")
	out.WaitFor(t, "-- not sent yet (rate_limited); retrying", 10*time.Second)
	out.WaitFor(t, "<alice (you)> two", 10*time.Second)
	typing.Close()
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d at end of input:\n%s", code, out.String())
	}
	sends := gw.Sends()
	if len(sends) != 3 || sends[0].Frame.Body != "one" || sends[1].Frame.ID != sends[0].Frame.ID || sends[2].Frame.Body != "two" {
		t.Fatalf("gateway received %+v, want one (refused), one again with its id, two", sends)
	}
	if gap := sends[1].At.Sub(sends[0].At); gap < after {
		t.Errorf("resent %v after the refusal, want at least retry_after_ms (%v)", gap, after)
	}
	var bodies []string
	for _, m := range gw.Messages("general") {
		bodies = append(bodies, m.Body)
	}
	if !slices.Equal(bodies, []string{"one", "two"}) {
		t.Errorf("stored %q, want one, two", bodies)
	}
	// (A line still unacked at the end of input is waited for with a
	// "waiting for 1 line not sent yet" notice: not a refusal.)
	if strings.Count(out.String(), "not sent yet (rate_limited)") != 1 || strings.Contains(out.String(), "-- error") {
		t.Errorf("want one notice and no error:\n%s", out.String())
	}
}

// TestTailSinceOnEmptyRoom: --since N on a room with no messages (so no
// epoch for N to belong to) follows the room from its first message
// instead of failing on the gateway's bad_request.
func TestTailSinceOnEmptyRoom(t *testing.T) {
	url, _ := memGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tctx, stop := context.WithCancel(ctx)
	var out, errb proctest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- runCmd(tctx, "tail", []string{"--url", url, "--user", "reader", "empty", "--since", "5"}, nil, &out, &errb)
	}()
	errb.WaitFor(t, "following empty", 10*time.Second)
	if _, err := sdk(t, url, "bob").Send(ctx, "empty", "first"); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, `"body":"first"`, 10*time.Second)
	stop()
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d; stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), `"seq":1,`) || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("tail printed %q, want the one message, seq 1", out.String())
	}
}

// TestChatRooms: parley chat keeps the user's rooms joined, counts the
// messages of those not shown, lists them with /rooms, shows one with
// /join, marks it read with /read, and opens direct and private rooms.
func TestChatRooms(t *testing.T) {
	url, _ := memGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := sdk(t, url, "alice")
	for _, r := range []string{"general", "news"} {
		if _, err := alice.Join(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	bob := sdk(t, url, "bob")
	out, typing, exited := startChat(t, ctx, url)
	out.WaitFor(t, "-- joined general", 10*time.Second)
	for _, body := range []string{"news one", "news two"} {
		if _, err := bob.Send(ctx, "news", body); err != nil {
			t.Fatal(err)
		}
	}
	out.WaitFor(t, "-- news: 2 unread", 10*time.Second)
	typeLine(t, typing, "/rooms")
	out.WaitFor(t, "--    news (public) 2 unread\n", 10*time.Second)
	out.WaitFor(t, "--    general (public) [shown]\n", 10*time.Second)
	typeLine(t, typing, "/join news")
	out.WaitFor(t, "-- showing news, 2 unread (/read marks them read)", 10*time.Second)
	out.WaitFor(t, "<bob> news two", 10*time.Second)
	typeLine(t, typing, "/read")
	out.WaitFor(t, "-- news read (0 unread)", 10*time.Second)
	ev := waitEvent(t, ctx, alice, func(ev client.Event) bool { return ev.ReadSync != nil })
	if ev.ReadSync.Room != "news" || ev.ReadSync.Seq != 2 {
		t.Fatalf("alice's other device got %+v", ev.ReadSync)
	}

	typeLine(t, typing, "/dm bob")
	out.WaitFor(t, "-- joined dm:alice:bob (no messages yet)", 10*time.Second)
	ev = waitEvent(t, ctx, bob, func(ev client.Event) bool { return ev.Membership != nil })
	if ev.Membership.Room != "dm:alice:bob" || ev.Membership.Kind != "direct" {
		t.Fatalf("bob's membership %+v", ev.Membership)
	}
	typeLine(t, typing, "psst")
	out.WaitFor(t, "<alice (you)> psst", 10*time.Second)

	typeLine(t, typing, "/create team")
	out.WaitFor(t, "-- created team (private); /invite USER to add members", 10*time.Second)
	out.WaitFor(t, "-- joined team (no messages yet)", 10*time.Second)
	typeLine(t, typing, "/invite bob")
	out.WaitFor(t, "-- invited bob to team", 10*time.Second)
	ev = waitEvent(t, ctx, bob, func(ev client.Event) bool { return ev.Membership != nil && ev.Membership.Room == "team" })
	if ev.Membership.Kind != "private" {
		t.Fatalf("bob's membership %+v", ev.Membership)
	}
	typeLine(t, typing, "/browse")
	out.WaitFor(t, "-- public rooms:", 10*time.Second)
	out.WaitFor(t, "--    news (1 member)", 10*time.Second)
	typeLine(t, typing, "/quit")
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out.String(), "--    team") {
		t.Errorf("/browse listed a private room:\n%s", out.String())
	}
}

// waitEvent waits until c receives an event ok accepts.
func waitEvent(t *testing.T, ctx context.Context, c *client.Client, ok func(client.Event) bool) client.Event {
	t.Helper()
	for {
		select {
		case ev, open := <-c.Events():
			if !open {
				t.Fatal("client closed")
			}
			if ok(ev) {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("no event: %v", ctx.Err())
		}
	}
}

func TestChatPresence(t *testing.T) {
	url, _ := memGateway(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// alice's other device makes news one of her rooms: the chat joins it
	// in the background, and its presence events are not shown.
	alice := sdk(t, url, "alice")
	if _, err := alice.Join(ctx, "news", nil); err != nil {
		t.Fatal(err)
	}
	out, typing, exited := startChat(t, ctx, url)
	out.WaitFor(t, "-- joined general", 10*time.Second)

	bobPhone, bobLaptop := sdk(t, url, "bob"), sdk(t, url, "bob")
	if _, err := bobPhone.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, "-- bob is online (1 device)\n", 10*time.Second)
	if _, err := bobLaptop.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, "-- bob is online (2 devices)\n", 10*time.Second)
	carol := sdk(t, url, "carol")
	if _, err := carol.Join(ctx, "news", nil); err != nil {
		t.Fatal(err)
	}
	typeLine(t, typing, "/who")
	out.WaitFor(t, "-- in general now: alice (1 device, you), bob (2 devices)\n", 10*time.Second)
	if err := bobLaptop.Leave(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	out.WaitFor(t, "bob (2 devices)\n-- bob is online (1 device)\n", 10*time.Second)
	_ = bobPhone.Close()
	out.WaitFor(t, "-- bob went offline\n", 10*time.Second)
	typeLine(t, typing, "/quit")
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(out.String(), "carol") {
		t.Errorf("a presence event of a room not shown was printed:\n%s", out.String())
	}
}

func TestChatWhoBigRoom(t *testing.T) {
	url, _ := memGateway(t, func(cfg *gateway.Config) { cfg.PresenceDetail = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bob := sdk(t, url, "bob")
	if _, err := bob.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	out, typing, exited := startChat(t, ctx, url)
	out.WaitFor(t, "-- joined general", 10*time.Second)
	typeLine(t, typing, "/who")
	out.WaitFor(t, "-- general: 2 connections (too many to list users)\n", 10*time.Second)
	typeLine(t, typing, "/quit")
	if code := <-exited; code != 0 {
		t.Fatalf("exit %d", code)
	}
}
