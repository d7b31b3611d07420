package gateway

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-chat/parley/pkg/broker"
	"github.com/parley-chat/parley/pkg/protocol"
)

func TestMentions(t *testing.T) {
	var many []string
	for i := range 25 {
		many = append(many, fmt.Sprintf("@u%d", i))
	}
	cases := []struct {
		body string
		want []string
	}{
		{"no mention", nil},
		{"@bob hi", []string{"bob"}},
		{"hi @bob.", []string{"bob"}},
		{"hi @bob: look, @carol-", []string{"bob", "carol"}},
		{"(@bob) and @bob again", []string{"bob"}},
		{"mail@bob.com and a@b", nil},
		{"@ alone, @@bob, @-x", []string{"bob"}}, // a name starts with a letter or digit
		{"@b.o_b-1:z done", []string{"b.o_b-1:z"}},
		{"émoji→@zoë", []string{"zo"}},
		{strings.Join(many, " "), many[:20]},
		{"@" + strings.Repeat("a", 65), nil}, // too long to be a name
	}
	for _, c := range cases {
		want := c.want
		if len(want) > 0 && want[0][0] == '@' {
			want = nil
			for _, m := range c.want {
				want = append(want, m[1:])
			}
		}
		if got := mentions(c.body, maxMentions); !slices.Equal(got, want) {
			t.Errorf("mentions(%q) = %q, want %q", c.body, got, want)
		}
	}
}

// A notice is queued only when an event may follow; a full queue drops
// it and counts it; a duplicate or a gateway without webhooks queues
// nothing.
func TestNoticeQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, reg, "n1")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: m}
	p := principal{user: "alice"}
	g.noticeMessage(p, "dm:alice:bob", broker.Ack{Seq: 1}, "hi") // webhooks off: nothing, no panic
	h := &hooks{events: map[string]bool{EventMessageOffline: true}, notices: make(chan notice, 1)}
	g.hooks = h
	g.noticeMessage(p, "lobby", broker.Ack{Seq: 1}, "no mention")                                             // nothing can follow
	g.noticeMessage(p, "dm:alice:bob", broker.Ack{Seq: 2, Duplicate: true}, "hi")                             // a resend
	g.noticeMessage(p, "lobby", broker.Ack{Seq: 3}, "hi @bob")                                                // queued
	g.noticeMessage(p, "dm:alice:bob", broker.Ack{Seq: 4}, "hi")                                              // queue full: dropped
	g.noticeMembership("bob", &protocol.Frame{Type: protocol.TypeMembership, Room: "lobby", State: "member"}) // not configured
	if n := len(h.notices); n != 1 {
		t.Fatalf("%d notices queued, want 1", n)
	}
	if got := (<-h.notices).ack.Seq; got != 3 {
		t.Fatalf("queued seq %d, want 3", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	dropped := -1.0
	for _, mf := range mfs {
		if mf.GetName() == "parley_webhook_dropped_total" {
			dropped = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if dropped != 1 {
		t.Fatalf("parley_webhook_dropped_total = %v, want 1", dropped)
	}
}
