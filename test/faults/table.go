package faults

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Result is what the Checker measured in one scenario: one row of the
// table, and the problems the shared assertions found.
type Result struct {
	Scenario string

	Acked       int   // acknowledged sends
	Unacked     int   // sends never acknowledged (given up)
	LostHistory int64 // acknowledged, not in history (unexcused)
	Excused     int   // acknowledged in an epoch Redis lost on purpose, loss announced
	Trimmed     int   // acknowledged, since dropped by the history's retention
	LostStream  int64 // seqs a Member skipped, and epoch changes, without recovered:false
	Duplicated  int64 // ids stored twice, or acknowledged at two positions
	Dups        int64 // a seq delivered twice to a Member
	OutOfOrder  int64 // in a Member's stream or in history
	// Missed counts stored messages a Member never received because it
	// holds another message at their position (compareStreams): lost
	// without being told. Reused counts seqs a Member was delivered a
	// second time as another message (each is also a dup).
	Missed int64
	Reused int64
	// Phantoms counts messages Members hold at a position where history
	// has another message or nothing.
	Phantoms int64
	// Failover says the scenario killed a Redis master on purpose
	// (Checker.ExpectFailover). FailoverWindow counts the acks of its
	// rooms received in the killed master's last second (until the
	// promotion), FailoverLost those missing from history, lost with the
	// master (reported, not failed on), FailoverLosses describes each, and
	// FailoverPhantoms counts the messages Members hold at a position
	// where history has another message or nothing in those rooms.
	Failover         bool
	FailoverWindow   int
	FailoverLost     int
	FailoverLosses   []string
	FailoverPhantoms int64
	// NotRecovered counts joined frames with recovered:false.
	NotRecovered int
	// Unannounced counts Members in a wiped room that got no
	// recovered:false (DataLoss scenarios).
	Unannounced int
	// CatchUp is the time from the fault's end until every Member held
	// every room's head as it was then (-1: not measured, or never).
	CatchUp     time.Duration
	NotCaughtUp int
	// P99Base and P99Fault are the send-to-receive p99 between healthy
	// Members before the fault and during it (until faultTail after it
	// ended).
	P99Base, P99Fault time.Duration
	// Closes counts dropped connections by class (member.go).
	Closes map[string]int
	// HealthyBadCloses counts healthy Members closed with 1008 or 1013.
	HealthyBadCloses int
	// DialFails counts failed reconnect attempts by HTTP status (0: none).
	DialFails map[int]int
	// LB503 counts 503 responses in haproxy's log.
	LB503 int
	// Resume1012P99 is the p99 time from a 1012 close to the resumed
	// connection; Resumes1012 how many there were.
	Resume1012P99 time.Duration
	Resumes1012   int
	// SendErrors counts error frames answering sends, by code (each was
	// retried with the same id unless final); ErrorFrames the unsolicited
	// error frames the Members got (rate_limited has no ref).
	SendErrors  map[string]int
	ErrorFrames map[string]int
	// Refused counts the requests a gateway refused for now (unavailable,
	// rate_limited) that the SDK resent by itself, by request type and
	// code: the send call never saw them.
	Refused map[string]int
	// Notes are the scenario's own figures and expectations.
	Notes []string

	Problems []string
}

func (r *Result) problem(format string, args ...any) {
	if len(r.Problems) < 40 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Lost is the table's "lost": acknowledged messages missing from history
// plus messages a Member missed without being told (skipped seqs, and
// stored messages it holds another message in place of).
func (r *Result) Lost() int64 { return r.LostHistory + r.LostStream + r.Missed }

// Duplicates is the table's "duplicated": in history and in streams.
func (r *Result) Duplicates() int64 { return r.Duplicated + r.Dups }

// note adds a scenario figure to the row's notes.
func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// closesText formats the close counts: 1012/1013/1008/1011/abnormal, then
// the SDK's own drops (timeout) and anything else.
func (r *Result) closesText() string {
	parts := []string{
		strconv.Itoa(r.Closes[closeRestart]),
		strconv.Itoa(r.Closes[closeTryLater]),
		strconv.Itoa(r.Closes[closePolicy]),
		strconv.Itoa(r.Closes[closeInternal]),
		strconv.Itoa(r.Closes[closeAbnormal]),
	}
	s := strings.Join(parts, "/")
	if n := r.Closes[closeTimeout]; n > 0 {
		s += fmt.Sprintf(" +%d timeout", n)
	}
	for _, k := range sortedKeys(r.Closes) {
		switch k {
		case closeRestart, closeTryLater, closePolicy, closeInternal, closeAbnormal, closeTimeout:
		default:
			s += fmt.Sprintf(" +%d %s", r.Closes[k], k)
		}
	}
	return s
}

func (r *Result) catchUpText() string {
	if r.NotCaughtUp > 0 {
		return fmt.Sprintf("NO (%d)", r.NotCaughtUp)
	}
	return ms(r.CatchUp)
}

var header = []string{"scenario", "acked", "lost", "dup", "ooo", "rec:false", "caught up", "p99 before", "p99 fault", "closes 1012/1013/1008/1011/abn", "503s", "1012→resume p99"}

func (r *Result) cells() []string {
	return []string{
		r.Scenario,
		strconv.Itoa(r.Acked),
		strconv.FormatInt(r.Lost(), 10),
		strconv.FormatInt(r.Duplicates(), 10),
		strconv.FormatInt(r.OutOfOrder, 10),
		strconv.Itoa(r.NotRecovered),
		r.catchUpText(),
		ms(r.P99Base),
		ms(r.P99Fault),
		r.closesText(),
		fmt.Sprintf("%d (lb %d)", r.DialFails[503], r.LB503),
		ms(r.Resume1012P99),
	}
}

// Row is the Result as one line of the table, with its details.
func (r *Result) Row() string {
	s := "| " + strings.Join(r.cells(), " | ") + " |"
	var d []string
	if r.Excused > 0 {
		d = append(d, fmt.Sprintf("%d acked in the wiped epoch (loss announced)", r.Excused))
	}
	if r.Trimmed > 0 {
		d = append(d, fmt.Sprintf("%d acked messages past the history's retention (checked in the streams only)", r.Trimmed))
	}
	if r.Unacked > 0 {
		d = append(d, fmt.Sprintf("%d sends never acked", r.Unacked))
	}
	if r.Failover {
		d = append(d, fmt.Sprintf("acked lost to failover: %d of %d acked in the killed master's last second", r.FailoverLost, r.FailoverWindow))
	}
	if r.FailoverPhantoms > 0 {
		d = append(d, fmt.Sprintf("%d messages held by clients where history now has another or none (the failover's lost writes)", r.FailoverPhantoms))
	}
	if r.Missed > 0 {
		d = append(d, fmt.Sprintf("%d stored messages never received by a client that holds another message at their seq", r.Missed))
	}
	if r.Reused > 0 {
		d = append(d, fmt.Sprintf("%d seqs delivered again as another message", r.Reused))
	}
	if r.Phantoms > 0 {
		d = append(d, fmt.Sprintf("%d messages held by clients where history has another or none", r.Phantoms))
	}
	if len(r.SendErrors) > 0 {
		d = append(d, "send errors "+mapText(r.SendErrors))
	}
	if len(r.Refused) > 0 {
		d = append(d, "refused for now, resent by the SDK "+mapText(r.Refused))
	}
	if len(r.ErrorFrames) > 0 {
		d = append(d, "unsolicited errors "+mapText(r.ErrorFrames))
	}
	if len(r.DialFails) > 0 {
		m := map[string]int{}
		for k, v := range r.DialFails {
			name := strconv.Itoa(k)
			if k == 0 {
				name = "no-http"
			}
			m[name] = v
		}
		d = append(d, "failed reconnects "+mapText(m))
	}
	d = append(d, r.Notes...)
	if len(d) > 0 {
		s += "\n    " + strings.Join(d, "; ")
	}
	return s
}

func mapText(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// table collects the rows of every scenario for the summary.
type table struct {
	mu   sync.Mutex
	rows []*Result
}

func (tb *table) add(r *Result) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.rows = append(tb.rows, r)
}

// String renders the summary: a markdown table with aligned columns, then
// each row's details.
func (tb *table) String() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	rows := [][]string{header}
	for _, r := range tb.rows {
		rows = append(rows, r.cells())
	}
	width := make([]int, len(header))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		b.WriteString("|")
		for i, c := range row {
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-len([]rune(c))) + " |")
		}
		b.WriteString("\n")
	}
	line(rows[0])
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
	b.WriteString("\n")
	for _, r := range tb.rows {
		if d := strings.SplitN(r.Row(), "\n", 2); len(d) == 2 {
			b.WriteString(r.Scenario + ":" + d[1] + "\n")
		}
	}
	return b.String()
}

// check applies the assertions every scenario shares: nothing lost,
// duplicated or out of order, every Member caught up, no healthy Member
// closed with 1008 or 1013, and nothing else the Checker flagged.
func (r *Result) check(t testing.TB) {
	t.Helper()
	if r.Lost() != 0 {
		t.Errorf("%s: lost %d (history %d, streams %d, held another message in place of a stored one %d), want 0",
			r.Scenario, r.Lost(), r.LostHistory, r.LostStream, r.Missed)
	}
	if r.Phantoms != 0 {
		t.Errorf("%s: clients hold %d messages that history has not at their seq, want 0", r.Scenario, r.Phantoms)
	}
	if r.Duplicates() != 0 {
		t.Errorf("%s: duplicated %d, want 0", r.Scenario, r.Duplicates())
	}
	if r.OutOfOrder != 0 {
		t.Errorf("%s: out of order %d, want 0", r.Scenario, r.OutOfOrder)
	}
	if r.NotCaughtUp != 0 {
		t.Errorf("%s: %d clients did not catch up to the head", r.Scenario, r.NotCaughtUp)
	}
	if r.HealthyBadCloses != 0 {
		t.Errorf("%s: %d healthy clients closed by the server with 1008/1013", r.Scenario, r.HealthyBadCloses)
	}
	if r.Unannounced != 0 {
		t.Errorf("%s: %d clients in wiped rooms got no recovered:false", r.Scenario, r.Unannounced)
	}
	if r.Acked == 0 {
		t.Errorf("%s: nothing was acknowledged", r.Scenario)
	}
	if r.Unacked != 0 {
		t.Errorf("%s: %d sends never acknowledged", r.Scenario, r.Unacked)
	}
	if len(r.FailoverLosses) > 0 {
		t.Logf("%s: acked writes lost with the killed master (reported, not failed on):\n  %s", r.Scenario, strings.Join(r.FailoverLosses, "\n  "))
	}
	if len(r.Problems) > 0 {
		sort.Strings(r.Problems)
		t.Logf("%s: the checker's findings:\n  %s", r.Scenario, strings.Join(r.Problems, "\n  "))
	}
}
