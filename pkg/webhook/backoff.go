package webhook

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter: the delay before
// attempt n+1 after n failures is uniform in [0, min(Max, Base*2^n)).
type Backoff struct {
	Base time.Duration // the first ceiling; default 1s
	Max  time.Duration // the largest ceiling; default 5m
}

// Delay returns the delay before the next attempt when attempt attempts
// failed before the one that just failed (0 after the first failure):
// uniform in [0, Ceiling(attempt)), drawn with rnd, which returns a
// number in [0, 1) (nil: math/rand/v2's Float64; tests inject their own).
func (b Backoff) Delay(attempt int, rnd func() float64) time.Duration {
	return time.Duration(float64(b.Ceiling(attempt)) * draw(rnd))
}

// Ceiling returns min(Max, Base*2^attempt), the bound of Delay.
func (b Backoff) Ceiling(attempt int) time.Duration {
	base, ceil := b.Base, b.Max
	if base <= 0 {
		base = time.Second
	}
	if ceil <= 0 {
		ceil = 5 * time.Minute
	}
	d := base
	for range max(attempt, 0) {
		if d >= ceil {
			break
		}
		d *= 2
	}
	return min(d, ceil)
}

func draw(rnd func() float64) float64 {
	if rnd == nil {
		return rand.Float64()
	}
	f := rnd()
	if f < 0 || f >= 1 {
		return 0
	}
	return f
}
