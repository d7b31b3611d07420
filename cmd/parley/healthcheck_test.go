package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	ctx := context.Background()
	var out, errb bytes.Buffer
	if code := runCmd(ctx, "healthcheck", []string{"--addr", addr}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "200 OK") {
		t.Fatalf("ready gateway: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}

	ready = false
	errb.Reset()
	if code := runCmd(ctx, "healthcheck", []string{"--addr", addr}, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "503") {
		t.Fatalf("unready gateway: exit %d, stderr %q", code, errb.String())
	}

	t.Setenv("PARLEY_ADDR", "127.0.0.1:1") // nothing listens on port 1
	errb.Reset()
	if code := runCmd(ctx, "healthcheck", nil, nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "127.0.0.1:1") {
		t.Fatalf("no gateway: exit %d, stderr %q", code, errb.String())
	}

	errb.Reset()
	if _, code, ok := parseHealthcheck([]string{"--addr", "no-port"}, &errb); ok || code != 2 || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("bad --addr: ok %v, exit %d, stderr %q", ok, code, errb.String())
	}
}
