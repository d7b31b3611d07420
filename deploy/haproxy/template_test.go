package haproxy

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite haproxy.cfg from the template")

// The committed haproxy.cfg is exactly the template rendered for compose.
func TestComposeConfigIsCurrent(t *testing.T) {
	want, err := Render(Compose())
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("haproxy.cfg", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("deploy/haproxy/haproxy.cfg is stale: run go test ./deploy/haproxy -run TestComposeConfigIsCurrent -update")
	}
	for _, line := range []string{
		"balance leastconn",
		"option httpchk GET /readyz",
		"timeout tunnel 1h",
		"timeout client-fin 10s",
		"timeout http-request 10s",
		"on-marked-down shutdown-sessions",
		"server-template gw 16 gateway:8080",
		"nameserver dns 127.0.0.11:53",
		"bind :8080",
	} {
		if !strings.Contains(want, line) {
			t.Errorf("compose config lacks %q", line)
		}
	}
	for _, line := range strings.Split(want, "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && (f[0] == "cookie" || strings.HasPrefix(f[0], "stick")) {
			t.Errorf("compose config has sticky sessions (%q); gateways are stateless", line)
		}
	}
}

// Both renderings are accepted by the real haproxy binary.
func TestConfigsPassHAProxyCheck(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (apt-get install -y haproxy): %v", err)
	}
	cases := map[string]Params{
		"compose": Compose(),
		"static": {
			Bind:          "127.0.0.1:18080",
			CheckInterval: 250 * time.Millisecond,
			Servers:       []string{"127.0.0.1:9001", "127.0.0.1:9002"},
		},
	}
	for name, p := range cases {
		cfg, err := Render(p)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), name+".cfg")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
		if err != nil {
			t.Errorf("%s: haproxy -c: %v\n%s\n--- config ---\n%s", name, err, out, cfg)
		}
	}
}

func TestRenderRejectsAmbiguousParams(t *testing.T) {
	if _, err := Render(Params{}); err == nil {
		t.Error("no DNS and no servers: want an error")
	}
	if _, err := Render(Params{DNS: &DNS{}, Servers: []string{"a:1"}}); err == nil {
		t.Error("both DNS and servers: want an error")
	}
	if _, err := Render(Params{Servers: []string{"a:1 b"}}); err == nil {
		t.Error("server with a space: want an error")
	}
	if got := durationText(1500 * time.Millisecond); got != "1500ms" {
		t.Errorf("durationText(1.5s) = %q", got)
	}
}
