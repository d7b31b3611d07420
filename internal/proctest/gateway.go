package proctest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/childproc"
	"github.com/parley-chat/parley/internal/freeport"
)

// GatewayOptions configure one `parley serve` process.
type GatewayOptions struct {
	// Redis is the --redis URL. Empty: the embedded memory broker (one
	// node only).
	Redis string
	// Node is the --node-id. Required.
	Node string
	// Addr is the listen address. Default: a free loopback port.
	Addr string
	// Args are extra flags after the defaults (--dev-auth, --addr, --redis,
	// --node-id).
	Args []string
}

// Gateway is a running `parley serve` process.
type Gateway struct {
	Node string
	Addr string

	t      testing.TB
	cmd    *exec.Cmd
	logs   Buffer
	exited chan struct{}
	err    error // the Wait result, valid once exited is closed
}

// StartGateway starts a gateway process and returns without waiting for it
// to be ready (see WaitReady). It is killed when the test ends.
func StartGateway(t testing.TB, opts GatewayOptions) *Gateway {
	t.Helper()
	if opts.Addr == "" {
		opts.Addr = FreeAddr(t)
	}
	g := &Gateway{Node: opts.Node, Addr: opts.Addr, t: t, exited: make(chan struct{})}
	args := append([]string{"serve", "--dev-auth", "--addr", opts.Addr, "--redis", opts.Redis, "--node-id", opts.Node}, opts.Args...)
	g.cmd = exec.Command(Binary(t), args...)
	childproc.BindToParent(g.cmd)
	g.cmd.Stdout = &g.logs
	g.cmd.Stderr = &g.logs
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("proctest: start gateway %s: %v", opts.Node, err)
	}
	go func() {
		g.err = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		_ = g.cmd.Process.Kill()
		<-g.exited
		if t.Failed() {
			t.Logf("gateway %s log:\n%s", g.Node, g.logs.String())
		}
	})
	return g
}

// Status returns the HTTP status of GET path on the gateway, or 0 when it
// does not answer.
func (g *Gateway) Status(path string) int {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + g.Addr + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// WaitStatus waits until GET path answers want, failing the test after
// timeout.
func (g *Gateway) WaitStatus(path string, want int, timeout time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	last := 0
	for time.Now().Before(deadline) {
		select {
		case <-g.exited:
			g.t.Fatalf("gateway %s exited (%v) while waiting for %s = %d; log:\n%s", g.Node, g.err, path, want, g.logs.String())
		default:
		}
		if last = g.Status(path); last == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("gateway %s: %s = %d after %v, want %d; log:\n%s", g.Node, path, last, timeout, want, g.logs.String())
}

// WaitReady waits until /healthz/deep answers 200: the gateway is not
// draining and its last check found Redis reachable. (/readyz alone does
// not wait for Redis.)
func (g *Gateway) WaitReady(timeout time.Duration) { g.WaitStatus("/healthz/deep", 200, timeout) }

// Kill sends SIGKILL and waits for the process to exit.
func (g *Gateway) Kill() {
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
}

// Freeze stops the process (SIGSTOP): its sockets stay open but nothing
// answers, like a hung gateway.
func (g *Gateway) Freeze() { _ = g.cmd.Process.Signal(syscall.SIGSTOP) }

// Thaw resumes a frozen process (SIGCONT).
func (g *Gateway) Thaw() { _ = g.cmd.Process.Signal(syscall.SIGCONT) }

// Terminate sends SIGTERM (the gateway drains) and returns at once.
func (g *Gateway) Terminate() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
}

// Wait waits for the process to exit and returns its exit code (-1 when a
// signal ended it).
func (g *Gateway) Wait(ctx context.Context) (int, error) {
	select {
	case <-g.exited:
	case <-ctx.Done():
		return 0, fmt.Errorf("gateway %s still running: %w", g.Node, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(g.err, &ee) {
		return ee.ExitCode(), nil
	}
	if g.err != nil {
		return 0, g.err
	}
	return 0, nil
}

// Exited is closed when the process has exited.
func (g *Gateway) Exited() <-chan struct{} { return g.exited }

// Logs returns everything the process has written so far.
func (g *Gateway) Logs() string { return g.logs.String() }

// WaitLog waits until the process has written s, failing the test after
// timeout.
func (g *Gateway) WaitLog(s string, timeout time.Duration) { g.logs.WaitFor(g.t, s, timeout) }

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatalf("proctest: free port: %v", err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}
