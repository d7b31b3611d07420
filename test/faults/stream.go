package faults

import (
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// stream is one Member's view of one room, checked as it arrives: within
// an epoch each message's seq is the previous one plus one. The only
// allowed break is one announced first by a joined frame with
// recovered:false; the message after it may start anywhere. Everything
// else is counted: seqs skipped (lost), a seq received again (duplicate), a
// lower one (out of order), an epoch change nobody announced. The Member's
// lock guards it.
type stream struct {
	// pos is the last message received; before the first one, the start
	// of the epoch joined says the room is in (the zero Position if it is
	// empty).
	pos protocol.Position
	// free: a break was announced; the next message may start anywhere.
	free bool

	received     int64
	lost         int64 // seqs skipped without an announcement
	dups         int64
	outOfOrder   int64
	unannounced  int64 // epoch changes without a recovered:false joined
	notRecovered int   // joined frames with recovered:false
	lastNotRec   time.Time
	problems     []string // the first few anomalies, for the failure message

	target  *protocol.Position // set when the fault ended: where "caught up" is
	reached time.Time          // when the stream first held target, connected

	// ids is the message (from/id) first received at each position;
	// extra the other messages later received at a position already
	// held (a seq reused for another message: reused counts them). The
	// Checker compares them with the room's history at the end.
	ids    map[protocol.Position]string
	extra  map[protocol.Position][]string
	reused int64
}

// msgKey names a message in a room: its sender and its id.
func msgKey(from, id string) string { return from + "/" + id }

const maxProblems = 5

func (s *stream) problem(format string, args ...any) {
	if len(s.problems) < maxProblems {
		s.problems = append(s.problems, fmt.Sprintf(format, args...))
	}
}

// joined handles a joined frame: the answer to the first join (since seq
// 0), to a re-join after a reconnect, or an epoch change the server pushed.
func (s *stream) joined(now time.Time, f *protocol.Frame) {
	if f.Recovered != nil && !*f.Recovered {
		s.notRecovered++
		s.lastNotRec = now
		// The announced break: the stream starts over in f's epoch (the
		// zero Position if the room is empty now) and its next message
		// may start anywhere.
		s.pos, s.free = protocol.Reset(f.Epoch, 1), true
		return
	}
	if f.Epoch == "" {
		return // the room is empty: nothing to place
	}
	// f's head, placed after the stream: only another epoch matters here
	// (the messages up to the head follow).
	if s.pos.Place(f.Epoch, f.Seq) == protocol.NewEpoch {
		s.unannounced++
		s.problem("joined in epoch %s (recovered %v) while in %s at seq %d", f.Epoch, f.Recovered, s.pos.Epoch, s.pos.Seq)
		s.pos, s.free = protocol.Reset(f.Epoch, 1), true
		return
	}
	if s.pos.IsZero() {
		s.pos.Epoch = f.Epoch // first join, or the room had no message yet
	}
}

// message handles one delivered message.
func (s *stream) message(now time.Time, m *protocol.Message) {
	s.record(m)
	if s.free {
		s.free = false
	} else {
		switch last := s.pos.Seq; s.pos.Place(m.Epoch, m.Seq) {
		case protocol.Next:
		case protocol.Duplicate:
			if m.Seq == last {
				s.dups++
				s.problem("seq %d twice", m.Seq)
			} else {
				s.outOfOrder++
				s.problem("seq %d after %d", m.Seq, last)
			}
			return
		case protocol.Gap:
			s.lost += m.Seq - last - 1
			if s.pos.IsZero() {
				// The room was empty at the join: its first message is seq 1.
				s.problem("first message of the room is seq %d", m.Seq)
			} else {
				s.problem("seq %d after %d: %d missing, unannounced", m.Seq, last, m.Seq-last-1)
			}
		case protocol.NewEpoch:
			s.unannounced++
			s.problem("seq %d in epoch %s after seq %d in %s, unannounced", m.Seq, m.Epoch, last, s.pos.Epoch)
		}
	}
	s.pos = protocol.Position{Epoch: m.Epoch, Seq: m.Seq}
	s.received++
}

// record notes which message m is at its position: the first one there,
// or another one (the seq was reused), counted in reused.
func (s *stream) record(m *protocol.Message) {
	pos, k := protocol.Position{Epoch: m.Epoch, Seq: m.Seq}, msgKey(m.From, m.ID)
	if s.ids == nil {
		s.ids = map[protocol.Position]string{}
	}
	first, held := s.ids[pos]
	switch {
	case !held:
		s.ids[pos] = k
	case first != k:
		if s.extra == nil {
			s.extra = map[protocol.Position][]string{}
		}
		s.extra[pos] = append(s.extra[pos], k)
		s.reused++
		s.problem("seq %d delivered again as another message: %s, then %s", m.Seq, first, k)
	}
}

// at reports whether the stream holds p: p is at or before the stream's
// position in its epoch (a message at p would be a duplicate), and no
// announced break is pending.
func (s *stream) at(p protocol.Position) bool {
	return !s.free && s.pos.Place(p.Epoch, p.Seq) == protocol.Duplicate
}

// checkTarget notes when the stream first holds its target while its
// Member is connected.
func (s *stream) checkTarget(now time.Time, connected bool) {
	if connected && s.target != nil && s.reached.IsZero() && s.at(*s.target) {
		s.reached = now
	}
}
