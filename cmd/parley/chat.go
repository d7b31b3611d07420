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

An interactive, line-based chat client. Each line you type is sent to the
room shown, ROOM at first; messages arrive as "HH:MM:SS <user> text" in
local time, your own marked as "<alice (you)>". Lines starting with "--"
report the connection: reconnects, resumes (with how many messages were
missed) and errors from the server, and who comes and goes in the room
shown: "-- bob is online (2 devices)", "-- bob went offline".
Lines you type are sent in order. One the server cannot take yet (its store
is unreachable, or you type faster than it allows) is resent until it is
stored, with the lines after it held in order behind it; you are told once
("-- not sent yet (unavailable); retrying") and again when it went through.
Quitting waits for unsent lines; Ctrl-C quits at once.

Your rooms (those you are a member of, on any device) stay joined: one is
shown, and a message in another is counted, not shown:
"-- news: 3 unread". Nothing is marked read by itself: /read marks the
room shown read, on all your devices.

Commands:
  /join ROOM     show ROOM (joining it, which makes you a member; the room
                 shown before stays joined)
  /rooms         list your rooms with their unread counts
  /read          mark the room shown read, up to its last message
  /who           list who is in the room shown now, with their devices
                 (in a big room, only how many connections it has)
  /dm USER       show your direct room with USER (only the two of you)
  /create NAME [public]
                 create a room, private unless "public", and show it
  /invite USER   make USER a member of the room shown
  /browse [AFTER]
                 list public rooms (20 a page, after the room AFTER)
  /leave ROOM    end your membership of ROOM, not the one shown
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
	v.info("connected to %s as %s (%s)", w.Node, w.User, commandList)

	// The printer owns the Events channel until the Client closes it.
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for ev := range c.Events() {
			v.event(ev, c)
		}
	}()
	s := &chatSession{c: c, v: v, room: room, me: w.User, pace: newPacer(), queue: make(chan outLine, 1024), joined: map[string]bool{}}
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
			s.wg.Wait()
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
	s.setJoined(room)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.joinOthers(sctx)
	}()

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

// commandList is the one-line summary of chat's commands.
const commandList = "/join ROOM, /rooms, /read, /who, /dm USER, /create NAME [public], /invite USER, /browse [AFTER], /leave ROOM, /history [N], /quit"

// chatSession handles the lines typed in a chat.
type chatSession struct {
	c    *client.Client
	v    *chatView
	me   string
	room string // the room shown
	// joined holds the rooms joined in this session (guarded by mu): the
	// shown one and the user's other rooms, whose messages are counted.
	mu     sync.Mutex
	joined map[string]bool
	wg     sync.WaitGroup
	pace   *pacer
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
	case "/rooms":
		s.v.listRooms(s.c.Rooms(), s.room)
	case "/read":
		s.read(ctx)
	case "/who":
		s.who(ctx)
	case "/dm":
		s.dm(ctx, arg)
	case "/create":
		s.create(ctx, arg)
	case "/invite":
		s.invite(ctx, arg)
	case "/browse":
		s.browse(ctx, arg)
	case "/leave":
		s.leave(ctx, arg)
	case "/help":
		s.v.info("commands: %s; //text sends \"/text\"", commandList)
	default:
		s.v.info("unknown command %s (commands: %s; //text sends \"/text\")", sanitize(cmd), commandList)
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
	s.show(ctx, room)
}

// show makes room the room shown. A room joined already (it stayed joined
// in the background) shows its recent messages; another is joined, and
// its backlog follows.
func (s *chatSession) show(ctx context.Context, room string) {
	if room == s.room {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if s.isJoined(room) {
		msgs, err := s.c.History(rctx, room, 0, historyDefault)
		if err != nil {
			if ctx.Err() == nil {
				s.v.errorLine(err)
			}
			return
		}
		s.room = room
		s.v.showJoined(room, msgs, unreadOf(s.c.Rooms(), room))
		return
	}
	old := s.room
	s.v.setRoom(room) // the backlog arrives while Join waits
	if _, err := s.c.Join(rctx, room, nil); err != nil {
		s.v.setRoom(old)
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.setJoined(room)
	s.room = room
}

func (s *chatSession) setJoined(room string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.joined[room] = true
}

func (s *chatSession) isJoined(room string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined[room]
}

// joinOthers joins the user's other rooms at their heads, so that their
// new messages are counted as unread (none is delivered from before).
func (s *chatSession) joinOthers(ctx context.Context) {
	for _, rs := range s.c.Rooms() {
		if s.isJoined(rs.Room) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, commandTimeout)
		_, err := s.c.Join(rctx, rs.Room, &protocol.Since{Epoch: rs.Epoch, Seq: rs.Seq})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.v.info("could not join %s: %s", rs.Room, describe(err))
			continue
		}
		s.setJoined(rs.Room)
	}
}

// unreadOf is room's unread count in rooms (0 when absent).
func unreadOf(rooms []protocol.RoomState, room string) int64 {
	for _, rs := range rooms {
		if rs.Room == room {
			return rs.Unread
		}
	}
	return 0
}

// read marks the shown room read up to its head (every message of it
// the session has received).
func (s *chatSession) read(ctx context.Context) {
	var pos protocol.Position
	found := false
	for _, rs := range s.c.Rooms() {
		if rs.Room == s.room {
			pos, found = protocol.Position{Epoch: rs.Epoch, Seq: rs.Seq}, true
		}
	}
	if !found {
		s.v.info("%s is not one of your rooms", s.room)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	r, err := s.c.Read(rctx, s.room, pos)
	if err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.info("%s read (%d unread)", s.room, r.Unread)
}

// who lists who is in the shown room now.
func (s *chatSession) who(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	f, err := s.c.Presence(rctx, s.room)
	if err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.who(s.room, f)
}

func (s *chatSession) dm(ctx context.Context, user string) {
	switch {
	case user == "":
		s.v.info("usage: /dm USER")
		return
	case !protocol.ValidRoom(user) || strings.Contains(user, ":"):
		s.v.info("invalid user name %q", user)
		return
	case user == s.me:
		s.v.info("a direct room needs another user")
		return
	}
	s.show(ctx, protocol.DirectRoomOf(s.me, user))
}

func (s *chatSession) create(ctx context.Context, arg string) {
	name, kind, _ := strings.Cut(arg, " ")
	kind = strings.TrimSpace(kind)
	switch {
	case name == "" || (kind != "" && kind != "public" && kind != "private"):
		s.v.info("usage: /create NAME [public]")
		return
	case !protocol.ValidRoom(name) || protocol.DirectRoom(name):
		s.v.info("invalid room name %q", name)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	f, err := s.c.Create(rctx, name, kind)
	if err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.info("created %s (%s); /invite USER to add members", f.Room, f.Kind)
	s.show(ctx, f.Room)
}

func (s *chatSession) invite(ctx context.Context, user string) {
	if user == "" || !protocol.ValidRoom(user) {
		s.v.info("usage: /invite USER")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if err := s.c.Invite(rctx, s.room, user); err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.info("invited %s to %s", user, s.room)
}

// browsePage is how many public rooms /browse lists at once.
const browsePage = 20

func (s *chatSession) browse(ctx context.Context, after string) {
	if after != "" && !protocol.ValidRoom(after) {
		s.v.info("usage: /browse [AFTER]")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	rooms, next, err := s.c.Directory(rctx, after, browsePage)
	if err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.v.directory(rooms, next)
}

func (s *chatSession) leave(ctx context.Context, room string) {
	switch {
	case room == "" || !protocol.ValidRoom(room):
		s.v.info("usage: /leave ROOM")
		return
	case room == s.room:
		s.v.info("%s is shown: /join another room first", room)
		return
	}
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	if err := s.c.Leave(rctx, room); err != nil {
		if ctx.Err() == nil {
			s.v.errorLine(err)
		}
		return
	}
	s.mu.Lock()
	delete(s.joined, room)
	s.mu.Unlock()
	s.v.info("left %s", room)
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
