// Package redistest starts real redis-server processes for tests, each on a
// free loopback port in its own temporary directory. A missing redis-server
// binary fails the test: Parley's tests never skip for want of Redis.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/childproc"
	"github.com/parley-chat/parley/internal/freeport"
)

// Options select how the server persists, and anything else it is
// started with.
type Options struct {
	// AOF turns on the append-only file, so a restart keeps every write.
	// Default off: a restart loses everything.
	AOF bool
	// Fsync is the appendfsync policy with AOF: "always" (the default, so
	// a kill -9 loses nothing), "everysec" (production's default) or "no".
	Fsync string
	// ClusterNodeTimeout, when set, starts the server in cluster mode
	// (cluster-enabled, its nodes.conf in its directory) with this
	// cluster-node-timeout. StartCluster sets it. Default: not a cluster
	// node.
	ClusterNodeTimeout time.Duration
	// Args are extra redis-server arguments, appended to the command line
	// after the ones Options make, e.g. {"--replicaof", "127.0.0.1",
	// "6379"} for a replica (StartSentinel's replicas). Default none.
	Args []string
}

// Server is a redis-server child process.
type Server struct {
	t    testing.TB
	opts Options
	Dir  string
	Port int
	cmd  *exec.Cmd
	done chan struct{}
	// sentinelConf, when set, makes the server a sentinel: start writes
	// sentinelConf(Port) to sentinel.conf in Dir and runs
	// `redis-server sentinel.conf --sentinel` instead of a data node.
	sentinelConf func(port int) string
	// confPort is the port the sentinel.conf on disk was written for (0:
	// none yet). A restart on the same port keeps the file, which the
	// sentinel rewrites with what it learned.
	confPort int
}

// Start starts a redis-server and waits until it answers PING. The server is
// stopped when the test ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{t: t, opts: opts}
	s.launch()
	return s
}

// launch starts s on a free port (a few tries, as another process may take
// the port first) in a new directory and stops it when the test ends.
func (s *Server) launch() {
	s.t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		s.t.Fatalf("redis-server is not installed (apt-get install -y redis-server): %v", err)
	}
	s.Dir = s.t.TempDir()
	var lastErr error
	for range 5 {
		s.Port = freePort(s.t)
		if lastErr = s.start(); lastErr == nil {
			s.t.Cleanup(s.Stop)
			return
		}
	}
	s.t.Fatalf("redistest: could not start redis-server: %v", lastErr)
}

func freePort(t testing.TB) int {
	p, err := freeport.Port()
	if err != nil {
		t.Fatalf("redistest: free port: %v", err)
	}
	return p
}

// args is the redis-server command line of a data node.
func (s *Server) args() []string {
	args := []string{
		"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--dir", s.Dir, "--save", "", "--daemonize", "no",
		"--protected-mode", "no", "--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.opts.AOF {
		fsync := s.opts.Fsync
		if fsync == "" {
			fsync = "always"
		}
		args = append(args, "--appendonly", "yes", "--appendfsync", fsync)
	} else {
		args = append(args, "--appendonly", "no")
	}
	if t := s.opts.ClusterNodeTimeout; t > 0 {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(t.Milliseconds(), 10))
	}
	return append(args, s.opts.Args...)
}

// sentinelArgs writes the sentinel's config file, unless the one on disk is
// already for this port, and returns its command line.
func (s *Server) sentinelArgs() ([]string, error) {
	conf := filepath.Join(s.Dir, "sentinel.conf")
	if s.confPort != s.Port {
		if err := os.WriteFile(conf, []byte(s.sentinelConf(s.Port)), 0o600); err != nil {
			return nil, fmt.Errorf("write the sentinel config: %w", err)
		}
		s.confPort = s.Port
	}
	return []string{conf, "--sentinel"}, nil
}

func (s *Server) start() error {
	args := s.args()
	if s.sentinelConf != nil {
		var err error
		if args, err = s.sentinelArgs(); err != nil {
			return err
		}
	}
	cmd := exec.Command("redis-server", args...)
	childproc.BindToParent(cmd) // a crashed test binary leaves no server behind
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start; log: %s", s.Port, s.logTail())
		default:
		}
		c := goredis.NewClient(&goredis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		err := c.Ping(context.Background()).Err()
		c.Close()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("redis-server on port %d did not answer PING within 10s; log: %s", s.Port, s.logTail())
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is a redis:// URL for the server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a go-redis client for the server, closed when the test ends.
func (s *Server) Client() *goredis.Client {
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	s.t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Stop kills the server (SIGKILL, like a crash) and waits for it to exit.
func (s *Server) Stop() { s.kill() }

// Freeze stops the server with SIGSTOP: it keeps its port and its
// connections, and the kernel still accepts new ones, but it answers
// nothing, like a stalled host. Thaw resumes it; a test that freezes
// registers Thaw with t.Cleanup, so a failing test leaves no server stopped.
func (s *Server) Freeze() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP)
}

// Thaw resumes a frozen server (SIGCONT). It does nothing to a server that
// is not running or not frozen.
func (s *Server) Thaw() {
	s.t.Helper()
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Errorf("redistest: %v to redis-server on port %d: %v", sig, s.Port, err)
	}
}

// Prepare reserves a port and a directory for a server but does not start
// it: URL and Addr are valid at once, and Run starts the server later. Tests
// use it for a Redis that is down when its clients start.
func Prepare(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (apt-get install -y redis-server): %v", err)
	}
	s := &Server{t: t, opts: opts, Dir: t.TempDir(), Port: freePort(t)}
	t.Cleanup(s.Stop)
	return s
}

// Restart kills the server and starts it again on the same port. Without
// AOF the new server is empty, as after a crash with persistence off.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill()
	s.Run()
}

// RestartWithoutData kills the server, deletes everything it persisted
// (the append-only files and any snapshot) and starts it again on the same
// port: Redis comes back empty, as after the loss of its volume.
func (s *Server) RestartWithoutData() {
	s.t.Helper()
	s.kill()
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		s.t.Fatalf("redistest: read %s: %v", s.Dir, err)
	}
	for _, e := range entries {
		if e.Name() == "redis.log" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.Dir, e.Name())); err != nil {
			s.t.Fatalf("redistest: remove the data: %v", err)
		}
	}
	s.Run()
}

// Run starts the server on its port, waiting until it answers PING, unless
// it is already running.
func (s *Server) Run() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	var err error
	for range 50 { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: start on port %d: %v", s.Port, err)
}

// KillPubSub closes every pub/sub client connection on the server
// (CLIENT KILL TYPE pubsub) and returns how many were killed.
func (s *Server) KillPubSub(ctx context.Context) int64 {
	s.t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	defer c.Close()
	n, err := c.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
	if err != nil {
		s.t.Fatalf("redistest: CLIENT KILL TYPE pubsub: %v", err)
	}
	return n
}

// PubSubClients returns how many connections are in pub/sub mode now.
func (s *Server) PubSubClients(ctx context.Context) int {
	s.t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: s.Addr()})
	defer c.Close()
	list, err := c.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		s.t.Fatalf("redistest: CLIENT LIST TYPE pubsub: %v", err)
	}
	return strings.Count(list, "\n")
}

// Info returns one INFO field, for assertions on server state.
func (s *Server) Info(ctx context.Context, section, field string) string {
	v, err := info(ctx, s.Addr(), section, field)
	if err != nil {
		s.t.Fatalf("redistest: INFO: %v", err)
	}
	return v
}

// info reads one INFO field of the server at addr ("" when it has none).
func info(ctx context.Context, addr, section, field string) (string, error) {
	c := goredis.NewClient(&goredis.Options{Addr: addr})
	defer c.Close()
	txt, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(txt))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", nil
}
