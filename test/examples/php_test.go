package examples

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/clienttest"
	"github.com/parley-chat/parley/internal/proctest"
	"github.com/parley-chat/parley/internal/redistest"
)

// TestPHPBackend runs examples/php with Debian's php-cli against two
// gateways on one Redis: publish.php posts through the server API (a resend
// with the same id is a duplicate, a wrong key is refused with the API's
// code); server.php, under PHP's built-in web server, is both the
// Laravel-style controller that publishes and the webhook endpoint: a
// direct message to a user with no device online reaches it as a
// message.offline webhook, whose Standard Webhooks signature it verifies
// before it writes the push notice; a forged one it refuses with 401.
func TestPHPBackend(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Fatal("php-cli is required (scripts/ensure-deps.sh installs it): ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const apiKey = "php-example-key-0123456789"
	raw := make([]byte, 24)
	_, _ = rand.Read(raw)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(raw)
	state := t.TempDir()
	phpAddr := proctest.FreeAddr(t)

	r := redistest.Start(t, redistest.Options{})
	var gws []*proctest.Gateway
	for _, node := range []string{"gw-1", "gw-2"} {
		gws = append(gws, proctest.StartGateway(t, proctest.GatewayOptions{
			Redis: r.URL(), Node: node,
			Args: []string{"--api-key", "php:" + apiKey,
				"--webhook-url", "http://" + phpAddr + "/webhooks/parley", "--webhook-secret", secret},
		}))
	}
	for _, g := range gws {
		g.WaitReady(20 * time.Second)
	}
	env := append(os.Environ(), "PARLEY_URL=http://"+gws[0].Addr, "PARLEY_API_KEY="+apiKey,
		"PARLEY_WEBHOOK_SECRET="+secret, "PARLEY_STATE_DIR="+state)

	srv := exec.Command(php, "-S", phpAddr, "server.php")
	srv.Dir = "../../examples/php"
	srv.Env = env
	var srvLog proctest.Buffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	hc := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get("http://" + phpAddr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("php -S did not answer: %v\n%s", err, srvLog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	bob := clienttest.Dial(t, ctx, "ws://"+gws[1].Addr+"/ws", "bob", "general")
	run := func(args ...string) (string, string, error) {
		cmd := exec.CommandContext(ctx, php, append([]string{"publish.php"}, args...)...)
		cmd.Dir = "../../examples/php"
		cmd.Env = env
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		return strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()), err
	}

	// publish.php: an ack, the message delivered to a WebSocket client on
	// the other gateway, and a resend that posts nothing new.
	out, stderr, err := run("general", "php-1", "alice", "hello from PHP")
	if err != nil {
		t.Fatalf("publish.php: %v: %s", err, stderr)
	}
	t.Logf("$ php publish.php general php-1 alice 'hello from PHP'\n%s", out)
	var ack struct {
		Room, ID, Epoch string
		Seq             int64
		Duplicate       bool
	}
	if err := json.Unmarshal([]byte(out), &ack); err != nil || ack.Seq != 1 || ack.Room != "general" || ack.ID != "php-1" || ack.Duplicate {
		t.Fatalf("publish.php printed %q (%v), want the ack of seq 1", out, err)
	}
	if err := bob.WaitSeq(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := bob.Body(1); got != "hello from PHP" {
		t.Fatalf("bob got %q", got)
	}
	out, _, err = run("general", "php-1", "alice", "hello from PHP")
	if err != nil || !strings.Contains(out, `"duplicate":true`) || !strings.Contains(out, `"seq":1`) {
		t.Fatalf("resend: %q, %v; want the same ack with duplicate true", out, err)
	}
	t.Logf("$ php publish.php general php-1 alice 'hello from PHP'   # again\n%s", out)

	// A wrong key: exit 1, the API's code and status on stderr.
	bad := exec.CommandContext(ctx, php, "publish.php", "general", "php-2", "alice", "x")
	bad.Dir = "../../examples/php"
	bad.Env = append(env, "PARLEY_API_KEY=not-the-key-0123456789")
	msg, err := bad.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), "unauthorized") || !strings.Contains(string(msg), "HTTP 401") {
		t.Fatalf("a wrong key: %v, %q; want exit 1 naming unauthorized and HTTP 401", err, msg)
	}
	t.Logf("$ PARLEY_API_KEY=<wrong> php publish.php ...\n%s", strings.TrimSpace(string(msg)))

	// The controller behind php -S publishes too.
	resp, err := hc.Post("http://"+phpAddr+"/chat/general", "application/json", strings.NewReader(`{"id":"php-3","from":"alice","body":"from the controller"}`))
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, `"seq":2`) {
		t.Fatalf("POST /chat/general: %d %s", resp.StatusCode, body)
	}
	if err := bob.WaitSeq(ctx, 2); err != nil {
		t.Fatal(err)
	}
	t.Logf("POST /chat/general (ChatController::publish) -> %d %s", resp.StatusCode, body)

	// A direct message to carol, who has no device online: a
	// message.offline webhook, verified by the controller, becomes a push
	// notice.
	out, stderr, err = run("dm:alice:carol", "php-4", "alice", "are you there, carol?")
	if err != nil || !strings.Contains(out, `"room":"dm:alice:carol"`) {
		t.Fatalf("publish.php dm: %q, %v: %s", out, err, stderr)
	}
	notices := filepath.Join(state, "notices.jsonl")
	var got []byte
	for deadline := time.Now().Add(20 * time.Second); ; {
		got, _ = os.ReadFile(notices)
		if len(got) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var notice struct {
		To, Title, Text string
		WebhookID       string `json:"webhook_id"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(got), &notice); err != nil {
		t.Fatalf("notices.jsonl = %q (%v); php server log:\n%s", got, err, srvLog.String())
	}
	if notice.To != "carol" || notice.Text != "are you there, carol?" || !strings.HasPrefix(notice.WebhookID, "message.offline/dm:alice:carol/") {
		t.Fatalf("push notice %+v", notice)
	}
	t.Logf("push notice written by ChatController::webhook: %s", bytes.TrimSpace(got))

	// A forged webhook is refused.
	req, _ := http.NewRequest("POST", "http://"+phpAddr+"/webhooks/parley", strings.NewReader(`{"type":"message.offline","data":{}}`))
	req.Header.Set("webhook-id", "forged-1")
	req.Header.Set("webhook-timestamp", "1900000000")
	req.Header.Set("webhook-signature", "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 401 {
		t.Fatalf("forged webhook: %d %s, want 401", resp.StatusCode, body)
	}
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(b.String())
}
