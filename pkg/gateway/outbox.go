package gateway

import (
	"sync"

	"github.com/parley-chat/parley/pkg/protocol"
)

// class is what kind of frame an outbox holds, which decides how it counts
// against the outbound limits (invariant 7).
type class uint8

const (
	// classLive is a live message or an answer to a request: it counts
	// against OutboundQueue and OutboundBytes, and a subscriber over them
	// is a slow consumer.
	classLive class = iota
	// classCatchUp is what the gateway itself held back or read for the
	// subscriber (a join's missed messages, a repair's merge), each bounded
	// by the history size: it never counts, so a resume owed 1000 messages
	// is not mistaken for a slow consumer.
	classCatchUp
	// classEphemeral is an event with no seq (typing, presence): it counts
	// like a live frame, but when the queue is full ephemeral frames are
	// dropped, the queued ones first, before anything closes the
	// connection.
	classEphemeral
)

// wire is the write side of a transport: how an outbox's frames reach the
// client. The outbox's writer goroutine is its only caller.
type wire interface {
	// write sends one frame. It blocks until the frame is written or the
	// write fails; the transport bounds it in time (WriteTimeout).
	write(b []byte) error
	// close ends the stream with a close code and reason: for WebSocket a
	// close frame and its handshake. It is the writer's last call.
	close(code int, reason string)
	// abort ends the connection after a failed write.
	abort()
	// describe names the connection and its user, for logs.
	describe() (id uint64, user string)
}

// outFrame is one queued frame.
type outFrame struct {
	b     []byte
	class class
}

// outbox is one subscriber's bounded outbound queue and the writer that
// drains it into the transport's wire. Queueing never blocks: fan-out
// runs under room.mu and must never wait for the slowest reader. The
// writer goroutine runs only while frames wait (an idle connection has
// none); the owner waits for it with wait.
//
// Lock order: outbox.mu is taken under room.mu (fan-out) and takes no
// other lock.
type outbox struct {
	g *Gateway
	w wire

	wg sync.WaitGroup // the writer

	mu         sync.Mutex
	queue      []outFrame
	counted    int  // frames in queue that count against OutboundQueue
	countedLen int  // their bytes, against OutboundBytes
	ephemeral  int  // ephemeral frames in queue
	writing    bool // a writer goroutine is running
	closing    bool // no more frames are accepted
	closeCode  int
	closeWhy   string
	flushFirst bool // write what is queued before the close
}

// push queues one frame of class cl. Over the limits, an ephemeral frame
// is dropped; a live one first drops the queued ephemeral frames and, if
// that is not enough, closes the connection with 1013 (a slow consumer,
// which resumes from its last seq).
func (o *outbox) push(b []byte, cl class) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return
	}
	if cl != classCatchUp && o.overLocked(len(b)) {
		if cl == classEphemeral {
			o.g.metrics.ephemeralDropped.Inc()
			return
		}
		o.dropEphemeralLocked()
		if o.overLocked(len(b)) {
			o.slowConsumerLocked()
			return
		}
	}
	o.queue = append(o.queue, outFrame{b: b, class: cl})
	if cl != classCatchUp {
		o.counted++
		o.countedLen += len(b)
		if cl == classEphemeral {
			o.ephemeral++
		}
	}
	o.startWriterLocked()
}

// pushCatchUp queues frames of classCatchUp in one step.
func (o *outbox) pushCatchUp(frames ...[]byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing {
		return
	}
	for _, b := range frames {
		o.queue = append(o.queue, outFrame{b: b, class: classCatchUp})
	}
	o.startWriterLocked()
}

// send encodes f and queues it as a live frame.
func (o *outbox) send(f *protocol.Frame) {
	b, err := protocol.Encode(f)
	if err != nil {
		o.g.log.Error("encode frame", "type", f.Type, "err", err)
		return
	}
	o.push(b, classLive)
}

func (o *outbox) overLocked(n int) bool {
	return o.counted >= o.g.cfg.OutboundQueue || o.countedLen+n > o.g.cfg.OutboundBytes
}

// dropEphemeralLocked drops every queued ephemeral frame.
func (o *outbox) dropEphemeralLocked() {
	if o.ephemeral == 0 {
		return
	}
	kept := o.queue[:0]
	for _, f := range o.queue {
		if f.class == classEphemeral {
			o.counted--
			o.countedLen -= len(f.b)
			continue
		}
		kept = append(kept, f)
	}
	clear(o.queue[len(kept):])
	o.g.metrics.ephemeralDropped.Add(float64(o.ephemeral))
	o.queue, o.ephemeral = kept, 0
}

// overflow closes the connection as a slow consumer.
func (o *outbox) overflow() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.slowConsumerLocked()
}

func (o *outbox) slowConsumerLocked() {
	if o.closing {
		return
	}
	o.g.metrics.slowCloses.Inc()
	id, user := o.w.describe()
	o.g.log.Info("closing slow consumer", "conn", id, "user", user, "queued", len(o.queue), "queued_bytes", o.countedLen)
	o.closeLocked(protocol.CloseTryAgainLater, "slow consumer: outbound queue full; resume", false)
}

// close ends the stream with code and reason. With flush, the frames
// already queued are written first; without, they are dropped. The first
// close wins.
func (o *outbox) close(code int, reason string, flush bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closeLocked(code, reason, flush)
}

func (o *outbox) closeLocked(code int, reason string, flush bool) {
	if o.closing {
		return
	}
	o.closing = true
	o.closeCode, o.closeWhy, o.flushFirst = code, reason, flush
	if !flush {
		clear(o.queue)
		o.queue, o.counted, o.countedLen, o.ephemeral = nil, 0, 0, 0
	}
	o.startWriterLocked()
}

func (o *outbox) startWriterLocked() {
	if o.writing {
		return
	}
	o.writing = true
	o.wg.Add(1)
	go o.writeLoop()
}

// wait waits for the writer. Call it once the outbox is closed.
func (o *outbox) wait() { o.wg.Wait() }

// maxReusedQueue is the largest queue capacity an idle outbox keeps for
// reuse; a bigger one (a long catch-up) is left to the collector.
const maxReusedQueue = 64

// writeLoop writes queued frames until the queue is empty, then exits; the
// next push starts a new one. It also performs a requested close.
func (o *outbox) writeLoop() {
	defer o.wg.Done()
	var batch []outFrame
	for {
		o.mu.Lock()
		if len(o.queue) == 0 || (o.closing && !o.flushFirst) {
			if o.closing {
				code, why := o.closeCode, o.closeWhy
				o.queue = nil
				o.mu.Unlock()
				o.w.close(code, why)
				o.mu.Lock()
				o.writing = false
				o.mu.Unlock()
				return
			}
			o.writing = false
			if cap(batch) <= maxReusedQueue {
				// Keep the drained slice for the next wakeup's frames: the
				// next push then appends without allocating.
				o.queue = batch[:0]
			}
			o.mu.Unlock()
			return
		}
		batch, o.queue = o.queue, batch[:0]
		o.counted, o.countedLen, o.ephemeral = 0, 0, 0
		o.mu.Unlock()

		for i, f := range batch {
			err := o.w.write(f.b)
			batch[i] = outFrame{}
			if err != nil {
				o.mu.Lock()
				o.closing, o.queue, o.writing = true, nil, false
				o.mu.Unlock()
				o.w.abort()
				return
			}
			o.g.metrics.framesOut.Inc()
		}
	}
}

// sendError queues an error frame answering ref, and counts it.
func (o *outbox) sendError(ref, code, msg string) {
	o.g.metrics.errors.WithLabelValues(code).Inc()
	o.send(protocol.ErrorFrame(ref, code, msg))
}
