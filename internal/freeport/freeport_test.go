package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports come from below the ephemeral range, and can be listened on.
func TestPortIsBelowTheEphemeralRange(t *testing.T) {
	high := ephemeralStart()
	seen := map[int]bool{}
	for range 20 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if p < 1024 || p >= high {
			t.Fatalf("port %d is outside 1024-%d", p, high-1)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d: %v", p, err)
		}
		l.Close()
		seen[p] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 picks gave only %d ports", len(seen))
	}
}
