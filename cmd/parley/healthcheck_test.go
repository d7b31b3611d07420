package main

import (
	"bytes"
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

	var out, errb bytes.Buffer
	if code := healthcheck([]string{"--addr", addr}, &out, &errb); code != 0 || !strings.Contains(out.String(), "200 OK") {
		t.Fatalf("ready gateway: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}

	ready = false
	errb.Reset()
	if code := healthcheck([]string{"--addr", addr}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "503") {
		t.Fatalf("unready gateway: exit %d, stderr %q", code, errb.String())
	}

	t.Setenv("PARLEY_ADDR", "127.0.0.1:1") // nothing listens on port 1
	errb.Reset()
	if code := healthcheck(nil, &out, &errb); code != 1 || !strings.Contains(errb.String(), "127.0.0.1:1") {
		t.Fatalf("no gateway: exit %d, stderr %q", code, errb.String())
	}

	errb.Reset()
	if code := healthcheck([]string{"--addr", "no-port"}, &out, &errb); code != 2 || strings.Count(errb.String(), "\n") != 1 {
		t.Fatalf("bad --addr: exit %d, stderr %q", code, errb.String())
	}
}
