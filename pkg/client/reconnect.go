package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/coder/websocket"
	"github.com/parley-chat/parley/pkg/protocol"
)

// errConnLost completes the automatic re-joins still waiting when their
// connection ends; no caller sees it.
var errConnLost = errors.New("connection lost")

// run owns the Client's connections: it serves one until it fails, then
// reconnects and resumes, until Close or a fatal error. It is the last
// goroutine to send on Events and closes it.
func (c *Client) run(cn *conn) {
	defer c.wg.Done()
	defer close(c.events)

	bo := &backoff{min: c.cfg.MinBackoff, max: c.cfg.MaxBackoff}
	err := c.loop(cn, bo)
	c.shutdown(err)
	if c.ctx.Err() != nil {
		c.emitState(nil, Event{State: StateClosed})
		return
	}
	c.log.Error("parley client: stopped", "err", err)
	c.emitState(c.ctx.Done(), Event{State: StateClosed, Err: err})
}

// loop serves connections and returns why it stopped: ErrClosed after
// Close, or a fatal error.
func (c *Client) loop(cn *conn, bo *backoff) error {
	resume := false
	for {
		cause := c.serve(cn, resume, bo)
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		if endsClient(cause, c.cfg.TokenSource != nil) {
			return fmt.Errorf("%w: %w", ErrClosed, cause)
		}
		c.log.Warn("parley client: connection lost, reconnecting", "err", cause)
		c.emitState(c.ctx.Done(), Event{State: StateReconnecting, Err: cause})
		var err error
		cn, err = c.reconnect(bo)
		if err != nil {
			return err
		}
		resume = true
	}
}

// reconnect dials until it has a connection that said welcome.
func (c *Client) reconnect(bo *backoff) (*conn, error) {
	for {
		t := time.NewTimer(bo.next())
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil, ErrClosed
		case <-t.C:
		}
		cn, welcome, err := c.connect(c.ctx)
		if c.ctx.Err() != nil {
			if cn != nil {
				_ = cn.ws.CloseNow()
			}
			return nil, ErrClosed
		}
		if err == nil {
			c.mu.Lock()
			c.setWelcomeLocked(welcome)
			c.mu.Unlock()
			return cn, nil
		}
		if isFatal(err) {
			return nil, fmt.Errorf("%w: reconnect refused: %w", ErrClosed, unwrapFatal(err))
		}
		c.log.Warn("parley client: reconnect failed", "err", err)
	}
}

// serve runs cn until it fails or the Client closes, and returns why it
// ended. With resume, it first re-joins the rooms and resends the pending
// requests; without (the connection Dial made), cn is already in use.
func (c *Client) serve(cn *conn, resume bool, bo *backoff) error {
	cn.wg.Add(2)
	go c.readLoop(cn)
	go c.writeLoop(cn)

	if resume {
		if err := c.resume(cn); err != nil {
			cn.cancel(err)
		} else {
			bo.reset()
			c.log.Info("parley client: reconnected", "node", c.Welcome().Node)
			select {
			case c.events <- Event{State: StateConnected}:
			case <-cn.ctx.Done():
			case <-c.ctx.Done():
			}
		}
	}

	select {
	case <-cn.ctx.Done():
	case <-c.ctx.Done():
	}
	if c.ctx.Err() != nil {
		_ = cn.ws.Close(websocket.StatusNormalClosure, "")
		cn.cancel(ErrClosed)
	} else {
		_ = cn.ws.CloseNow()
	}
	cn.wg.Wait()
	c.detach()
	return context.Cause(cn.ctx)
}

// rejoinWindow is how many automatic re-joins a resume has on the wire at
// once: well under the gateway's default burst of 40 frames.
const rejoinWindow = 16

// resume re-joins every joined room with since = its position (at most
// rejoinWindow at a time), waits for the answers, then resends the
// callers' pending requests in order and opens cn to new ones.
func (c *Client) resume(cn *conn) error {
	c.mu.Lock()
	c.cur = cn
	c.resumeRooms = make(map[string]bool)
	joining := make(map[string]bool) // rooms a caller's pending Join covers
	for _, cl := range c.pending {
		if cl.frame.Type == protocol.TypeJoin {
			joining[cl.frame.Room] = true
		}
	}
	var rejoins []*call
	for _, room := range slices.Sorted(maps.Keys(c.rooms)) {
		c.resumeRooms[room] = true
		if joining[room] {
			continue
		}
		since := *c.rooms[room]
		cl := c.newCall(&protocol.Frame{
			Type:  protocol.TypeJoin,
			Room:  room,
			Since: &since,
		})
		cl.internal = true
		c.pending[cl.ref] = cl
		rejoins = append(rejoins, cl)
	}
	// At most rejoinWindow re-joins are on the wire at once, the next
	// written as each is answered: a client in many rooms must not send
	// them all in one burst, which the gateway's rate limit would refuse
	// past its burst and close as a flood.
	written := min(len(rejoins), rejoinWindow)
	for _, cl := range rejoins[:written] {
		c.write(cn, cl)
	}
	c.mu.Unlock()

	timer := time.NewTimer(c.cfg.AckTimeout)
	defer timer.Stop()
	for _, cl := range rejoins {
		select {
		case r := <-cl.done:
			if written < len(rejoins) {
				c.mu.Lock()
				if c.cur == cn {
					c.write(cn, rejoins[written])
				}
				c.mu.Unlock()
				written++
			}
			timer.Reset(c.cfg.AckTimeout) // each answer restarts the wait for the next
			if r.err == nil {
				continue
			}
			var perr *protocol.Error
			if errors.As(r.err, &perr) && !retryable(perr.Code) {
				// Refused for good (the Error event has told the
				// application): the room is no longer joined.
				c.log.Warn("parley client: re-join refused, room dropped", "room", cl.frame.Room, "err", r.err)
				c.mu.Lock()
				delete(c.rooms, cl.frame.Room)
				c.mu.Unlock()
				continue
			}
			return fmt.Errorf("re-join %s: %w", cl.frame.Room, r.err)
		case <-cn.ctx.Done():
			return context.Cause(cn.ctx)
		case <-c.ctx.Done():
			return ErrClosed
		case <-timer.C:
			return fmt.Errorf("re-join %s: %w", cl.frame.Room, errReplyTimeout)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cl := range c.pendingInOrder() {
		switch cl.frame.Type {
		case protocol.TypeSend:
			// Only the oldest send goes; the others follow it one by one.
			if cl != c.sends[0] {
				continue
			}
		case protocol.TypeJoin:
			if pos := c.rooms[cl.frame.Room]; pos != nil {
				since := *pos
				cl.frame.Since = &since
			}
		}
		// A resend planned after an unavailable answer goes now: the new
		// connection is the retry.
		c.write(cn, cl)
	}
	c.ready = true
	return nil
}

// detach forgets the connection that just ended. Pending requests stay to
// be resent, except the automatic re-joins (resume makes new ones) and
// leaves (the next connection does not join those rooms).
func (c *Client) detach() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.ready, c.resumeRooms = nil, false, nil
	for ref, cl := range c.pending {
		switch {
		case cl.internal:
			delete(c.pending, ref)
			c.stopRetry(cl)
			cl.done <- result{err: errConnLost}
		case cl.frame.Type == protocol.TypeLeave:
			delete(c.pending, ref)
			c.stopRetry(cl)
			cl.done <- result{f: &protocol.Frame{Type: protocol.TypeLeft, Ref: ref, Room: cl.frame.Room}}
		default:
			cl.conn, cl.queued = nil, false
		}
	}
}

// shutdown marks the Client stopped with err and fails every pending call.
func (c *Client) shutdown(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	c.sends = nil
	for ref, cl := range c.pending {
		delete(c.pending, ref)
		c.stopRetry(cl)
		cl.done <- result{err: err}
	}
}
