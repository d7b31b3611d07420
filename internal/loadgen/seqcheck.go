package loadgen

import "github.com/parley-chat/parley/pkg/protocol"

// SeqChecker follows one room on one connection and counts seqs that arrive
// out of turn. Start it with the position of a joined frame; every message
// must then carry the next seq. It is not safe for concurrent use (one
// connection's reader owns it).
type SeqChecker struct {
	Epoch string // the room's epoch as last seen ("" until the first message)
	Last  int64  // the last seq seen (or the head given by joined)

	Gaps       int64 // seqs skipped over (a jump from 5 to 8 counts 2)
	Duplicates int64 // messages whose seq was not above Last
	Epochs     int64 // epoch changes seen on messages after the first epoch
}

// Joined restarts the checker at a joined frame's epoch and head seq.
func (c *SeqChecker) Joined(epoch string, head int64) {
	c.Epoch, c.Last = epoch, head
}

// Message checks one message and reports whether it was new (neither a
// duplicate nor from a stale epoch). A new epoch (the room's store was lost)
// restarts the count before its seq 1; the zero position (an empty room)
// takes the first epoch as its own (protocol.Position.Place).
func (c *SeqChecker) Message(epoch string, seq int64) bool {
	pos := protocol.Position{Epoch: c.Epoch, Seq: c.Last}
	place := pos.Place(epoch, seq)
	if place == protocol.NewEpoch {
		c.Epochs++
		pos = protocol.Reset(epoch, 1)
		place = pos.Place(epoch, seq)
	}
	switch place {
	case protocol.Duplicate:
		c.Duplicates++
		return false
	case protocol.Gap:
		c.Gaps += seq - pos.Seq - 1
	}
	c.Epoch, c.Last = epoch, seq
	return true
}
