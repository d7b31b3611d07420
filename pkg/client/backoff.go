package client

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays: exponential growth from min, capped at
// max, with full jitter, so that the clients of a draining gateway do not
// all come back at once.
type backoff struct {
	min, max time.Duration
	attempt  int
}

// next returns the delay before the next attempt: uniform in
// [min, min(max, min*2^(n+1))] for the n-th consecutive attempt.
func (b *backoff) next() time.Duration {
	ceil := b.max
	if b.attempt < 30 {
		if d := b.min << (b.attempt + 1); d > 0 && d < b.max {
			ceil = d
		}
	}
	b.attempt++
	if ceil <= b.min {
		return b.min
	}
	return b.min + time.Duration(rand.Int64N(int64(ceil-b.min)+1))
}

// reset starts over from min, after a connection was established.
func (b *backoff) reset() { b.attempt = 0 }
