package proctest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/deploy/haproxy"
	"github.com/parley-chat/parley/internal/childproc"
)

// HAProxy is a running haproxy process.
type HAProxy struct {
	// Addr is the frontend's loopback address.
	Addr string
	// Config is the rendered configuration it runs.
	Config string

	cmd    *exec.Cmd
	logs   Buffer
	exited chan struct{}
}

// StartHAProxy renders deploy/haproxy's template with p (its Bind replaced
// by a free loopback address) and runs haproxy in the foreground until the
// test ends. It returns once the frontend accepts connections.
func StartHAProxy(t testing.TB, p haproxy.Params) *HAProxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (apt-get install -y haproxy): %v", err)
	}
	h := &HAProxy{Addr: FreeAddr(t), exited: make(chan struct{})}
	p.Bind = h.Addr
	if h.Config, err = haproxy.Render(p); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(h.Config), 0o644); err != nil {
		t.Fatal(err)
	}
	// -db: stay in the foreground, log to stdout as configured.
	h.cmd = exec.Command(bin, "-db", "-f", path)
	childproc.BindToParent(h.cmd)
	h.cmd.Stdout = &h.logs
	h.cmd.Stderr = &h.logs
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("proctest: start haproxy: %v", err)
	}
	go func() { _ = h.cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		<-h.exited
		if t.Failed() {
			t.Logf("haproxy log (last 60 lines):\n%s", lastLines(h.logs.String(), 60))
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-h.exited:
			t.Fatalf("haproxy exited at start; log:\n%s", h.logs.String())
		default:
		}
		c, err := net.DialTimeout("tcp", h.Addr, time.Second)
		if err == nil {
			c.Close()
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy does not accept on %s after 10s; log:\n%s", h.Addr, h.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns haproxy's output so far.
func (h *HAProxy) Logs() string { return h.logs.String() }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitLog waits until haproxy's output contains s (for example
// "gateways/gw3 is UP") at least n times, failing the test after timeout.
func (h *HAProxy) WaitLog(t testing.TB, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for h.Count(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not log %q %d times within %v; log:\n%s", s, n, timeout, lastLines(h.logs.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Count returns how many times haproxy's output contains s.
func (h *HAProxy) Count(s string) int { return strings.Count(h.logs.String(), s) }
