package terminal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/clienttest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/protocol"
)

const room = "general"

// startGateways starts a redis-server (AOF) and n gateways on it, ready.
func startGateways(t *testing.T, n int) (*redistest.Server, []*proctest.Gateway) {
	t.Helper()
	rd := redistest.Start(t, redistest.Options{AOF: true})
	var gws []*proctest.Gateway
	for i := range n {
		gws = append(gws, proctest.StartGateway(t, proctest.GatewayOptions{Redis: rd.URL(), Node: fmt.Sprintf("gw-%c", 'a'+i)}))
	}
	for _, g := range gws {
		g.WaitReady(15 * time.Second)
	}
	return rd, gws
}

func wsURL(g *proctest.Gateway) string { return "ws://" + g.Addr + "/ws" }

// tmux runs tmux commands on a private server socket, killed when the test
// ends.
type tmux struct {
	t      *testing.T
	socket string
}

func newTmux(t *testing.T) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux is not installed (apt-get install -y tmux): %v", err)
	}
	tm := &tmux{t: t, socket: fmt.Sprintf("parley-terminal-%d-%d", os.Getpid(), time.Now().UnixNano())}
	t.Cleanup(func() { _, _ = tm.run("kill-server") })
	return tm
}

func (tm *tmux) run(args ...string) (string, error) {
	cmd := exec.Command("tmux", append([]string{"-L", tm.socket, "-f", "/dev/null"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("tmux %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

func (tm *tmux) must(args ...string) string {
	tm.t.Helper()
	out, err := tm.run(args...)
	if err != nil {
		tm.t.Fatal(err)
	}
	return out
}

func (tm *tmux) screen() string { out, _ := tm.run("capture-pane", "-p", "-t", "s"); return out }

// waitScreen waits until the pane shows a line for which match holds.
func (tm *tmux) waitScreen(what string, match func(line string) bool) {
	tm.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		screen := tm.screen()
		for l := range strings.Lines(screen) {
			if match(strings.TrimRight(l, " \n")) {
				return
			}
		}
		if time.Now().After(deadline) {
			tm.t.Fatalf("the chat pane shows no %s after 15s; screen:\n%s", what, screen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestChatInTmux types into `parley chat` in a real terminal (a tmux pane)
// and checks that an SDK client receives the line, and that the chat shows
// what the SDK client sends, with its time in the chat's time zone (UTC).
func TestChatInTmux(t *testing.T) {
	_, gws := startGateways(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := clienttest.Dial(t, ctx, wsURL(gws[0]), "bob", room)

	tm := newTmux(t)
	chat := strings.Join([]string{
		"env", "TERM=xterm-256color", "TZ=UTC",
		shellQuote(proctest.Binary(t)), "chat", "--url", shellQuote(wsURL(gws[0])), "--user", "alice", room,
	}, " ")
	// The shell prints chat's exit status on the screen: tmux's own
	// pane_dead_status is filled in asynchronously and was seen to stay
	// empty.
	cmd := "sh -c " + shellQuote(chat+`; echo "[chat exited $?]"`)
	tm.must("new-session", "-d", "-s", "s", "-x", "160", "-y", "40", cmd)
	tm.must("set-option", "-t", "s", "remain-on-exit", "on")
	tm.waitScreen("joined line", func(l string) bool { return l == "-- joined "+room+" (no messages yet)" })

	tm.must("send-keys", "-t", "s", "-l", "hello from the terminal")
	tm.must("send-keys", "-t", "s", "Enter")
	if err := bob.WaitSeq(ctx, 1); err != nil {
		t.Fatalf("%v; screen:\n%s", err, tm.screen())
	}
	if got := bob.Body(1); got != "hello from the terminal" {
		t.Fatalf("bob received %q, want the typed line", got)
	}
	tm.waitScreen("own message", func(l string) bool {
		return strings.HasSuffix(l, " <alice (you)> hello from the terminal")
	})

	ack, err := bob.Client.Send(ctx, room, "hi alice, from the SDK")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := protocol.ParseTime(ack.TS)
	if err != nil {
		t.Fatal(err)
	}
	want := ts.UTC().Format("15:04:05") + " <bob> hi alice, from the SDK"
	tm.waitScreen(fmt.Sprintf("line %q", want), func(l string) bool { return l == want })

	tm.must("send-keys", "-t", "s", "C-d")
	tm.waitScreen("exit status 0 after Ctrl-D", func(l string) bool { return l == "[chat exited 0]" })
	bob.Check(t, 1, 2)
}

// tailProc is a running `parley tail` whose stdout lines arrive on lines.
type tailProc struct {
	cmd    *exec.Cmd
	lines  chan string // closed at EOF
	stderr proctest.Buffer
}

func startTail(t *testing.T, url string, args ...string) *tailProc {
	t.Helper()
	p := &tailProc{lines: make(chan string, 100)}
	p.cmd = exec.Command(proctest.Binary(t), append([]string{"tail", "--url", url, "--user", "tailer", room}, args...)...)
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil { // not waited for by the test
			_ = p.cmd.Process.Kill()
			for range p.lines { // read to EOF before Wait closes the pipe
			}
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("tail stderr:\n%s", p.stderr.String())
		}
	})
	return p
}

// next returns the next stdout line, failing the test after timeout.
func (p *tailProc) next(t *testing.T, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("tail closed stdout; stderr:\n%s", p.stderr.String())
		}
		return l
	case <-time.After(timeout):
		t.Fatalf("no line from tail within %v; stderr:\n%s", timeout, p.stderr.String())
	}
	return ""
}

// TestTailResumesAcrossGatewayRestart follows a room with `parley tail`
// through gateway A while messages are sent through gateway B; A is killed,
// messages are sent while it is down, and A is started again on the same
// address: tail must print every message exactly once, in order.
func TestTailResumesAcrossGatewayRestart(t *testing.T) {
	rd, gws := startGateways(t, 2)
	a, b := gws[0], gws[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tail := startTail(t, wsURL(a))
	tail.stderr.WaitFor(t, "following "+room+" on gw-a", 10*time.Second)
	sender := clienttest.Dial(t, ctx, wsURL(b), "bob", room)

	body := func(i int) string { return fmt.Sprintf("message %d of the tail test", i) }
	send := func(i int) {
		t.Helper()
		ack, err := sender.Client.Send(ctx, room, body(i))
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if ack.Seq != int64(i) {
			t.Fatalf("send %d: acked with seq %d", i, ack.Seq)
		}
	}
	var got []protocol.Message
	read := func(n int) {
		t.Helper()
		for range n {
			l := tail.next(t, 15*time.Second)
			var m protocol.Message
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("tail printed %q: %v", l, err)
			}
			got = append(got, m)
		}
	}

	for i := 1; i <= 3; i++ {
		send(i)
	}
	read(3)

	a.Kill()
	tail.stderr.WaitFor(t, "reconnecting", 10*time.Second)
	for i := 4; i <= 6; i++ {
		send(i)
	}
	a2 := proctest.StartGateway(t, proctest.GatewayOptions{Redis: rd.URL(), Node: "gw-a", Addr: a.Addr})
	a2.WaitReady(15 * time.Second)
	read(3)
	tail.stderr.WaitFor(t, "connected to gw-a", 10*time.Second)

	if err := tail.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Anything else tail printed before exiting is a duplicate.
	for l := range tail.lines {
		t.Errorf("tail printed a line after seq 6: %s", l)
	}
	if err := tail.cmd.Wait(); err != nil {
		t.Errorf("tail after SIGINT: %v, want exit status 0; stderr:\n%s", err, tail.stderr.String())
	}

	for i, m := range got {
		seq := int64(i + 1)
		if m.Seq != seq || m.Body != body(i+1) || m.Room != room || m.From != "bob" || m.Epoch == "" || m.Epoch != got[0].Epoch {
			t.Errorf("line %d: %+v, want seq %d, body %q from bob in one epoch", i+1, m, seq, body(i+1))
		}
	}
	if strings.Contains(tail.stderr.String(), "recovered:false") {
		t.Errorf("tail warned of lost messages:\n%s", tail.stderr.String())
	}
	sender.Check(t, 1, 6)
}

// TestSendFromStdin posts two lines of stdin with `parley send` and checks
// the acks it prints and what an SDK client receives; then the same --id
// sent twice is stored once.
func TestSendFromStdin(t *testing.T) {
	_, gws := startGateways(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bob := clienttest.Dial(t, ctx, wsURL(gws[0]), "bob", room)

	send := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, proctest.Binary(t), append([]string{"send", "--url", wsURL(gws[0]), "--user", "carol", room}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("parley send %q: exit %d; stderr:\n%s", args, ee.ExitCode(), errb.String())
			}
			t.Fatal(err)
		}
		return out.String()
	}
	if out := send("first line\nsecond line\n"); out != "seq 1\nseq 2\n" {
		t.Fatalf("parley send printed %q, want seq 1 and seq 2", out)
	}
	if err := bob.WaitSeq(ctx, 2); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"first line", "second line"} {
		if got := bob.Body(int64(i + 1)); got != want {
			t.Errorf("seq %d body %q, want %q", i+1, got, want)
		}
	}

	for range 2 {
		if out := send("", "--id", "once-only", "--", "-3", "degrees"); out != "seq 3\n" {
			t.Fatalf("parley send --id printed %q, want seq 3 both times", out)
		}
	}
	if err := bob.WaitSeq(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := bob.Body(3); got != "-3 degrees" {
		t.Errorf("seq 3 body %q, want %q", got, "-3 degrees")
	}
	// Nothing after seq 3: a fourth message lands on seq 4.
	if out := send("last\n"); out != "seq 4\n" {
		t.Fatalf("parley send printed %q, want seq 4", out)
	}
	if err := bob.WaitSeq(ctx, 4); err != nil {
		t.Fatal(err)
	}
	bob.Check(t, 1, 4)
}
