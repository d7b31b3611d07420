package gateway

import (
	"sync"
	"time"
)

// pingPeer is what a pinger keeps alive: a connection (an interface, not
// two funcs, so that an idle connection holds no closure for it).
type pingPeer interface {
	// sendPing sends a ping and waits for the answer, bounded by the
	// transport.
	sendPing() error
	// pingFailed ends the connection whose ping failed.
	pingFailed(error)
}

// pinger is a connection's keepalive: every interval it pings the peer,
// and when a ping fails it tells the peer instead of arming again. Between
// pings it holds a timer and no goroutine.
//
// Lock order: pinger.mu takes no other lock; the peer's calls run without
// it.
type pinger struct {
	interval time.Duration
	peer     pingPeer

	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
	running sync.WaitGroup // a ping in progress
}

// start arms the first ping.
func (p *pinger) start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.timer = time.AfterFunc(p.interval, p.run)
	}
}

func (p *pinger) run() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.running.Add(1)
	p.mu.Unlock()
	defer p.running.Done()

	if err := p.peer.sendPing(); err != nil {
		p.peer.pingFailed(err)
		return
	}
	p.mu.Lock()
	if !p.stopped {
		p.timer.Reset(p.interval)
	}
	p.mu.Unlock()
}

// stop stops the pinger for good. A ping in progress goes on until the
// connection ends; wait waits for it.
func (p *pinger) stop() {
	p.mu.Lock()
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
}

// wait waits for a ping in progress. Call it after stop, once the
// connection has ended (a ping waits for its answer until then).
func (p *pinger) wait() { p.running.Wait() }
