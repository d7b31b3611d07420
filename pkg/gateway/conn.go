package gateway

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// conn is one client connection. Its serve goroutine is its only reader;
// after hello it queues client frames in the inbox, whose handler
// goroutine (started only while frames wait) handles them one at a time
// and owns the memberships until serve, having stopped the inbox, cleans
// them up. The writer goroutine, started only while frames wait, is the
// only writer.
//
// Lock order (see hub for the room locks): room.mu before qmu, since
// fan-out enqueues under room.mu; qmu, inbox.mu, pingMu and wdMu take no
// other lock while held.
type conn struct {
	g      *Gateway
	ws     *websocket.Conn
	ctx    context.Context // ends when the connection does
	cancel context.CancelFunc
	id     uint64

	user, device string
	plain        bool       // plain-text mode
	addr         netip.Addr // the client's address, counted against MaxConnsPerIP
	counted      bool       // counted against MaxConnsPerUser (guarded by Gateway.mu)

	members map[string]*member // owned by the request handler (see inbox): rooms joined
	in      inbox              // client frames waiting to be handled

	wg sync.WaitGroup // the writer and the pinger

	qmu        sync.Mutex
	queue      [][]byte
	capped     int  // frames in queue that count against OutboundQueue
	cappedSize int  // their bytes, against OutboundBytes
	writing    bool // a writer goroutine is running
	closing    bool // no more frames are accepted
	closeCode  websocket.StatusCode
	closeWhy   string
	flushFirst bool // write what is queued before the close frame

	pingMu      sync.Mutex
	pingTimer   *time.Timer
	pingStopped bool

	// The write watchdog bounds each frame write by WriteTimeout with one
	// timer per connection, re-armed per frame: a context per frame (and
	// the AfterFunc the library registers on it) was the gateway's largest
	// source of garbage under fan-out.
	wdMu      sync.Mutex
	wdTimer   *time.Timer
	wdArmed   bool      // a write is in progress
	wdPending bool      // the timer is set to fire
	wdStarted time.Time // when it started
	wdStopped bool
	wdWG      sync.WaitGroup // a firing in progress
}

// enqueueCatchUp queues a catch-up (a join's missed messages, a repair's
// merge: each bounded by the history size) without counting it against
// OutboundQueue and OutboundBytes: a resume owed 1000 messages, or a burst
// the gateway itself held back, must not be mistaken for a slow consumer.
func (c *conn) enqueueCatchUp(frames ...[]byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closing {
		return
	}
	c.queue = append(c.queue, frames...)
	c.startWriterLocked()
}

// enqueue queues one text frame for the writer. It never blocks: when the
// frames waiting for the writer exceed OutboundQueue or OutboundBytes, the
// connection is closed with 1013 instead (invariant 7).
func (c *conn) enqueue(data []byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closing {
		return
	}
	if c.capped >= c.g.cfg.OutboundQueue || c.cappedSize+len(data) > c.g.cfg.OutboundBytes {
		c.slowConsumerLocked()
		return
	}
	c.capped++
	c.cappedSize += len(data)
	c.queue = append(c.queue, data)
	c.startWriterLocked()
}

// sendFrame encodes and queues a frame.
func (c *conn) sendFrame(f *protocol.Frame) {
	b, err := protocol.Encode(f)
	if err != nil {
		c.g.log.Error("encode frame", "type", f.Type, "err", err)
		return
	}
	c.enqueue(b)
}

// sendError queues an error frame answering ref.
func (c *conn) sendError(ref, code, msg string) {
	c.g.metrics.errors.WithLabelValues(code).Inc()
	if c.plain {
		return
	}
	c.sendFrame(protocol.ErrorFrame(ref, code, msg))
}

func (c *conn) slowConsumer() {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.slowConsumerLocked()
}

func (c *conn) slowConsumerLocked() {
	if c.closing {
		return
	}
	c.g.metrics.slowCloses.Inc()
	c.g.log.Info("closing slow consumer", "conn", c.id, "user", c.user, "queued", len(c.queue), "queued_bytes", c.cappedSize)
	c.requestCloseLocked(protocol.CloseTryAgainLater, "slow consumer: outbound queue full; resume", false)
}

// closeWith closes the connection with code and reason. With flush, the
// frames already queued are written first.
func (c *conn) closeWith(code int, reason string, flush bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	c.requestCloseLocked(code, reason, flush)
}

func (c *conn) requestCloseLocked(code int, reason string, flush bool) {
	if c.closing {
		return
	}
	c.closing = true
	c.closeCode, c.closeWhy, c.flushFirst = websocket.StatusCode(code), reason, flush
	if !flush {
		c.queue, c.capped, c.cappedSize = nil, 0, 0
	}
	c.startWriterLocked()
}

func (c *conn) startWriterLocked() {
	if c.writing {
		return
	}
	c.writing = true
	c.wg.Add(1)
	go c.writeLoop()
}

// maxReusedQueue is the largest queue capacity an idle connection keeps for
// reuse; a bigger one (a long catch-up) is left to the collector.
const maxReusedQueue = 64

// writeLoop writes queued frames until the queue is empty, then exits; the
// next enqueue starts a new one. It also performs a requested close.
func (c *conn) writeLoop() {
	defer c.wg.Done()
	var batch [][]byte
	for {
		c.qmu.Lock()
		if len(c.queue) == 0 || (c.closing && !c.flushFirst) {
			if c.closing {
				code, why := c.closeCode, c.closeWhy
				c.queue = nil
				c.qmu.Unlock()
				c.closeSocket(code, why)
				c.qmu.Lock()
				c.writing = false
				c.qmu.Unlock()
				return
			}
			c.writing = false
			if cap(batch) <= maxReusedQueue {
				// Keep the drained slice for the next wakeup's frames: the
				// next enqueue then appends without allocating.
				c.queue = batch[:0]
			}
			c.qmu.Unlock()
			return
		}
		batch, c.queue = c.queue, batch[:0]
		c.capped, c.cappedSize = 0, 0
		c.qmu.Unlock()

		for i, f := range batch {
			c.armWatchdog()
			// A context that never ends: the watchdog bounds the write, and
			// the library registers nothing per frame on it.
			err := c.ws.Write(context.Background(), websocket.MessageText, f)
			c.disarmWatchdog()
			batch[i] = nil
			if err != nil {
				c.qmu.Lock()
				c.closing, c.queue, c.writing = true, nil, false
				c.qmu.Unlock()
				c.cancel()
				return
			}
			c.g.metrics.framesOut.Inc()
		}
	}
}

// armWatchdog starts the write timeout of one frame. The timer is reset
// only when it is not already pending: while frames keep flowing it fires
// once per WriteTimeout and re-arms itself for the frame in progress.
func (c *conn) armWatchdog() {
	c.wdMu.Lock()
	defer c.wdMu.Unlock()
	if c.wdStopped {
		return
	}
	c.wdArmed, c.wdStarted = true, time.Now()
	switch {
	case c.wdTimer == nil:
		c.wdTimer = time.AfterFunc(c.g.cfg.WriteTimeout, c.writeTimedOut)
		c.wdPending = true
	case !c.wdPending:
		c.wdTimer.Reset(c.g.cfg.WriteTimeout)
		c.wdPending = true
	}
}

// disarmWatchdog ends the write timeout of one frame. A pending timer
// keeps running and finds nothing to do when it fires.
func (c *conn) disarmWatchdog() {
	c.wdMu.Lock()
	c.wdArmed = false
	c.wdMu.Unlock()
}

// writeTimedOut runs when the watchdog fires. A write stuck for
// WriteTimeout is cut by closing the socket, which fails the write; a write
// in progress for less than that re-arms the timer for the rest of its time.
func (c *conn) writeTimedOut() {
	c.wdMu.Lock()
	if c.wdStopped {
		c.wdMu.Unlock()
		return
	}
	c.wdWG.Add(1) // stopWatchdog waits for this run
	defer c.wdWG.Done()
	c.wdPending = false
	stuck := false
	if c.wdArmed {
		if rest := c.g.cfg.WriteTimeout - time.Since(c.wdStarted); rest > 0 {
			c.wdTimer.Reset(rest)
			c.wdPending = true
		} else {
			stuck = true
		}
	}
	c.wdMu.Unlock()
	if !stuck {
		return
	}
	c.g.log.Info("write timed out; dropping the connection", "conn", c.id, "user", c.user, "timeout", c.g.cfg.WriteTimeout)
	c.cancel()
	_ = c.ws.CloseNow()
}

// stopWatchdog stops the write watchdog for good and waits for a firing
// in progress to finish.
func (c *conn) stopWatchdog() {
	c.wdMu.Lock()
	c.wdStopped = true
	if c.wdTimer != nil {
		c.wdTimer.Stop()
	}
	c.wdMu.Unlock()
	c.wdWG.Wait()
}

// closeSocket sends the close frame and waits (bounded by the library's
// handshake timeout) for the peer's, then ends the connection's context.
func (c *conn) closeSocket(code websocket.StatusCode, why string) {
	_ = c.ws.Close(code, why)
	c.cancel()
}

// startPinger arms the keepalive: every PingInterval the client must answer
// a ping within WriteTimeout or the connection is dropped.
func (c *conn) startPinger() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	c.pingTimer = time.AfterFunc(c.g.cfg.PingInterval, c.ping)
}

func (c *conn) ping() {
	c.pingMu.Lock()
	if c.pingStopped {
		c.pingMu.Unlock()
		return
	}
	c.wg.Add(1)
	c.pingMu.Unlock()
	defer c.wg.Done()

	ctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.WriteTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		if c.ctx.Err() == nil {
			c.g.log.Info("client did not answer ping; dropping it", "conn", c.id, "err", err)
		}
		c.cancel()
		_ = c.ws.CloseNow()
		return
	}
	c.pingMu.Lock()
	if !c.pingStopped {
		c.pingTimer.Reset(c.g.cfg.PingInterval)
	}
	c.pingMu.Unlock()
}

func (c *conn) stopPinger() {
	c.pingMu.Lock()
	c.pingStopped = true
	if c.pingTimer != nil {
		c.pingTimer.Stop()
	}
	c.pingMu.Unlock()
}
