package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// Repair reads history to fill what pub/sub lost (invariant 5). It never
// runs on the broker's delivery goroutine and never holds room.mu across a
// Redis call: Deliver and Subscribed only mark the room as repairing,
// buffer its live envelopes and start the room's repair goroutine, which
// reads history unlocked and then merges under room.mu.
const (
	// repairAttempts is how many history reads in a row may fail before a
	// repair gives up and fans out what it buffered, so that members see
	// the hole and are told to resume (1013).
	repairAttempts = 4
	// repairBackoff is the pause after the first failed read; it doubles
	// with each further failure (100ms, 200ms, 400ms: under a second of
	// pauses before giving up, plus the reads' own RequestTimeouts).
	repairBackoff = 100 * time.Millisecond
	// repairReads bounds the history reads repairs make at once. A
	// reconnect of the pub/sub connection starts a repair in every room of
	// the node; they queue for these slots instead of all asking Redis (and
	// the client's connection pool) at the same moment. Waiting for a slot
	// does not count against RequestTimeout.
	repairReads = 16
)

// repairState is a room's repair in progress. Guarded by room.mu.
type repairState struct {
	active  bool               // a repair goroutine owns the room's live stream; Deliver buffers
	gen     uint64             // bumped by abandon; a goroutine of an older gen touches nothing
	cancel  context.CancelFunc // ends the running repair's reads
	why     string             // what the next round repairs, for logs
	again   bool               // another round is owed even when the merge finds no hole
	buf     []broker.Envelope  // live envelopes received while repairing, in arrival order
	arrived uint64             // envelopes ever buffered; buf[len(buf)-1] is number arrived
}

// bufferLocked keeps env for the running repair. A buffer over its bound
// (OutboundQueue envelopes) is dropped, and the repair owes a round that
// reads through to the head: history holds them (up to its retention), so
// a bigger buffer would only hold more memory per room. Called with r.mu
// held.
func (h *hub) bufferLocked(r *room, env broker.Envelope) {
	rs := &r.repair
	if len(rs.buf) >= h.g.cfg.OutboundQueue {
		h.g.log.Warn("repair buffer full; dropping it, history will be read to the head",
			"room", r.name, "dropped", len(rs.buf))
		clear(rs.buf) // let the envelopes go; keep the backing array
		rs.buf = rs.buf[:0]
		rs.again = true
	}
	rs.buf = append(rs.buf, env)
	rs.arrived++
}

// startRepairLocked marks r as repairing and starts its repair goroutine,
// unless one is running already. Called with r.mu held, from the broker's
// delivery goroutine (Deliver, Subscribed): Close waits for the
// goroutines after the broker has stopped delivering, so no Add races
// its Wait.
func (h *hub) startRepairLocked(r *room, why string) {
	rs := &r.repair
	if rs.active {
		rs.again = true
		return
	}
	ctx, cancel := context.WithCancel(h.g.ctx)
	rs.active, rs.cancel, rs.why, rs.again = true, cancel, why, false
	h.wg.Add(1)
	go h.runRepair(ctx, r, rs.gen)
}

// abandonRepairLocked stops r's repair and forgets what it buffered: the
// room was unsubscribed, so the next joiner reads history itself. The
// goroutine's read is cancelled, and once it returns it sees the new gen
// and leaves the room alone. Called with r.mu held.
func (r *room) abandonRepairLocked() {
	rs := &r.repair
	if rs.cancel != nil {
		rs.cancel()
	}
	clear(rs.buf)
	*rs = repairState{gen: rs.gen + 1, arrived: rs.arrived}
}

// finishRepairLocked ends r's repair: Deliver fans out directly again.
// Called with r.mu held.
func (r *room) finishRepairLocked() {
	rs := &r.repair
	if rs.cancel != nil {
		rs.cancel()
	}
	clear(rs.buf)
	rs.active, rs.cancel, rs.again, rs.buf, rs.why = false, nil, false, nil, ""
}

// runRepair is a room's repair goroutine. Each round reads the history
// after r.last without holding r.mu, then merges it with the buffered live
// envelopes under r.mu. Rounds go on while the buffer still has a hole (a
// message lost after the read) or another round is owed (a resubscription
// or a dropped buffer during the read). Failed reads are retried with a
// backoff; after repairAttempts failures in a row, or when the gateway
// closes, the repair gives up.
func (h *hub) runRepair(ctx context.Context, r *room, gen uint64) {
	defer h.wg.Done()
	failures := 0
	for {
		r.mu.Lock()
		if r.repair.gen != gen {
			r.mu.Unlock()
			return
		}
		from, why, mark := r.cur.pos, r.repair.why, r.repair.arrived
		r.repair.again = false
		r.mu.Unlock()

		rng, err := h.readHistory(ctx, r.name, from)

		r.mu.Lock()
		if r.repair.gen != gen {
			r.mu.Unlock()
			return
		}
		if err == nil {
			failures = 0
			hole := h.mergeLocked(r, rng, mark, why)
			if !hole && !r.repair.again {
				r.finishRepairLocked()
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			continue
		}
		failures++
		// Members will see the gap themselves and be told to resume.
		h.g.log.Error("history repair failed", "room", r.name, "why", why, "attempt", failures, "err", err)
		if failures < repairAttempts && ctx.Err() == nil {
			r.mu.Unlock()
			if pause(ctx, repairBackoff<<(failures-1)) {
				continue
			}
			r.mu.Lock()
			if r.repair.gen != gen {
				r.mu.Unlock()
				return
			}
		}
		h.giveUpLocked(r)
		r.mu.Unlock()
		return
	}
}

// readHistory reads what follows from in room's history (readSince),
// bounded by RequestTimeout once a read slot is free.
func (h *hub) readHistory(ctx context.Context, room string, from protocol.Position) (broker.Range, error) {
	select {
	case h.readSlots <- struct{}{}:
		defer func() { <-h.readSlots }()
	case <-ctx.Done():
		return broker.Range{}, fmt.Errorf("waiting to read history: %w", ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, h.g.cfg.RequestTimeout)
	defer cancel()
	rng, _, err := readSince(ctx, h.g.broker, room, from)
	if err != nil {
		return rng, fmt.Errorf("read history after seq %d: %w", from.Seq, err)
	}
	return rng, nil
}

// mergeLocked fans out what one round decided (merge, merge.go) and keeps
// the buffered envelopes after a hole for the next round, reporting true
// when there is one. Buffered envelopes numbered up to mark arrived before
// the round's read began. Called with r.mu held.
func (h *hub) mergeLocked(r *room, rng broker.Range, mark uint64, why string) (hole bool) {
	rs := &r.repair
	first := rs.arrived - uint64(len(rs.buf)) + 1 // the number of buf[0]
	stale := 0
	if mark >= first {
		stale = int(min(mark-first+1, uint64(len(rs.buf))))
	}
	res := merge(r.cur, rng, rs.buf, stale)
	for _, env := range res.out {
		r.fanOut(env, true)
	}
	if res.repaired > 0 {
		h.g.metrics.gapsRepaired.Add(float64(res.repaired))
		h.g.log.Info("repaired gap from history", "room", r.name, "why", why, "messages", res.repaired)
	}
	n := copy(rs.buf, res.rest)
	clear(rs.buf[n:])
	rs.buf = rs.buf[:n]
	if res.hole {
		rs.why = "gap after repair"
	}
	return res.hole
}

// giveUpLocked ends a repair whose reads keep failing: the buffered
// envelopes are fanned out as they are, so members find the hole
// themselves and are closed with 1013 to resume (member.deliver). Called
// with r.mu held.
func (h *hub) giveUpLocked(r *room) {
	h.g.log.Warn("history repair gave up; members will see the gap and resume",
		"room", r.name, "buffered", len(r.repair.buf))
	for _, env := range r.repair.buf {
		if r.cur.place(env) != placeSeen {
			r.fanOut(env, true)
		}
	}
	r.finishRepairLocked()
}

// wait waits for every repair goroutine. Call it after the broker is
// closed, when no Deliver or Subscribed can start another.
func (h *hub) wait() { h.wg.Wait() }

// pause waits for d or until ctx is done, reporting whether d passed.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
