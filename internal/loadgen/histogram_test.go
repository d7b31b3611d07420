package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestBucketsCoverValues(t *testing.T) {
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := bucketOf(v)
		lo, w := bucketRange(i)
		if v < lo || v-lo >= w {
			t.Errorf("value %d in bucket %d = [%d, %d+%d)", v, i, lo, lo, w)
		}
		if i >= bucketCount {
			t.Errorf("value %d: bucket %d out of range", v, i)
		}
	}
}

func TestPercentilesMatchSortedValues(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		// log-normal-ish latencies from 50µs to ~1s, in ns
		vals[i] = int64(math.Exp(rng.NormFloat64()*1.5+14)) + 50_000
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, p := range []float64{1, 50, 90, 99, 99.9, 100} {
		rank := int(math.Ceil(p/100*float64(len(vals)))) - 1
		want := vals[rank]
		got := h.Percentile(p)
		if err := math.Abs(float64(got-want)) / float64(want); err > 2*HistogramError {
			t.Errorf("p%v = %d, want %d (relative error %.4f > %.4f)", p, got, want, err, 2*HistogramError)
		}
	}
	if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] || h.Count() != uint64(len(vals)) {
		t.Errorf("max %d min %d count %d, want %d %d %d", h.Max(), h.Min(), h.Count(), vals[len(vals)-1], vals[0], len(vals))
	}
}

func TestSmallValuesExact(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	if got := h.Percentile(50); got != 50 {
		t.Errorf("p50 = %d, want 50", got)
	}
	if got := h.Percentile(99); got != 99 {
		t.Errorf("p99 = %d, want 99", got)
	}
	var empty Histogram
	if empty.Percentile(99) != 0 || empty.Max() != 0 || empty.Min() != 0 {
		t.Error("empty histogram should report zeros")
	}
}

func TestShardedMergeEqualsOne(t *testing.T) {
	s := NewShardedHistogram(8)
	var one Histogram
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 1000 {
				s.Shard(g).Record(int64(g*1000 + k))
			}
		}()
	}
	for g := range 16 {
		for k := range 1000 {
			one.Record(int64(g*1000 + k))
		}
	}
	wg.Wait()
	m := s.Snapshot()
	if m.Count() != one.Count() || m.Max() != one.Max() || m.Min() != one.Min() {
		t.Fatalf("merged count/max/min %d/%d/%d, want %d/%d/%d", m.Count(), m.Max(), m.Min(), one.Count(), one.Max(), one.Min())
	}
	for _, p := range []float64{10, 50, 99, 99.9} {
		if m.Percentile(p) != one.Percentile(p) {
			t.Errorf("p%v: merged %d, single %d", p, m.Percentile(p), one.Percentile(p))
		}
	}
}
