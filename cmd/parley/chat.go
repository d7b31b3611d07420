package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

const chatHelp = `Usage: parley chat [flags] ROOM

An interactive, line-based chat client. Each line you type is sent to ROOM;
messages arrive as "HH:MM:SS <user> text" in local time, your own marked
as "<alice (you)>". Lines starting with "--" report the connection: reconnects,
resumes (with how many messages were missed) and errors from the server.

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

func chat(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runChat(ctx, args, stdin, stdout, stderr)
}

// runChat runs a chat session until /quit, end of input or ctx ends
// (exit 0), or until the connection is refused for good (exit 1).
func runChat(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o clientOptions
	fs := newClientFlags("chat", &o)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return flagExit(fs, chatHelp, err, stderr)
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "parley chat: want exactly one ROOM argument, got %d (parley chat --help)\n", len(pos))
		return 2
	}
	room := pos[0]
	if !protocol.ValidRoom(room) {
		fmt.Fprintf(stderr, "parley chat: invalid room name %q\n", room)
		return 2
	}
	if err := o.check(); err != nil {
		fmt.Fprintf(stderr, "parley chat: %v\n", err)
		return 2
	}

	c, err := o.dial(ctx, false)
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
	var closeOnce sync.Once
	stopClient := func() {
		closeOnce.Do(func() {
			_ = c.Close()
			<-printed
		})
	}
	defer stopClient()
	bye := func() int {
		stopClient() // show what is still queued first
		v.info("bye")
		return 0
	}

	if _, err := c.Join(ctx, room, nil); err != nil {
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

	s := &chatSession{c: c, v: v, room: room, pace: newPacer()}
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
}

// handle acts on one typed line and reports whether to quit.
func (s *chatSession) handle(ctx context.Context, line string) bool {
	if strings.TrimSpace(line) == "" {
		return false
	}
	if strings.HasPrefix(line, "//") {
		s.send(ctx, line[1:])
		return false
	}
	if !strings.HasPrefix(line, "/") {
		s.send(ctx, line)
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

func (s *chatSession) send(ctx context.Context, body string) {
	if err := s.pace.wait(ctx); err != nil {
		return
	}
	if _, err := s.c.Send(ctx, s.room, body); err != nil && ctx.Err() == nil && !errors.Is(err, client.ErrClosed) {
		s.v.errorLine(err)
	}
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
	if _, err := s.c.Join(ctx, room, nil); err != nil {
		s.v.setRoom(old)
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.room = room
	if err := s.c.Leave(ctx, old); err != nil && ctx.Err() == nil {
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
	msgs, err := s.c.History(ctx, s.room, before, n)
	if err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.history(s.room, msgs)
}

// chatView prints a chat session. Its methods are safe for concurrent use.
type chatView struct {
	mu    sync.Mutex
	out   io.Writer
	me    string
	loc   *time.Location
	room  string
	rooms map[string]*roomView
}

// roomView is what the view has shown of one room.
type roomView struct {
	epoch string
	last  int64 // highest seq shown
	first int64 // lowest seq shown (0: none)
}

func newChatView(out io.Writer, me string) *chatView {
	return &chatView{out: out, me: me, loc: time.Local, rooms: map[string]*roomView{}}
}

func (v *chatView) setRoom(room string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.room = room
}

func (v *chatView) roomLocked(room string) *roomView {
	r := v.rooms[room]
	if r == nil {
		r = &roomView{}
		v.rooms[room] = r
	}
	return r
}

// oldest is the lowest seq shown in room (0 when none).
func (v *chatView) oldest(room string) int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if r := v.rooms[room]; r != nil {
		return r.first
	}
	return 0
}

func (v *chatView) info(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.infoLocked(format, args...)
}

func (v *chatView) infoLocked(format string, args ...any) {
	fmt.Fprintf(v.out, "-- "+format+"\n", args...)
}

func (v *chatView) errorLine(err error) {
	v.info("error %s", describe(err))
}

// formatMessage renders m as "HH:MM:SS <from> body" in loc, with "(you)"
// after the sender's name when it is me. Continuation lines of a
// multi-line body are indented under the first.
func formatMessage(m *protocol.Message, me string, loc *time.Location) string {
	stamp := m.TS
	if t, err := protocol.ParseTime(m.TS); err == nil {
		stamp = t.In(loc).Format("15:04:05")
	}
	from := sanitize(m.From)
	if m.From == me {
		from += " (you)"
	}
	lines := strings.Split(m.Body, "\n")
	for i, l := range lines {
		lines[i] = sanitize(l)
	}
	indent := "\n" + strings.Repeat(" ", len(stamp)+1)
	return stamp + " <" + from + "> " + strings.Join(lines, indent)
}

func (v *chatView) printMessageLocked(m *protocol.Message) {
	fmt.Fprintln(v.out, formatMessage(m, v.me, v.loc))
}

// event shows one event from the Client.
func (v *chatView) event(ev client.Event, c *client.Client) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case ev.Message != nil:
		m := ev.Message
		if m.Room != v.room {
			return
		}
		r := v.roomLocked(m.Room)
		if m.Epoch != r.epoch {
			r.epoch, r.first = m.Epoch, 0
		}
		r.last = m.Seq
		if r.first == 0 || m.Seq < r.first {
			r.first = m.Seq
		}
		v.printMessageLocked(m)
	case ev.Joined != nil:
		v.joinedLocked(ev.Joined)
	case ev.Error != nil:
		v.infoLocked("error %s: %s", sanitize(ev.Error.Code), oneLine(sanitize(ev.Error.Message)))
	case ev.State == client.StateReconnecting:
		v.infoLocked("reconnecting: %s", reason(ev.Err))
	case ev.State == client.StateConnected:
		v.infoLocked("connected to %s", sanitize(c.Welcome().Node))
	case ev.State == client.StateClosed:
		if ev.Err != nil {
			v.infoLocked("disconnected for good: %s", reason(ev.Err))
		}
	}
}

func reason(err error) string {
	if err == nil {
		return "unknown reason"
	}
	return oneLine(err.Error())
}

func (v *chatView) joinedLocked(f *protocol.Frame) {
	if f.Room != v.room {
		return
	}
	r := v.roomLocked(f.Room)
	if f.Recovered == nil { // a fresh join: the backlog follows
		*r = roomView{epoch: f.Epoch}
		if f.Seq == 0 {
			v.infoLocked("joined %s (no messages yet)", f.Room)
		} else {
			v.infoLocked("joined %s", f.Room)
		}
		return
	}
	epochChanged := r.epoch != "" && f.Epoch != r.epoch
	switch {
	case *f.Recovered && !epochChanged:
		switch missed := max(f.Seq-r.last, 0); missed {
		case 0:
			v.infoLocked("resumed, no missed messages")
		case 1:
			v.infoLocked("resumed, 1 missed message")
		default:
			v.infoLocked("resumed, %d missed messages", missed)
		}
	case epochChanged:
		v.infoLocked("resumed, some messages were lost (the room's history was reset)")
	default:
		v.infoLocked("resumed, some messages were lost (history trimmed)")
	}
	if epochChanged {
		*r = roomView{epoch: f.Epoch}
	}
}

// history shows messages loaded with /history, oldest first.
func (v *chatView) history(room string, msgs []*protocol.Message) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(msgs) == 0 {
		v.infoLocked("no older messages in %s", room)
		return
	}
	r := v.roomLocked(room)
	v.infoLocked("history of %s, seq %d to %d:", room, msgs[0].Seq, msgs[len(msgs)-1].Seq)
	for _, m := range msgs {
		v.printMessageLocked(m)
	}
	if r.first == 0 || msgs[0].Seq < r.first {
		r.first = msgs[0].Seq
	}
	v.infoLocked("end of history")
}
