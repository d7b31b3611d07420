package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/pkg/protocol"
)

// faultTail is how long after a fault ends its window goes on for the
// latency figure: the clients it dropped come back meanwhile.
const faultTail = 2 * time.Second

// Checker is the one judge of every scenario. It keeps the ledger of sends
// and acks, marks the fault window, sets the "caught up" targets when the
// fault ends, and at the end reads each room's history straight from Redis
// and compares it with the ledger and with what every Member received
// (stream.go).
type Checker struct {
	fleet *Fleet
	rdb   goredis.UniversalClient

	ledger *ledger

	// DataLoss says the scenario wipes Redis on purpose: acknowledged
	// messages of the lost epoch are excused, provided every Member in the
	// room was told with recovered:false.
	DataLoss bool
	// failover, when set (ExpectFailover), is a master the scenario
	// killed on purpose and the replica promoted in its place.
	failover *failover
	// Healthy picks the Members whose latency the fault-window p99 covers
	// and whose 1008/1013 closes fail the scenario. Default: all.
	Healthy func(*Member) bool

	mu         sync.Mutex
	warmStart  time.Time
	faultStart time.Time
	faultEnd   time.Time
	pending    map[string]bool // rooms whose target is their first ack after the fault
}

func newChecker(c *Cluster, f *Fleet) *Checker {
	return &Checker{
		fleet:     f,
		rdb:       c.Store(),
		ledger:    newLedger(),
		warmStart: time.Now(),
		pending:   map[string]bool{},
	}
}

// failoverWindow is how long before the kill a lost ack is put down to
// the failover: "the killed master's last second".
const failoverWindow = time.Second

// failover is a Redis master killed on purpose and its replica promoted in
// its place. Redis replicates asynchronously: a write the master
// acknowledged but had not yet sent to its replica is lost with it (Redis
// does not promise otherwise). The acks of the failover's rooms received
// from failoverWindow before the kill until the promotion (every ack the
// killed master sent in its last second: none of these rooms could be
// acknowledged by another node meanwhile) that are not in history are
// counted as lost to the failover, reported and not failed on. So are the
// messages Members hold at a position where the history now has another
// message or nothing: the same lost writes, as the clients saw them. A
// lost ack from before that window still fails, and so does every other
// assertion, a stored message a Member never got among them.
type failover struct {
	rooms            map[string]bool
	killed, promoted time.Time
}

// in reports whether an ack received at t falls in the failover's window.
func (f *failover) in(t time.Time) bool {
	return !t.Before(f.killed.Add(-failoverWindow)) && t.Before(f.promoted)
}

// ExpectFailover says the scenario killed the Redis master that held rooms
// at killed, and a replica was promoted at promoted (see failover).
func (c *Checker) ExpectFailover(rooms []string, killed, promoted time.Time) {
	f := &failover{rooms: map[string]bool{}, killed: killed, promoted: promoted}
	for _, r := range rooms {
		f.rooms[r] = true
	}
	c.mu.Lock()
	c.failover = f
	c.mu.Unlock()
}

// WarmStart starts the baseline window (the p99 before the fault).
func (c *Checker) WarmStart() {
	c.mu.Lock()
	c.warmStart = time.Now()
	c.mu.Unlock()
}

// FaultStart marks the start of the fault and notes each Member's gateway.
func (c *Checker) FaultStart() {
	c.mu.Lock()
	c.faultStart = time.Now()
	c.mu.Unlock()
	for _, m := range c.fleet.Members {
		node := m.Node()
		m.mu.Lock()
		m.node = node
		m.mu.Unlock()
	}
}

// FaultEnd marks the end of the fault: from now on "caught up" is
// measured. Each room's target is its head in Redis now (read as soon as
// Redis answers), or, for a room Redis holds nothing of, its first message
// acknowledged from now on.
func (c *Checker) FaultEnd(ctx context.Context) error {
	return c.FaultEndAt(ctx, time.Now(), nil)
}

// FaultEndAt is FaultEnd for a fault that ended at end, earlier: "caught
// up" is measured from end, and so is the fault window's tail. The rooms
// of next take as target their first message acknowledged from now on
// instead of their head: after a failover, the first message the promoted
// replica stored.
func (c *Checker) FaultEndAt(ctx context.Context, end time.Time, next []string) error {
	now := end
	c.mu.Lock()
	c.faultEnd = now
	for _, room := range next {
		c.pending[room] = true
	}
	c.mu.Unlock()
	for _, room := range c.fleet.Rooms {
		if slices.Contains(next, room) {
			continue
		}
		p, err := c.head(ctx, room)
		if err != nil {
			return fmt.Errorf("fault end: %w", err)
		}
		if p.Seq == 0 {
			c.mu.Lock()
			c.pending[room] = true
			c.mu.Unlock()
			continue
		}
		c.target(room, p, now)
	}
	return nil
}

func (c *Checker) target(room string, p protocol.Position, now time.Time) {
	for _, m := range c.fleet.Members {
		if slices.Contains(m.Rooms, room) {
			m.setTarget(room, p, now)
		}
	}
}

// acked records an ack, and makes it the room's target if the room was
// waiting for its first message after the fault.
func (c *Checker) acked(r *sendRec, ack protocol.Frame) {
	p := protocol.Position{Epoch: ack.Epoch, Seq: ack.Seq}
	c.ledger.ack(r, p, time.Now())
	c.mu.Lock()
	first := c.pending[r.room]
	delete(c.pending, r.room)
	c.mu.Unlock()
	if first {
		c.target(r.room, p, time.Now())
	}
}

// head reads a room's head (epoch and last seq) from Redis, retrying until
// Redis answers or ctx ends.
func (c *Checker) head(ctx context.Context, room string) (protocol.Position, error) {
	for {
		v, err := c.rdb.HMGet(ctx, "parley:{"+room+"}:meta", "epoch", "seq").Result()
		if err == nil {
			var p protocol.Position
			if s, ok := v[0].(string); ok {
				p.Epoch = s
			}
			if s, ok := v[1].(string); ok {
				p.Seq, _ = strconv.ParseInt(s, 10, 64)
			}
			return p, nil
		}
		// A cluster client reloads its slot map on MOVED, not when a
		// master is gone: after a failover, ask for the map again.
		if cc, ok := c.rdb.(*goredis.ClusterClient); ok {
			cc.ReloadState(ctx)
		}
		if !sleepCtx(ctx, 50*time.Millisecond) {
			return protocol.Position{}, fmt.Errorf("read the head of %s: %w (last error %w)", room, ctx.Err(), err)
		}
	}
}

// stored is one envelope of a room's history as Redis holds it.
type stored struct {
	Seq   int64  `json:"seq"`
	Epoch string `json:"epoch"`
	ID    string `json:"id"`
	From  string `json:"from"`
}

// position is where e stands in its room's stream.
func (e stored) position() protocol.Position { return protocol.Position{Epoch: e.Epoch, Seq: e.Seq} }

// history reads a room's whole history list from Redis.
func (c *Checker) history(ctx context.Context, room string) ([]stored, error) {
	raw, err := c.rdb.LRange(ctx, "parley:{"+room+"}:log", 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read the history of %s: %w", room, err)
	}
	out := make([]stored, len(raw))
	for i, s := range raw {
		if err := json.Unmarshal([]byte(s), &out[i]); err != nil {
			return nil, fmt.Errorf("history of %s, entry %d: %w", room, i, err)
		}
	}
	return out, nil
}

// Finish ends the scenario: it stops the traffic (waiting for the sends in
// flight), waits until every Member holds its rooms' heads, and checks the
// history against the ledger. The Result holds every figure of the row;
// Result.Problems lists what the shared assertions found wrong.
func (c *Checker) Finish(ctx context.Context, name string, traffic ...*Traffic) *Result {
	sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	for _, tr := range traffic {
		tr.Stop(sctx)
	}
	cancel()
	r := &Result{Scenario: name, Closes: map[string]int{}, DialFails: map[int]int{}, ErrorFrames: map[string]int{}, Refused: map[string]int{}}
	r.SendErrors = c.ledger.codes()

	// Every Member catches up to the head.
	heads := map[string]protocol.Position{}
	for _, room := range c.fleet.Rooms {
		p, err := c.head(ctx, room)
		if err != nil {
			r.problem("%v", err)
			return r
		}
		heads[room] = p
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, m := range c.fleet.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, room := range m.Rooms {
				if err := m.waitAt(wctx, room, heads[room]); err != nil {
					mu.Lock()
					r.NotCaughtUp++
					if r.NotCaughtUp <= 3 {
						r.problem("not caught up at the end: %v (fatal: %v)", err, m.fatalErr())
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	wcancel()
	// A room still waiting for its first ack after the fault never had a
	// target: none of its Members caught up to one.
	c.mu.Lock()
	for _, room := range sortedKeys(c.pending) {
		n := 0
		for _, m := range c.fleet.Members {
			if slices.Contains(m.Rooms, room) {
				n++
			}
		}
		r.NotCaughtUp += n
		r.problem("%s: no message acknowledged after the fault, so none of its %d clients caught up to one", room, n)
	}
	c.mu.Unlock()

	c.checkHistory(ctx, r, heads)
	c.tally(r)
	return r
}

func (m *Member) fatalErr() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fatal
}

// checkHistory compares each room's history with the ledger: every
// acknowledged message is there exactly once, at the seq its ack named;
// no id is stored twice; seqs rise by one. It compares it with what every
// Member received too (compareStreams).
func (c *Checker) checkHistory(ctx context.Context, r *Result, heads map[string]protocol.Position) {
	recs := c.ledger.snapshot()
	c.mu.Lock()
	fo := c.failover
	c.mu.Unlock()
	r.Failover = fo != nil
	for _, room := range c.fleet.Rooms {
		hist, err := c.history(ctx, room)
		if err != nil {
			r.problem("%v", err)
			continue
		}
		inFailover := fo != nil && fo.rooms[room]
		seen := map[string][]protocol.Position{}
		at := map[protocol.Position]string{} // the history's message at each position
		for i, e := range hist {
			k := key(room, e.From, e.ID)
			seen[k] = append(seen[k], e.position())
			at[e.position()] = msgKey(e.From, e.ID)
			if i == 0 {
				continue
			}
			// Within an epoch each entry is the next; a new epoch may
			// follow (Redis lost the room and it began again).
			switch hist[i-1].position().Place(e.Epoch, e.Seq) {
			case protocol.Duplicate, protocol.Gap:
				r.OutOfOrder++
				r.problem("history of %s: seq %d after %d", room, e.Seq, hist[i-1].Seq)
			}
		}
		if n := len(hist); n > 0 && hist[n-1].Seq != heads[room].Seq {
			r.problem("history of %s ends at seq %d, head is %d", room, hist[n-1].Seq, heads[room].Seq)
		}
		for k, ws := range seen {
			if len(ws) > 1 {
				r.Duplicated += int64(len(ws) - 1)
				r.problem("%s stored %d times: %v", k, len(ws), ws)
			}
		}
		cmp := c.compareStreams(r, room, hist, at, inFailover)
		for _, s := range recs {
			if s.room != room {
				continue
			}
			if inFailover && s.acked && fo.in(s.ackedAt) {
				r.FailoverWindow++
			}
			if !s.acked {
				r.Unacked++
				if r.Unacked <= 3 {
					r.problem("send %s never acknowledged: %s", s.id, s.gaveUp)
				}
				continue
			}
			r.Acked++
			ws := seen[key(room, s.user, s.id)]
			switch {
			case len(ws) > 0 && ws[0] != s.ack:
				r.LostHistory++
				r.problem("%s acknowledged as %s/%d, stored as %s/%d", s.id, s.ack.Epoch, s.ack.Seq, ws[0].Epoch, ws[0].Seq)
			case len(ws) > 0:
			case len(hist) > 0 && protocol.Reset(hist[0].Epoch, hist[0].Seq).Place(s.ack.Epoch, s.ack.Seq) == protocol.Duplicate:
				// Before the oldest entry, in its epoch: retention dropped
				// it, and the streams vouch for it.
				r.Trimmed++
			case c.DataLoss && s.ack.Epoch != heads[room].Epoch:
				r.Excused++
			case inFailover && fo.in(s.ackedAt):
				r.FailoverLost++
				now, ok := at[s.ack]
				if !ok {
					now = "nothing (past the head)"
				}
				r.FailoverLosses = append(r.FailoverLosses, fmt.Sprintf(
					"%s/%s acked as seq %d %v after the kill, history has %s at that seq now; %d of %d clients in %s received the lost message there, %d received the stored one after it, %d never received the stored one",
					s.user, s.id, s.ack.Seq, s.ackedAt.Sub(fo.killed).Round(time.Millisecond), now,
					cmp.holders[s.ack][msgKey(s.user, s.id)], cmp.members, room, cmp.reusedAt[s.ack], cmp.missedAt[s.ack]))
			default:
				r.LostHistory++
				if r.LostHistory <= 3 {
					r.problem("%s acknowledged as %s/%d, not in the history of %s", s.id, s.ack.Epoch, s.ack.Seq, room)
				}
			}
		}
	}
	c.ledger.mu.Lock()
	for _, id := range c.ledger.conflict {
		r.Duplicated++
		r.problem("%s acknowledged twice at different positions", id)
	}
	c.ledger.mu.Unlock()
}

// streamCmp is what compareStreams found in one room, by position, for
// the report of the acks lost to a failover.
type streamCmp struct {
	members  int                                  // Members in the room
	holders  map[protocol.Position]map[string]int // Members holding a message history lacks at a position
	reusedAt map[protocol.Position]int            // Members that got the stored message after another one there
	missedAt map[protocol.Position]int            // Members that hold another message there and never got the stored one
}

// compareStreams compares what every Member of room received, message by
// message, with the room's history (at: the message stored at each
// position). At a position history holds, a Member that holds another
// message and never received the stored one missed it without being told
// (Missed, part of lost); each message it holds there other than the
// stored one, or past the history's head in its epoch, is a phantom: a
// message history does not have there (Phantoms; FailoverPhantoms in a
// room of a deliberate failover, where they are the lost writes as the
// clients saw them). Positions before the history's oldest entry
// (retention) or of an epoch it no longer has (a wiped room) are not
// compared. A message received at two positions of one epoch is a
// duplicate (Dups).
func (c *Checker) compareStreams(r *Result, room string, hist []stored, at map[protocol.Position]string, inFailover bool) streamCmp {
	cmp := streamCmp{
		holders:  map[protocol.Position]map[string]int{},
		reusedAt: map[protocol.Position]int{},
		missedAt: map[protocol.Position]int{},
	}
	var last protocol.Position
	if n := len(hist); n > 0 {
		last = hist[n-1].position()
	}
	phantom := func(m *Member, pos protocol.Position, k, stored string) {
		if inFailover {
			r.FailoverPhantoms++
			if cmp.holders[pos] == nil {
				cmp.holders[pos] = map[string]int{}
			}
			cmp.holders[pos][k]++
			return
		}
		r.Phantoms++
		r.problem("%s in %s: holds %s at %s/%d, where history has %s", m.Name, room, k, pos.Epoch, pos.Seq, stored)
	}
	for _, m := range c.fleet.Members {
		if !slices.Contains(m.Rooms, room) {
			continue
		}
		cmp.members++
		m.mu.Lock()
		s := m.streams[room]
		type epochKey struct{ epoch, k string }
		where := map[epochKey][]int64{}
		for pos, first := range s.ids {
			got := append([]string{first}, s.extra[pos]...)
			for _, k := range got {
				where[epochKey{pos.Epoch, k}] = append(where[epochKey{pos.Epoch, k}], pos.Seq)
			}
			h, ok := at[pos]
			switch {
			case ok:
				if !slices.Contains(got, h) {
					r.Missed++
					cmp.missedAt[pos]++
					r.problem("%s in %s: holds %v at %s/%d and never got %s, which history has there", m.Name, room, got, pos.Epoch, pos.Seq, h)
				} else if first != h {
					cmp.reusedAt[pos]++
				}
				for _, k := range got {
					if k != h {
						phantom(m, pos, k, h)
					}
				}
			case !last.IsZero() && pos.Epoch == last.Epoch && pos.Seq > last.Seq:
				for _, k := range got {
					phantom(m, pos, k, "nothing (past its head)")
				}
			}
		}
		for ek, seqs := range where {
			if len(seqs) > 1 {
				slices.Sort(seqs)
				r.Dups += int64(len(seqs) - 1)
				r.problem("%s in %s: received %s at seqs %v of epoch %s", m.Name, room, ek.k, seqs, ek.epoch)
			}
		}
		m.mu.Unlock()
	}
	return cmp
}

// tally adds up what the Members saw.
func (c *Checker) tally(r *Result) {
	c.mu.Lock()
	warm, start, end := c.warmStart, c.faultStart, c.faultEnd
	c.mu.Unlock()
	if end.IsZero() {
		end = start
	}
	healthy := c.Healthy
	if healthy == nil {
		healthy = func(*Member) bool { return true }
	}
	var base, fault, resume1012 []time.Duration
	var caught time.Duration
	sick := map[string]bool{} // Members the fault hit: their sends are not healthy latency
	for _, m := range c.fleet.Members {
		if !healthy(m) {
			sick[m.Name] = true
		}
	}
	for _, m := range c.fleet.Members {
		h := !sick[m.Name]
		m.mu.Lock()
		for _, room := range m.Rooms {
			s := m.streams[room]
			r.LostStream += s.lost + s.unannounced
			r.Dups += s.dups
			r.Reused += s.reused
			r.OutOfOrder += s.outOfOrder
			r.NotRecovered += s.notRecovered
			for _, p := range s.problems {
				r.problem("%s in %s: %s", m.Name, room, p)
			}
			if c.DataLoss && s.notRecovered == 0 {
				r.Unannounced++
				if r.Unannounced <= 3 {
					r.problem("%s in %s: Redis lost the room and it got no recovered:false", m.Name, room)
				}
			}
			if s.target != nil {
				if s.reached.IsZero() {
					caught = -1 << 62 // never: reported as not caught up
				} else if caught >= 0 {
					caught = max(caught, s.reached.Sub(end))
				}
			}
		}
		for _, cl := range m.closes {
			r.Closes[cl.class]++
			if h && (cl.class == closeTryLater || cl.class == closePolicy) {
				r.HealthyBadCloses++
				if r.HealthyBadCloses <= 3 {
					r.problem("%s (healthy) closed with %s by %s: %s", m.Name, cl.class, cl.node, cl.err)
				}
			}
		}
		for _, ev := range m.resumes {
			if ev.class == closeRestart {
				resume1012 = append(resume1012, ev.took)
			}
		}
		for status, n := range m.dialFail {
			r.DialFails[status] += n
		}
		for code, n := range m.errs {
			r.ErrorFrames[code] += n
		}
		for code, n := range m.refused {
			r.Refused[code] += n
		}
		if m.fatal != nil {
			r.problem("%s stopped: %v", m.Name, m.fatal)
		}
		if h {
			for _, l := range m.lat {
				switch {
				case sick[l.from]:
				case !l.sent.Before(warm) && l.sent.Add(l.d).Before(start):
					// Sent and delivered before the fault began: a message
					// the fault held up belongs to neither window.
					base = append(base, l.d)
				case !l.sent.Before(start) && !l.sent.After(end.Add(faultTail)):
					fault = append(fault, l.d)
				}
			}
		}
		m.mu.Unlock()
	}
	r.CatchUp = caught
	if caught < 0 {
		r.CatchUp = -1
	}
	r.P99Base, r.P99Fault = percentile(base, 0.99), percentile(fault, 0.99)
	r.Resume1012P99 = percentile(resume1012, 0.99)
	r.Resumes1012 = len(resume1012)
}

// closesIn counts the Members' drops of the given classes between from and
// to.
func (c *Checker) closesIn(from, to time.Time, classes ...string) map[string]int {
	out := map[string]int{}
	for _, m := range c.fleet.Members {
		m.mu.Lock()
		for _, cl := range m.closes {
			if !cl.at.Before(from) && !cl.at.After(to) && slices.Contains(classes, cl.class) {
				out[cl.class]++
			}
		}
		m.mu.Unlock()
	}
	return out
}

// sendTrouble counts, by code, the error frames that answered sends (as
// the ledger has them) and the refusals the SDK resent by itself ("send
// unavailable", ...), so far.
func (c *Checker) sendTrouble() map[string]int {
	out := c.ledger.codes()
	for _, m := range c.fleet.Members {
		m.mu.Lock()
		for k, n := range m.refused {
			out[k] += n
		}
		m.mu.Unlock()
	}
	return out
}

// dropsSince counts m's dropped connections since t.
func (c *Checker) dropsSince(m *Member, t time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, cl := range m.closes {
		if !cl.at.Before(t) {
			n++
		}
	}
	return n
}

// window returns the fault's start and end marks.
func (c *Checker) window() (time.Time, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.faultStart, c.faultEnd
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := slices.Collect(maps.Keys(m))
	sort.Strings(ks)
	return ks
}
