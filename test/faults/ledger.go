package faults

import (
	"sort"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// sendRec is one message a scenario sent: its id, and its ack once it
// came.
type sendRec struct {
	room, user, id string
	start          time.Time

	acked    bool
	ack      protocol.Position
	ackedAt  time.Time
	attempts int    // error frames answered before the ack
	gaveUp   string // why the send was abandoned, if it was
}

// ledger records every send of a scenario and its outcome.
type ledger struct {
	mu       sync.Mutex
	recs     []*sendRec
	byKey    map[string]*sendRec // room/user/id
	errCodes map[string]int      // error frames answering sends, by code
	conflict []string            // an id acknowledged twice at different positions
}

func newLedger() *ledger {
	return &ledger{byKey: map[string]*sendRec{}, errCodes: map[string]int{}}
}

func key(room, user, id string) string { return room + "/" + user + "/" + id }

func (l *ledger) begin(room, user, id string, start time.Time) *sendRec {
	r := &sendRec{room: room, user: user, id: id, start: start}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	l.byKey[key(room, user, id)] = r
	return r
}

// ack records r's ack and reports whether it is the first.
func (l *ledger) ack(r *sendRec, p protocol.Position, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.acked && r.ack != p {
		l.conflict = append(l.conflict, r.id)
		return
	}
	r.acked, r.ack, r.ackedAt = true, p, at
}

func (l *ledger) failedAttempt(r *sendRec, code string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.attempts++
	if code == "" {
		code = "no frame"
	}
	l.errCodes[code]++
}

func (l *ledger) giveUp(r *sendRec, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.gaveUp = err.Error()
}

// snapshot returns the records, in send order.
func (l *ledger) snapshot() []*sendRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*sendRec, len(l.recs))
	for i, r := range l.recs {
		c := *r
		out[i] = &c
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

func (l *ledger) codes() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]int, len(l.errCodes))
	for k, v := range l.errCodes {
		out[k] = v
	}
	return out
}
