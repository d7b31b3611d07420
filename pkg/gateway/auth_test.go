package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/gateway"
	"github.com/parley-chat/parley/pkg/protocol"
)

var authSecret = []byte("gateway-test-secret")

// tokenCluster is one gateway that verifies HS256 tokens of authSecret,
// without dev auth.
func tokenCluster(t *testing.T, tweak func(*gateway.Config)) *node {
	t.Helper()
	c := newCluster(t, 1, func(cfg *gateway.Config) {
		cfg.DevAuth = false
		cfg.JWTSecret = authSecret
		if tweak != nil {
			tweak(cfg)
		}
	})
	return c.gws[0]
}

// mint signs c with authSecret.
func mint(t *testing.T, c auth.Claims) string {
	t.Helper()
	s, err := auth.NewHMACSigner(authSecret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialHeader dials path with an Authorization header, v1 unless plain.
func dialHeader(t *testing.T, n *node, path, authorization string, plain bool) *tclient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {authorization}}}
	if !plain {
		opts.Subprotocols = []string{protocol.Subprotocol}
	}
	ws, _, err := websocket.Dial(ctx, n.wsURL(path), opts)
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	c := wrap(t, ws, 1000)
	c.name = "bearer" + path
	return c
}

// tokenLogin connects and says hello with token.
func tokenLogin(t *testing.T, n *node, token string) (*tclient, protocol.Frame) {
	t.Helper()
	c := connect(t, n)
	c.name = "token"
	c.send(protocol.Frame{Type: "hello", Ref: "h1", Token: token})
	return c, c.expect("welcome")
}

func TestRoomsClaimForbidsOtherRooms(t *testing.T) {
	n := tokenCluster(t, nil)
	cl, w := tokenLogin(t, n, mint(t, auth.Claims{User: "alice", Rooms: []string{"general", "team-*"}, Expires: time.Now().Add(time.Hour)}))
	if w.User != "alice" {
		t.Fatalf("welcome %+v", w)
	}
	cl.join("general", nil)
	cl.join("team-red", nil)
	for _, f := range []protocol.Frame{
		{Type: "join", Ref: "j-no", Room: "random"},
		{Type: "send", Ref: "s-no", Room: "random", ID: "m1", Body: "hi"},
		{Type: "history", Ref: "q-no", Room: "random"},
		{Type: "send", Ref: "s-no2", Room: "team", ID: "m2", Body: "hi"},
	} {
		cl.send(f)
		e := cl.expect("error")
		if e.Code != protocol.CodeForbidden || e.Ref != f.Ref || e.Message != "your token does not allow room "+f.Room {
			t.Fatalf("%s %s answered %+v", f.Type, f.Room, e)
		}
	}
	for _, room := range []string{"random", "team"} {
		pos, err := n.g.Broker().Head(context.Background(), room)
		if err != nil || pos.Seq != 0 {
			t.Fatalf("%s after refused sends: %+v, %v: something was published", room, pos, err)
		}
	}
	if ack, _ := cl.post("team-red", "m3", "allowed"); ack.Seq != 1 {
		t.Fatalf("send to an allowed room: %+v", ack)
	}
}

func TestBearerHeaderHello(t *testing.T) {
	n := tokenCluster(t, nil)
	cl := dialHeader(t, n, "/ws", "Bearer "+mint(t, auth.Claims{User: "bob", Name: "Bob Builder"}), false)
	cl.send(protocol.Frame{Type: "hello", Ref: "h1", Device: "web"})
	if w := cl.expect("welcome"); w.User != "bob" || w.Name != "Bob Builder" || w.Ref != "h1" || w.Device != "web" || w.Expires != "" {
		t.Fatalf("welcome %+v", w)
	}
	// Without a header, a hello without a token is refused.
	bare := connect(t, n)
	bare.send(protocol.Frame{Type: "hello", Ref: "h1"})
	if e := bare.expect("error"); e.Code != protocol.CodeUnauthorized || !strings.Contains(e.Message, "token is required") {
		t.Fatalf("tokenless hello answered %+v", e)
	}
	// A bad bearer token is refused like a bad hello token.
	bad := dialHeader(t, n, "/ws", "Bearer not.a.jwt", false)
	bad.send(protocol.Frame{Type: "hello", Ref: "h1"})
	if e := bad.expect("error"); e.Code != protocol.CodeUnauthorized || !strings.Contains(e.Message, "malformed") {
		t.Fatalf("bad bearer answered %+v", e)
	}
	if code, _ := bad.closeStatus(); code != websocket.StatusPolicyViolation {
		t.Fatalf("bad bearer closed %d", code)
	}
}

func TestPlainTextToken(t *testing.T) {
	n := tokenCluster(t, nil)
	v1, _ := tokenLogin(t, n, mint(t, auth.Claims{User: "watcher"}))
	v1.join("chat", nil)
	q := dialPlain(t, n, "/chat?token="+mint(t, auth.Claims{User: "carol"}))
	q.writeText("by query")
	if m := v1.messages(1)[0]; m.From != "carol" || m.Body != "by query" {
		t.Fatalf("?token= message %+v", m)
	}
	h := dialHeader(t, n, "/chat", "Bearer "+mint(t, auth.Claims{User: "dave"}), true)
	h.writeText("by header")
	if m := v1.messages(1)[0]; m.From != "dave" || m.Body != "by header" {
		t.Fatalf("bearer plain message %+v", m)
	}
	// A plain-text client whose token does not allow the path's room.
	no := dialPlain(t, n, "/chat?token="+mint(t, auth.Claims{User: "erin", Rooms: []string{"other"}}))
	if code, reason := no.closeStatus(); code != websocket.StatusPolicyViolation || reason != "your token does not allow room chat" {
		t.Fatalf("forbidden plain client closed %d %q", code, reason)
	}
}

func TestDevAuthStillWorks(t *testing.T) {
	c := newCluster(t, 1, func(cfg *gateway.Config) { cfg.JWTSecret = authSecret })
	n := c.gws[0]
	dev := login(t, n, "devuser", "phone")
	dev.join("anything", nil)
	tok, w := tokenLogin(t, n, mint(t, auth.Claims{User: "alice"}))
	if w.User != "alice" {
		t.Fatalf("welcome %+v", w)
	}
	tok.join("anything", nil)
}

func TestRS256TokenFromJWKS(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	doc, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(jwks.Close)
	v, err := auth.New(auth.Config{JWKSURL: jwks.URL, HTTPClient: jwks.Client()})
	if err != nil {
		t.Fatal(err)
	}
	n := tokenCluster(t, func(cfg *gateway.Config) { cfg.JWTSecret, cfg.Auth = nil, v })

	der, _ := x509.MarshalPKCS8PrivateKey(key)
	s, err := auth.NewKeySigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	s.Kid = "k1"
	tok, err := s.Sign(auth.Claims{User: "rsa-user", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, w := tokenLogin(t, n, tok); w.User != "rsa-user" {
		t.Fatalf("welcome %+v", w)
	}
	// An HS256 token is refused: this gateway has no secret.
	cl := connect(t, n)
	cl.send(protocol.Frame{Type: "hello", Ref: "h1", Token: mint(t, auth.Claims{User: "eve"})})
	if e := cl.expect("error"); e.Code != protocol.CodeUnauthorized || !strings.Contains(e.Message, `alg "HS256"`) {
		t.Fatalf("HS256 to a JWKS gateway answered %+v", e)
	}
}

// A long refusal (here a JWKS fetch that fails) still closes with 1008:
// the reason is cut to a close frame's 123 bytes; the error frame has it
// all.
func TestLongAuthErrorClosesWithPolicy(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	v, err := auth.New(auth.Config{JWKSURL: dead.URL + "/a/rather/long/path/to/the/keys/of/this/deployment/jwks.json", HMACSecret: authSecret})
	if err != nil {
		t.Fatal(err)
	}
	n := tokenCluster(t, func(cfg *gateway.Config) { cfg.Auth = v })
	s, _ := auth.NewHMACSigner(authSecret)
	s.Kid = "some-key-id"
	tok, _ := s.Sign(auth.Claims{User: "alice"})
	cl := connect(t, n)
	cl.send(protocol.Frame{Type: "hello", Ref: "h1", Token: tok})
	e := cl.expect("error")
	if e.Code != protocol.CodeUnauthorized || len(e.Message) <= 123 || !strings.Contains(e.Message, "unknown key") {
		t.Fatalf("hello answered %+v", e)
	}
	code, reason := cl.closeStatus()
	if code != websocket.StatusPolicyViolation || len(reason) > 123 || !strings.HasSuffix(reason, "...") {
		t.Fatalf("closed %d %q", code, reason)
	}
}
