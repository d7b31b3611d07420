package faults

import (
	"slices"
	"time"
)

// percentile returns the p-quantile (0..1) of ds by the nearest-rank
// method, or -1 when ds is empty.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s)) + 0.999999)
	i = min(max(i, 1), len(s))
	return s[i-1]
}

// ms formats d in milliseconds for the table; "-" when there was nothing
// to measure (d < 0).
func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}
