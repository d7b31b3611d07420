package loadgen

import "testing"

func TestSeqChecker(t *testing.T) {
	type msg struct {
		epoch string
		seq   int64
	}
	cases := []struct {
		name           string
		joinEpoch      string
		joinSeq        int64
		msgs           []msg
		gaps, dups, ep int64
		last           int64
	}{
		{"in order from empty room", "", 0, []msg{{"e1", 1}, {"e1", 2}, {"e1", 3}}, 0, 0, 0, 3},
		{"in order from head", "e1", 41, []msg{{"e1", 42}, {"e1", 43}}, 0, 0, 0, 43},
		{"gap of two", "e1", 0, []msg{{"e1", 1}, {"e1", 4}, {"e1", 5}}, 2, 0, 0, 5},
		{"duplicate and old", "e1", 0, []msg{{"e1", 1}, {"e1", 2}, {"e1", 2}, {"e1", 1}, {"e1", 3}}, 0, 2, 0, 3},
		{"first message after head skipped", "e1", 10, []msg{{"e1", 12}}, 1, 0, 0, 12},
		{"epoch change restarts", "e1", 5, []msg{{"e1", 6}, {"e2", 1}, {"e2", 2}}, 0, 0, 1, 2},
		{"epoch change past its first seq", "e1", 5, []msg{{"e1", 6}, {"e2", 3}, {"e2", 3}}, 2, 1, 1, 3},
		{"empty room's first message is not seq 1", "", 0, []msg{{"e1", 3}, {"e1", 4}}, 2, 0, 0, 4},
	}
	for _, c := range cases {
		var k SeqChecker
		k.Joined(c.joinEpoch, c.joinSeq)
		for _, m := range c.msgs {
			k.Message(m.epoch, m.seq)
		}
		if k.Gaps != c.gaps || k.Duplicates != c.dups || k.Epochs != c.ep || k.Last != c.last {
			t.Errorf("%s: gaps %d dups %d epochs %d last %d; want %d %d %d %d",
				c.name, k.Gaps, k.Duplicates, k.Epochs, k.Last, c.gaps, c.dups, c.ep, c.last)
		}
	}
}
