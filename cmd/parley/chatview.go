package main

// The terminal view of `parley chat`: how messages, joins, resumes, retries
// and errors are shown.

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/client"
	"github.com/parley-chat/parley/pkg/protocol"
)

// chatView prints a chat session. Its methods are safe for concurrent use.
type chatView struct {
	mu    sync.Mutex
	out   io.Writer
	me    string
	loc   *time.Location
	room  string
	rooms map[string]*roomView
	// delayed holds the ids of typed lines the server refused for now,
	// told to the user once, until they go through. acked holds the ids
	// of the last lines acked without being told delayed: the printer may
	// take in a line's Retry only after its ack reached the sender, and
	// must not then say "not sent yet".
	delayed map[string]bool
	acked   [16]string
	nacked  int
}

// roomView is what the view has shown of one room.
type roomView struct {
	epoch string
	last  int64 // highest seq shown
	first int64 // lowest seq shown (0: none)
}

func newChatView(out io.Writer, me string) *chatView {
	return &chatView{out: out, me: me, loc: time.Local, rooms: map[string]*roomView{}, delayed: map[string]bool{}}
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
			// Counted, not shown: say how many wait there.
			if c == nil {
				return
			}
			if n := unreadOf(c.Rooms(), m.Room); n > 0 {
				v.infoLocked("%s: %d unread", sanitize(m.Room), n)
			}
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
	case ev.Presence != nil:
		p := ev.Presence
		if p.Room != v.room || p.User == "" {
			return
		}
		if p.State == "offline" || p.Devices == 0 {
			v.infoLocked("%s went offline", sanitize(p.User))
		} else {
			v.infoLocked("%s is online (%s)", sanitize(p.User), devices(p.Devices))
		}
	case ev.Membership != nil:
		m := ev.Membership
		if m.State == "member" {
			v.infoLocked("you are a member of %s (%s): /join %s to show it", sanitize(m.Room), sanitize(m.Kind), sanitize(m.Room))
		} else {
			v.infoLocked("you left %s on another device", sanitize(m.Room))
		}
	case ev.Error != nil:
		v.infoLocked("error %s: %s", sanitize(ev.Error.Code), oneLine(sanitize(ev.Error.Message)))
	case ev.Retry != nil:
		v.retryLocked(ev.Retry)
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

// retryLocked tells the user, once per request, that the server refused
// it for now and the Client is resending it.
func (v *chatView) retryLocked(r *client.Retry) {
	if r.Attempt != 1 {
		return
	}
	code := sanitize(r.Err.Code)
	switch r.Request.Type {
	case protocol.TypeSend:
		if slices.Contains(v.acked[:], r.Request.ID) {
			return // stale: it went through already
		}
		v.delayed[r.Request.ID] = true
		v.infoLocked("not sent yet (%s); retrying", code)
	case protocol.TypeJoin:
		if r.Request.Room == v.room {
			v.infoLocked("joining %s: not done yet (%s); retrying", r.Request.Room, code)
		}
	case protocol.TypeHistory:
		v.infoLocked("history: not loaded yet (%s); retrying", code)
	}
}

// sentAfterRetry tells the user that a line announced as not sent yet has
// gone through. Every acked line passes here.
func (v *chatView) sentAfterRetry(id, body string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.delayed[id] {
		v.acked[v.nacked%len(v.acked)] = id
		v.nacked++
		return
	}
	delete(v.delayed, id)
	v.infoLocked("sent: %s", linePreview(body))
}

// linePreview is the start of a typed line, safe for a terminal.
func linePreview(body string) string {
	first, _, more := strings.Cut(body, "\n")
	r := []rune(first)
	if len(r) > 40 {
		r, more = r[:39], true
	}
	p := sanitize(string(r))
	if more {
		p += "…"
	}
	return p
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

// listRooms lists the user's rooms, the shown one marked.
func (v *chatView) listRooms(rooms []protocol.RoomState, shown string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if rooms == nil {
		v.infoLocked("your rooms are unknown (the server could not read them at connect)")
		return
	}
	if len(rooms) == 0 {
		v.infoLocked("you are in no rooms")
		return
	}
	v.infoLocked("your rooms:")
	for _, rs := range rooms {
		line := fmt.Sprintf("   %s (%s)", sanitize(rs.Room), sanitize(rs.Kind))
		if rs.Unread > 0 {
			line += fmt.Sprintf(" %d unread", rs.Unread)
		}
		if rs.Room == shown {
			line += " [shown]"
		}
		v.infoLocked("%s", line)
	}
}

// showJoined makes room, joined already, the room shown, with its recent
// messages.
func (v *chatView) showJoined(room string, msgs []*protocol.Message, unread int64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.room = room
	r := v.roomLocked(room)
	*r = roomView{}
	if unread > 0 {
		v.infoLocked("showing %s, %d unread (/read marks them read)", room, unread)
	} else {
		v.infoLocked("showing %s", room)
	}
	for _, m := range msgs {
		if r.epoch != m.Epoch {
			*r = roomView{epoch: m.Epoch, first: m.Seq}
		}
		r.last = m.Seq
		v.printMessageLocked(m)
	}
}

// devices is "1 device" or "N devices".
func devices(n int64) string {
	if n == 1 {
		return "1 device"
	}
	return fmt.Sprintf("%d devices", n)
}

// who shows a presence answer for room: its users with their devices, or
// in a room too big to list them, the number of connections.
func (v *chatView) who(room string, f protocol.Frame) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if f.Users == nil {
		if f.Count == 1 {
			v.infoLocked("%s: 1 connection (too many to list users)", sanitize(room))
		} else {
			v.infoLocked("%s: %d connections (too many to list users)", sanitize(room), f.Count)
		}
		return
	}
	if len(*f.Users) == 0 {
		v.infoLocked("nobody is in %s", sanitize(room))
		return
	}
	parts := make([]string, 0, len(*f.Users))
	for _, u := range *f.Users {
		p := sanitize(u.User) + " (" + devices(u.Devices)
		if u.User == v.me {
			p += ", you"
		}
		parts = append(parts, p+")")
	}
	v.infoLocked("in %s now: %s", sanitize(room), strings.Join(parts, ", "))
}

// directory lists a page of public rooms.
func (v *chatView) directory(rooms []protocol.RoomState, next string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(rooms) == 0 {
		v.infoLocked("no public rooms")
		return
	}
	v.infoLocked("public rooms:")
	for _, rs := range rooms {
		if rs.Members == 1 {
			v.infoLocked("   %s (1 member)", sanitize(rs.Room))
		} else {
			v.infoLocked("   %s (%d members)", sanitize(rs.Room), rs.Members)
		}
	}
	if next != "" {
		v.infoLocked("more: /browse %s", sanitize(next))
	}
}
