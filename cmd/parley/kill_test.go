package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/internal/redistest"
	"github.com/parley-chat/parley/pkg/protocol"
)

type proc struct {
	cmd    *exec.Cmd
	addr   string
	logs   bytes.Buffer
	exited chan error
}

func startGateway(t *testing.T, bin, redisURL, node string) *proc {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{addr: l.Addr().String(), exited: make(chan error, 1)}
	l.Close()
	p.cmd = exec.Command(bin, "serve", "--dev-auth", "--addr", p.addr, "--redis", redisURL, "--node-id", node)
	p.cmd.Env = os.Environ()
	p.cmd.Stderr = &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 15s; logs:\n%s", node, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type wsc struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialV1(t *testing.T, ctx context.Context, addr, user string) *wsc {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	c := &wsc{t: t, ws: ws}
	c.write(ctx, protocol.Frame{Type: "hello", User: user})
	if f := c.read(ctx); f.Type != "welcome" {
		t.Fatalf("want welcome, got %+v", f)
	}
	return c
}

func (c *wsc) write(ctx context.Context, f protocol.Frame) {
	b, _ := json.Marshal(f)
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *wsc) read(ctx context.Context) protocol.Frame {
	c.t.Helper()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var f protocol.Frame
	_ = json.Unmarshal(b, &f)
	return f
}

// Invariant 6 with real processes: kill -9 of a gateway loses no
// acknowledged message; its client resumes on another gateway.
func TestKill9LosesNoAcknowledgedMessage(t *testing.T) {
	bin := buildBinary(t)
	rs := redistest.Start(t, redistest.Options{AOF: true})
	g1 := startGateway(t, bin, rs.URL(), "gw-1")
	g2 := startGateway(t, bin, rs.URL(), "gw-2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := dialV1(t, ctx, g1.addr, "alice")
	alice.write(ctx, protocol.Frame{Type: "join", Room: "r"})
	if f := alice.read(ctx); f.Type != "joined" {
		t.Fatalf("join: %+v", f)
	}
	bob := dialV1(t, ctx, g2.addr, "bob")
	post := func(i int) protocol.Frame {
		bob.write(ctx, protocol.Frame{Type: "send", Room: "r", ID: fmt.Sprint("m", i), Body: fmt.Sprint(i)})
		f := bob.read(ctx)
		if f.Type != "ack" || f.Seq != int64(i) {
			t.Fatalf("send %d: %+v", i, f)
		}
		return f
	}
	for i := 1; i <= 3; i++ {
		post(i)
	}
	var epoch string
	for i := 1; i <= 3; i++ {
		m := alice.read(ctx)
		if m.Type != "message" || m.Seq != int64(i) {
			t.Fatalf("alice got %+v", m)
		}
		epoch = m.Epoch
	}
	if err := g1.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	<-g1.exited
	for i := 4; i <= 6; i++ {
		post(i) // acknowledged while alice's gateway is dead
	}
	alice2 := dialV1(t, ctx, g2.addr, "alice")
	alice2.write(ctx, protocol.Frame{Type: "join", Room: "r", Since: &protocol.Since{Epoch: epoch, Seq: 3}})
	if f := alice2.read(ctx); f.Type != "joined" || f.Recovered == nil || !*f.Recovered {
		t.Fatalf("resume: %+v", f)
	}
	for i := 4; i <= 6; i++ {
		if m := alice2.read(ctx); m.Type != "message" || m.Seq != int64(i) || m.Body != fmt.Sprint(i) {
			t.Fatalf("resumed message %d: %+v", i, m)
		}
	}
}
