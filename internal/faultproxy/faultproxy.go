// Package faultproxy is a TCP proxy for fault tests: it listens on a
// loopback port and forwards every connection to one target address, and
// the test can break the link on demand.
//
//   - Blackhole stops forwarding bytes in both directions for a while
//     without closing either side, like a network partition: both peers
//     keep their connections open and see nothing arrive. New connections
//     are accepted but not forwarded either (not even dialed to the
//     target). When the blackhole ends, what was held is delivered in
//     order, as TCP's retransmissions would deliver it after a real
//     partition heals.
//   - Cut closes every connection open through the proxy at once, on both
//     sides; new connections are forwarded as usual.
//
// A gateway's --redis URL pointed at a Proxy lets a test blackhole the link
// between that one gateway and Redis; clients dialing through a Proxy in
// front of the load balancer can all be dropped at once with Cut.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections from its loopback address to a target.
type Proxy struct {
	target string
	ln     net.Listener

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection's goroutines

	mu    sync.Mutex
	open  chan struct{} // closed while bytes flow; a fresh, open one during a blackhole
	links map[*link]struct{}
}

// link is one proxied connection: the client's side and the target's.
type link struct {
	client net.Conn

	mu     sync.Mutex
	server net.Conn // nil until the link is dialed
	closed bool
}

// Start listens on a free loopback port and forwards connections to
// target (host:port) until Close.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		open:   make(chan struct{}),
		links:  make(map[*link]struct{}),
	}
	close(p.open)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Pause starts a blackhole: from now on no byte is forwarded, in either
// direction, until Resume. Connections stay open.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
		p.open = make(chan struct{})
	default: // already paused
	}
}

// Resume ends a blackhole: the bytes held are forwarded, in order.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.open:
	default:
		close(p.open)
	}
}

// Blackhole pauses forwarding for d (or until ctx ends), then resumes it.
func (p *Proxy) Blackhole(ctx context.Context, d time.Duration) error {
	p.Pause()
	defer p.Resume()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("faultproxy: blackhole cut short: %w", ctx.Err())
	}
}

// Cut closes every connection open through the proxy, both sides, and
// returns how many there were. New connections are accepted as usual.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines.
func (p *Proxy) Close() error {
	p.cancel()
	err := p.ln.Close()
	p.Cut()
	p.Resume() // wakes goroutines waiting for the gate
	p.wg.Wait()
	return err
}

// gate returns the channel that is closed while bytes may flow.
func (p *Proxy) gate() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open
}

// waitOpen waits until bytes may flow; false when the proxy closed first.
func (p *Proxy) waitOpen() bool {
	for {
		g := p.gate()
		select {
		case <-g:
			// A Pause may have replaced the gate meanwhile: look again
			// without blocking.
			if p.gate() == g {
				return p.ctx.Err() == nil
			}
		case <-p.ctx.Done():
			return false
		}
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		l := &link{client: c}
		p.mu.Lock()
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(l)
	}
}

// serve dials the target once the gate is open, then pumps both ways until
// either side ends.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	if !p.waitOpen() {
		return
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	s, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	if !l.attach(s) { // cut while dialing
		_ = s.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pump(s, l.client); done <- struct{}{} }()
	go func() { p.pump(l.client, s); done <- struct{}{} }()
	<-done
	l.close() // one direction ended: end the other
	<-done
}

// pump copies src to dst, holding each chunk while the gate is closed.
// When src ends it half-closes dst, once the gate lets that through.
func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitOpen() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && p.waitOpen() {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
					return
				}
			}
			return
		}
	}
}

// attach records the target's side; false when the link was closed.
func (l *link) attach(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.server = s
	return true
}

// close closes both sides of the link; safe to call more than once.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	s := l.server
	l.mu.Unlock()
	_ = l.client.Close()
	if s != nil {
		_ = s.Close()
	}
}
