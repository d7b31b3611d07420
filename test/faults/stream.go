package faults

import (
	"fmt"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// position is a place in a room's stream.
type position struct {
	epoch string
	seq   int64
}

// stream is one Member's view of one room, checked as it arrives: within
// an epoch each message's seq is the previous one plus one. The only
// allowed break is one announced first by a joined frame with
// recovered:false; the message after it may start anywhere. Everything
// else is counted: seqs skipped (lost), a seq received again (duplicate), a
// lower one (out of order), an epoch change nobody announced. The Member's
// lock guards it.
type stream struct {
	epoch string
	last  int64
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

	target  *position // set when the fault ended: where "caught up" is
	reached time.Time // when the stream first held target, connected
}

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
		s.free = true
		s.epoch = f.Epoch
		return
	}
	switch {
	case s.epoch == "":
		s.epoch = f.Epoch // first join, or the room had no message yet
	case f.Epoch != "" && f.Epoch != s.epoch:
		s.unannounced++
		s.problem("joined in epoch %s (recovered %v) while in %s at seq %d", f.Epoch, f.Recovered, s.epoch, s.last)
		s.epoch, s.free = f.Epoch, true
	}
}

// message handles one delivered message.
func (s *stream) message(now time.Time, m *protocol.Message) {
	switch {
	case s.free:
		s.free = false
	case m.Epoch != s.epoch:
		if s.epoch == "" && s.last == 0 {
			// The room was empty at the join: its first message is seq 1.
			if m.Seq != 1 {
				s.lost += m.Seq - 1
				s.problem("first message of the room is seq %d", m.Seq)
			}
			break
		}
		s.unannounced++
		s.problem("seq %d in epoch %s after seq %d in %s, unannounced", m.Seq, m.Epoch, s.last, s.epoch)
	case m.Seq == s.last+1:
	case m.Seq == s.last:
		s.dups++
		s.problem("seq %d twice", m.Seq)
		return
	case m.Seq < s.last:
		s.outOfOrder++
		s.problem("seq %d after %d", m.Seq, s.last)
		return
	default:
		s.lost += m.Seq - s.last - 1
		s.problem("seq %d after %d: %d missing, unannounced", m.Seq, s.last, m.Seq-s.last-1)
	}
	s.epoch, s.last = m.Epoch, m.Seq
	s.received++
}

// at reports whether the stream holds p.
func (s *stream) at(p position) bool {
	return s.epoch == p.epoch && s.last >= p.seq && !s.free
}

// checkTarget notes when the stream first holds its target while its
// Member is connected.
func (s *stream) checkTarget(now time.Time, connected bool) {
	if connected && s.target != nil && s.reached.IsZero() && s.at(*s.target) {
		s.reached = now
	}
}
