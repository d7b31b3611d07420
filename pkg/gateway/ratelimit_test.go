package gateway

import (
	"testing"
	"time"
)

// The bucket allows a burst, then the rate; refuses with a retry-after
// that is the time to the next token; and credits time the gateway held
// the reader, so frames that waited in the socket are not a burst.
func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	defer func(f func() time.Time) { nowFunc = f }(nowFunc)
	nowFunc = func() time.Time { return t0 }
	b := newBucket(10, 3) // 10/s, burst 3

	for i := range 3 {
		if !b.allow(t0) {
			t.Fatalf("frame %d of the burst refused", i+1)
		}
	}
	if b.allow(t0) {
		t.Fatal("a fourth frame at once was allowed")
	}
	if b.denied != 1 {
		t.Errorf("denied = %d, want 1", b.denied)
	}
	if got := b.retryAfter(); got != 100*time.Millisecond {
		t.Errorf("retryAfter = %v, want 100ms (one token at 10/s)", got)
	}
	if b.allow(t0.Add(99 * time.Millisecond)) {
		t.Error("allowed before the next token")
	}
	if !b.allow(t0.Add(100 * time.Millisecond)) {
		t.Error("refused once the next token was there")
	}
	if b.denied != 0 {
		t.Errorf("denied = %d after an allowed frame, want 0", b.denied)
	}

	// A long idle refills to the burst only.
	t1 := t0.Add(time.Hour)
	n := 0
	for b.allow(t1) {
		n++
	}
	if n != 3 {
		t.Errorf("after an idle hour %d frames at once were allowed, want the burst, 3", n)
	}

	// Held for 1s: the 10 frames the client sent meanwhile, at the rate,
	// arrive together and are all allowed, on top of the burst.
	t2 := t1.Add(time.Hour)
	b.hold(time.Second)
	n = 0
	for b.allow(t2) {
		n++
	}
	if n != 13 {
		t.Errorf("after a 1s hold %d frames at once were allowed, want 13 (burst 3 + 10 credited)", n)
	}
	// Credit spent is gone: the next frames wait for the rate again.
	if b.allow(t2) {
		t.Error("credit was reused")
	}
}
