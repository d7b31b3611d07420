package client

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

// waitTimeout bounds every wait in these tests.
const waitTimeout = 5 * time.Second

// fakeServer is an in-process gateway that speaks enough of protocol v1 to
// exercise the client: welcome, join (with since), send (deduplicated by
// id), leave, history, and fan-out of messages to joined connections. It
// records every frame it receives, and has knobs to misbehave.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server
	wg  sync.WaitGroup // handler goroutines

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever state changes
	closed  bool
	conns   []*fakeConn
	rooms   map[string]*fakeRoom
	acks    map[string]protocol.Frame // by user/id
	recv    []recvFrame
	// closes holds the close code each connection ended with, as the
	// server read it (-1: no close frame).
	closes []websocket.StatusCode
	nconns int
	// upgrades counts the upgrade requests, refused ones included.
	upgrades int

	// Knobs, guarded by mu.
	down        bool   // answer upgrades with 503
	rejectHello string // close with 1008 and this reason on hello
	holdAcks    bool   // store new sends but neither ack nor fan them out
	// refuse, when set, sees each request after hello before it is
	// served; a non-nil error frame is sent instead (the request is not
	// processed), as the gateway's rate limiter and an unreachable store
	// do.
	refuse func(f *protocol.Frame) *protocol.Frame
	// hold, when set, keeps the requests it returns true for unanswered in
	// held, until answerHeld.
	hold func(f *protocol.Frame) bool
	held []heldFrame
}

type heldFrame struct {
	fc *fakeConn
	f  *protocol.Frame
}

type fakeConn struct {
	n      int // 1-based, in order of connection
	ws     *websocket.Conn
	user   string
	joined map[string]bool
}

type fakeRoom struct {
	epoch string
	log   []*protocol.Message
}

// recvFrame is a frame the server received, on which connection and
// when.
type recvFrame struct {
	conn int
	at   time.Time
	f    protocol.Frame
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{
		t:       t,
		changed: make(chan struct{}),
		rooms:   make(map[string]*fakeRoom),
		acks:    make(map[string]protocol.Frame),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.close)
	return s
}

func (s *fakeServer) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

func (s *fakeServer) close() {
	s.srv.Close() // after this, every handler has returned or upgraded
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.mu.Unlock()
	for _, fc := range conns {
		_ = fc.ws.CloseNow()
	}
	s.wg.Wait()
}

// set changes the knobs under the lock.
func (s *fakeServer) set(f func(s *fakeServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// notifyLocked wakes await. Caller holds mu.
func (s *fakeServer) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// await waits until cond, evaluated under the lock, holds.
func (s *fakeServer) await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("fake server: timed out waiting for %s; received:\n%s", what, s.dump())
		}
	}
}

// frames returns the frames received on connection n.
func (s *fakeServer) frames(n int) []protocol.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	var fs []protocol.Frame
	for _, r := range s.recv {
		if r.conn == n {
			fs = append(fs, r.f)
		}
	}
	return fs
}

// countLocked counts received frames of type typ. Caller holds mu.
func (s *fakeServer) countLocked(typ string) int {
	n := 0
	for _, r := range s.recv {
		if r.f.Type == typ {
			n++
		}
	}
	return n
}

func (s *fakeServer) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, r := range s.recv {
		data, _ := protocol.Encode(&r.f)
		fmt.Fprintf(&b, "  conn %d: %s\n", r.conn, data)
	}
	return b.String()
}

// push sends a raw frame to every live connection.
func (s *fakeServer) push(f *protocol.Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, fc := range s.conns {
		s.writeLocked(fc, f)
	}
}

// closeAll closes every connection with code and reason.
func (s *fakeServer) closeAll(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for _, fc := range conns {
		_ = fc.ws.Close(code, reason)
	}
}

func (s *fakeServer) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.upgrades++
	s.notifyLocked()
	if s.closed || s.down {
		s.mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()

	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		s.t.Errorf("fake server: accept: %v", err)
		return
	}
	defer func() { _ = ws.CloseNow() }()
	if ws.Subprotocol() != protocol.Subprotocol {
		s.t.Errorf("fake server: client did not ask for %s", protocol.Subprotocol)
		return
	}

	s.mu.Lock()
	s.nconns++
	fc := &fakeConn{n: s.nconns, ws: ws, joined: make(map[string]bool)}
	s.conns = append(s.conns, fc)
	s.mu.Unlock()

	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			s.mu.Lock()
			s.closes = append(s.closes, websocket.CloseStatus(err))
			s.notifyLocked()
			s.mu.Unlock()
			return
		}
		f, err := protocol.Decode(data)
		if err != nil {
			s.t.Errorf("fake server: client sent an invalid frame %s: %v", data, err)
			return
		}
		s.mu.Lock()
		s.recv = append(s.recv, recvFrame{conn: fc.n, at: time.Now(), f: *f})
		reject := s.rejectHello
		s.notifyLocked()
		s.mu.Unlock()

		if f.Type == protocol.TypeHello && reject != "" {
			_ = ws.Close(websocket.StatusPolicyViolation, reject)
			return
		}
		s.mu.Lock()
		if s.hold != nil && f.Type != protocol.TypeHello && s.hold(f) {
			s.held = append(s.held, heldFrame{fc, f})
			s.notifyLocked()
		} else if e := s.refusalLocked(f); e != nil {
			s.writeLocked(fc, e)
		} else {
			s.serveLocked(fc, f)
		}
		s.mu.Unlock()
	}
}

// refusalLocked asks the refuse knob about f. Caller holds mu.
func (s *fakeServer) refusalLocked(f *protocol.Frame) *protocol.Frame {
	if s.refuse == nil || f.Type == protocol.TypeHello {
		return nil
	}
	return s.refuse(f)
}

// answerHeld answers every held request with answer(f), in the order they
// arrived, and stops holding.
func (s *fakeServer) answerHeld(answer func(f *protocol.Frame) *protocol.Frame) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.held {
		s.writeLocked(h.fc, answer(h.f))
	}
	s.held, s.hold = nil, nil
}

// received returns every frame received so far.
func (s *fakeServer) received() []recvFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recvFrame(nil), s.recv...)
}

func (s *fakeServer) room(name string) *fakeRoom {
	r := s.rooms[name]
	if r == nil {
		r = &fakeRoom{}
		s.rooms[name] = r
	}
	return r
}

func (s *fakeServer) serveLocked(fc *fakeConn, f *protocol.Frame) {
	switch f.Type {
	case protocol.TypeHello:
		fc.user = f.User
		s.writeLocked(fc, &protocol.Frame{Type: protocol.TypeWelcome, User: f.User, Device: f.Device, Node: fmt.Sprintf("fake-%d", fc.n)})
	case protocol.TypeJoin:
		if f.Room == "secret" {
			s.writeLocked(fc, protocol.ErrorFrame(f.Ref, protocol.CodeForbidden, "not for you"))
			return
		}
		r := s.room(f.Room)
		j := &protocol.Frame{Type: protocol.TypeJoined, Ref: f.Ref, Room: f.Room, Epoch: r.epoch, Seq: int64(len(r.log))}
		if len(r.log) > 0 {
			j.First = 1
		}
		after := int64(0)
		if f.Since != nil {
			j.Recovered = protocol.Bool(f.Since.Epoch == r.epoch)
			if f.Since.Epoch == r.epoch {
				after = f.Since.Seq
			}
		}
		s.writeLocked(fc, j)
		for _, m := range r.log {
			if m.Seq > after {
				s.writeLocked(fc, m)
			}
		}
		fc.joined[f.Room] = true
	case protocol.TypeSend:
		key := fc.user + "/" + f.ID
		if ack, ok := s.acks[key]; ok {
			ack.Ref = f.Ref
			s.writeLocked(fc, &ack)
			return
		}
		r := s.room(f.Room)
		if r.epoch == "" {
			r.epoch = "e1"
		}
		m := &protocol.Message{
			Type: protocol.TypeMessage, Room: f.Room, Seq: int64(len(r.log)) + 1, Epoch: r.epoch,
			ID: f.ID, From: fc.user, TS: protocol.FormatTime(time.Now()), Body: f.Body,
		}
		r.log = append(r.log, m)
		ack := protocol.Frame{Type: protocol.TypeAck, Ref: f.Ref, ID: f.ID, Room: f.Room, Seq: m.Seq, Epoch: m.Epoch, TS: m.TS}
		s.acks[key] = ack
		if s.holdAcks {
			return
		}
		s.writeLocked(fc, &ack)
		for _, other := range s.conns {
			if other.joined[f.Room] {
				s.writeLocked(other, m)
			}
		}
	case protocol.TypeLeave:
		delete(fc.joined, f.Room)
		s.writeLocked(fc, &protocol.Frame{Type: protocol.TypeLeft, Ref: f.Ref, Room: f.Room})
	case protocol.TypeHistory:
		var ms []*protocol.Message
		for _, m := range s.room(f.Room).log {
			if f.Before == 0 || m.Seq < f.Before {
				ms = append(ms, m)
			}
		}
		if f.Limit > 0 && len(ms) > f.Limit {
			ms = ms[len(ms)-f.Limit:]
		}
		s.writeLocked(fc, &protocol.Frame{Type: protocol.TypeHistory, Ref: f.Ref, Room: f.Room, Messages: ms})
	case protocol.TypePing:
		s.writeLocked(fc, &protocol.Frame{Type: protocol.TypePong, Ref: f.Ref})
	}
}

// writeLocked writes v to fc; a failure just means the client went away.
func (s *fakeServer) writeLocked(fc *fakeConn, v any) {
	data, err := protocol.Encode(v)
	if err != nil {
		s.t.Errorf("fake server: %v", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_ = fc.ws.Write(ctx, websocket.MessageText, data)
}
