package loadgen

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
// restarts the count from seq 0; the first epoch after "" is adopted as is.
func (c *SeqChecker) Message(epoch string, seq int64) bool {
	if epoch != c.Epoch {
		if c.Epoch != "" {
			c.Epochs++
			c.Last = 0
		}
		c.Epoch = epoch
	}
	switch {
	case seq <= c.Last:
		c.Duplicates++
		return false
	case seq > c.Last+1:
		c.Gaps += seq - c.Last - 1
	}
	c.Last = seq
	return true
}
