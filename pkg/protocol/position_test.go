package protocol

import "testing"

func TestPositionPlace(t *testing.T) {
	e1 := Position{Epoch: "e1", Seq: 5}
	for _, tc := range []struct {
		name  string
		pos   Position
		epoch string
		seq   int64
		want  Placement
	}{
		{"next", e1, "e1", 6, Next},
		{"duplicate: equal", e1, "e1", 5, Duplicate},
		{"duplicate: below", e1, "e1", 2, Duplicate},
		{"gap", e1, "e1", 8, Gap},
		{"new epoch at seq 1", e1, "e2", 1, NewEpoch},
		{"new epoch past seq 1", e1, "e2", 7, NewEpoch},
		{"new epoch at the same seq", e1, "e2", 5, NewEpoch},
		{"zero: the room's first message", Position{}, "e1", 1, Next},
		{"zero: a later seq", Position{}, "e1", 4, Gap},
		{"start of an epoch: its first message", Position{Epoch: "e1"}, "e1", 1, Next},
		{"start of an epoch: another epoch", Position{Epoch: "e1"}, "e2", 1, NewEpoch},
	} {
		if got := tc.pos.Place(tc.epoch, tc.seq); got != tc.want {
			t.Errorf("%s: %+v.Place(%q, %d) = %v, want %v", tc.name, tc.pos, tc.epoch, tc.seq, got, tc.want)
		}
	}
}

func TestPositionHelpers(t *testing.T) {
	if !(Position{}).IsZero() || (Position{Epoch: "e1"}).IsZero() || (Position{Seq: 1}).IsZero() {
		t.Error("IsZero: only epoch \"\" at seq 0 is the zero position")
	}
	if !Starts(1) || Starts(2) || Starts(0) {
		t.Error("Starts: only seq 1 starts an epoch")
	}
	// A stream that jumps to e2 at seq 7 stands just before it: seq 7 is
	// then Next.
	p := Reset("e2", 7)
	if p != (Position{Epoch: "e2", Seq: 6}) || p.Place("e2", 7) != Next {
		t.Errorf("Reset(e2, 7) = %+v, places e2/7 as %v; want e2/6, next", p, p.Place("e2", 7))
	}
}

func TestPositionText(t *testing.T) {
	for _, p := range []Position{{}, {Epoch: "e1", Seq: 0}, {Epoch: "18a3f:x", Seq: 42}} {
		got, err := ParsePosition(p.String())
		if err != nil || got != p {
			t.Errorf("ParsePosition(%q) = %+v, %v; want %+v", p.String(), got, err, p)
		}
	}
	if s := (Position{Epoch: "ab", Seq: 7}).String(); s != "ab:7" {
		t.Errorf("String = %q, want ab:7", s)
	}
	for _, bad := range []string{"7", "ab:", "ab:x", "ab:-1", ":3"} {
		if p, err := ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) = %+v, want an error", bad, p)
		}
	}
}
