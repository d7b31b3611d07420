package loadgen

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Result is what Run measured. Its JSON field names are stable: scripts may
// rely on them. Rates are per second of the measured window (after the
// warm-up); counts are for the whole run.
type Result struct {
	Config ConfigSummary `json:"config"`

	Connections    int     `json:"connections"`             // receivers connected and joined
	ConnectErrors  int     `json:"connect_errors"`          // receivers that could not connect
	ConnectError   string  `json:"connect_error,omitempty"` // the first connect error
	ConnectSeconds float64 `json:"connect_seconds"`         // time to connect every receiver
	ConnectRate    float64 `json:"connect_rate"`            // receivers connected per second
	Publishers     int     `json:"publishers"`              // publisher connections

	Sent            int64   `json:"sent"`              // sends written
	Acked           int64   `json:"acked"`             // acks received
	Delivered       int64   `json:"delivered"`         // messages received, each seq once per receiver
	SentPerSec      float64 `json:"sent_per_sec"`      // sends in the measured window / its length
	DeliveredPerSec float64 `json:"delivered_per_sec"` // deliveries of those sends / the window's length

	Latency LatencyMS `json:"latency_ms"` // send to receive, messages sent in the window

	Gaps       int64 `json:"gaps"`       // seqs skipped by a receiver
	Duplicates int64 `json:"duplicates"` // seqs received twice by a receiver
	Missing    int64 `json:"missing"`    // seqs up to the room's last ack that a receiver still open at the end never got
	Dropped    int64 `json:"dropped"`    // connections closed by the server or the network during the run

	Errors map[string]int64 `json:"errors"` // error frames by code
	Closes map[string]int64 `json:"closes"` // unexpected closes by close code ("network" without one)

	Storm *StormResult `json:"resume_storm,omitempty"`
}

// ConfigSummary echoes the parameters of a run.
type ConfigSummary struct {
	URLs           []string `json:"urls"`
	Conns          int      `json:"conns"`
	Rooms          int      `json:"rooms"`
	MembersPerRoom int      `json:"members_per_room"` // the smallest room's; see Config.Rooms
	Rate           float64  `json:"rate"`
	BodyBytes      int      `json:"body_bytes"`
	WarmupSeconds  float64  `json:"warmup_seconds"`
	Seconds        float64  `json:"duration_seconds"`
	Sources        int      `json:"sources"`
}

// Summary returns the parameters of c as a Result reports them (call Check
// first for the defaults).
func (c *Config) Summary() ConfigSummary { return summarize(c) }

func summarize(c *Config) ConfigSummary {
	least, _ := c.MembersPerRoom()
	return ConfigSummary{
		URLs: c.URLs, Conns: c.Conns, Rooms: c.Rooms, MembersPerRoom: least, Rate: c.Rate,
		BodyBytes: c.BodyBytes, WarmupSeconds: c.Warmup.Seconds(), Seconds: c.Duration.Seconds(),
		Sources: len(c.Sources),
	}
}

// LatencyMS holds latency percentiles in milliseconds.
type LatencyMS struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
}

func latencyOf(h *Histogram) LatencyMS {
	return LatencyMS{
		Count: h.Count(),
		P50:   ms(h.Percentile(50)),
		P90:   ms(h.Percentile(90)),
		P99:   ms(h.Percentile(99)),
		P999:  ms(h.Percentile(99.9)),
		Max:   ms(h.Max()),
	}
}

func ms(ns int64) float64 { return float64(ns) / 1e6 }

// OK reports whether every message arrived exactly once: no gaps,
// duplicates or missing messages, in the run and in its storm.
func (r *Result) OK() bool {
	ok := r.Gaps == 0 && r.Duplicates == 0 && r.Missing == 0
	if r.Storm != nil {
		ok = ok && r.Storm.OK()
	}
	return ok
}

// Problem returns one line saying what OK found wrong ("" when OK).
func (r *Result) Problem() string {
	var p []string
	if r.Gaps+r.Duplicates+r.Missing > 0 {
		p = append(p, fmt.Sprintf("%d gaps, %d duplicates, %d missing", r.Gaps, r.Duplicates, r.Missing))
	}
	if r.Storm != nil && !r.Storm.OK() {
		p = append(p, "resume storm: "+r.Storm.Problem())
	}
	return strings.Join(p, "; ")
}

// WriteTable writes r as a human-readable table.
func (r *Result) WriteTable(w io.Writer) error {
	c := r.Config
	fmt.Fprintf(w, "config: %s conns=%d rooms=%d members/room=%d rate=%g/s body=%dB warmup=%gs duration=%gs sources=%d\n",
		strings.Join(c.URLs, ","), c.Conns, c.Rooms, c.MembersPerRoom, c.Rate, c.BodyBytes, c.WarmupSeconds, c.Seconds, c.Sources)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, a...)...) }
	if r.Config.Seconds > 0 {
		row("connections", "%d (%d errors)", r.Connections, r.ConnectErrors)
		if r.ConnectError != "" {
			row("first connect error", "%s", r.ConnectError)
		}
		row("connect rate", "%.0f conns/s (%.2fs)", r.ConnectRate, r.ConnectSeconds)
		row("publishers", "%d", r.Publishers)
		row("sent/s", "%.1f (sent %d, acked %d)", r.SentPerSec, r.Sent, r.Acked)
		row("delivered/s", "%.1f (delivered %d)", r.DeliveredPerSec, r.Delivered)
		l := r.Latency
		row("latency ms", "p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (n=%d)", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
		row("gaps", "%d", r.Gaps)
		row("duplicates", "%d", r.Duplicates)
		row("missing", "%d", r.Missing)
		row("dropped conns", "%d", r.Dropped)
		row("error frames", "%s", fmtCounts(r.Errors))
		row("closes", "%s", fmtCounts(r.Closes))
	}
	if s := r.Storm; s != nil {
		row("storm", "%d conns, %d rooms, %d messages/room while away", s.Conns, s.Rooms, s.MessagesPerRoom)
		row("storm resumed", "%d (%d errors) in %.2fs: %.0f resumes/s", s.Resumed, s.ResumeErrors, s.ResumeSeconds, s.ResumeRate)
		row("storm caught up", "%d in %.2fs", s.CaughtUp, s.CatchUpSeconds)
		row("storm gaps/dups", "%d / %d (not recovered: %d)", s.Gaps, s.Duplicates, s.NotRecovered)
		if s.ResumeError != "" {
			row("storm first error", "%s", s.ResumeError)
		}
	}
	return tw.Flush()
}

func fmtCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
