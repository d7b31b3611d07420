package main

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proctest"
)

func TestHelpDocumentsPprofAddr(t *testing.T) {
	var stderr bytes.Buffer
	if code := serve([]string{"--help"}, &stderr); code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	if !strings.Contains(stderr.String(), "-pprof-addr") {
		t.Fatalf("--help does not mention -pprof-addr:\n%s", stderr.String())
	}
}

// --pprof-addr serves the profiles on its own listener only, and SIGTERM
// closes that listener too.
func TestPprofAddrServesProfilesOnItsOwnListener(t *testing.T) {
	bin := proctest.Binary(t)
	addr, paddr := proctest.FreeAddr(t), proctest.FreeAddr(t)
	cmd := exec.Command(bin, "serve", "--dev-auth", "--addr", addr, "--pprof-addr", paddr)
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
	get := func(url string) (int, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, err := get("http://" + paddr + "/debug/pprof/cmdline"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pprof not served after 10s; logs:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, err := get("http://" + paddr + "/debug/pprof/heap"); err != nil || code != 200 {
		t.Fatalf("heap profile: %d %v", code, err)
	}
	if code, err := get("http://" + addr + "/debug/pprof/cmdline"); err != nil || code == 200 {
		t.Fatalf("the gateway's own listener answered /debug/pprof/ with %d %v; want it not served there", code, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; logs:\n%s", err, logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("process still running 20s after SIGTERM")
	}
	if _, err := get("http://" + paddr + "/debug/pprof/cmdline"); err == nil {
		t.Fatal("pprof listener still answers after exit")
	}
}
