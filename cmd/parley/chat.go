package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

const chatHelp = `Usage: parley chat [flags] ROOM

An interactive, line-based chat client. Each line you type is sent to ROOM;
messages arrive as "HH:MM:SS <user> text" in local time, your own marked
as "<alice (you)>". Lines starting with "--" report the connection: reconnects,
resumes (with how many messages were missed) and errors from the server.
Lines you type are sent in order. One the server cannot take yet (its store
is unreachable, or you type faster than it allows) is resent until it is
stored, with the lines after it held in order behind it; you are told once
("-- not sent yet (unavailable); retrying") and again when it went through.
Quitting waits for unsent lines; Ctrl-C quits at once.

Commands:
  /join ROOM     leave the current room and join ROOM
  /history [N]   show the N messages before the oldest one shown (default 20)
  /quit          leave (so does Ctrl-D, end of input, or Ctrl-C)
  //text         send "/text" as a message

`

// historyDefault is how many messages /history loads without N;
// historyMax is the gateway's cap.
const (
	historyDefault = 20
	historyMax     = 200
)

// commandTimeout bounds /join and /history, which the Client retries while
// the server answers "not now": the prompt comes back with an error rather
// than hang through an outage. Typed lines have no such bound: they wait
// until stored (or Ctrl-C).
const commandTimeout = 15 * time.Second

// chatConfig is what `parley chat` runs with: its flags (defaults as
// given, each also settable as PARLEY_<FLAG>) and its argument.
type chatConfig struct {
	clientOptions        // --url, --user, --token, --device
	room          string // ROOM, the one argument: the room joined first
}

// parseChat parses and checks chat's flags and argument (and PARLEY_*
// variables). It reports ok false with the exit code when there is nothing
// to run: --help (0) or a bad flag or argument, one line on stderr (2).
func parseChat(args []string, stderr io.Writer) (cfg chatConfig, code int, ok bool) {
	fs := newClientFlags("chat", &cfg.clientOptions)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return cfg, flagExit(fs, chatHelp, err, stderr), false
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "parley chat: want exactly one ROOM argument, got %d (parley chat --help)\n", len(pos))
		return cfg, 2, false
	}
	cfg.room = pos[0]
	if !protocol.ValidRoom(cfg.room) {
		fmt.Fprintf(stderr, "parley chat: invalid room name %q\n", cfg.room)
		return cfg, 2, false
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintf(stderr, "parley chat: %v\n", err)
		return cfg, 2, false
	}
	return cfg, 0, true
}

// runChat runs a chat session in cfg.room until /quit, end of input or
// ctx ends (exit 0), or until the connection is refused for good (exit 1).
func runChat(ctx context.Context, cfg chatConfig, stdin io.Reader, stdout, stderr io.Writer) int {
	room := cfg.room
	c, err := cfg.dial(ctx, false)
	if err != nil {
		fmt.Fprintf(stderr, "parley chat: %v\n", err)
		return 1
	}
	w := c.Welcome()
	v := newChatView(stdout, w.User)
	v.setRoom(room)
	v.info("connected to %s as %s (/join ROOM, /history [N], /quit)", w.Node, w.User)

	// The printer owns the Events channel until the Client closes it.
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for ev := range c.Events() {
			v.event(ev, c)
		}
	}()
	s := &chatSession{c: c, v: v, room: room, pace: newPacer(), queue: make(chan outLine, 1024)}
	sctx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		s.sendLoop(sctx)
	}()
	var closeOnce sync.Once
	stopClient := func() {
		closeOnce.Do(func() {
			stopSending() // what is still queued is dropped, unpaced
			_ = c.Close()
			<-printed
			close(s.queue)
			<-sent
		})
	}
	defer stopClient()
	bye := func() int {
		s.drain(ctx)
		stopClient() // show what is still queued first
		v.info("bye")
		return 0
	}

	jctx, jcancel := context.WithTimeout(ctx, commandTimeout)
	_, err = c.Join(jctx, room, nil)
	jcancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		fmt.Fprintf(stderr, "parley chat: join %s: %s\n", room, describe(err))
		return 1
	}

	lines := make(chan string)
	quit := make(chan struct{})
	defer close(quit)
	// The reader cannot be interrupted while it waits in Read; it stops at
	// the next line or end of input once quit is closed.
	go readLines(stdin, lines, quit)

	for {
		select {
		case <-ctx.Done():
			return bye()
		case <-printed:
			return 1 // the client stopped for good; the view said why
		case line, ok := <-lines:
			if !ok || s.handle(ctx, line) {
				return bye()
			}
		}
	}
}

// readLines sends each line of r on lines and closes it at end of input.
func readLines(r io.Reader, lines chan<- string, quit <-chan struct{}) {
	defer close(lines)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		select {
		case lines <- strings.TrimRight(sc.Text(), "\r"):
		case <-quit:
			return
		}
	}
}

// chatSession handles the lines typed in a chat.
type chatSession struct {
	c    *client.Client
	v    *chatView
	room string
	pace *pacer
	// queue holds the typed lines for sendLoop, in order; unsent counts
	// those not yet acked or failed.
	queue  chan outLine
	unsent sync.WaitGroup
	n      atomic.Int64
}

// outLine is a typed line to send, to the room that was open when it was
// typed.
type outLine struct{ room, body string }

// handle acts on one typed line and reports whether to quit.
func (s *chatSession) handle(ctx context.Context, line string) bool {
	if strings.TrimSpace(line) == "" {
		return false
	}
	if strings.HasPrefix(line, "//") {
		s.send(line[1:])
		return false
	}
	if !strings.HasPrefix(line, "/") {
		s.send(line)
		return false
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	arg = strings.TrimSpace(arg)
	switch cmd {
	case "/quit", "/exit", "/q":
		return true
	case "/join", "/j":
		s.join(ctx, arg)
	case "/history", "/h":
		s.history(ctx, arg)
	case "/help":
		s.v.info("commands: /join ROOM, /history [N], /quit; //text sends \"/text\"")
	default:
		s.v.info("unknown command %s (commands: /join ROOM, /history [N], /quit; //text sends \"/text\")", sanitize(cmd))
	}
	return false
}

// send queues a typed line. The prompt does not wait for it: a line the
// server cannot take yet is resent until stored, and commands keep working
// meanwhile.
func (s *chatSession) send(body string) {
	s.unsent.Add(1)
	s.n.Add(1)
	s.queue <- outLine{room: s.room, body: body}
}

// sendLoop sends the queued lines one after another, in the order typed,
// each until the gateway acks it, it is refused for good, or the session
// ends. The Client resends a line answered "unavailable" or "rate_limited"
// with the same id (the printer tells the user once) and holds the lines
// after it, so they cannot overtake it.
func (s *chatSession) sendLoop(ctx context.Context) {
	for l := range s.queue {
		s.sendLine(ctx, l)
		s.n.Add(-1)
		s.unsent.Done()
	}
}

func (s *chatSession) sendLine(ctx context.Context, l outLine) {
	if err := s.pace.wait(ctx); err != nil {
		return
	}
	id := randomHex(16)
	_, err := s.c.SendID(ctx, l.room, id, l.body)
	if err != nil && ctx.Err() == nil && !errors.Is(err, client.ErrClosed) {
		s.v.errorLine(err)
	}
	if err == nil {
		s.v.sentAfterRetry(id, l.body)
	}
}

// drain waits, before quitting, for the lines not yet sent, unless ctx
// ends (Ctrl-C).
func (s *chatSession) drain(ctx context.Context) {
	if s.n.Load() == 0 || ctx.Err() != nil {
		if n := s.n.Load(); n > 0 {
			s.v.info("%s not sent", countLines(n))
		}
		return
	}
	s.v.info("waiting for %s not sent yet (Ctrl-C quits without them)", countLines(s.n.Load()))
	done := make(chan struct{})
	go func() {
		s.unsent.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.v.info("%s not sent", countLines(s.n.Load()))
	}
}

func countLines(n int64) string {
	if n == 1 {
		return "1 line"
	}
	return fmt.Sprintf("%d lines", n)
}

func (s *chatSession) join(ctx context.Context, room string) {
	switch {
	case room == "":
		s.v.info("usage: /join ROOM")
		return
	case !protocol.ValidRoom(room):
		s.v.info("invalid room name %q", room)
		return
	case room == s.room:
		s.v.info("already in %s", room)
		return
	}
	old := s.room
	s.v.setRoom(room) // the backlog arrives while Join waits
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if _, err := s.c.Join(rctx, room, nil); err != nil {
		s.v.setRoom(old)
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.room = room
	if err := s.c.Leave(rctx, old); err != nil && ctx.Err() == nil {
		s.v.errorLine(err)
	}
}

func (s *chatSession) history(ctx context.Context, arg string) {
	n := historyDefault
	if arg != "" {
		var err error
		if n, err = strconv.Atoi(arg); err != nil || n <= 0 {
			s.v.info("usage: /history [N], N a positive number")
			return
		}
	}
	n = min(n, historyMax)
	before := s.v.oldest(s.room)
	if before == 1 {
		s.v.info("no older messages in %s", s.room)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	msgs, err := s.c.History(rctx, s.room, before, n)
	if err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.history(s.room, msgs)
}
