package loadgen

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/memgw"
)

// memGateway runs an in-process gateway on a memory broker and returns its
// WebSocket URL.
func memGateway(t *testing.T) string {
	t.Helper()
	url, _ := memgw.Start(t, "gw-bench", nil)
	return url
}

func TestRunDeliversEverythingOnce(t *testing.T) {
	url := memGateway(t)
	var progress bytes.Buffer
	cfg := Config{
		URLs:     []string{url},
		Conns:    50,
		Rooms:    5,
		Rate:     100,
		Warmup:   200 * time.Millisecond,
		Duration: time.Second,
		Sources:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("127.0.0.2")},
		Progress: &progress,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	_ = res.WriteTable(&table)
	t.Logf("\n%s%s", progress.String(), table.String())
	if res.Connections != 50 || res.ConnectErrors != 0 {
		t.Errorf("connections %d, errors %d", res.Connections, res.ConnectErrors)
	}
	if res.Sent == 0 || res.Acked != res.Sent {
		t.Errorf("sent %d, acked %d", res.Sent, res.Acked)
	}
	if want := res.Sent * 10; res.Delivered != want {
		t.Errorf("delivered %d, want sent*members = %d", res.Delivered, want)
	}
	if !res.OK() || res.Gaps != 0 || res.Duplicates != 0 || res.Missing != 0 {
		t.Errorf("not OK: %s", res.Problem())
	}
	if res.Latency.Count == 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Errorf("latency %+v", res.Latency)
	}
	if res.SentPerSec < 70 || res.SentPerSec > 130 {
		t.Errorf("sent/s %.1f, want about 100", res.SentPerSec)
	}
	if len(res.Errors) != 0 || len(res.Closes) != 0 {
		t.Errorf("errors %v closes %v", res.Errors, res.Closes)
	}
	if !strings.Contains(progress.String(), "delivered/s=") {
		t.Errorf("no progress line: %q", progress.String())
	}
}

func TestStormCatchesEveryoneUp(t *testing.T) {
	url := memGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := Storm(ctx, Config{
		URLs:          []string{url},
		Conns:         50,
		Rooms:         5,
		StormMessages: 30, // under the burst of 40, so publishing is quick
		PublisherRate: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", *res)
	if !res.OK() || res.CaughtUp != 50 || res.Resumed != 50 {
		t.Errorf("not OK: %s", res.Problem())
	}
	if res.ResumeRate <= 0 || res.CatchUpSeconds <= 0 {
		t.Errorf("rates %+v", res)
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, err = Run(context.Background(), Config{URLs: []string{"ws://" + addr + "/ws"}, Conns: 10, Duration: time.Second})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

func TestParseSources(t *testing.T) {
	ips, err := ParseSources("127.0.0.1-127.0.0.4,::1")
	if err != nil || len(ips) != 5 || ips[3].String() != "127.0.0.4" || ips[4].String() != "::1" {
		t.Fatalf("got %v, %v", ips, err)
	}
	for _, bad := range []string{"nope", "127.0.0.5-127.0.0.1", "127.0.0.1-::1"} {
		if _, err := ParseSources(bad); err == nil {
			t.Errorf("ParseSources(%q) succeeded", bad)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	for _, c := range []Config{
		{},
		{URLs: []string{"http//x"}},
		{URLs: []string{"ftp://x/ws"}},
		{URLs: []string{"ws://x/ws"}, Conns: 2, Rooms: 3},
		{URLs: []string{"ws://x/ws"}, BodyBytes: 5000},
	} {
		if err := c.Check(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v", c, err)
		}
	}
}
