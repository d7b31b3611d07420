package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// RawServer is the raw fan-out ceiling: a minimal protocol-v1 WebSocket
// server with no broker, no history and no checks. It answers hello with
// welcome and join with joined; a send gets its room's next seq, is encoded
// once as a message frame and that one frame is queued to every member of the
// room (each connection has a bounded queue, drained by a writer goroutine
// that the first frame of a burst starts and that exits when the queue is
// empty, as a gateway's connection does), and the sender gets an ack. Run pointed at it therefore
// measures what writing the same frame to N sockets costs on this machine,
// with the generator's receivers measuring exactly as against a gateway.
//
// A connection whose queue (RawQueue frames) overflows is closed with 1013,
// so a server that falls behind shows up as dropped connections and missing
// messages instead of unbounded memory.
type RawServer struct {
	srv *http.Server
	ln  net.Listener
	url string

	mu     sync.Mutex
	closed bool
	rooms  map[string]*rawRoom
	conns  map[*rawConn]struct{}
	wg     sync.WaitGroup // the serve loop and every connection's goroutines
}

// RawQueue is the outbound queue length of a RawServer connection.
const RawQueue = 1024

type rawRoom struct {
	mu      sync.Mutex
	seq     int64
	members map[*rawConn]struct{}
}

type rawConn struct {
	s  *RawServer
	c  *websocket.Conn
	mu sync.Mutex
	// queue holds the frames not yet written; a writer goroutine runs
	// while it is not empty (writing), started by the enqueue that finds
	// none, as a gateway's connection does.
	queue   [][]byte
	writing bool
	closed  bool // no more frames; with slow, the writer closes with 1013
	slow    bool // closed for overflowing its queue
}

// StartRawServer listens on addr (e.g. "127.0.0.1:0") and serves until
// Close.
func StartRawServer(addr string) (*RawServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &RawServer{ln: ln, url: "ws://" + ln.Addr().String() + "/ws", rooms: map[string]*rawRoom{}, conns: map[*rawConn]struct{}{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveWS), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is the server's WebSocket endpoint.
func (s *RawServer) URL() string { return s.url }

// Close stops the listener, closes every connection and waits for every
// goroutine.
func (s *RawServer) Close() error {
	err := s.srv.Close() // listener; hijacked WebSockets are ours to close
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.stop()
		_ = c.c.CloseNow()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// stop makes the connection take no more frames.
func (c *rawConn) stop() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// enqueue queues b without blocking; a full queue closes the connection.
func (c *rawConn) enqueue(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if len(c.queue) >= RawQueue {
		c.closed, c.slow, c.queue = true, true, nil
	} else {
		c.queue = append(c.queue, b)
	}
	if !c.writing {
		c.writing = true
		c.s.wg.Add(1) // the caller is a counted reader, so the count is not 0
		go c.writeLoop()
	}
}

// writeLoop writes queued frames until the queue is empty, then exits.
func (c *rawConn) writeLoop() {
	defer c.s.wg.Done()
	var batch [][]byte
	for {
		c.mu.Lock()
		if c.closed || len(c.queue) == 0 {
			slow := c.slow
			c.writing, c.slow = false, false
			c.mu.Unlock()
			if slow {
				_ = c.c.Close(websocket.StatusTryAgainLater, "slow consumer")
			}
			return
		}
		batch, c.queue = c.queue, batch[:0]
		c.mu.Unlock()
		for i, b := range batch {
			// A context that never ends costs the library nothing per
			// frame; a stuck write ends when Close closes the socket.
			if err := c.c.Write(context.Background(), websocket.MessageText, b); err != nil {
				c.stop()
				break
			}
			batch[i] = nil
		}
	}
}

func (s *RawServer) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		return
	}
	c := &rawConn{s: s, c: ws}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.CloseNow()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1) // this handler, the reader
	s.mu.Unlock()
	defer s.wg.Done()
	s.read(c)
	c.stop()
	_ = ws.CloseNow()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	for _, room := range s.roomsSnapshot() {
		room.mu.Lock()
		delete(room.members, c)
		room.mu.Unlock()
	}
}

func (s *RawServer) roomsSnapshot() []*rawRoom {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*rawRoom, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	return out
}

func (s *RawServer) room(name string) *rawRoom {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	if r == nil {
		r = &rawRoom{members: map[*rawConn]struct{}{}}
		s.rooms[name] = r
	}
	return r
}

func encode(f *protocol.Frame) []byte {
	b, _ := json.Marshal(f) // a Frame always encodes
	return b
}

// read is a connection's reader loop.
func (s *RawServer) read(c *rawConn) {
	ctx := context.Background()
	c.c.SetReadLimit(1 << 20)
	for {
		_, b, err := c.c.Read(ctx)
		if err != nil {
			return
		}
		var f protocol.Frame
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		switch f.Type {
		case protocol.TypeHello:
			c.enqueue(encode(&protocol.Frame{Type: protocol.TypeWelcome, Ref: f.Ref, User: f.User, Device: f.Device, Node: "raw"}))
		case protocol.TypeJoin:
			r := s.room(f.Room)
			r.mu.Lock()
			r.members[c] = struct{}{}
			c.enqueue(encode(&protocol.Frame{Type: protocol.TypeJoined, Ref: f.Ref, Room: f.Room, Epoch: "raw", Seq: r.seq, First: min(r.seq, 1)}))
			r.mu.Unlock()
		case protocol.TypeSend:
			r := s.room(f.Room)
			ts := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
			r.mu.Lock()
			r.seq++
			seq := r.seq
			msg := encode(&protocol.Frame{Type: protocol.TypeMessage, Room: f.Room, Seq: seq, Epoch: "raw", ID: f.ID, From: "raw", Device: "bench", TS: ts, Body: f.Body})
			for m := range r.members {
				m.enqueue(msg) // the same bytes to every member
			}
			r.mu.Unlock()
			c.enqueue(encode(&protocol.Frame{Type: protocol.TypeAck, Ref: f.Ref, ID: f.ID, Room: f.Room, Seq: seq, TS: ts}))
		case protocol.TypePing:
			c.enqueue(encode(&protocol.Frame{Type: protocol.TypePong, Ref: f.Ref}))
		}
	}
}

// RawCeiling runs Run against an in-process RawServer on 127.0.0.1 (cfg.URLs
// is replaced by its URL).
func RawCeiling(ctx context.Context, cfg Config) (*Result, error) {
	s, err := StartRawServer("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cfg.URLs = []string{s.URL()}
	return Run(ctx, cfg)
}
