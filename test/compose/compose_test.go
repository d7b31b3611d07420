package compose

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/clienttest"
	"github.com/parley-chat/parley/pkg/client"
)

const room = "e2e"

// stack drives one compose project.
type stack struct {
	t       *testing.T
	cmd     []string // "docker compose" or "docker-compose"
	root    string
	file    string // the compose file, relative to root; "" is docker-compose.yml
	project string
	port    int
}

// fileName is the stack's compose file, relative to root.
func (s *stack) fileName() string {
	if s.file == "" {
		return "docker-compose.yml"
	}
	return s.file
}

func (s *stack) run(ctx context.Context, args ...string) (string, error) {
	full := append(append(s.cmd[1:len(s.cmd):len(s.cmd)], "-p", s.project, "-f", filepath.Join(s.root, s.fileName())), args...)
	cmd := exec.CommandContext(ctx, s.cmd[0], full...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), "PARLEY_PORT="+strconv.Itoa(s.port))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", strings.Join(s.cmd, " "), strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

func (s *stack) must(ctx context.Context, args ...string) string {
	s.t.Helper()
	out, err := s.run(ctx, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// downOnCleanup takes the project down with its volumes when the test
// ends, after printing the last logs if the test failed.
func (s *stack) downOnCleanup() {
	s.t.Cleanup(func() {
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer dcancel()
		if s.t.Failed() {
			out, _ := s.run(dctx, "logs", "--no-color", "--tail", "40")
			s.t.Logf("compose logs:\n%s", out)
		}
		if _, err := s.run(dctx, "down", "-v", "--remove-orphans"); err != nil {
			s.t.Errorf("compose down -v: %v", err)
		} else {
			s.t.Log("compose down -v: containers, network and volumes removed")
		}
	})
}

// built is the outcome of buildImages, which runs once per test binary.
var built struct {
	once sync.Once
	log  string
	err  error
}

// buildImages runs deploy/images.sh (stand-ins for the base images on a
// host with no registry; nothing on a host that has them) and builds the
// gateway image, parley-gateway:local, once per test binary: every compose
// file here names that image with the same build, so the tests share it
// rather than each building it.
func buildImages(t *testing.T, ctx context.Context, s *stack) {
	t.Helper()
	first := false
	built.once.Do(func() {
		first = true
		start := time.Now()
		out, err := exec.CommandContext(ctx, filepath.Join(s.root, "deploy", "images.sh")).CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("deploy/images.sh: %v\n%s", err, out)
			return
		}
		built.log = fmt.Sprintf("deploy/images.sh:\n%s\n", strings.TrimSpace(string(out)))
		if _, err := s.run(ctx, "build", "gateway"); err != nil {
			built.err = err
			return
		}
		built.log += fmt.Sprintf("images ready and the gateway image built (with %s) in %v", s.fileName(), time.Since(start).Round(100*time.Millisecond))
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	if first {
		t.Log(built.log)
	} else {
		t.Log("images and the gateway image: built earlier by this test binary, reused")
	}
}

// composeCommand finds the Compose tool: the docker plugin, else the
// standalone docker-compose. With no answering Docker engine the test is
// skipped, unless PARLEY_REQUIRE_DOCKER=1 makes that a failure.
func composeCommand(t *testing.T) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	missing := func(why string) {
		if os.Getenv("PARLEY_REQUIRE_DOCKER") == "1" {
			t.Fatalf("PARLEY_REQUIRE_DOCKER=1 but %s", why)
		}
		t.Skipf("no Docker engine answers (%s): the compose end-to-end test needs one", why)
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		missing(fmt.Sprintf("docker info: %v: %s", err, bytes.TrimSpace(out)))
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	missing("neither `docker compose` nor docker-compose is installed")
	return nil
}

// publishPort is 8080, the port of the README, unless something holds it.
func publishPort(t *testing.T) int {
	if l, err := net.Listen("tcp", "127.0.0.1:8080"); err == nil {
		l.Close()
		return 8080
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Logf("port 8080 is taken: publishing on %d", l.Addr().(*net.TCPAddr).Port)
	return l.Addr().(*net.TCPAddr).Port
}

// waitNodes opens connections through the load balancer, and keeps them
// open, until n distinct gateways have served one. Keeping them open
// matters: with leastconn, short-lived probes would all go to the emptiest
// gateways and never reach the others.
func waitNodes(t *testing.T, ctx context.Context, url string, n int, within time.Duration) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	var held []*client.Client
	defer func() {
		for _, c := range held {
			_ = c.Close()
		}
	}()
	deadline := time.Now().Add(within)
	var lastErr error
	for len(seen) < n {
		if time.Now().After(deadline) || len(held) >= 1500 {
			t.Fatalf("saw %d distinct gateways through the load balancer (%d connections, %v), want %d (%v); last error: %v",
				len(seen), len(held), within, n, seen, lastErr)
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := client.Dial(pctx, client.Config{URL: url, User: "probe", Device: "probe", AckTimeout: 4 * time.Second})
		cancel()
		if err != nil {
			lastErr = err
			time.Sleep(200 * time.Millisecond)
			continue
		}
		held = append(held, c)
		if node := c.Welcome().Node; !seen[node] {
			seen[node] = true
			continue
		}
		// No new gateway yet: new replicas take a few seconds to be
		// resolved and pass their health checks, so pace the probes by
		// time rather than spend them all at once.
		time.Sleep(100 * time.Millisecond)
	}
	return seen
}

func TestCompose(t *testing.T) {
	cmd := composeCommand(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, cmd: cmd, root: root, project: fmt.Sprintf("parley-e2e-%d", os.Getpid()), port: publishPort(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	buildImages(t, ctx, s)
	s.downOnCleanup()
	start := time.Now()
	s.must(ctx, "up", "-d")
	upTook := time.Since(start)
	base := fmt.Sprintf("127.0.0.1:%d", s.port)
	url := "ws://" + base + "/ws"
	nodes := waitNodes(t, ctx, url, 3, 2*time.Minute)
	t.Logf("compose up -d: %v; 3 gateways answering through the load balancer after %v", upTook.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

	resp, err := http.Get("http://" + base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET / through the load balancer: %s", resp.Status)
	}

	var ms []*clienttest.Member
	for i := range 12 {
		ms = append(ms, clienttest.Dial(t, ctx, url, fmt.Sprintf("u%02d", i), room))
	}
	spread := map[string]int{}
	for _, m := range ms {
		spread[m.Node()]++
	}
	if len(spread) != 3 {
		t.Fatalf("12 clients landed on %v, want all 3 gateways %v", spread, nodes)
	}
	t.Logf("12 clients over the gateways: %v", spread)

	var seq int64
	send := func(from *clienttest.Member, body string) {
		t.Helper()
		// A send during an outage gets "unavailable": retry with the same
		// id, as a client should, until it is acknowledged.
		id := fmt.Sprintf("s%d", seq+1)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ack, err := from.Client.SendID(ctx, room, id, body)
			if err == nil {
				if ack.Seq != seq+1 {
					t.Fatalf("send %q: ack seq %d, want %d", body, ack.Seq, seq+1)
				}
				seq = ack.Seq
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("send %q: %v", body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	pickOn := func(node string) *clienttest.Member {
		for _, m := range ms {
			if m.Node() == node {
				return m
			}
		}
		t.Fatalf("no client on %s", node)
		return nil
	}
	pickOff := func(node string) *clienttest.Member {
		for _, m := range ms {
			if m.Node() != node {
				return m
			}
		}
		t.Fatalf("every client is on %s", node)
		return nil
	}

	first := ms[0].Node()
	send(pickOn(first), "hello across gateways")
	clienttest.WaitAll(t, ctx, ms, seq)
	for _, m := range ms {
		if m.Body(seq) != "hello across gateways" {
			t.Fatalf("%s got %q", m.Name, m.Body(seq))
		}
	}

	s.must(ctx, "up", "-d", "--no-recreate", "--scale", "gateway=5")
	five := waitNodes(t, ctx, url, 5, 2*time.Minute)
	t.Logf("scaled to 5: %d distinct gateways seen through the load balancer", len(five))

	victim := ms[0].Node()
	var moved []*clienttest.Member
	for _, m := range ms {
		if m.Node() == victim {
			moved = append(moved, m)
		}
	}
	stopped := time.Now()
	if out, err := exec.CommandContext(ctx, "docker", "stop", victim).CombinedOutput(); err != nil {
		t.Fatalf("docker stop %s: %v\n%s", victim, err, out)
	}
	for _, m := range moved {
		if err := m.WaitMoved(ctx, victim); err != nil {
			t.Fatal(err)
		}
		// The drain spreads its closes over 3 s; HAProxy marks the gateway
		// down only after 3 failed checks 2 s apart, so every client gets
		// the gateway's own 1012, not a cut.
		if code, _ := m.LastClose(); code != websocket.StatusServiceRestart {
			t.Errorf("%s: connection to the stopped gateway closed with %v, want 1012", m.Name, code)
		}
	}
	send(pickOff(victim), "after a gateway stopped")
	clienttest.WaitAll(t, ctx, ms, seq)
	t.Logf("gateway %s stopped: its %d clients resumed elsewhere within %v", victim, len(moved), time.Since(stopped).Round(100*time.Millisecond))
	for _, m := range ms {
		m.Check(t, 1, seq)
	}

	restarted := time.Now()
	s.must(ctx, "restart", "redis")
	t.Logf("compose restart redis returned after %v", time.Since(restarted).Round(100*time.Millisecond))
	send(ms[len(ms)-1], "after the Redis restart")
	t.Logf("first send after the Redis restart acknowledged after %v", time.Since(restarted).Round(100*time.Millisecond))
	clienttest.WaitAll(t, ctx, ms, seq)
	for _, m := range ms { // also fails on an epoch change or recovered:false
		m.Check(t, 1, seq)
	}
	hist, err := ms[0].Client.History(ctx, room, seq+1, 200)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(hist)) != seq || hist[0].Seq != 1 {
		t.Fatalf("history after the Redis restart: %d messages, want seqs 1..%d", len(hist), seq)
	}
	t.Logf("Redis restarted: history intact (%d messages), every client caught up within %v", len(hist), time.Since(restarted).Round(100*time.Millisecond))
}
