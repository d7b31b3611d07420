package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file is the Server-Sent Events transport: GET /v1/rooms/{room}/events
// (one room) and GET /v1/events?room=a&room=b (up to maxSSERooms rooms).
// It is read-only: a page that follows a stream sends with POST
// /v1/rooms/{room}/messages and the user's token.
//
// A stream starts with "retry: 1000", then one event per v1 frame (data:
// the frame as one JSON line). Events that move a room's position
// (joined, message) carry an id: for one room "<epoch>:<seq>", for several
// "a=<epoch>:<seq>,b=<epoch>:<seq>" with the rooms sorted (a room with no
// position yet has nothing after "="). A browser reconnects by itself and
// sends the last id as Last-Event-ID, which wins over ?since=: every room
// resumes after its position, on any gateway. A room absent from the id
// is joined afresh (the last Backlog messages); "room=" resumes from the
// start of its retained history. Other events (typing, presence,
// membership, read) carry no id, and the browser keeps its last one.
// A resume the gateway cannot serve live (a hole, a slow consumer, a
// drain) ends the stream with "event: close" (data {"code","reason"}), and
// the browser's reconnect resumes it; a 1008 close (token expired, user
// disconnected) asks the page not to reconnect with the same token.

// maxSSERooms is the most rooms one stream may follow.
const maxSSERooms = 32

// sseRetry is the reconnection delay a stream asks of the browser.
const sseRetry = "retry: 1000\n\n"

// ssePing is the heartbeat: a comment the browser ignores.
var ssePing = []byte(": ping\n\n")

// sseStream is one Server-Sent Events stream: the subscriber of its rooms
// and of its user's topic, the wire its outbox writes to (the response,
// flushed after each event) and a client the gateway tracks. Its handler
// goroutine (the HTTP handler) owns members and the heartbeat timer; the
// outbox's writer is the only writer of the response once the stream has
// begun.
//
// Lock order: room.mu, then sseStream.mu, then outbox.mu: an event's id
// is composed and the event queued under mu, so that ids leave in the
// order they were composed and each room's position in them only moves
// forward. userTopic.mu, then sseStream.mu. mu takes no other lock.
type sseStream struct {
	g      *Gateway
	w      http.ResponseWriter
	rc     *http.ResponseController
	ctx    context.Context // ends with the stream
	cancel context.CancelFunc
	id     uint64
	p      principal
	multi  bool // /v1/events: ids name the rooms

	admission // against the connection limits

	out       outbox
	exp       *expiry      // the token's expiry, nil when it has none
	lastWrite atomic.Int64 // when the writer last wrote (UnixNano): the heartbeat waits for silence
	kick      chan struct{}

	members map[string]*member // owned by the handler
	utopic  *userTopic         // the user's topic, nil when it could not be held

	mu      sync.Mutex
	rooms   []string                     // the stream's rooms, sorted
	pos     map[string]protocol.Position // each room's position, as the last id said
	stopped map[string]bool              // rooms the user left (private, direct): nothing more of them
	leaving []string                     // stopped rooms for the handler to leave
}

var (
	_ subscriber     = (*sseStream)(nil)
	_ userSubscriber = (*sseStream)(nil)
	_ wire           = (*sseStream)(nil)
	_ client         = (*sseStream)(nil)
)

// serveSSE serves a Server-Sent Events stream of one room
// (/v1/rooms/{room}/events) or several (/v1/events?room=a&room=b), for a
// user (an API key is refused: forbidden).
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Parley-Node", g.cfg.NodeID)
	c, oe := g.httpCaller(r, false, true)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if !g.allow(w, c) {
		return
	}
	rooms, multi, oe := sseRooms(r)
	if oe != nil {
		writeError(w, oe)
		return
	}
	id := r.Header.Get("Last-Event-ID")
	if id == "" {
		id = r.URL.Query().Get("since")
	}
	since, oe := parseSSEID(id, rooms, multi)
	if oe != nil {
		writeError(w, oe)
		return
	}
	if g.draining.Load() {
		sseRetryLater(w, protocol.CloseServiceRestart, "gateway draining: reconnect and resume")
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &sseStream{g: g, w: w, rc: http.NewResponseController(w), ctx: ctx, cancel: cancel,
		id: g.nextID.Add(1), multi: multi, rooms: rooms, kick: make(chan struct{}, 1),
		members: make(map[string]*member), pos: make(map[string]protocol.Position), stopped: make(map[string]bool)}
	s.p = principal{user: c.p.user, device: r.URL.Query().Get("device"), rooms: c.p.rooms,
		conn: g.nodeKey() + "/" + strconv.FormatUint(s.id, 10)}
	s.out = outbox{g: g, w: s}
	if oe := s.admit(r); oe != nil {
		writeError(w, oe)
		return
	}
	if oe := s.enter(); oe != nil {
		s.unadmit()
		if oe.code == protocol.CodeUnavailable {
			sseRetryLater(w, protocol.CloseTryAgainLater, oe.msg)
			return
		}
		writeError(w, oe)
		return
	}
	if !g.track(s) {
		s.unadmit()
		sseRetryLater(w, protocol.CloseServiceRestart, "gateway draining: reconnect and resume")
		return
	}
	defer g.untrack(s)
	g.metrics.sseStreams.Inc()
	defer g.metrics.sseStreams.Dec()
	s.serve(since, c.exp)
}

// sseRetryLater answers a stream that cannot start now but would on a
// retry (the node drains, the store is unreachable) with a stream that
// closes at once: a browser's EventSource gives up for good on an HTTP
// error, but reconnects after a close event, with the same Last-Event-ID,
// through the load balancer to another node.
func sseRetryLater(w http.ResponseWriter, code int, why string) {
	sseHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append([]byte(sseRetry), sseClose(code, why)...))
}

// sseHeaders sets the headers of a stream's answer.
func sseHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // proxies must not buffer the stream
}

// sseClose is the event that ends a stream: "event: close" with data
// {"code","reason"}.
func sseClose(code int, why string) []byte {
	data, _ := json.Marshal(struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	}{code, why})
	return sseEvent("", false, "close", data)
}

// sseRooms reads the rooms a request asks for, sorted and without
// duplicates; multi says they came from ?room= (/v1/events).
func sseRooms(r *http.Request) ([]string, bool, *opError) {
	if room := r.PathValue("room"); room != "" {
		if !protocol.ValidRoom(room) {
			return nil, false, &opError{protocol.CodeBadRequest, fmt.Sprintf("invalid room name %q", room)}
		}
		return []string{room}, false, nil
	}
	rooms := slices.Clone(r.URL.Query()["room"])
	slices.Sort(rooms)
	rooms = slices.Compact(rooms)
	switch {
	case len(rooms) == 0:
		return nil, true, &opError{protocol.CodeBadRequest, "name the rooms to follow: ?room=a&room=b"}
	case len(rooms) > maxSSERooms:
		return nil, true, &opError{protocol.CodeBadRequest, fmt.Sprintf("%d rooms; a stream follows at most %d", len(rooms), maxSSERooms)}
	}
	for _, room := range rooms {
		if !protocol.ValidRoom(room) {
			return nil, true, &opError{protocol.CodeBadRequest, fmt.Sprintf("invalid room name %q", room)}
		}
	}
	return rooms, true, nil
}

// parseSSEID reads a stream's resume position (Last-Event-ID or ?since=)
// into each room's since: nil for a fresh join. For one room it is
// "<epoch>:<seq>"; for several "a=<epoch>:<seq>,b=", where a room left
// out is joined afresh, and "b=" resumes from the start of b's history.
// Rooms of the id that the stream does not follow are ignored.
func parseSSEID(id string, rooms []string, multi bool) (map[string]*protocol.Position, *opError) {
	since := make(map[string]*protocol.Position, len(rooms))
	if id == "" {
		return since, nil
	}
	bad := func(err error) *opError {
		return &opError{protocol.CodeBadRequest, fmt.Sprintf("invalid event id (Last-Event-ID or since) %q: %v", id, err)}
	}
	if !multi {
		if strings.ContainsAny(id, ",=") {
			return nil, bad(fmt.Errorf("a stream of one room has ids <epoch>:<seq>"))
		}
		p, err := protocol.ParsePosition(id)
		if err != nil {
			return nil, bad(err)
		}
		since[rooms[0]] = &p
		return since, nil
	}
	for _, part := range strings.Split(id, ",") {
		room, text, ok := strings.Cut(part, "=")
		if !ok || !protocol.ValidRoom(room) {
			return nil, bad(fmt.Errorf("want room=<epoch>:<seq>, got %q", part))
		}
		p, err := protocol.ParsePosition(text)
		if err != nil {
			return nil, bad(err)
		}
		if _, ok := slices.BinarySearch(rooms, room); ok {
			since[room] = &p
		}
	}
	return since, nil
}

// admit counts the stream against MaxConnsPerIP and MaxConnsPerUser.
func (s *sseStream) admit(r *http.Request) *opError {
	g := s.g
	s.addr = g.clientAddr(r)
	g.mu.Lock()
	ok := g.admitAddrLocked(s.addr)
	g.mu.Unlock()
	if !ok {
		g.metrics.refused.WithLabelValues("per_ip").Inc()
		return &opError{protocol.CodeRateLimited, fmt.Sprintf("too many connections from your address (limit %d per gateway)", g.cfg.MaxConnsPerIP)}
	}
	if !g.admitUser(&s.admission, s.p.user) {
		s.unadmit()
		g.metrics.refused.WithLabelValues("per_user").Inc()
		return &opError{protocol.CodeRateLimited, fmt.Sprintf("too many connections for this user (limit %d per gateway)", g.cfg.MaxConnsPerUser)}
	}
	return nil
}

// unadmit undoes admit, for a stream refused before it was tracked.
func (s *sseStream) unadmit() {
	s.g.mu.Lock()
	s.g.releaseLocked(&s.admission)
	s.g.mu.Unlock()
}

// enter checks the stream's rooms as a WebSocket join does and makes the
// user a member of those it is not in yet (a first use of a public room,
// a direct room).
func (s *sseStream) enter() *opError {
	g := s.g
	ctx, cancel := context.WithTimeout(s.ctx, g.cfg.RequestTimeout)
	defer cancel()
	for _, room := range s.rooms {
		if err := g.checkRoom(s.p, room); err != nil {
			return g.refusal(ctx, err)
		}
	}
	mine, err := g.rooms(ctx, s.p)
	if err != nil {
		return g.refusal(ctx, err)
	}
	known := make(map[string]bool, len(mine))
	for _, r := range mine {
		known[r.Room] = true
	}
	added := 0
	for _, room := range s.rooms {
		if known[room] {
			continue
		}
		if max := g.cfg.MaxRoomsPerUser; max > 0 && len(mine)+added >= max {
			return &opError{protocol.CodeForbidden, fmt.Sprintf("you are in %d rooms, the most one user may be in; leave one first", max)}
		}
		if err := g.enter(ctx, s.p, room); err != nil {
			return g.refusal(ctx, err)
		}
		added++
	}
	return nil
}

// serve runs the stream: it begins the response, joins the rooms, and
// beats the heartbeat until the stream ends; then it leaves the rooms and
// waits for the writer.
func (s *sseStream) serve(since map[string]*protocol.Position, exp time.Time) {
	g := s.g
	sseHeaders(s.w.Header())
	s.w.WriteHeader(http.StatusOK)
	_ = s.rc.SetWriteDeadline(time.Now().Add(g.cfg.WriteTimeout))
	_, err := s.w.Write([]byte(sseRetry))
	if err == nil {
		err = s.rc.Flush()
	}
	s.lastWrite.Store(time.Now().UnixNano())
	if err != nil {
		return
	}

	// Until a room's joined event, the id carries its resume position: a
	// reconnect before it resumes from the same place.
	s.mu.Lock()
	for room, sp := range since {
		if sp != nil {
			s.pos[room] = *sp
		}
	}
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(s.ctx, g.cfg.RequestTimeout)
	if ut, err := g.hub.holdUser(ctx, s.p.user, s); err == nil {
		s.utopic = ut
	} else {
		g.log.Info("no live sync of the user's devices on this stream", "conn", s.id, "user", s.p.user, "err", err)
	}
	cancel()
	g.online(s.p)
	defer s.end()
	for _, room := range s.rooms {
		ctx, cancel := context.WithTimeout(s.ctx, g.cfg.RequestTimeout)
		m, err := g.join(ctx, s.p, s, room, since[room], "", true) // enter checked access
		cancel()
		if err != nil {
			oe := g.refusal(s.ctx, err)
			s.out.close(protocol.CloseTryAgainLater, fmt.Sprintf("join %s: %s; resume", room, oe.msg), true)
			break
		}
		s.members[room] = m
		g.enterPresence(s.p, room)
	}
	if !exp.IsZero() {
		// No refresh on a stream: at exp it closes with 1008, and the
		// page opens a new EventSource with a fresh token.
		s.exp = &expiry{out: &s.out}
		s.exp.set(exp)
	}

	beat := time.NewTimer(g.cfg.SSEHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
			s.leaveStopped()
		case <-beat.C:
			idle := time.Since(time.Unix(0, s.lastWrite.Load()))
			if rest := g.cfg.SSEHeartbeat - idle; rest > time.Millisecond {
				beat.Reset(rest)
				continue
			}
			s.out.push(ssePing, classEphemeral)
			beat.Reset(g.cfg.SSEHeartbeat)
		}
	}
}

// end ends the stream: the rooms are left (the user's memberships stay),
// the user's topic released, and the writer waited for.
func (s *sseStream) end() {
	g := s.g
	if s.exp != nil {
		s.exp.stop()
	}
	for room, m := range s.members {
		delete(s.members, room)
		g.leave(m)
		g.exitPresence(s.p, room)
	}
	if s.utopic != nil {
		g.hub.releaseUser(s.p.user, s.utopic, s)
	}
	g.offline(s.p)
	s.out.close(protocol.CloseNormal, "", false)
	s.out.wait()
	s.cancel()
}

// leaveStopped leaves the rooms the user's events stopped.
func (s *sseStream) leaveStopped() {
	s.mu.Lock()
	rooms := s.leaving
	s.leaving = nil
	s.mu.Unlock()
	for _, room := range rooms {
		if m := s.members[room]; m != nil {
			delete(s.members, room)
			s.g.leave(m)
			s.g.exitPresence(s.p, room)
		}
	}
}

// sseEvent returns one event: its id line when withID, its type, and data
// (one JSON line; a line break would be split into data lines).
func sseEvent(id string, withID bool, typ string, data []byte) []byte {
	b := make([]byte, 0, len(id)+len(typ)+len(data)+32)
	if withID {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	b = append(append(append(b, "event: "...), typ...), '\n')
	for {
		line, rest, more := bytes.Cut(data, []byte{'\n'})
		b = append(append(append(b, "data: "...), line...), '\n')
		if !more {
			break
		}
		data = rest
	}
	return append(b, '\n')
}

// idLocked composes the stream's event id from the rooms' positions.
// Called with s.mu held.
func (s *sseStream) idLocked() string {
	if !s.multi {
		return s.pos[s.rooms[0]].String()
	}
	var b strings.Builder
	for i, room := range s.rooms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(room)
		b.WriteByte('=')
		b.WriteString(s.pos[room].String())
	}
	return b.String()
}

// movedLocked moves room to pos and returns an event with the stream's id
// after it. Called with s.mu held.
func (s *sseStream) movedLocked(room string, pos protocol.Position, typ string, data []byte) []byte {
	s.pos[room] = pos
	return sseEvent(s.idLocked(), true, typ, data)
}

// joined implements subscriber: the joined event, whose id is where the
// stream starts (since when resumed; else just before the first backlog
// message, or the head), then the catch-up.
func (s *sseStream) joined(j joinOutcome) {
	jf := &protocol.Frame{Type: protocol.TypeJoined, Room: j.room, Epoch: j.rng.Epoch, Seq: j.rng.Seq, First: j.rng.First}
	start := protocol.Position{Epoch: j.rng.Epoch, Seq: j.rng.Seq}
	switch {
	case j.resumed:
		jf.Recovered = protocol.Bool(j.recovered)
		if sp := s.sinceOf(j); sp != nil {
			start = *sp
		}
	case len(j.rng.Messages) > 0:
		first := j.rng.Messages[0]
		start = protocol.Reset(first.Epoch, first.Seq)
	}
	data, _ := protocol.Encode(jf) // a Frame always encodes
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped[j.room] {
		return
	}
	frames := make([][]byte, 0, 1+len(j.rng.Messages))
	frames = append(frames, s.movedLocked(j.room, start, protocol.TypeJoined, data))
	for _, env := range j.rng.Messages {
		frames = append(frames, s.movedLocked(j.room, protocol.Position{Epoch: env.Epoch, Seq: env.Seq}, protocol.TypeMessage, env.Raw))
	}
	s.out.pushCatchUp(frames...)
}

// sinceOf returns the position a resumed join of j.room started from: the
// room's position as the stream's id gave it. It is read from pos, which
// holds the resume positions until the room's joined event.
func (s *sseStream) sinceOf(j joinOutcome) *protocol.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pos[j.room]
	if !ok {
		return nil
	}
	return &p
}

// deliver implements subscriber: a message event, with the id after it.
func (s *sseStream) deliver(env broker.Envelope, catchUp bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped[env.Room] {
		return
	}
	b := s.movedLocked(env.Room, protocol.Position{Epoch: env.Epoch, Seq: env.Seq}, protocol.TypeMessage, env.Raw)
	if catchUp {
		s.out.pushCatchUp(b)
		return
	}
	s.out.push(b, classLive)
}

// event implements subscriber: typing and presence, without an id, the
// first dropped when the stream falls behind. What the user does is not
// shown back to the user.
func (s *sseStream) event(ev broker.Event, from string) {
	if from != "" && from == s.p.user {
		return
	}
	var f struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(ev.Data, &f) != nil || f.Type == "" {
		return
	}
	s.out.push(sseEvent("", false, f.Type, ev.Data), classEphemeral)
}

// epochReset implements subscriber: a joined event with recovered false,
// whose id is where the new epoch's stream starts.
func (s *sseStream) epochReset(room string, pos protocol.Position, first int64) {
	data, _ := protocol.Encode(&protocol.Frame{Type: protocol.TypeJoined, Room: room, Epoch: pos.Epoch,
		Seq: pos.Seq, First: first, Recovered: protocol.Bool(false)})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped[room] {
		return
	}
	s.out.push(s.movedLocked(room, pos, protocol.TypeJoined, data), classLive)
}

// resume implements subscriber: a hole history could not fill. The
// stream closes with 1013; the browser reconnects with its last id.
func (s *sseStream) resume(room string, last protocol.Position) {
	s.out.close(protocol.CloseTryAgainLater, fmt.Sprintf("missed messages in %s after seq %d; resume", room, last.Seq), false)
}

// overflow implements subscriber.
func (s *sseStream) overflow() { s.out.overflow() }

// userEvent implements userSubscriber: membership and read frames of the
// user's other devices become events (no id); a membership ended in a
// private or direct room this stream follows stops that room. (A
// disconnect never comes here: the hub handles it, and expelLocal ends
// the stream with 1008.)
func (s *sseStream) userEvent(origin string, frame []byte) {
	if origin != "" && origin == s.p.conn {
		return
	}
	var f struct {
		Type  string `json:"type"`
		Room  string `json:"room"`
		State string `json:"state"`
	}
	if json.Unmarshal(frame, &f) != nil || (f.Type != protocol.TypeMembership && f.Type != protocol.TypeRead) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.push(sseEvent("", false, f.Type, frame), classLive)
	if f.Type != protocol.TypeMembership || f.State != "left" {
		return
	}
	if _, ok := slices.BinarySearch(s.rooms, f.Room); !ok || s.stopped[f.Room] {
		return
	}
	if kind, ok := s.g.kinds.get(f.Room); !protocol.DirectRoom(f.Room) && (!ok || kind == broker.PublicRoom) {
		return // a public room is open to all: the stream goes on
	}
	s.stopLocked(f.Room)
}

// revoke implements userSubscriber: the room stops, as when the user's
// topic says the membership ended (revoke.go).
func (s *sseStream) revoke(room string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := slices.BinarySearch(s.rooms, room); !ok || s.stopped[room] {
		return
	}
	s.stopLocked(room)
}

// stopLocked stops delivering room at once and has the stream's handler
// leave it. Called with s.mu held.
func (s *sseStream) stopLocked(room string) {
	s.stopped[room] = true
	s.leaving = append(s.leaving, room)
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// write implements wire: one event, flushed, bounded by WriteTimeout.
func (s *sseStream) write(b []byte) error {
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.g.cfg.WriteTimeout))
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil {
		return err
	}
	s.lastWrite.Store(time.Now().UnixNano())
	return nil
}

// close implements wire: "event: close" with the code and reason, unless
// the stream has ended already; then the handler returns, which ends the
// response. A normal close (the handler's own end) writes nothing.
func (s *sseStream) close(code int, why string) {
	if s.ctx.Err() == nil && code != protocol.CloseNormal {
		_ = s.write(sseClose(code, why))
	}
	s.cancel()
}

// abort implements wire.
func (s *sseStream) abort() { s.cancel() }

// describe implements wire.
func (s *sseStream) describe() (uint64, string) { return s.id, s.p.user }

// admitted implements client.
func (s *sseStream) admitted() *admission { return &s.admission }

// shutdown implements client: close 1012 once what is queued is written;
// the browser reconnects, through the load balancer, to another node.
func (s *sseStream) shutdown() {
	s.out.close(protocol.CloseServiceRestart, "service restart: reconnect and resume", true)
}

// kill implements client.
func (s *sseStream) kill() { s.cancel() }

// expel ends the stream because the server API disconnected its user:
// close 1008; the page must not reconnect with the same token.
func (s *sseStream) expel(reason string) {
	s.out.close(protocol.ClosePolicy, reason, false)
}
