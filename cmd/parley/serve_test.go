package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/proctest"
)

func TestMisconfiguredRedisIsOneLineAndNonZeroExit(t *testing.T) {
	var stderr bytes.Buffer
	t.Setenv("PARLEY_REDIS", "http://not-redis:80")
	code := runCmd(context.Background(), "serve", []string{"--dev-auth", "--addr", "127.0.0.1:0"}, nil, io.Discard, &stderr)
	if code == 0 {
		t.Fatal("serve with a bad PARLEY_REDIS exited 0")
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "invalid URL") {
		t.Fatalf("stderr = %q, want one line naming the invalid URL", stderr.String())
	}
}

func TestNoAuthConfiguredIsAnError(t *testing.T) {
	var stderr bytes.Buffer
	if _, code, ok := parseServe([]string{"--addr", "127.0.0.1:0"}, &stderr); ok || code != 2 || !strings.Contains(stderr.String(), "--jwt-secret") {
		t.Fatalf("ok %v, exit %d, stderr %q", ok, code, stderr.String())
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	if _, code, ok := parseServe([]string{"--help"}, &stderr); ok || code != 0 {
		t.Fatalf("--help: ok %v, exit %d", ok, code)
	}
	for _, f := range []string{"-addr", "-redis", "-node-id", "-history", "-backlog", "-dev-auth", "-jwt-secret", "-allowed-origins", "PARLEY_",
		"-metrics-addr", "-max-frame-bytes", "-max-body-bytes", "-rate-limit", "-rate-burst", "-outbound-queue", "-outbound-bytes",
		"-max-conns-per-user", "-max-conns-per-ip", "-trusted-proxies", "-hello-timeout"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("--help does not mention %s", f)
		}
	}
}

// A real process: it serves, and SIGTERM closes its clients with 1012 and
// exits 0.
func TestServeSIGTERMDrains(t *testing.T) {
	bin := proctest.Binary(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "PARLEY_ADDR="+addr, "PARLEY_DEV_AUTH=true", "PARLEY_NODE_ID=proc-1")
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready after 10s; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws, welcome := helloAlice(t, ctx, addr)
	if !strings.Contains(welcome, `"node":"proc-1"`) {
		t.Fatalf("welcome: %s", welcome)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_, _, err = ws.Read(ctx)
	if websocket.CloseStatus(err) != 1012 {
		t.Fatalf("on SIGTERM the client got %v, want close 1012", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; logs:\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Fatal("process still running 20s after SIGTERM")
	}
	if strings.Contains(logs.String(), "alice\",\"body") {
		t.Fatal("logs hold a message body")
	}
}

// Every limit flag is checked: a value that cannot work is one line and
// exit 2, naming the flag.
func TestBadLimitsAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--rate-limit", "0"}, {"--rate-burst", "-1"}, {"--max-frame-bytes", "0"}, {"--max-body-bytes", "0"},
		{"--outbound-queue", "0"}, {"--outbound-bytes", "0"}, {"--hello-timeout", "0s"},
		{"--max-conns-per-user", "0"}, {"--max-conns-per-ip", "-1"}, {"--trusted-proxies", "10.0.0.0"},
	} {
		var stderr bytes.Buffer
		_, code, ok := parseServe(append([]string{"--dev-auth", "--addr", "127.0.0.1:0"}, args...), &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if ok || code != 2 || len(lines) != 1 || !strings.Contains(lines[0], args[0]) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line naming %s", args, code, stderr.String(), args[0])
		}
	}
}

// The limits reach the gateway (a frame over --max-body-bytes is refused
// as too_large), and --metrics-addr moves /metrics off the gateway's
// listener.
func TestLimitsAndMetricsAddrReachTheGateway(t *testing.T) {
	addr, maddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	g := proctest.StartGateway(t, proctest.GatewayOptions{Node: "limits", Addr: addr,
		Args: []string{"--max-body-bytes", "10", "--metrics-addr", maddr}})
	g.WaitReady(20 * time.Second)
	if code := g.Status("/metrics"); code != 404 {
		t.Fatalf("/metrics on the gateway's listener: %d, want 404", code)
	}
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "parley_connections") {
		t.Fatalf("/metrics on --metrics-addr: %d %.200s", resp.StatusCode, body.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _ := helloAlice(t, ctx, addr)
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"send","ref":"s","room":"r","id":"m1","body":"eleven char"}`))
	if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), `"code":"too_large"`) || !strings.Contains(string(b), `"ref":"s"`) {
		t.Fatalf("an 11-byte body under --max-body-bytes 10: %s %v", b, err)
	}
}

// helloAlice connects a protocol-v1 client to the gateway at addr, says
// hello as alice and returns the connection (closed when the test ends)
// with the welcome frame.
func helloAlice(t *testing.T, ctx context.Context, addr string) (*websocket.Conn, string) {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{"parley.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","user":"alice"}`)); err != nil {
		t.Fatal(err)
	}
	_, b, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("welcome: %v", err)
	}
	return ws, string(b)
}

// TestAPIKeysAddUpAndStaySecret: --api-key (repeatable) and
// PARLEY_API_KEYS add up; a bad key is refused without its secret.
func TestAPIKeysAddUpAndStaySecret(t *testing.T) {
	t.Setenv("PARLEY_API_KEYS", "b:bbbbbbbbbbbbbbbbbbbb, c:cccccccccccccccccccc")
	var stderr strings.Builder
	cfg, _, ok := parseServe([]string{"--dev-auth", "--api-key", "a:aaaaaaaaaaaaaaaaaaaa"}, &stderr)
	if !ok {
		t.Fatalf("refused: %s", stderr.String())
	}
	var got []string
	for _, k := range cfg.apiKeys {
		got = append(got, k.Name+"="+k.Secret)
	}
	if strings.Join(got, " ") != "a=aaaaaaaaaaaaaaaaaaaa b=bbbbbbbbbbbbbbbbbbbb c=cccccccccccccccccccc" {
		t.Fatalf("keys = %v", got)
	}
	for _, bad := range [][]string{
		{"--api-key", "d:short-secret"},
		{"--api-key", "b:dddddddddddddddddddd"}, // b twice
	} {
		stderr.Reset()
		if _, code, ok := parseServe(append([]string{"--dev-auth"}, bad...), &stderr); ok || code != 2 {
			t.Fatalf("%v: accepted", bad)
		}
		if strings.Contains(stderr.String(), "short-secret") || strings.Contains(stderr.String(), "dddd") || stderr.Len() == 0 {
			t.Fatalf("%v: stderr %q shows the secret (or nothing)", bad, stderr.String())
		}
	}
	t.Setenv("PARLEY_API_KEYS", "e:env-short")
	stderr.Reset()
	if _, _, ok := parseServe([]string{"--dev-auth"}, &stderr); ok || strings.Contains(stderr.String(), "env-short") {
		t.Fatalf("PARLEY_API_KEYS with a short secret: ok %v, stderr %q", ok, stderr.String())
	}
}

// Bad webhook flags stop serve with exit 2 and one line that never shows
// the secret.
func TestServeWebhookFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--webhook-secret", "whsec_c2hvcnQ="}, "--webhook-secret"},
		{[]string{"--webhook-secret", "nope-TOPSECRET"}, "--webhook-secret"},
		{[]string{"--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--webhook-events", "message.offline,bogus"}, "--webhook-events"},
		{[]string{"--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--webhook-attempts", "0"}, "--webhook-attempts"},
	} {
		var stderr strings.Builder
		args := append([]string{"--dev-auth", "--webhook-url", "http://127.0.0.1:9/hooks"}, c.args...)
		_, code, ok := parseServe(args, &stderr)
		if ok || code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: ok %v, exit %d, %q; want exit 2 naming %s", c.args, ok, code, stderr.String(), c.want)
		}
		if strings.Contains(stderr.String(), "TOPSECRET") || strings.Contains(stderr.String(), "MfKQ9r8") {
			t.Errorf("%v: the secret is shown: %q", c.args, stderr.String())
		}
	}
	cfg, _, ok := parseServe([]string{"--dev-auth", "--webhook-url", "http://127.0.0.1:9/hooks",
		"--webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "--webhook-events", "member.added, message.posted"}, io.Discard)
	if !ok || !slices.Equal(cfg.hookEvents, []string{"member.added", "message.posted"}) {
		t.Fatalf("ok %v, events %v", ok, cfg.hookEvents)
	}
}

func TestServeRedisFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis", "redis://r:6379/0", "--redis-cluster", "a:1"}, "set one"},
		{[]string{"--redis-cluster", "a:1", "--redis-sentinel", "m@b:2"}, "set one"},
		{[]string{"--redis-cluster", "a:1,nope"}, `--redis-cluster: "nope" is not host:port`},
		{[]string{"--redis-cluster", " , "}, "--redis-cluster: no host:port given"},
		{[]string{"--redis-sentinel", "b:2,c:3"}, "--redis-sentinel"},
		{[]string{"--redis-sentinel", "@b:2"}, "--redis-sentinel"},
		{[]string{"--redis-sentinel", "m@b"}, `"b" is not host:port`},
		{[]string{"--redis", "redis://r:6379/0", "--redis-password", "TOPSECRET"}, "put them in the --redis URL"},
		{[]string{"--redis-password", "TOPSECRET"}, "need --redis-cluster or --redis-sentinel"},
	} {
		var stderr strings.Builder
		_, code, ok := parseServe(append([]string{"--dev-auth"}, c.args...), &stderr)
		if ok || code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: ok %v, exit %d, %q; want exit 2 saying %q", c.args, ok, code, stderr.String(), c.want)
		}
		if strings.Contains(stderr.String(), "TOPSECRET") {
			t.Errorf("%v: the password is shown: %q", c.args, stderr.String())
		}
	}
	cfg, _, ok := parseServe([]string{"--dev-auth", "--redis-cluster", "10.0.0.1:7000, 10.0.0.2:7000", "--redis-password", "pw"}, io.Discard)
	if !ok || !slices.Equal(cfg.redis.ClusterAddrs, []string{"10.0.0.1:7000", "10.0.0.2:7000"}) || cfg.redis.Password != "pw" || cfg.redisMode() != "cluster" {
		t.Fatalf("cluster: ok %v, %+v", ok, cfg.redis)
	}
	t.Setenv("PARLEY_REDIS_SENTINEL", "mymaster@s1:26379,s2:26379,s3:26379")
	cfg, _, ok = parseServe([]string{"--dev-auth"}, io.Discard)
	if !ok || cfg.redis.SentinelMaster != "mymaster" || !slices.Equal(cfg.redis.SentinelAddrs, []string{"s1:26379", "s2:26379", "s3:26379"}) || cfg.redisMode() != "sentinel" {
		t.Fatalf("sentinel from the environment: ok %v, %+v", ok, cfg.redis)
	}
	t.Setenv("PARLEY_REDIS_SENTINEL", "")
	cfg, _, ok = parseServe([]string{"--dev-auth"}, io.Discard)
	if !ok || cfg.usesRedis() || cfg.redisMode() != "memory" {
		t.Fatalf("no Redis: ok %v, %+v", ok, cfg.redis)
	}
}
