package loadgen

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"
)

// ErrConfig wraps every error of Config.Check.
var ErrConfig = errors.New("loadgen: bad config")

// Config describes a run. Zero fields take the stated defaults.
type Config struct {
	// URLs are the gateways' WebSocket endpoints (ws:// or wss://);
	// connections are spread over them round-robin. Required.
	URLs []string
	// Conns is the number of receiving connections. Default 100.
	Conns int
	// Rooms is the number of rooms; receiver i joins room i % Rooms, so a
	// room has Conns/Rooms members. Default 1; at most Conns.
	Rooms int
	// Rate is the total number of messages per second published, spread
	// evenly over the rooms. Default 10.
	Rate float64
	// Publishers is the least number of publisher connections; more are
	// opened when Rate needs them (see PublisherRate). Default 1.
	Publishers int
	// PublisherRate is the most messages per second one publisher sends;
	// keep it under the gateway's per-connection rate limit (20/s by
	// default). Default 15.
	PublisherRate float64
	// BodyBytes is the size of each message body, at least MinBodyBytes
	// and at most 4096. Default 64.
	BodyBytes int
	// Warmup is the time after publishing starts whose messages are not
	// measured. Default 0 (none).
	Warmup time.Duration
	// Duration is how long messages are measured after the warm-up.
	// Default 10s.
	Duration time.Duration
	// Sources are local addresses to dial from, used round-robin (each has
	// its own range of ephemeral ports). Default: the system's choice.
	Sources []net.IP
	// ConnectConcurrency bounds the dials in flight. Default 64.
	ConnectConcurrency int
	// ConnectTimeout bounds one connection's dial, hello and join.
	// Default 10s.
	ConnectTimeout time.Duration
	// Drain is how long the run waits, after publishing stops, for
	// outstanding acks and deliveries. Default 5s.
	Drain time.Duration
	// CloseTimeout bounds closing every connection. Default 5s.
	CloseTimeout time.Duration
	// RoomPrefix starts every room name. Default "bench".
	RoomPrefix string
	// UserPrefix starts every user name: receivers are <UserPrefix>-<i>,
	// publishers <UserPrefix>-pub-<p>. Default "bench".
	UserPrefix string
	// StormMessages is how many messages Storm publishes to each room while
	// its connections are away; at most the gateway's history retention
	// (1000 by default), or resumes cannot recover. Default 20.
	StormMessages int
	// StormTimeout bounds the reconnect-and-catch-up phase of Storm.
	// Default 60s.
	StormTimeout time.Duration
	// Progress, when set, receives one line per second while Run measures.
	Progress io.Writer
}

func (c *Config) setDefaults() {
	if c.Conns <= 0 {
		c.Conns = 100
	}
	if c.Rooms <= 0 {
		c.Rooms = 1
	}
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.Publishers <= 0 {
		c.Publishers = 1
	}
	if c.PublisherRate <= 0 {
		c.PublisherRate = 15
	}
	if c.BodyBytes <= 0 {
		c.BodyBytes = 64
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.ConnectConcurrency <= 0 {
		c.ConnectConcurrency = 64
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.Drain <= 0 {
		c.Drain = 5 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = 5 * time.Second
	}
	if c.RoomPrefix == "" {
		c.RoomPrefix = "bench"
	}
	if c.UserPrefix == "" {
		c.UserPrefix = "bench"
	}
	if c.StormMessages <= 0 {
		c.StormMessages = 20
	}
	if c.StormTimeout <= 0 {
		c.StormTimeout = 60 * time.Second
	}
}

// Check fills in the defaults and validates c.
func (c *Config) Check() error {
	c.setDefaults()
	if len(c.URLs) == 0 {
		return fmt.Errorf("%w: no gateway URL", ErrConfig)
	}
	for _, s := range c.URLs {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return fmt.Errorf("%w: url %q: want ws://host:port/ws", ErrConfig, s)
		}
		switch u.Scheme {
		case "ws", "wss", "http", "https":
		default:
			return fmt.Errorf("%w: url %q: scheme %q is not ws or wss", ErrConfig, s, u.Scheme)
		}
	}
	if c.Rooms > c.Conns {
		return fmt.Errorf("%w: %d rooms for %d connections: every room needs a member", ErrConfig, c.Rooms, c.Conns)
	}
	if c.BodyBytes < MinBodyBytes || c.BodyBytes > 4096 {
		return fmt.Errorf("%w: body of %d bytes: want %d..4096", ErrConfig, c.BodyBytes, MinBodyBytes)
	}
	if c.Warmup < 0 {
		return fmt.Errorf("%w: negative warm-up", ErrConfig)
	}
	return nil
}

// publishers is the number of publisher connections Run opens.
func (c *Config) publishers() int {
	need := int(c.Rate/c.PublisherRate + 0.999999)
	return max(c.Publishers, need, 1)
}

// MembersPerRoom returns the smallest and largest membership of a room.
func (c *Config) MembersPerRoom() (least, most int) {
	least = c.Conns / c.Rooms
	most = least
	if c.Conns%c.Rooms != 0 {
		most++
	}
	return least, most
}

// ParseSources parses a list of local source addresses: single IPv4 or IPv6
// addresses, or IPv4 ranges "127.0.0.1-127.0.0.8" (the range at most 65536
// addresses).
func ParseSources(s string) ([]net.IP, error) {
	var out []net.IP
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a := net.ParseIP(lo)
		if a == nil {
			return nil, fmt.Errorf("source %q: not an IP address", lo)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b := net.ParseIP(hi)
		a4, b4 := a.To4(), b.To4()
		if a4 == nil || b4 == nil {
			return nil, fmt.Errorf("source range %q: want two IPv4 addresses", part)
		}
		x, y := ipv4Int(a4), ipv4Int(b4)
		if y < x || y-x >= 1<<16 {
			return nil, fmt.Errorf("source range %q: empty or larger than 65536 addresses", part)
		}
		for v := x; v <= y; v++ {
			out = append(out, net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)))
		}
	}
	return out, nil
}

func ipv4Int(ip net.IP) uint32 {
	return uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])
}
