package gateway

import (
	"context"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

// This file holds the decisions of a room's stream as pure functions of
// their inputs (no Redis, no locks, no goroutines): where a live envelope
// falls, and what a repair round fans out. The hub (hub.go) and the repair
// goroutine (repair.go) apply them under room.mu.

// placement is where an envelope falls in a room's live stream.
type placement int

const (
	placeSeen placement = iota // fanned out already
	placeNext                  // the next one: fan it out
	placeHole                  // something before it is missing
)

// cursor is a room's position in its live stream: the last envelope fanned
// out. A cursor that is not known (no member has joined since the room was
// subscribed) takes anything.
type cursor struct {
	known bool
	pos   protocol.Position
}

// place says where env falls after c: in the same epoch the next seq
// follows; a new epoch follows from its seq 1.
func (c cursor) place(env broker.Envelope) placement {
	if !c.known {
		return placeNext
	}
	switch c.pos.Place(env.Epoch, env.Seq) {
	case protocol.Duplicate:
		return placeSeen
	case protocol.Next:
		return placeNext
	case protocol.NewEpoch:
		if protocol.Starts(env.Seq) {
			return placeNext
		}
	}
	return placeHole
}

// advance moves c past env.
func (c *cursor) advance(env broker.Envelope) {
	c.known, c.pos = true, protocol.Position{Epoch: env.Epoch, Seq: env.Seq}
}

// mergeResult is what one repair round decides.
type mergeResult struct {
	out      []broker.Envelope // to fan out, in order
	rest     []broker.Envelope // buffered envelopes after a hole, kept for the next round
	repaired int               // envelopes of out that pub/sub had not delivered
	hole     bool              // rest starts at a hole: another round is owed
	cur      cursor            // the room's cursor after out
}

// merge decides what a repair round fans out, from the room's cursor, the
// history the round read (hist) and the live envelopes buffered while the
// room was repairing (buf, in arrival order). The first stale of buf
// arrived before the read began: those of another epoch than the read saw
// are dropped, their epoch is gone. History is fanned out first, each
// envelope once and in seq order, even past a hole (one history cannot
// fill: members see it and are told to resume); then the buffer, up to
// its first hole, where the rest is kept for another round.
func merge(cur cursor, hist broker.Range, buf []broker.Envelope, stale int) mergeResult {
	res := mergeResult{cur: cur}
	live := make(map[int64]bool, len(buf)) // seqs pub/sub did deliver: not counted as repaired
	for _, env := range buf {
		if env.Epoch == hist.Epoch {
			live[env.Seq] = true
		}
	}
	for _, env := range hist.Messages {
		if res.cur.place(env) == placeSeen {
			continue
		}
		res.cur.advance(env)
		res.out = append(res.out, env)
		if !live[env.Seq] {
			res.repaired++
		}
	}
	for i, env := range buf {
		if i < stale && env.Epoch != hist.Epoch {
			continue
		}
		switch res.cur.place(env) {
		case placeSeen:
		case placeNext:
			res.cur.advance(env)
			res.out = append(res.out, env)
		case placeHole:
			res.rest, res.hole = buf[i:], true
			return res
		}
	}
	return res
}

// readSince reads what follows since in a room's history, the one read a
// join's resume and a repair round share. When since is in the room's
// epoch (or is seq 0), that is every retained message after since.Seq, and
// recovered reports whether none between since and them was trimmed away.
// When the room's epoch is another (its store was lost and it began
// again), it is the new epoch from its start, and recovered is false: what
// since had is gone.
func readSince(ctx context.Context, store broker.Store, room string, since protocol.Position) (rng broker.Range, recovered bool, err error) {
	rng, err = store.After(ctx, room, since.Seq, 0)
	if err != nil {
		return rng, false, err
	}
	if since.Seq == 0 || rng.Epoch == since.Epoch {
		// A client ahead of the head (same epoch) has all there is.
		return rng, rng.Seq <= since.Seq || rng.First <= since.Seq+1, nil
	}
	if rng.Epoch == "" {
		return rng, false, nil // the room is gone and empty: nothing to read
	}
	rng, err = store.After(ctx, room, 0, 0)
	return rng, false, err
}
