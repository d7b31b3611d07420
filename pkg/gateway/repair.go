package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/broker"
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

// placement is where an envelope falls in a room's live stream.
type placement int

const (
	placeSeen placement = iota // fanned out already
	placeNext                  // the next one: fan it out
	placeHole                  // something before it is missing
)

// placeLocked says where env falls in the room's stream: a room whose
// stream is not known yet takes anything; in the same epoch the next seq
// follows r.last; a new epoch follows from its seq 1. Called with r.mu held.
func (r *room) placeLocked(env broker.Envelope) placement {
	switch {
	case !r.known:
		return placeNext
	case env.Epoch == r.epoch && env.Seq <= r.last:
		return placeSeen
	case env.Epoch == r.epoch && env.Seq == r.last+1:
		return placeNext
	case env.Epoch != r.epoch && env.Seq == 1:
		return placeNext
	default:
		return placeHole
	}
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
		epoch, after, why, mark := r.epoch, r.last, r.repair.why, r.repair.arrived
		r.repair.again = false
		r.mu.Unlock()

		rng, err := h.readHistory(ctx, r.name, epoch, after)

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

// readHistory reads room's messages after seq after, bounded by
// RequestTimeout once a read slot is free. When the room is no longer in
// epoch (Redis lost it and a new epoch began), it reads the new epoch from
// its start instead, as a joiner's catch-up does.
func (h *hub) readHistory(ctx context.Context, room, epoch string, after int64) (broker.Range, error) {
	select {
	case h.readSlots <- struct{}{}:
		defer func() { <-h.readSlots }()
	case <-ctx.Done():
		return broker.Range{}, fmt.Errorf("waiting to read history: %w", ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, h.g.cfg.RequestTimeout)
	defer cancel()
	rng, err := h.g.broker.After(ctx, room, after, 0)
	if err != nil {
		return rng, fmt.Errorf("read history after seq %d: %w", after, err)
	}
	if now := rng.Epoch; after > 0 && now != epoch && now != "" {
		if rng, err = h.g.broker.After(ctx, room, 0, 0); err != nil {
			return rng, fmt.Errorf("read new epoch %s: %w", now, err)
		}
	}
	return rng, nil
}

// mergeLocked fans out what one round read and then the buffered live
// envelopes, each once and in seq order. History messages are fanned out
// even past a hole (one history can no longer fill: members see it and are
// told to resume). Buffered envelopes that arrived before the read began
// (number <= mark) and are of another epoch than the read saw are stale:
// their epoch is gone. At a hole in the buffer the rest stays buffered and
// mergeLocked reports true: the room needs another round. Called with r.mu
// held.
func (h *hub) mergeLocked(r *room, rng broker.Range, mark uint64, why string) (hole bool) {
	rs := &r.repair
	live := make(map[int64]bool, len(rs.buf)) // seqs pub/sub did deliver: not counted as repaired
	for _, env := range rs.buf {
		if env.Epoch == rng.Epoch {
			live[env.Seq] = true
		}
	}
	n := 0
	for _, env := range rng.Messages {
		if r.placeLocked(env) == placeSeen {
			continue
		}
		r.fanOut(env, true)
		if !live[env.Seq] {
			n++
		}
	}
	if n > 0 {
		h.g.metrics.gapsRepaired.Add(float64(n))
		h.g.log.Info("repaired gap from history", "room", r.name, "why", why, "messages", n)
	}

	buf := rs.buf
	first := rs.arrived - uint64(len(buf)) + 1 // the number of buf[0]
	for i, env := range buf {
		if first+uint64(i) <= mark && env.Epoch != rng.Epoch {
			continue
		}
		switch r.placeLocked(env) {
		case placeSeen:
		case placeNext:
			r.fanOut(env, true)
		case placeHole:
			rest := copy(buf, buf[i:])
			clear(buf[rest:])
			rs.buf = buf[:rest]
			rs.why = "gap after repair"
			return true
		}
	}
	clear(buf)
	rs.buf = buf[:0]
	return false
}

// giveUpLocked ends a repair whose reads keep failing: the buffered
// envelopes are fanned out as they are, so members find the hole
// themselves and are closed with 1013 to resume (member.deliver). Called
// with r.mu held.
func (h *hub) giveUpLocked(r *room) {
	h.g.log.Warn("history repair gave up; members will see the gap and resume",
		"room", r.name, "buffered", len(r.repair.buf))
	for _, env := range r.repair.buf {
		if r.placeLocked(env) != placeSeen {
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
