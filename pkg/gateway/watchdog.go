package gateway

import (
	"sync"
	"time"
)

// watchdog bounds each frame write of one connection by a timeout with one
// timer, re-armed per frame: a context per frame (and the AfterFunc the
// WebSocket library registers on it) was the gateway's largest source of
// garbage under fan-out. The timer is made on the first write, so an
// idle connection that never wrote has none.
//
// Lock order: watchdog.mu takes no other lock; stuck runs without it.
type watchdog struct {
	timeout time.Duration
	peer    interface{ writeStuck() } // told once a write has been in progress for timeout

	mu      sync.Mutex
	timer   *time.Timer
	armed   bool      // a write is in progress
	pending bool      // the timer is set to fire
	started time.Time // when the write in progress started
	stopped bool
	firing  sync.WaitGroup // a firing in progress
}

// arm starts the timeout of one write. The timer is reset only when it is
// not already pending: while frames keep flowing it fires once per timeout
// and re-arms itself for the write in progress.
func (w *watchdog) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.armed, w.started = true, time.Now()
	switch {
	case w.timer == nil:
		w.timer = time.AfterFunc(w.timeout, w.fire)
		w.pending = true
	case !w.pending:
		w.timer.Reset(w.timeout)
		w.pending = true
	}
}

// disarm ends the timeout of one write. A pending timer keeps running and
// finds nothing to do when it fires.
func (w *watchdog) disarm() {
	w.mu.Lock()
	w.armed = false
	w.mu.Unlock()
}

// fire runs when the timer does. A write stuck for the timeout is cut
// (writeStuck); a write in progress for less re-arms the timer for the rest of
// its time.
func (w *watchdog) fire() {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.firing.Add(1) // stop waits for this run
	defer w.firing.Done()
	w.pending = false
	stuck := false
	if w.armed {
		if rest := w.timeout - time.Since(w.started); rest > 0 {
			w.timer.Reset(rest)
			w.pending = true
		} else {
			stuck = true
		}
	}
	w.mu.Unlock()
	if stuck {
		w.peer.writeStuck()
	}
}

// stop stops the watchdog for good and waits for a firing in progress.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Unlock()
	w.firing.Wait()
}
