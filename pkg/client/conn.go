package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/parley-chat/parley/pkg/protocol"
)

// conn is one WebSocket connection with its reader and writer goroutines.
type conn struct {
	ws *websocket.Conn
	// ctx ends, with the reason as its cause, when the connection is done
	// for: a read or write failed, a reply timed out, or the Client closed.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// q holds the requests for the writer, encoded, guarded by Client.mu;
	// wake tells the writer there is something in q.
	q    []queued
	wake chan struct{}
	wg   sync.WaitGroup
	// After a rate_limited answer the writer writes nothing before
	// notBefore, and then one frame per pace until q is empty (pace 0:
	// no spacing). Guarded by Client.mu.
	notBefore time.Time
	pace      time.Duration
}

// queued is a request in a connection's write queue.
type queued struct {
	cl *call // nil for a frame nothing answers (typing)
	b  []byte
}

// connect dials, sends hello and waits for welcome, all within
// Config.AckTimeout. An error that must stop reconnecting is a *fatalError.
func (c *Client) connect(ctx context.Context) (*conn, *protocol.Frame, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.AckTimeout)
	defer cancel()

	ws, resp, err := websocket.Dial(ctx, c.cfg.URL, &websocket.DialOptions{
		HTTPHeader:   c.cfg.Header,
		Subprotocols: []string{protocol.Subprotocol},
	})
	if err != nil {
		err = fmt.Errorf("websocket handshake: %w", err)
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			return nil, nil, &fatalError{fmt.Errorf("HTTP %s: %w", resp.Status, err)}
		}
		return nil, nil, err
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		_ = ws.CloseNow()
		return nil, nil, fmt.Errorf("websocket handshake: server did not accept subprotocol %q", protocol.Subprotocol)
	}
	ws.SetReadLimit(readLimit)

	hello := protocol.Frame{Type: protocol.TypeHello, Device: c.cfg.Device}
	if c.cfg.TokenSource != nil {
		tok, err := c.cfg.TokenSource(ctx)
		if err != nil {
			_ = ws.CloseNow()
			return nil, nil, fmt.Errorf("hello: Config.TokenSource: %w", err)
		}
		hello.Token = tok
	} else if c.cfg.Token != "" {
		hello.Token = c.cfg.Token
	} else {
		hello.User = c.cfg.User
	}
	b, err := protocol.Encode(&hello)
	if err != nil {
		_ = ws.CloseNow()
		return nil, nil, err
	}
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		_ = ws.CloseNow()
		return nil, nil, connError("hello", err)
	}

	// Read until welcome. An error frame is usually followed by a close
	// frame that says more, so wait a moment for it.
	var refused *protocol.Error
	rctx := ctx
	for {
		typ, data, err := ws.Read(rctx)
		if err != nil {
			_ = ws.CloseNow()
			err = connError("hello", err)
			if refused != nil {
				err = fmt.Errorf("%w (after error frame %w)", err, refused)
			}
			if websocket.CloseStatus(err) == websocket.StatusPolicyViolation ||
				(refused != nil && !retryable(refused.Code)) {
				err = &fatalError{err}
			}
			return nil, nil, err
		}
		if typ != websocket.MessageText {
			continue
		}
		var f protocol.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.log.Warn("parley client: undecodable frame during hello", "err", err)
			continue
		}
		switch f.Type {
		case protocol.TypeWelcome:
			cctx, ccancel := context.WithCancelCause(context.Background())
			return &conn{ws: ws, ctx: cctx, cancel: ccancel, wake: make(chan struct{}, 1)}, &f, nil
		case protocol.TypeError:
			if refused == nil {
				refused = frameError(&f)
				var stop context.CancelFunc
				rctx, stop = context.WithTimeout(ctx, time.Second)
				defer stop()
			}
		}
	}
}

// writeLoop writes the frames queued in cn.q, in order, holding them back
// while the connection is over its rate (see conn.notBefore).
func (c *Client) writeLoop(cn *conn) {
	defer cn.wg.Done()
	for {
		select {
		case <-cn.ctx.Done():
			return
		case <-cn.wake:
		}
		for {
			c.mu.Lock()
			if len(cn.q) == 0 {
				c.mu.Unlock()
				break
			}
			if d := time.Until(cn.notBefore); d > 0 {
				c.mu.Unlock()
				if !sleep(cn.ctx, d) {
					return
				}
				continue
			}
			e := cn.q[0]
			cn.q[0] = queued{}
			cn.q = cn.q[1:]
			if e.cl != nil && c.pending[e.cl.ref] != e.cl {
				// Abandoned by its caller while held back: it was never
				// sent, so it is not sent now.
				c.mu.Unlock()
				continue
			}
			if cn.pace > 0 {
				if len(cn.q) > 0 {
					cn.notBefore = time.Now().Add(cn.pace)
				} else {
					cn.pace = 0
				}
			}
			if e.cl != nil && e.cl.conn == cn {
				e.cl.queued, e.cl.sentAt = false, time.Now()
			}
			c.mu.Unlock()
			ctx, cancel := context.WithTimeout(cn.ctx, c.cfg.AckTimeout)
			err := cn.ws.Write(ctx, websocket.MessageText, e.b)
			cancel()
			if err != nil {
				cn.cancel(connError("write", err))
				return
			}
		}
	}
}

// sleep waits for d and reports true, or false if ctx ends first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// readLoop reads and handles frames until the connection fails.
func (c *Client) readLoop(cn *conn) {
	defer cn.wg.Done()
	for {
		typ, data, err := cn.ws.Read(cn.ctx)
		if err != nil {
			cn.cancel(connError("read", err))
			return
		}
		if typ != websocket.MessageText {
			c.log.Warn("parley client: ignoring binary frame")
			continue
		}
		var f protocol.Frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.log.Warn("parley client: ignoring undecodable frame", "err", err)
			continue
		}
		if !c.handle(cn, &f) {
			return
		}
	}
}

// handle acts on one frame from the server. It returns false when the
// connection ended while an event waited for room in Events.
func (c *Client) handle(cn *conn, f *protocol.Frame) bool {
	switch f.Type {
	case protocol.TypeMessage:
		return c.handleMessage(cn, f)
	case protocol.TypeJoined:
		return c.handleJoined(cn, f)
	case protocol.TypeAck, protocol.TypeLeft, protocol.TypeHistory,
		protocol.TypeCreated, protocol.TypeInvited, protocol.TypeRooms, protocol.TypeRefreshed:
		if cl := c.take(f.Ref); cl != nil {
			if f.Type == protocol.TypeCreated {
				c.memberJoined(f.Room, f.Kind)
			}
			cl.done <- result{f: f}
		} else {
			c.log.Debug("parley client: reply to no pending call", "type", f.Type, "ref", f.Ref)
		}
	case protocol.TypeError:
		if r := c.refused(cn, f); r != nil {
			return c.emit(cn, Event{Retry: r})
		}
		cl := c.take(f.Ref)
		if cl == nil || cl.internal {
			if !c.emit(cn, Event{Error: f}) {
				return false
			}
		}
		if cl != nil {
			cl.done <- result{err: frameError(f)}
		}
	case protocol.TypeWelcome:
		c.mu.Lock()
		c.setWelcomeLocked(f)
		c.mu.Unlock()
	case protocol.TypeTyping:
		return c.emit(cn, Event{Typing: f})
	case protocol.TypeRead:
		if f.Ref == "" {
			c.applyRead(f)
			return c.emit(cn, Event{ReadSync: f})
		}
		if cl := c.take(f.Ref); cl != nil {
			c.applyRead(f)
			cl.done <- result{f: f}
		}
	case protocol.TypeMembership:
		c.applyMembership(cn, f)
		return c.emit(cn, Event{Membership: f})
	case protocol.TypePresence:
		if f.Ref == "" {
			return c.emit(cn, Event{Presence: f})
		}
		if cl := c.take(f.Ref); cl != nil {
			cl.done <- result{f: f}
		} else {
			c.log.Debug("parley client: reply to no pending call", "type", f.Type, "ref", f.Ref)
		}
	case protocol.TypeTokenExpiring:
		c.refreshSoon(f)
	case protocol.TypePong:
	default:
		c.log.Debug("parley client: ignoring frame", "type", f.Type)
	}
	return true
}

func (c *Client) handleMessage(cn *conn, f *protocol.Frame) bool {
	m := &protocol.Message{
		Type: f.Type, Room: f.Room, Seq: f.Seq, Epoch: f.Epoch, ID: f.ID,
		From: f.From, Device: f.Device, TS: f.TS, Body: f.Body,
	}
	c.mu.Lock()
	pos := c.rooms[m.Room]
	dup := pos != nil && pos.Place(m.Epoch, m.Seq) == protocol.Duplicate
	c.mu.Unlock()
	if pos == nil {
		c.log.Debug("parley client: message for a room not joined", "room", m.Room, "seq", m.Seq)
		return true
	}
	if dup {
		c.log.Debug("parley client: dropping duplicate message", "room", m.Room, "epoch", m.Epoch, "seq", m.Seq)
		return true
	}
	c.applyMessage(m)
	// Deliver first, then advance: a message that never reached Events is
	// asked for again on the next re-join. Only a duplicate is dropped: a gap
	// or a new epoch is delivered as it came.
	if !c.emit(cn, Event{Message: m}) {
		return false
	}
	c.mu.Lock()
	*pos = protocol.Position{Epoch: m.Epoch, Seq: m.Seq}
	c.mu.Unlock()
	return true
}

func (c *Client) handleJoined(cn *conn, f *protocol.Frame) bool {
	var cl *call
	if f.Ref != "" {
		cl = c.take(f.Ref)
	}
	c.mu.Lock()
	pos := c.rooms[f.Room]
	if pos == nil && cl != nil && !cl.internal {
		pos = &protocol.Position{}
		if s := cl.frame.Since; s != nil {
			*pos = *s
		}
		c.rooms[f.Room] = pos
	}
	// The room is in f's epoch now. A position in another one (the room's
	// store was lost), or the zero one (which takes any epoch as its own),
	// starts over before seq 1 of it.
	if pos != nil && (pos.IsZero() || pos.Place(f.Epoch, f.Seq) == protocol.NewEpoch) {
		*pos = protocol.Reset(f.Epoch, 1)
	}
	if pos != nil {
		c.applyJoinedLocked(f, cl != nil && !cl.internal)
	}
	c.mu.Unlock()
	if pos == nil {
		// Unsolicited, or the answer to a re-join of a room left since.
		c.log.Debug("parley client: joined for a room not joined", "room", f.Room)
		if cl != nil {
			cl.done <- result{f: f}
		}
		return true
	}
	if cl != nil && !cl.internal {
		// Answer the caller before queueing the event, so that a caller
		// that reads Events only after Join returns cannot deadlock.
		cl.done <- result{f: f}
		cl = nil
	}
	if !c.emit(cn, Event{Joined: f}) {
		if cl != nil {
			cl.done <- result{err: context.Cause(cn.ctx)}
		}
		return false
	}
	if cl != nil {
		cl.done <- result{f: f}
	}
	return true
}

// emit puts ev on Events, waiting for room while the connection lives.
func (c *Client) emit(cn *conn, ev Event) bool {
	select {
	case c.events <- ev:
		return true
	case <-cn.ctx.Done():
		return false
	}
}

// emitState puts a state change on Events, waiting for room until done
// ends. A nil done means: do not wait.
func (c *Client) emitState(done <-chan struct{}, ev Event) {
	if done == nil {
		select {
		case c.events <- ev:
		default:
			c.log.Debug("parley client: Events full, state change not delivered", "state", ev.State)
		}
		return
	}
	select {
	case c.events <- ev:
	case <-done:
	}
}
