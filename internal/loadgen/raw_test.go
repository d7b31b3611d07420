package loadgen

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestRawCeilingDeliversEverythingOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := RawCeiling(ctx, Config{
		URLs:     []string{"ws://ignored/ws"},
		Conns:    40,
		Rooms:    2,
		Rate:     100,
		Warmup:   100 * time.Millisecond,
		Duration: 700 * time.Millisecond,
		Sources:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if res.Connections != 40 || res.Sent == 0 || res.Acked != res.Sent {
		t.Errorf("connections %d, sent %d, acked %d", res.Connections, res.Sent, res.Acked)
	}
	if want := res.Sent * 20; res.Delivered != want {
		t.Errorf("delivered %d, want sent*members = %d", res.Delivered, want)
	}
	if !res.OK() || res.Latency.Count == 0 || res.DeliveredPerSec <= 0 {
		t.Errorf("not OK: %s, latency %+v", res.Problem(), res.Latency)
	}
	if res.Config.URLs[0] == "ws://ignored/ws" {
		t.Errorf("urls %v: want the raw server's", res.Config.URLs)
	}
}

func TestRawServerCloseWithoutClients(t *testing.T) {
	s, err := StartRawServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestHoldKeepsConnectionsThenCloses(t *testing.T) {
	url := memGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var seen int
	start := time.Now()
	res, err := Hold(ctx, Config{URLs: []string{url}, Conns: 30, Rooms: 3}, 300*time.Millisecond, func(n int) { seen = n })
	if err != nil {
		t.Fatal(err)
	}
	if seen != 30 || res.Connections != 30 || res.ConnectErrors != 0 {
		t.Errorf("held %d, connections %d, errors %d", seen, res.Connections, res.ConnectErrors)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Errorf("returned after %v, before the hold ended", time.Since(start))
	}
	if res.Dropped != 0 || res.Sent != 0 || res.Config.Rate != 0 {
		t.Errorf("dropped %d sent %d rate %g", res.Dropped, res.Sent, res.Config.Rate)
	}
}
