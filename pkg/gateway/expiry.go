package gateway

import (
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// expiry ends a connection when its token expires. With a refresh window
// (v1) it first sends token_expiring that long before exp, and a refresh
// (set) moves exp; without one (plain text, which cannot refresh) it only
// closes. At exp it closes the connection with 1008.
//
// Its timer is owned: stop stops it and waits for a callback that has
// begun, so the writer a callback may start is one the connection waits
// for. Lock order: mu is not held while the callback touches the outbox.
type expiry struct {
	out    *outbox
	window time.Duration // token_expiring this long before exp; 0: none

	mu      sync.Mutex
	wg      sync.WaitGroup // one count per callback scheduled or running
	t       *time.Timer    // the armed timer, nil when none
	at      time.Time      // exp; zero: none
	gen     uint64         // bumped by set: a callback of an older exp does nothing
	stopped bool
}

// Phases of the timer.
const (
	phaseWarn  = true
	phaseClose = false
)

// set makes at the connection's expiry (zero: none) and arms the timer
// for it, replacing any earlier expiry. It does nothing after stop.
func (e *expiry) set(at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	e.disarmLocked()
	e.gen++
	e.at = at
	if at.IsZero() {
		return
	}
	e.armLocked(e.window > 0)
}

// expires returns the current expiry (zero: none).
func (e *expiry) expires() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.at
}

// disarmLocked stops the armed timer; when that keeps its callback from
// running, its count is released here.
func (e *expiry) disarmLocked() {
	if e.t != nil && e.t.Stop() {
		e.wg.Done()
	}
	e.t = nil
}

// armLocked arms the timer for the warning (when warn and there is a
// window) or for exp.
func (e *expiry) armLocked(warn bool) {
	d := time.Until(e.at)
	if warn {
		d -= e.window
	}
	gen := e.gen
	e.wg.Add(1)
	e.t = time.AfterFunc(max(d, 0), func() {
		defer e.wg.Done()
		e.fire(gen, warn)
	})
}

// fire runs a timer's callback: warn the client and arm the close, or
// close.
func (e *expiry) fire(gen uint64, warn bool) {
	e.mu.Lock()
	if e.stopped || gen != e.gen {
		e.mu.Unlock()
		return
	}
	at := e.at
	e.t = nil
	if warn {
		e.armLocked(phaseClose)
	}
	e.mu.Unlock()
	if warn {
		e.out.send(&protocol.Frame{Type: protocol.TypeTokenExpiring, Expires: protocol.FormatTime(at)})
		return
	}
	e.out.close(protocol.ClosePolicy, "token expired; reconnect with a fresh token", true)
}

// stop disarms the timer for good and waits for a callback in progress.
func (e *expiry) stop() {
	e.mu.Lock()
	e.stopped = true
	e.disarmLocked()
	e.mu.Unlock()
	e.wg.Wait()
}
