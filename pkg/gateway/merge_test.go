package gateway

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/broker/memory"
	"github.com/parley-chat/parley/pkg/protocol"
)

// env returns an envelope of room "r" at epoch e and seq n.
func env(e string, n int64) broker.Envelope {
	return broker.Envelope{Message: &protocol.Message{Room: "r", Epoch: e, Seq: n, ID: fmt.Sprintf("%s%d", e, n)}}
}

func envs(e string, from, to int64) []broker.Envelope {
	var out []broker.Envelope
	for n := from; n <= to; n++ {
		out = append(out, env(e, n))
	}
	return out
}

// names lists envelopes as "e:n" for comparisons.
func names(es []broker.Envelope) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = fmt.Sprintf("%s:%d", e.Epoch, e.Seq)
	}
	return out
}

func at(e string, n int64) cursor {
	return cursor{known: true, pos: protocol.Position{Epoch: e, Seq: n}}
}

func TestCursorPlace(t *testing.T) {
	cases := []struct {
		name string
		cur  cursor
		env  broker.Envelope
		want placement
	}{
		{"unknown takes anything", cursor{}, env("a", 7), placeNext},
		{"next seq", at("a", 4), env("a", 5), placeNext},
		{"same seq", at("a", 4), env("a", 4), placeSeen},
		{"older seq", at("a", 4), env("a", 2), placeSeen},
		{"gap", at("a", 4), env("a", 6), placeHole},
		{"new epoch from its start", at("a", 4), env("b", 1), placeNext},
		{"new epoch past its start", at("a", 4), env("b", 3), placeHole},
		{"empty room's first message", at("", 0), env("a", 1), placeNext},
		{"empty room, a later message", at("", 0), env("a", 2), placeHole},
	}
	for _, tc := range cases {
		if got := tc.cur.place(tc.env); got != tc.want {
			t.Errorf("%s: place = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// merge is a pure function of the room's cursor, the history a round read
// and the buffered live envelopes: each case says what is fanned out, what
// is kept for another round, and what counts as repaired.
func TestMerge(t *testing.T) {
	cases := []struct {
		name     string
		cur      cursor
		hist     broker.Range
		buf      []broker.Envelope
		stale    int
		out      []string
		rest     []string
		repaired int
		end      protocol.Position
	}{
		{
			name: "history fills the gap before the buffer",
			cur:  at("a", 2), hist: rangeOf("a", envs("a", 3, 5)...), buf: envs("a", 5, 6),
			out: []string{"a:3", "a:4", "a:5", "a:6"}, repaired: 2, end: protocol.Position{Epoch: "a", Seq: 6},
		},
		{
			name: "history read before some of the buffer arrived",
			cur:  at("a", 2), hist: rangeOf("a", envs("a", 3, 4)...), buf: envs("a", 4, 7),
			out: []string{"a:3", "a:4", "a:5", "a:6", "a:7"}, repaired: 1, end: protocol.Position{Epoch: "a", Seq: 7},
		},
		{
			name: "nothing new in history: only the buffer",
			cur:  at("a", 2), hist: rangeOf("a", envs("a", 1, 2)...), buf: envs("a", 3, 3),
			out: []string{"a:3"}, repaired: 0, end: protocol.Position{Epoch: "a", Seq: 3},
		},
		{
			name: "a hole after the read stays buffered",
			cur:  at("a", 2), hist: rangeOf("a", envs("a", 3, 3)...), buf: []broker.Envelope{env("a", 3), env("a", 5), env("a", 6)},
			out: []string{"a:3"}, rest: []string{"a:5", "a:6"}, repaired: 0, end: protocol.Position{Epoch: "a", Seq: 3},
		},
		{
			name: "a hole history cannot fill is fanned out past",
			cur:  at("a", 2), hist: rangeOf("a", env("a", 5), env("a", 6)),
			out: []string{"a:5", "a:6"}, repaired: 2, end: protocol.Position{Epoch: "a", Seq: 6},
		},
		{
			name: "new epoch: its history from the start, stale buffer of the old epoch dropped",
			cur:  at("a", 9), hist: rangeOf("b", envs("b", 1, 2)...), buf: []broker.Envelope{env("a", 11), env("b", 2), env("b", 3)}, stale: 1,
			out: []string{"b:1", "b:2", "b:3"}, repaired: 1, end: protocol.Position{Epoch: "b", Seq: 3},
		},
		{
			name: "an old-epoch envelope that arrived after the read is a hole",
			cur:  at("a", 9), hist: rangeOf("b", envs("b", 1, 1)...), buf: []broker.Envelope{env("a", 11)}, stale: 0,
			out: []string{"b:1"}, rest: []string{"a:11"}, repaired: 1, end: protocol.Position{Epoch: "b", Seq: 1},
		},
		{
			name: "duplicates in history and buffer are fanned out once",
			cur:  at("a", 4), hist: rangeOf("a", envs("a", 3, 6)...), buf: []broker.Envelope{env("a", 5), env("a", 5), env("a", 6)},
			out: []string{"a:5", "a:6"}, repaired: 0, end: protocol.Position{Epoch: "a", Seq: 6},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf := slices.Clone(tc.buf)
			res := merge(tc.cur, tc.hist, buf, tc.stale)
			if got := names(res.out); !slices.Equal(got, nonNil(tc.out)) {
				t.Errorf("out = %v, want %v", got, tc.out)
			}
			if got := names(res.rest); !slices.Equal(got, nonNil(tc.rest)) {
				t.Errorf("rest = %v, want %v", got, tc.rest)
			}
			if res.hole != (len(tc.rest) > 0) {
				t.Errorf("hole = %v with rest %v", res.hole, tc.rest)
			}
			if res.repaired != tc.repaired {
				t.Errorf("repaired = %d, want %d", res.repaired, tc.repaired)
			}
			if res.cur.pos != tc.end || !res.cur.known {
				t.Errorf("cursor ends at %+v (known %v), want %+v", res.cur.pos, res.cur.known, tc.end)
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func rangeOf(epoch string, es ...broker.Envelope) broker.Range {
	r := broker.Range{Position: broker.Position{Epoch: epoch}, Messages: es}
	if len(es) > 0 {
		r.Seq, r.First = es[len(es)-1].Seq, es[0].Seq
	}
	return r
}

// readSince, the read that a join's resume and a repair share, on the
// memory broker: what it reads and whether it reports the client
// recovered, for a position in the room's epoch, past its retention, ahead
// of its head, and in an epoch the store lost.
func TestReadSince(t *testing.T) {
	ctx := context.Background()
	b := memory.New(memory.Config{Retention: 5})
	defer b.Close()
	var ack broker.Ack
	for i := range 8 {
		var err error
		if ack, err = b.Publish(ctx, broker.Publication{Room: "r", ID: fmt.Sprint(i), From: "u", Body: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	e := ack.Epoch // seqs 4..8 retained
	cases := []struct {
		name      string
		since     protocol.Position
		seqs      []int64
		recovered bool
	}{
		{"from the start", protocol.Position{}, []int64{4, 5, 6, 7, 8}, false},
		{"within retention", protocol.Position{Epoch: e, Seq: 5}, []int64{6, 7, 8}, true},
		{"just at the oldest retained", protocol.Position{Epoch: e, Seq: 3}, []int64{4, 5, 6, 7, 8}, true},
		{"past retention", protocol.Position{Epoch: e, Seq: 2}, []int64{4, 5, 6, 7, 8}, false},
		{"at the head", protocol.Position{Epoch: e, Seq: 8}, nil, true},
		{"ahead of the head", protocol.Position{Epoch: e, Seq: 12}, nil, true},
		{"another epoch", protocol.Position{Epoch: "gone", Seq: 6}, []int64{4, 5, 6, 7, 8}, false},
	}
	for _, tc := range cases {
		rng, recovered, err := readSince(ctx, b, "r", tc.since)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var seqs []int64
		for _, m := range rng.Messages {
			seqs = append(seqs, m.Seq)
		}
		if !slices.Equal(seqs, tc.seqs) || recovered != tc.recovered {
			t.Errorf("%s: read %v recovered %v, want %v recovered %v", tc.name, seqs, recovered, tc.seqs, tc.recovered)
		}
	}
	// A room the store lost entirely: nothing to read, nothing recovered.
	b.Reset()
	rng, recovered, err := readSince(ctx, b, "r", protocol.Position{Epoch: e, Seq: 8})
	if err != nil || len(rng.Messages) != 0 || recovered || rng.Epoch != "" {
		t.Errorf("lost room: read %d messages in epoch %q, recovered %v, err %v; want none, not recovered", len(rng.Messages), rng.Epoch, recovered, err)
	}
}
