package gateway_test

import (
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

// shortToken is a token for user that expires in 2-3 s (exp has whole
// seconds), and its exp.
func shortToken(t *testing.T, user string) (string, time.Time) {
	t.Helper()
	exp := time.Now().Add(3 * time.Second).Truncate(time.Second)
	return mint(t, auth.Claims{User: user, Expires: exp}), exp
}

func expiryCluster(t *testing.T) *node {
	return tokenCluster(t, func(cfg *gateway.Config) { cfg.RefreshWindow = 1500 * time.Millisecond })
}

func TestExpiryWithoutRefreshCloses(t *testing.T) {
	n := expiryCluster(t)
	tok, exp := shortToken(t, "alice")
	cl, w := tokenLogin(t, n, tok)
	if w.Expires != protocol.FormatTime(exp) {
		t.Fatalf("welcome expires %q, want %q", w.Expires, protocol.FormatTime(exp))
	}
	f := cl.expect("token_expiring")
	if f.Expires != w.Expires || time.Until(exp) > 1500*time.Millisecond+100*time.Millisecond {
		t.Fatalf("token_expiring %+v, %v before exp", f, time.Until(exp))
	}
	code, reason := cl.closeStatus()
	if code != websocket.StatusPolicyViolation || reason != "token expired; reconnect with a fresh token" {
		t.Fatalf("closed %d %q", code, reason)
	}
	if late := time.Since(exp); late < 0 || late > 2*time.Second {
		t.Fatalf("closed %v after exp", late)
	}
}

func TestRefreshKeepsTheConnection(t *testing.T) {
	n := expiryCluster(t)
	tok, exp := shortToken(t, "alice")
	cl, _ := tokenLogin(t, n, tok)
	cl.expect("token_expiring")
	exp2 := time.Now().Add(time.Hour).Truncate(time.Second)
	cl.send(protocol.Frame{Type: "refresh", Ref: "r1", Token: mint(t, auth.Claims{User: "alice", Expires: exp2})})
	if f := cl.expect("refreshed"); f.Ref != "r1" || f.Expires != protocol.FormatTime(exp2) {
		t.Fatalf("refreshed %+v", f)
	}
	// Nothing comes at the first exp: no warning, no close.
	if f, err := cl.tryNext(time.Until(exp) + 700*time.Millisecond); err == nil {
		t.Fatalf("after the refresh got %+v", f)
	}
	cl.nothingQueued()
	cl.join("general", nil)
}

func TestRefreshForAnotherUserIsRefused(t *testing.T) {
	n := expiryCluster(t)
	tok, exp := shortToken(t, "alice")
	cl, _ := tokenLogin(t, n, tok)
	cl.send(protocol.Frame{Type: "refresh", Ref: "r1", Token: mint(t, auth.Claims{User: "mallory", Expires: time.Now().Add(time.Hour)})})
	cl.send(protocol.Frame{Type: "refresh", Ref: "r2", Token: "garbage"})
	for _, ref := range []string{"r1", "r2"} {
		f := cl.next()
		for f.Type == "token_expiring" {
			f = cl.next()
		}
		if f.Type != "error" || f.Code != protocol.CodeUnauthorized || f.Ref != ref {
			t.Fatalf("refused refresh %s answered %+v", ref, f)
		}
	}
	if code, _ := cl.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("closed %d", code)
	}
	if time.Now().Before(exp) {
		t.Fatal("closed before the old exp")
	}
}

func TestPlainTextExpiryCloses(t *testing.T) {
	n := expiryCluster(t)
	tok, exp := shortToken(t, "alice")
	cl := dialPlain(t, n, "/chat?token="+tok)
	code, reason := cl.closeStatus()
	if code != websocket.StatusPolicyViolation || reason != "token expired; reconnect with a fresh token" {
		t.Fatalf("plain closed %d %q", code, reason)
	}
	if time.Now().Before(exp) {
		t.Fatal("closed before exp")
	}
}
