package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/protocol"
)

// conn is one client connection. The ServeHTTP goroutine is its only reader
// and owns its memberships; the writer goroutine, started only while frames
// wait, is the only writer.
type conn struct {
	g      *Gateway
	ws     *websocket.Conn
	ctx    context.Context // ends when the connection does
	cancel context.CancelFunc
	id     uint64

	user, device string
	plain        bool // plain-text mode

	members map[string]*member // reader-owned: rooms joined

	wg sync.WaitGroup // the writer and the pinger

	qmu        sync.Mutex
	queue      [][]byte
	capped     int  // frames in queue that count against OutboundQueue
	writing    bool // a writer goroutine is running
	closing    bool // no more frames are accepted
	closeCode  websocket.StatusCode
	closeWhy   string
	flushFirst bool // write what is queued before the close frame

	pingMu      sync.Mutex
	pingTimer   *time.Timer
	pingStopped bool
}

// enqueueCatchUp queues a join's catch-up (bounded by the history size)
// without counting it against OutboundQueue: a resume owed 1000 messages
// must not be mistaken for a slow consumer.
func (c *conn) enqueueCatchUp(frames [][]byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closing {
		return
	}
	for _, f := range frames {
		c.queue = append(c.queue, f)
	}
	c.startWriterLocked()
}

// enqueue queues one text frame for the writer. It never blocks: when the
// queue is full the connection is closed with 1013 instead (invariant 7).
func (c *conn) enqueue(data []byte) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if c.closing {
		return
	}
	if c.capped >= c.g.cfg.OutboundQueue {
		c.slowConsumerLocked()
		return
	}
	c.capped++
	c.queue = append(c.queue, data)
	c.startWriterLocked()
}

func (c *conn) enqueueText(s string) { c.enqueue([]byte(s)) }

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
	c.g.log.Info("closing slow consumer", "conn", c.id, "user", c.user, "queued", len(c.queue))
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
		c.queue, c.capped = nil, 0
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
			c.qmu.Unlock()
			return
		}
		batch, c.queue = c.queue, batch[:0]
		c.capped = 0
		c.qmu.Unlock()

		for i, f := range batch {
			ctx, cancel := context.WithTimeout(c.ctx, c.g.cfg.WriteTimeout)
			err := c.ws.Write(ctx, websocket.MessageText, f)
			cancel()
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
