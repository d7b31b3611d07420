package gateway

import (
	"context"
)

// Chores are the store writes a request sets off but need not wait for:
// presence (a connection entering and leaving rooms, online and offline)
// and its events. They run in order on one goroutine owned by the Gateway
// (g.bg), so a connection's exit always follows its enter, and a join or a
// hello answers without waiting for them.

// choreQueue is how many chores may wait. When it is full, a chore that
// adds (an enter) is dropped: the connection is missing from presence
// until its next join. A chore that removes (an exit) waits for room: one
// dropped would leave the connection present for as long as its node
// beats.
const choreQueue = 8192

// chore queues f. With must, it waits for room in the queue (or the end
// of the gateway); without, it drops f when the queue is full.
func (g *Gateway) chore(f func(ctx context.Context), must bool) {
	if must {
		select {
		case g.chores <- f:
		case <-g.ctx.Done():
		}
		return
	}
	select {
	case g.chores <- f:
	default:
		g.metrics.choresDropped.Inc()
	}
}

// runChores is the chores' goroutine. Chores still queued when the
// gateway closes are dropped: its node stops beating, and the others
// sweep its connections out of presence.
func (g *Gateway) runChores() {
	defer g.bg.Done()
	for {
		select {
		case f := <-g.chores:
			ctx, cancel := context.WithTimeout(g.ctx, g.cfg.RequestTimeout)
			f(ctx)
			cancel()
		case <-g.ctx.Done():
			return
		}
	}
}
