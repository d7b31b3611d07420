package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/proctest"
)

func TestHelpDocumentsPprofAddr(t *testing.T) {
	var stderr bytes.Buffer
	if _, code, ok := parseServe([]string{"--help"}, &stderr); ok || code != 0 {
		t.Fatalf("--help: ok %v, exit %d", ok, code)
	}
	if !strings.Contains(stderr.String(), "-pprof-addr") {
		t.Fatalf("--help does not mention -pprof-addr:\n%s", stderr.String())
	}
}

// --pprof-addr serves the profiles on its own listener only, and SIGTERM
// closes that listener too.
func TestPprofAddrServesProfilesOnItsOwnListener(t *testing.T) {
	paddr := proctest.FreeAddr(t)
	g := proctest.StartGateway(t, proctest.GatewayOptions{Node: "pprof-1", Args: []string{"--pprof-addr", paddr}})
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
			t.Fatalf("pprof not served after 10s; logs:\n%s", g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, err := get("http://" + paddr + "/debug/pprof/heap"); err != nil || code != 200 {
		t.Fatalf("heap profile: %d %v", code, err)
	}
	if code, err := get("http://" + g.Addr + "/debug/pprof/cmdline"); err != nil || code == 200 {
		t.Fatalf("the gateway's own listener answered /debug/pprof/ with %d %v; want it not served there", code, err)
	}
	g.Terminate()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if code, err := g.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit after SIGTERM: code %d, %v; logs:\n%s", code, err, g.Logs())
	}
	if _, err := get("http://" + paddr + "/debug/pprof/cmdline"); err == nil {
		t.Fatal("pprof listener still answers after exit")
	}
}
