package faultproxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer echoes every line and counts the bytes it received.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
	wg       sync.WaitGroup
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					e.received.Add(int64(len(line)))
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write %q: %v", line, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

// Bytes flow; a blackhole holds them in both directions without closing
// anything, for existing and new connections alike, and delivers them in
// order when it ends; Cut closes every connection and the proxy keeps
// accepting.
func TestBlackholeAndCut(t *testing.T) {
	echo := startEcho(t)
	p, err := Start(echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c, r := dial(t, p)
	roundTrip(t, c, r, "before")
	before := echo.received.Load()

	p.Pause()
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatalf("write during the blackhole: %v", err)
	}
	late, lateR := dial(t, p) // accepted, not forwarded
	if _, err := io.WriteString(late, "late\n"); err != nil {
		t.Fatalf("write on a new connection during the blackhole: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := r.ReadString('\n'); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during the blackhole: %v, want a timeout (nothing delivered, nothing closed)", err)
	}
	if got := echo.received.Load(); got != before {
		t.Fatalf("the target received %d bytes during the blackhole", got-before)
	}
	for deadline := time.Now().Add(5 * time.Second); p.Conns() != 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // the accept of the late one is asynchronous
			t.Fatalf("%d connections during the blackhole, want 2", p.Conns())
		}
	}

	p.Resume()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("after the blackhole: %q, %v; want the held line", got, err)
	}
	_ = late.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := lateR.ReadString('\n'); err != nil || got != "late\n" {
		t.Fatalf("new connection after the blackhole: %q, %v", got, err)
	}

	start := time.Now()
	if err := p.Blackhole(context.Background(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("Blackhole returned after %v, want 100ms", d)
	}
	roundTrip(t, c, r, "after blackhole")

	if n := p.Cut(); n != 2 {
		t.Fatalf("Cut closed %d connections, want 2", n)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after Cut: %v, want the connection closed", err)
	}
	c2, r2 := dial(t, p)
	roundTrip(t, c2, r2, "after cut")
}

// Close ends every connection and goroutine, even during a blackhole.
func TestCloseDuringBlackhole(t *testing.T) {
	echo := startEcho(t)
	p, err := Start(echo.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p)
	roundTrip(t, c, r, "x")
	p.Pause()
	_, _ = io.WriteString(c, "held\n")
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs during a blackhole")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("connection still open after Close")
	}
}
