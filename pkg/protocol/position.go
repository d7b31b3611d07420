package protocol

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is a point in a room's stream: an epoch and a seq in it. A
// client's position is the last message it has seen; a room's head is its
// last assigned seq. The zero Position is the start of a room that has had
// no message yet. On the wire it is the "since" of a join.
type Position struct {
	Epoch string `json:"epoch"`
	Seq   int64  `json:"seq"`
}

// Since is the resume position a join carries.
type Since = Position

// Placement is where a message falls relative to a Position.
type Placement int

// The placements, in the order Place tests them.
const (
	// Next is the message right after the position: take it and advance.
	Next Placement = iota
	// Duplicate is at or before the position in its epoch: seen already.
	Duplicate
	// Gap is later than the next one in the same epoch: messages between
	// are missing and must be read from history (or resumed).
	Gap
	// NewEpoch is in another epoch than the position: the room's store
	// lost it and began again at seq 1. What the position had is gone; what
	// the new epoch holds before the message may be missing (Starts says
	// whether the message is its first).
	NewEpoch
)

func (p Placement) String() string {
	switch p {
	case Next:
		return "next"
	case Duplicate:
		return "duplicate"
	case Gap:
		return "gap"
	case NewEpoch:
		return "new epoch"
	}
	return "placement?"
}

// Place says where a message of (epoch, seq) falls after p. The zero
// Position (a room that was empty) takes any epoch as its own, so the
// room's first message is Next.
func (p Position) Place(epoch string, seq int64) Placement {
	if epoch != p.Epoch && !p.IsZero() {
		return NewEpoch
	}
	switch {
	case seq <= p.Seq:
		return Duplicate
	case seq == p.Seq+1:
		return Next
	default:
		return Gap
	}
}

// IsZero reports whether p is the start of an empty room.
func (p Position) IsZero() bool { return p.Epoch == "" && p.Seq == 0 }

// Starts reports whether a message at seq is the first of its epoch: after
// a NewEpoch placement, such a message is Next in the new epoch.
func Starts(seq int64) bool { return seq == 1 }

// Reset returns the position just before seq in epoch: where a stream
// stands when it jumps to a new epoch at seq. Reset(epoch, 1) is the start
// of epoch, before its first message (the zero Position if epoch is "").
func Reset(epoch string, seq int64) Position { return Position{Epoch: epoch, Seq: seq - 1} }

// String returns p as text, "<epoch>:<seq>": the form of a long-poll's
// after and of an SSE event id. The zero Position is "" (no position).
func (p Position) String() string {
	if p.IsZero() {
		return ""
	}
	return p.Epoch + ":" + strconv.FormatInt(p.Seq, 10)
}

// ParsePosition reads the text form of a Position (String): "" is the
// zero Position; otherwise an epoch, a colon and a seq >= 0, where an
// empty epoch goes with seq 0 only.
func ParsePosition(s string) (Position, error) {
	if s == "" {
		return Position{}, nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Position{}, fmt.Errorf("position %q: want <epoch>:<seq>", s)
	}
	seq, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || seq < 0 {
		return Position{}, fmt.Errorf("position %q: the seq after the last ':' is not a number >= 0", s)
	}
	p := Position{Epoch: s[:i], Seq: seq}
	if p.Epoch == "" && p.Seq != 0 {
		return Position{}, fmt.Errorf("position %q: a seq needs its epoch", s)
	}
	return p, nil
}
