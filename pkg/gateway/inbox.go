package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// maxPending is how many client frames may wait for handling on one
// connection while an earlier one waits on the broker. The reader keeps
// reading (and charging the rate limit at the time each frame arrives)
// until this many wait; then it stops reading, the client's frames wait in
// the socket, and the time the reader was held is credited to the rate
// limit (bucket.hold), so the frames that piled up meanwhile are not
// charged as one burst.
const maxPending = 64

// request is one client frame waiting to be handled, or an internal
// request (fn) that must run on the handler goroutine because it changes
// what the handler owns (a session's members).
type request struct {
	data    []byte
	typ     websocket.MessageType
	arrived time.Time // when the reader took it off the socket
	fn      func()    // an internal request: run instead of decoding data
}

// inbox is a connection's queue of client frames between the reader, which
// charges the rate limit as each frame arrives, and the handler goroutine,
// which handles them one at a time in arrival order (so sends are published
// in the order they were received) and exists only while frames wait: an
// idle connection has no handler goroutine. A request's RequestTimeout
// counts from its arrival, so frames queued behind a stalled broker call
// are answered (unavailable) rather than each waiting its full timeout.
// Internal requests (post) run on the same goroutine, in order with the
// client's frames.
//
// Lock order: inbox.mu takes no other lock; post takes it under
// userTopic.mu.
type inbox struct {
	h interface{ handleRequest(request) } // runs on the handler goroutine

	mu      sync.Mutex
	queue   []request
	running bool           // a handler goroutine is running
	closed  bool           // the connection is ending: nothing more is handled
	space   chan struct{}  // closed by the handler when the reader, waiting, may push again
	wg      sync.WaitGroup // the handler goroutine; with the reader not pushing, Wait waits for the queue to empty
}

// push queues r for the handler, starting one if none runs. When
// maxPending frames wait already it blocks until the handler takes one (or
// ctx ends) and returns how long it was held. It reports false when the
// inbox is closed.
func (in *inbox) push(ctx context.Context, r request) (held time.Duration, ok bool) {
	in.mu.Lock()
	for len(in.queue) >= maxPending && !in.closed {
		ch := make(chan struct{})
		in.space = ch
		in.mu.Unlock()
		start := time.Now()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		held += time.Since(start)
		if ctx.Err() != nil {
			return held, false
		}
		in.mu.Lock()
	}
	defer in.mu.Unlock()
	if in.closed {
		return held, false
	}
	in.queue = append(in.queue, r)
	if !in.running {
		in.running = true
		in.wg.Add(1)
		go in.run()
	}
	return held, true
}

// post queues fn to run on the handler goroutine, in order with the
// client's frames, starting one if none runs. Unlike push it never
// blocks, whatever the queue holds (internal requests are few: it may be
// called under other locks, such as userTopic.mu), and it takes nothing
// from the rate limit. It reports false when the inbox is closed: the
// connection is ending, and its handler's state goes with it.
func (in *inbox) post(fn func()) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return false
	}
	in.queue = append(in.queue, request{fn: fn, arrived: nowFunc()})
	if !in.running {
		in.running = true
		in.wg.Add(1)
		go in.run()
	}
	return true
}

// run is the handler goroutine: it handles queued requests in order until
// none waits, then exits.
func (in *inbox) run() {
	defer in.wg.Done()
	for {
		in.mu.Lock()
		if len(in.queue) == 0 || in.closed {
			in.running = false
			in.queue = nil // an idle connection holds no queue
			in.mu.Unlock()
			return
		}
		r := in.queue[0]
		in.queue[0] = request{}
		in.queue = in.queue[1:]
		if in.space != nil {
			close(in.space)
			in.space = nil
		}
		in.mu.Unlock()
		in.h.handleRequest(r)
	}
}

// wait waits until the handler has handled everything queued. The caller
// (the reader) pushes nothing meanwhile.
func (in *inbox) wait() { in.wg.Wait() }

// stop drops what waits and accepts nothing more. It does not wait, so
// the handler itself may call it.
func (in *inbox) stop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	clear(in.queue)
	in.queue = nil
	if in.space != nil {
		close(in.space)
		in.space = nil
	}
}

// close stops the inbox and waits for the request in progress (which the
// caller ends by cancelling the connection's context).
func (in *inbox) close() {
	in.stop()
	in.wg.Wait()
}
