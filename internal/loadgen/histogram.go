package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram is log-linear, in the style of HdrHistogram: values below
// 2^subBits have a bucket each; above, every power of two is split into
// 2^(subBits-1) equal buckets, so a bucket's width is at most 1/2^(subBits-1)
// of its lower bound (0.8% with subBits = 8).
const (
	subBits     = 8
	subCount    = 1 << subBits     // 256 exact buckets for 0..255
	halfCount   = subCount / 2     // 128 buckets per power of two above
	maxShift    = 63 - subBits + 1 // values up to 2^63-1
	bucketCount = subCount + maxShift*halfCount
)

// HistogramError is the largest relative error of a percentile reported by
// a Histogram: half a bucket's width relative to its lower bound.
const HistogramError = 1.0 / halfCount / 2

// Histogram records non-negative int64 values (nanoseconds, here) in
// log-linear buckets. Record is safe for concurrent use and lock-free (atomic
// adds); Merge and the percentile methods read a consistent-enough snapshot
// while recording goes on. The zero value is ready to use.
type Histogram struct {
	counts [bucketCount]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
	min    atomic.Int64 // stored as value+1 so that 0 means "none yet"
}

// bucketOf returns the bucket index of v (v >= 0).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - subBits // >= 1
	mant := int(v >> shift)                  // in [halfCount, subCount)
	return subCount + (shift-1)*halfCount + (mant - halfCount)
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	i -= subCount
	shift := i/halfCount + 1
	mant := int64(i%halfCount + halfCount)
	return mant << shift, int64(1) << shift
}

// Record adds one value; negative values count as 0.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
	for {
		m := h.min.Load()
		if (m != 0 && v+1 >= m) || h.min.CompareAndSwap(m, v+1) {
			break
		}
	}
}

// RecordDuration records d in nanoseconds.
func (h *Histogram) RecordDuration(d time.Duration) { h.Record(int64(d)) }

// Merge adds every count of o to h.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	if m := o.max.Load(); m > 0 {
		for {
			cur := h.max.Load()
			if m <= cur || h.max.CompareAndSwap(cur, m) {
				break
			}
		}
	}
	if m := o.min.Load(); m != 0 {
		for {
			cur := h.min.Load()
			if (cur != 0 && m >= cur) || h.min.CompareAndSwap(cur, m) {
				break
			}
		}
	}
}

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest value recorded (0 when empty).
func (h *Histogram) Max() int64 { return h.max.Load() }

// Min is the smallest value recorded (0 when empty).
func (h *Histogram) Min() int64 {
	if m := h.min.Load(); m != 0 {
		return m - 1
	}
	return 0
}

// Percentile returns the value at or below which p percent (0..100) of the
// recorded values lie, to within HistogramError, clamped to [Min, Max]. It
// returns 0 for an empty histogram.
func (h *Histogram) Percentile(p float64) int64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(n)))
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			lo, w := bucketRange(i)
			v := lo + w/2 // the middle of the bucket
			return min(max(v, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// ShardedHistogram spreads recording over several Histograms so that many
// goroutines do not contend on the same counters; Snapshot merges them.
type ShardedHistogram struct {
	shards []Histogram
}

// NewShardedHistogram returns a histogram with n shards (at least 1).
func NewShardedHistogram(n int) *ShardedHistogram {
	return &ShardedHistogram{shards: make([]Histogram, max(n, 1))}
}

// Shard returns the shard that key (for example a connection number) records in.
func (s *ShardedHistogram) Shard(key int) *Histogram { return &s.shards[key%len(s.shards)] }

// Snapshot returns a new Histogram holding every shard's counts.
func (s *ShardedHistogram) Snapshot() *Histogram {
	h := new(Histogram)
	for i := range s.shards {
		h.Merge(&s.shards[i])
	}
	return h
}
