package gateway

import (
	"math"
	"time"
)

var nowFunc = time.Now

// bucket is a token bucket owned by one reader goroutine (no locking). It
// holds at most burst tokens, plus the credit of time the gateway itself
// held the reader (hold): frames a client sent at the allowed rate while
// the gateway was not reading arrive together afterwards, and must not be
// charged as a burst.
type bucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	extra  float64 // tokens allowed above burst: unspent credit of held time
	last   time.Time
	denied int // frames refused in a row
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: nowFunc()}
}

// refill adds the tokens earned since the last call.
func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		b.last = now
	}
	if limit := b.burst + b.extra; b.tokens > limit {
		b.tokens = limit
	}
	// Credit spent is gone: it only ever shrinks, until the next hold.
	b.extra = max(0, b.tokens-b.burst)
}

// hold credits d, a time the gateway did not read the connection: the
// tokens earned meanwhile may exceed the burst, so the frames that waited
// in the socket are charged as if read when they arrived.
func (b *bucket) hold(d time.Duration) {
	if d > 0 {
		b.extra += d.Seconds() * b.rate
	}
}

// allow takes a token if one is left.
func (b *bucket) allow(now time.Time) bool {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		b.extra = max(0, b.tokens-b.burst)
		b.denied = 0
		return true
	}
	b.denied++
	return false
}

// retryAfter is how long until allow would take a token (at least 1 ms).
func (b *bucket) retryAfter() time.Duration {
	need := 1 - b.tokens
	if need <= 0 {
		return time.Millisecond
	}
	return max(time.Millisecond, time.Duration(math.Ceil(need/b.rate*1000))*time.Millisecond)
}
