package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
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
	code := serve([]string{"--dev-auth", "--addr", "127.0.0.1:0"}, &stderr)
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
	if code := serve([]string{"--addr", "127.0.0.1:0"}, &stderr); code != 2 || !strings.Contains(stderr.String(), "--jwt-secret") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var stderr bytes.Buffer
	if code := serve([]string{"--help"}, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, f := range []string{"-addr", "-redis", "-node-id", "-history", "-backlog", "-dev-auth", "-jwt-secret", "-allowed-origins", "PARLEY_"} {
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
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{"parley.v1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","user":"alice"}`))
	if _, b, err := ws.Read(ctx); err != nil || !strings.Contains(string(b), `"node":"proc-1"`) {
		t.Fatalf("welcome: %s %v", b, err)
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
