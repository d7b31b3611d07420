package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
)

func TestTokenRoundTrip(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	code := runCmd(ctx, "token", []string{"--user", "alice", "--ttl", "1h", "--name", "Alice", "--rooms", "general, team-*", "--jwt-secret", "s3cret"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	v, _ := auth.New(auth.Config{HMACSecret: []byte("s3cret")})
	c, err := v.Verify(ctx, strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "alice" || c.Name != "Alice" || strings.Join(c.Rooms, ",") != "general,team-*" || time.Until(c.Expires) < 59*time.Minute {
		t.Fatalf("claims %+v", c)
	}

	// ES256 from a private key file, verified by its public key.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	priv := filepath.Join(dir, "priv.pem")
	_ = os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	pder, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := filepath.Join(dir, "pub.pem")
	_ = os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o600)
	out.Reset()
	if code := runCmd(ctx, "token", []string{"--user", "bob", "--kid", "k1", "--jwt-private-key", priv}, nil, &out, &errb); code != 0 {
		t.Fatalf("ES256: exit %d, stderr %q", code, errb.String())
	}
	v, err = auth.New(auth.Config{PublicKeyFile: pub})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := v.Verify(ctx, strings.TrimSpace(out.String())); err != nil || c.User != "bob" {
		t.Fatalf("ES256 token: %+v, %v", c, err)
	}
}

func TestTokenBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--jwt-secret", "s"}, "--user is required"},
		{[]string{"--user", "a b", "--jwt-secret", "s"}, "not a valid user name"},
		{[]string{"--user", "alice"}, "exactly one of"},
		{[]string{"--user", "alice", "--jwt-secret", "s", "--jwt-private-key", "k.pem"}, "exactly one of"},
		{[]string{"--user", "alice", "--jwt-secret", "s", "--ttl", "0s"}, "--ttl must be positive"},
		{[]string{"--user", "alice", "--jwt-secret", "s", "--rooms", "general,,x"}, "not a room pattern"},
		{[]string{"--user", "alice", "--jwt-secret", "s", "--rooms", "a/b"}, "not a room pattern"},
		{[]string{"--user", "alice", "--jwt-private-key", "/nonexistent/key.pem"}, "no such file"},
		{[]string{"--user", "alice", "--jwt-secret", "s", "extra"}, "unexpected argument"},
		{[]string{"--user", "alice", "--ttl", "soon"}, "invalid value"},
	} {
		var out, errb bytes.Buffer
		code := runCmd(context.Background(), "token", tc.args, nil, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), tc.says) || out.Len() != 0 {
			t.Errorf("token %q: exit %d, stdout %q, stderr %q; want 2 saying %q", tc.args, code, out.String(), errb.String(), tc.says)
		}
	}
}

func TestServeTakesPublicKeyOrJWKS(t *testing.T) {
	var errb bytes.Buffer
	for _, args := range [][]string{{"--jwt-public-key", "k.pem"}, {"--jwks-url", "https://example.test/jwks.json"}} {
		if _, code, ok := parseServe(args, &errb); !ok {
			t.Fatalf("serve %q: exit %d, %q", args, code, errb.String())
		}
	}
	if _, code, ok := parseServe(nil, &errb); ok || code != 2 || !strings.Contains(errb.String(), "--jwks-url") {
		t.Fatalf("serve without auth: ok %v exit %d %q", ok, code, errb.String())
	}
}
