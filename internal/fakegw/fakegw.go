// Package fakegw is a scriptable stand-in for a Parley gateway, for testing
// clients (the terminal clients, parley.js, the mini-program logic) against
// server behaviour that is hard to bring about with a real gateway on cue:
// a request refused by the rate limiter (rate_limited with retry_after_ms),
// a message store that is unreachable (unavailable), a draining gateway
// (HTTP 503 on upgrade, close 1012).
//
// It speaks enough of protocol v1 over a real WebSocket: hello and welcome
// (any user, dev-auth style), join with since and backlog, send
// deduplicated by (user, id) with acks that carry the epoch, fan-out to
// joined connections, leave, history and ping. It records every frame it
// receives. A test scripts refusals and closes with Intercept and answers
// upgrades with an HTTP status with Upgrade; frames are handled one at a
// time per connection, in order, as the gateway does.
package fakegw

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// Epoch is the epoch of every room on the fake.
const Epoch = "e1"

// Options configures a Server.
type Options struct {
	// Node is the node name in welcome. Default "fake".
	Node string
	// Files serves the requests that are not WebSocket upgrades (pages
	// for a browser test). Default: 404.
	Files http.Handler
}

// Server is a fake gateway on a loopback port, closed when the test ends.
type Server struct {
	t    testing.TB
	node string
	srv  *httptest.Server
	wg   sync.WaitGroup

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every change
	closed   bool
	upgrades int
	conns    []*Conn
	rooms    map[string][]*protocol.Message
	acks     map[string]protocol.Frame // by user + "/" + id
	recv     []Received

	upgrade   func(n int) int
	intercept func(c *Conn, f *protocol.Frame) bool
}

// Conn is one WebSocket connection to the fake.
type Conn struct {
	// N numbers the connections from 1, in the order they were accepted.
	N      int
	s      *Server
	ws     *websocket.Conn
	user   string
	joined map[string]bool
}

// Received is a frame the fake received, on which connection and when.
type Received struct {
	Conn  int
	At    time.Time
	Frame protocol.Frame
}

// Start starts a fake gateway.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Node == "" {
		o.Node = "fake"
	}
	s := &Server{
		t: t, node: o.Node,
		changed: make(chan struct{}),
		rooms:   map[string][]*protocol.Message{},
		acks:    map[string]protocol.Frame{},
	}
	files := o.Files
	if files == nil {
		files = http.NotFoundHandler()
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			files.ServeHTTP(w, r)
			return
		}
		s.serveWS(w, r)
	}))
	t.Cleanup(s.close)
	return s
}

// URL is the fake's WebSocket endpoint, ws://127.0.0.1:port/ws.
func (s *Server) URL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

// HTTPURL is the fake's base URL, http://127.0.0.1:port.
func (s *Server) HTTPURL() string { return s.srv.URL }

// Upgrade sets the answer to WebSocket upgrades: fn gets the attempt's
// number (from 1) and returns an HTTP status to refuse it with (503 is
// what a draining gateway answers), or 0 to accept it.
func (s *Server) Upgrade(fn func(n int) int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upgrade = fn
}

// Intercept sets a hook that sees every frame (hello too) before the fake
// serves it, on the connection's reader goroutine and without the fake's
// lock. It returns true when it has dealt with the frame (answered it, for
// example with Conn.Write(RateLimited(f, d)), or closed the connection):
// the fake then does nothing more with it.
func (s *Server) Intercept(fn func(c *Conn, f *protocol.Frame) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.intercept = fn
}

// RateLimited is the gateway's answer to a request over the connection's
// allowance: the request was not processed; retry after d.
func RateLimited(f *protocol.Frame, d time.Duration) *protocol.Frame {
	e := protocol.ErrorFrame(f.Ref, protocol.CodeRateLimited, "more than 20 frames per second; frame dropped")
	e.RetryAfterMS = max(d.Milliseconds(), 1)
	return e
}

// Unavailable is the gateway's answer to a request while its message
// store is unreachable: the request was not done.
func Unavailable(f *protocol.Frame) *protocol.Frame {
	return protocol.ErrorFrame(f.Ref, protocol.CodeUnavailable, "message store unreachable; retry later")
}

// Write sends f on the connection.
func (c *Conn) Write(f *protocol.Frame) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.writeLocked(c, f)
}

// Close closes the connection with code and reason.
func (c *Conn) Close(code websocket.StatusCode, reason string) {
	_ = c.ws.Close(code, reason)
}

// Received returns every frame received so far, in order.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.recv...)
}

// Sends returns the send frames received so far, in order.
func (s *Server) Sends() []Received {
	var out []Received
	for _, r := range s.Received() {
		if r.Frame.Type == protocol.TypeSend {
			out = append(out, r)
		}
	}
	return out
}

// Messages returns the messages stored in room, in seq order.
func (s *Server) Messages(room string) []protocol.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []protocol.Message
	for _, m := range s.rooms[room] {
		out = append(out, *m)
	}
	return out
}

// Await waits until cond, given the frames received so far, holds; it
// fails the test after timeout. A frame is recorded before it is answered:
// that a request arrived does not mean its answer has been sent.
func (s *Server) Await(t testing.TB, what string, timeout time.Duration, cond func([]Received) bool) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ok := cond(s.recv)
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("fake gateway: no %s within %v; received:\n%s", what, timeout, s.dump())
		}
	}
}

// Post stores a message from user in room, as if sent through another
// gateway, and delivers it to the connections joined there.
func (s *Server) Post(room, user, body string) protocol.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.storeLocked(room, user, fmt.Sprintf("%s-%d", user, len(s.rooms[room])+1), body)
	return *m
}

// CloseAll closes every connection with code and reason.
func (s *Server) CloseAll(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(code, reason)
	}
}

func (s *Server) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.recv {
		data, _ := protocol.Encode(&r.Frame)
		fmt.Fprintf(&b, "  conn %d at %s: %s\n", r.Conn, r.At.Format("15:04:05.000"), data)
	}
	return b.String()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) close() {
	s.srv.Close() // every handler has returned or upgraded
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.ws.CloseNow()
	}
	s.wg.Wait()
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.upgrades++
	status := 0
	if s.upgrade != nil {
		status = s.upgrade(s.upgrades)
	}
	if s.closed {
		status = http.StatusServiceUnavailable
	}
	if status != 0 {
		s.mu.Unlock()
		http.Error(w, "fake gateway refuses the upgrade", status)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	// Test pages come from other origins (a file server's port).
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{protocol.Subprotocol},
		InsecureSkipVerify: true,
	})
	if err != nil {
		s.t.Errorf("fake gateway: accept: %v", err)
		return
	}
	defer func() { _ = ws.CloseNow() }()
	if ws.Subprotocol() != protocol.Subprotocol {
		_ = ws.Close(websocket.StatusPolicyViolation, "fake gateway speaks parley.v1 only")
		return
	}
	s.mu.Lock()
	c := &Conn{N: len(s.conns) + 1, s: s, ws: ws, joined: map[string]bool{}}
	s.conns = append(s.conns, c)
	s.mu.Unlock()

	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		f, err := protocol.Decode(data)
		if err != nil {
			c.Write(protocol.ErrorFrame("", protocol.CodeBadRequest, err.Error()))
			continue
		}
		s.mu.Lock()
		s.recv = append(s.recv, Received{Conn: c.N, At: time.Now(), Frame: *f})
		s.notifyLocked()
		hook := s.intercept
		hello := c.user != "" || f.Type == protocol.TypeHello
		s.mu.Unlock()
		if hook != nil && hook(c, f) {
			continue
		}
		if !hello {
			c.Write(protocol.ErrorFrame(f.Ref, protocol.CodeUnauthorized, "send hello first"))
			continue
		}
		s.mu.Lock()
		s.serveLocked(c, f)
		s.mu.Unlock()
	}
}

func (s *Server) serveLocked(c *Conn, f *protocol.Frame) {
	switch f.Type {
	case protocol.TypeHello:
		c.user = f.User
		if c.user == "" {
			c.user = "token-user"
		}
		s.writeLocked(c, &protocol.Frame{Type: protocol.TypeWelcome, Ref: f.Ref, User: c.user, Device: f.Device, Node: s.node})
	case protocol.TypeJoin:
		log := s.rooms[f.Room]
		j := &protocol.Frame{Type: protocol.TypeJoined, Ref: f.Ref, Room: f.Room, Seq: int64(len(log))}
		if len(log) > 0 {
			j.Epoch, j.First = Epoch, 1
		}
		from := max(len(log)-50, 0) // the backlog
		if f.Since != nil {
			same := f.Since.Epoch == j.Epoch || f.Since.Seq == 0
			j.Recovered = protocol.Bool(same)
			from = 0
			if same {
				from = int(min(f.Since.Seq, int64(len(log))))
			}
		}
		s.writeLocked(c, j)
		for _, m := range log[from:] {
			s.writeLocked(c, m)
		}
		c.joined[f.Room] = true
	case protocol.TypeSend:
		key := c.user + "/" + f.ID
		if ack, ok := s.acks[key]; ok {
			ack.Ref = f.Ref
			s.writeLocked(c, &ack)
			return
		}
		m := s.storeLocked(f.Room, c.user, f.ID, f.Body)
		ack := protocol.Frame{Type: protocol.TypeAck, Ref: f.Ref, Room: f.Room, Seq: m.Seq, Epoch: m.Epoch, ID: f.ID, TS: m.TS}
		s.acks[key] = ack
		s.writeLocked(c, &ack)
	case protocol.TypeLeave:
		delete(c.joined, f.Room)
		s.writeLocked(c, &protocol.Frame{Type: protocol.TypeLeft, Ref: f.Ref, Room: f.Room})
	case protocol.TypeHistory:
		ms := []*protocol.Message{}
		for _, m := range s.rooms[f.Room] {
			if f.Before == 0 || m.Seq < f.Before {
				ms = append(ms, m)
			}
		}
		limit := f.Limit
		if limit <= 0 {
			limit = 50
		}
		if len(ms) > limit {
			ms = ms[len(ms)-limit:]
		}
		s.writeLocked(c, &protocol.Frame{Type: protocol.TypeHistory, Ref: f.Ref, Room: f.Room, Messages: ms})
	case protocol.TypePing:
		s.writeLocked(c, &protocol.Frame{Type: protocol.TypePong, Ref: f.Ref})
	}
}

// storeLocked appends a message to room and delivers it to the joined
// connections.
func (s *Server) storeLocked(room, user, id, body string) *protocol.Message {
	m := &protocol.Message{
		Type: protocol.TypeMessage, Room: room, Seq: int64(len(s.rooms[room])) + 1, Epoch: Epoch,
		ID: id, From: user, TS: protocol.FormatTime(time.Now()), Body: body,
	}
	s.rooms[room] = append(s.rooms[room], m)
	for _, c := range s.conns {
		if c.joined[room] {
			s.writeLocked(c, m)
		}
	}
	return m
}

// writeLocked writes v to c; a failure means the client went away.
func (s *Server) writeLocked(c *Conn, v any) {
	data, err := protocol.Encode(v)
	if err != nil {
		s.t.Errorf("fake gateway: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, data)
}

// Refusals is a ready-made Intercept for the common cases: the next
// request of a type refused with rate_limited, and every send refused with
// unavailable while the store is "down". Install it with Server.Refusals.
type Refusals struct {
	mu        sync.Mutex
	rateNext  map[string]time.Duration
	storeDown bool
}

// Refusals installs a Refusals as the server's Intercept and returns it.
func (s *Server) Refusals() *Refusals {
	r := &Refusals{rateNext: map[string]time.Duration{}}
	s.Intercept(r.intercept)
	return r
}

// RateLimitNext refuses the next request of type typ (protocol.TypeSend,
// TypeJoin, ...) with rate_limited and retry_after_ms = after.
func (r *Refusals) RateLimitNext(typ string, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rateNext[typ] = after
}

// StoreDown makes sends answered unavailable (down) or served again.
func (r *Refusals) StoreDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.storeDown = down
}

func (r *Refusals) intercept(c *Conn, f *protocol.Frame) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.rateNext[f.Type]; ok {
		delete(r.rateNext, f.Type)
		c.Write(RateLimited(f, d))
		return true
	}
	if r.storeDown && f.Type == protocol.TypeSend {
		c.Write(Unavailable(f))
		return true
	}
	return false
}
