package gateway

import (
	"sync"
	"time"
)

// pinger is a connection's keepalive: every interval it runs ping (which
// sends a ping and waits for the answer, bounded by the transport), and
// when ping fails it calls failed instead of arming again. Between pings
// it holds a timer and no goroutine.
//
// Lock order: pinger.mu takes no other lock; ping and failed run without
// it.
type pinger struct {
	interval time.Duration
	ping     func() error
	failed   func(error)

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

	if err := p.ping(); err != nil {
		p.failed(err)
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
