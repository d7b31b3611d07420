package loadgen

import (
	"testing"
	"time"
)

func TestBodyRoundTrip(t *testing.T) {
	now := time.Unix(1795000000, 123456789)
	for _, size := range []int{0, MinBodyBytes, 64, 4096} {
		b := EncodeBody(now, size)
		if size >= MinBodyBytes && len(b) != size {
			t.Errorf("size %d: body is %d bytes", size, len(b))
		}
		got, err := DecodeBody(b)
		if err != nil || !got.Equal(now) {
			t.Errorf("size %d: decoded %v, %v; want %v", size, got, err, now)
		}
	}
}

func TestDecodeBodyRejects(t *testing.T) {
	for _, b := range []string{"", "hi", "t=;", "t=12x;", "t=123", "x=1;"} {
		if _, err := DecodeBody(b); err == nil {
			t.Errorf("DecodeBody(%q) succeeded", b)
		}
	}
}
