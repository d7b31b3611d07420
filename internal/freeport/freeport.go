// Package freeport picks loopback ports for test processes to listen on.
//
// A port that "127.0.0.1:0" hands out comes from the kernel's ephemeral
// range, the same range outgoing connections take their source ports
// from. Between the moment a test picks such a port and the moment its
// process binds it, any outgoing connection on the machine (a Redis
// Cluster's nodes gossiping, a client dialing) may take it, and the
// process fails with "address already in use". Ports below the ephemeral
// range are never handed to outgoing connections, so Port picks there.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// span is how many ports below the ephemeral range Port picks from.
const span = 12000

// Port returns a loopback TCP port that was free a moment ago, below the
// kernel's ephemeral range.
func Port() (int, error) {
	high := ephemeralStart()
	low := max(high-span, 1024)
	var last error
	for range 200 {
		p := low + rand.IntN(high-low)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port in %d-%d: %w", low, high-1, last)
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				return n
			}
		}
	}
	return 32768
}
