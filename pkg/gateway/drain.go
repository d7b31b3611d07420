package gateway

import (
	"context"
	"fmt"
	"time"
)

// client is one open client connection, of any transport, as the gateway
// tracks it: Drain and Close end it and wait for its serve goroutine,
// which calls untrack as it ends.
type client interface {
	// admitted is what the connection counts against the connection limits.
	admitted() *admission
	// shutdown asks the client to reconnect to another node after what is
	// queued for it: a WebSocket closes with 1012 (service restart).
	shutdown()
	// kill ends the connection at once.
	kill()
	// expel ends the connection because the server API disconnected its
	// user; the client must not reconnect with the same credentials: a
	// WebSocket closes with 1008 and reason at once, dropping what is
	// queued.
	expel(reason string)
}

// expelLocal ends every connection of user on this gateway (client.expel)
// and returns how many there were. The connections are collected under
// g.mu and expelled outside it.
func (g *Gateway) expelLocal(user, reason string) int {
	g.mu.Lock()
	var hit []client
	for c := range g.conns {
		if c.admitted().user == user {
			hit = append(hit, c)
		}
	}
	g.mu.Unlock()
	for _, c := range hit {
		c.expel(reason)
	}
	if len(hit) > 0 {
		g.log.Info("connections expelled by the server API", "user", user, "connections", len(hit))
	}
	return len(hit)
}

// track counts c in as a connection of the gateway, which Drain and Close
// end and wait for; it refuses c once the gateway drains or is closed.
func (g *Gateway) track(c client) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Draining too: Drain sets draining before it takes its snapshot of
	// conns under mu, so a connection that passed serveWS's check just
	// before the drain began is either in the snapshot or refused here,
	// never missed.
	if g.ctx.Err() != nil || g.draining.Load() {
		return false
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.metrics.connections.Inc()
	return true
}

func (g *Gateway) untrack(c client) {
	g.mu.Lock()
	delete(g.conns, c)
	g.releaseLocked(c.admitted())
	g.mu.Unlock()
	g.metrics.connections.Dec()
	g.wg.Done()
}

// Drain takes the node out of service: Ready turns false at once, then every
// connection is closed with 1012 (service restart), the closes spread over
// DrainSpread so clients do not reconnect all at once. Drain returns when
// every connection has ended or ctx is done.
func (g *Gateway) Drain(ctx context.Context) error {
	g.draining.Store(true)
	g.metrics.draining.Set(1)
	g.mu.Lock()
	conns := make([]client, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	g.log.Info("draining", "connections", len(conns), "spread", g.cfg.DrainSpread)
	var step time.Duration
	if len(conns) > 1 {
		step = g.cfg.DrainSpread / time.Duration(len(conns))
	}
	for i, c := range conns {
		if i > 0 && step > 0 {
			t := time.NewTimer(step)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		c.shutdown()
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}
