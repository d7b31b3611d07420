package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/loadgen"
)

func TestBenchHelpListsFlags(t *testing.T) {
	var errb bytes.Buffer
	if _, code, ok := parseBench([]string{"--help"}, &errb); ok || code != 0 {
		t.Fatalf("ok %v, exit %d: %s", ok, code, errb.String())
	}
	for _, f := range []string{"-url", "-conns", "-rooms", "-members", "-rate", "-body", "-warmup", "-duration", "-sources", "-json", "-quiet", "-resume-storm", "PARLEY_"} {
		if !strings.Contains(errb.String(), f) {
			t.Errorf("help lacks %s:\n%s", f, errb.String())
		}
	}
}

func TestBenchUnreachableIsOneLine(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out, errb bytes.Buffer
	code := runCmd(context.Background(), "bench", []string{"--url", "ws://" + addr + "/ws", "--conns", "5", "--duration", "1s", "--quiet"}, nil, &out, &errb)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	msg := errb.String()
	if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "cannot connect") || !strings.Contains(msg, addr) {
		t.Errorf("stderr %q, want one line naming the address", msg)
	}
	if out.Len() != 0 {
		t.Errorf("stdout %q", out.String())
	}
}

func TestBenchBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ftp://x/ws"},
		{"--conns", "10", "--members", "3"},
		{"--conns", "2", "--rooms", "3"},
		{"--duration", "0"},
		{"--sources", "nope"},
		{"extra"},
	} {
		var errb bytes.Buffer
		if _, code, ok := parseBench(args, &errb); ok || code != 2 || strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), "parley bench: ") {
			t.Errorf("%v: ok %v, exit %d, stderr %q; want 2 and one line", args, ok, code, errb.String())
		}
	}
}

func TestBenchJSON(t *testing.T) {
	url, _ := memGateway(t, nil)
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	code := runCmd(ctx, "bench", []string{"--url", url, "--conns", "20", "--members", "10", "--rate", "40",
		"--warmup", "0s", "--duration", "1s", "--resume-storm", "10", "--json", "--quiet"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errb.String(), out.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Config.Rooms != 2 || res.Connections != 20 || res.Delivered != res.Sent*10 || res.Storm == nil || res.Storm.CaughtUp != 20 {
		t.Errorf("result %s", out.String())
	}
	for _, field := range []string{`"connect_rate"`, `"delivered_per_sec"`, `"p99_9"`, `"gaps"`, `"duplicates"`, `"resume_rate"`} {
		if !strings.Contains(out.String(), field) {
			t.Errorf("JSON lacks %s", field)
		}
	}
}

func TestBenchRawCeilingJSON(t *testing.T) {
	var out, errb bytes.Buffer
	code := runCmd(context.Background(), "bench", []string{"--raw-ceiling", "--conns", "20", "--rate", "40", "--warmup", "100ms", "--duration", "500ms", "--json", "--quiet"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.Connections != 20 || res.Delivered == 0 || res.Delivered != res.Sent*20 {
		t.Errorf("connections %d, sent %d, delivered %d", res.Connections, res.Sent, res.Delivered)
	}
}

func TestBenchHoldRateZero(t *testing.T) {
	url, _ := memGateway(t, nil)
	var out, errb bytes.Buffer
	code := runCmd(context.Background(), "bench", []string{"--url", url, "--conns", "10", "--rate", "0", "--hold", "200ms"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "bench: holding 10 connections") {
		t.Errorf("stderr lacks the holding line: %q", errb.String())
	}
	if _, code, ok := parseBench([]string{"--url", url, "--rate", "0"}, &errb); ok || code != 2 {
		t.Errorf("--rate 0 without --hold: ok %v, exit %d, want 2", ok, code)
	}
}

func TestBenchRawServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var serveErr bytes.Buffer
	done := make(chan int)
	go func() { done <- runCmd(ctx, "bench", []string{"--raw-serve", addr}, nil, io.Discard, &serveErr) }()
	var out, errb bytes.Buffer
	deadline := time.Now().Add(5 * time.Second)
	code := -1
	for time.Now().Before(deadline) {
		out.Reset()
		errb.Reset()
		code = runCmd(context.Background(), "bench", []string{"--url", "ws://" + addr + "/ws", "--conns", "10", "--rate", "20", "--warmup", "0s", "--duration", "300ms", "--json", "--quiet"}, nil, &out, &errb)
		if code == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond) // the server may not listen yet
	}
	cancel()
	if c := <-done; c != 0 {
		t.Errorf("raw-serve exit %d: %s", c, serveErr.String())
	}
	if code != 0 {
		t.Fatalf("bench against raw-serve: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(serveErr.String(), "raw fan-out server on ws://"+addr) {
		t.Errorf("stderr %q", serveErr.String())
	}
}
