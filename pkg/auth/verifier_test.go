package auth_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/pkg/auth"
)

var secret = []byte("test-secret-of-some-length")

func newVerifier(t *testing.T, cfg auth.Config) *auth.Verifier {
	t.Helper()
	v, err := auth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func sign(t *testing.T, s *auth.Signer, c auth.Claims) string {
	t.Helper()
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func keySigner(t *testing.T, priv any, kid string) *auth.Signer {
	t.Helper()
	s, err := auth.NewKeySigner(privatePEM(t, priv))
	if err != nil {
		t.Fatal(err)
	}
	s.Kid = kid
	return s
}

// rawToken signs claims with method and key as they are, for the tokens a
// Signer refuses to make.
func rawToken(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyEachAlgorithm(t *testing.T) {
	testKeys(t)
	hs, _ := auth.NewHMACSigner(secret)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, tc := range []struct {
		name string
		cfg  auth.Config
		s    *auth.Signer
	}{
		{"HS256", auth.Config{HMACSecret: secret}, hs},
		{"RS256", auth.Config{PublicKeyFile: publicPEM(t, &rsaKey.PublicKey)}, keySigner(t, rsaKey, "")},
		{"ES256", auth.Config{PublicKeyFile: publicPEM(t, &ecKey.PublicKey)}, keySigner(t, ecKey, "")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.s.Algorithm() != tc.name {
				t.Fatalf("signer alg %s", tc.s.Algorithm())
			}
			v := newVerifier(t, tc.cfg)
			if got := v.Algorithms(); len(got) != 1 || got[0] != tc.name {
				t.Fatalf("Algorithms() = %v, want [%s]", got, tc.name)
			}
			tok := sign(t, tc.s, auth.Claims{User: "alice", Name: "Alice A.", Rooms: []string{"team-*"}, Expires: exp})
			c, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatal(err)
			}
			if c.User != "alice" || c.Name != "Alice A." || len(c.Rooms) != 1 || c.Rooms[0] != "team-*" || !c.Expires.Equal(exp) {
				t.Fatalf("claims = %+v", c)
			}
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	testKeys(t)
	rsaPub := publicPEM(t, &rsaKey.PublicKey)
	hsOnly := newVerifier(t, auth.Config{HMACSecret: secret})
	rsaOnly := newVerifier(t, auth.Config{PublicKeyFile: rsaPub})
	now := time.Now()
	valid := func(extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	b64 := base64.RawURLEncoding.EncodeToString
	none := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + b64([]byte(`{"sub":"alice"}`)) + "."
	rsaPubPEM, _ := readFile(rsaPub)

	for _, tc := range []struct {
		name  string
		v     *auth.Verifier
		token string
		want  error
		says  string
	}{
		{"garbage", hsOnly, "not-a-jwt", auth.ErrMalformed, "malformed"},
		{"alg none", hsOnly, none, auth.ErrAlgorithm, `alg "none"`},
		{"alg none to RSA", rsaOnly, none, auth.ErrAlgorithm, `alg "none"`},
		// The confusion attack: HMAC keyed with the public key's bytes.
		{"HS256 signed with the RSA public key", rsaOnly, rawToken(t, jwt.SigningMethodHS256, rsaPubPEM, valid(nil), nil), auth.ErrAlgorithm, `alg "HS256"`},
		{"RS256 to an HMAC gateway", hsOnly, rawToken(t, jwt.SigningMethodRS256, rsaKey, valid(nil), nil), auth.ErrAlgorithm, "accept HS256"},
		{"HS384", hsOnly, rawToken(t, jwt.SigningMethodHS384, secret, valid(nil), nil), auth.ErrAlgorithm, `alg "HS384"`},
		{"bad signature", hsOnly, rawToken(t, jwt.SigningMethodHS256, []byte("another secret"), valid(nil), nil), auth.ErrSignature, "bad token signature"},
		{"bad RSA signature", rsaOnly, rawToken(t, jwt.SigningMethodRS256, rsaKey2, valid(nil), nil), auth.ErrSignature, "bad token signature"},
		{"expired", hsOnly, rawToken(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()}), nil), auth.ErrExpired, "expired"},
		{"not yet valid", hsOnly, rawToken(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"nbf": now.Add(time.Minute).Unix()}), nil), auth.ErrNotYetValid, "not valid yet"},
		{"no sub", hsOnly, rawToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}, nil), auth.ErrSubject, "no sub"},
		{"invalid sub", hsOnly, rawToken(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"sub": "a b"}), nil), auth.ErrSubject, "not a valid user name"},
		{"rooms not a list", hsOnly, rawToken(t, jwt.SigningMethodHS256, secret, valid(jwt.MapClaims{"rooms": 7}), nil), auth.ErrMalformed, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) || !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("err = %v, want %v (and ErrInvalid)", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %q does not say %q", err, tc.says)
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	v := newVerifier(t, auth.Config{HMACSecret: secret, Leeway: 5 * time.Second})
	tok := rawToken(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-2 * time.Second).Unix()}, nil)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("a token 2s past exp within a 5s leeway: %v", err)
	}
}

func TestNewRefusesNoKey(t *testing.T) {
	if _, err := auth.New(auth.Config{}); err == nil {
		t.Fatal("New with no key succeeded")
	}
	if _, err := auth.New(auth.Config{PublicKeyFile: "/nonexistent.pem"}); err == nil {
		t.Fatal("New with a missing key file succeeded")
	}
	if _, err := auth.New(auth.Config{JWKSURL: "ftp://x"}); err == nil {
		t.Fatal("New with an ftp JWKS URL succeeded")
	}
}

// jwksServer serves a JWKS document that a test may replace, and counts
// its fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     []byte
	fail    bool
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, doc []byte) *jwksServer {
	s := &jwksServer{doc: doc}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		doc, fail := s.doc, s.fail
		s.mu.Unlock()
		if fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc []byte, fail bool) {
	s.mu.Lock()
	s.doc, s.fail = doc, fail
	s.mu.Unlock()
}

// clock is a settable time for the verifier's refetch limit.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestJWKSRotation(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, map[string]any{"old": rsaKey}))
	clk := &clock{now: time.Now()}
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL, HTTPClient: srv.Client(), JWKSMinRefresh: 10 * time.Second, Now: clk.Now})
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	oldTok := sign(t, keySigner(t, rsaKey, "old"), auth.Claims{User: "alice", Expires: exp})
	newTok := sign(t, keySigner(t, ecKey, "new"), auth.Claims{User: "bob", Expires: exp})

	if c, err := v.Verify(ctx, oldTok); err != nil || c.User != "alice" {
		t.Fatalf("old kid: %+v, %v", c, err)
	}
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches after the first token, want 1", n)
	}
	// The new key is not published yet: one refetch (the first fetch is
	// JWKSMinRefresh old), then refused.
	clk.add(10 * time.Second)
	if _, err := v.Verify(ctx, newTok); !errors.Is(err, auth.ErrUnknownKey) || !strings.Contains(err.Error(), `"new"`) {
		t.Fatalf("unpublished kid: %v", err)
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	// Published now, but within JWKSMinRefresh of the last fetch: no
	// refetch, and a flood of made-up kids fetches nothing either.
	srv.set(jwksDoc(t, map[string]any{"old": rsaKey, "new": ecKey}), false)
	for range 20 {
		if _, err := v.Verify(ctx, newTok); !errors.Is(err, auth.ErrUnknownKey) {
			t.Fatalf("within the refetch limit: %v", err)
		}
	}
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches within the refetch limit, want 2", n)
	}
	// After it, the unknown kid is fetched once; both keys verify.
	clk.add(10 * time.Second)
	if c, err := v.Verify(ctx, newTok); err != nil || c.User != "bob" {
		t.Fatalf("new kid after the refetch: %+v, %v", c, err)
	}
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("old kid while both are published: %v", err)
	}
	if n := srv.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
	// A failed fetch keeps the cached keys.
	srv.set(nil, true)
	clk.add(time.Minute)
	if _, err := v.Verify(ctx, sign(t, keySigner(t, ecKey, "other"), auth.Claims{User: "carol"})); !errors.Is(err, auth.ErrUnknownKey) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("kid while the JWKS is down: %v", err)
	}
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("cached kid after a failed fetch: %v", err)
	}
	// A kid's key must fit the alg: an HS256 token naming an RSA kid.
	hs := rawToken(t, jwt.SigningMethodHS256, []byte("x"), jwt.MapClaims{"sub": "eve"}, map[string]any{"kid": "old"})
	if _, err := v.Verify(ctx, hs); !errors.Is(err, auth.ErrAlgorithm) {
		t.Fatalf("HS256 to a JWKS-only verifier: %v", err)
	}
	es := rawToken(t, jwt.SigningMethodES256, ecKey, jwt.MapClaims{"sub": "eve"}, map[string]any{"kid": "old"})
	if _, err := v.Verify(ctx, es); !errors.Is(err, auth.ErrAlgorithm) || !strings.Contains(err.Error(), "RS256") {
		t.Fatalf("ES256 token naming an RSA kid: %v", err)
	}
	if _, err := v.Verify(ctx, sign(t, keySigner(t, rsaKey, ""), auth.Claims{User: "eve"})); !errors.Is(err, auth.ErrUnknownKey) {
		t.Fatalf("no kid to a JWKS-only verifier: %v", err)
	}
}

func TestJWKSConcurrentUnknownKidFetchesOnce(t *testing.T) {
	testKeys(t)
	srv := newJWKSServer(t, jwksDoc(t, map[string]any{"k1": ecKey}))
	v := newVerifier(t, auth.Config{JWKSURL: srv.URL, HTTPClient: srv.Client()})
	tok := sign(t, keySigner(t, ecKey, "k1"), auth.Claims{User: "alice"})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := srv.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 8 concurrent tokens, want 1", n)
	}
}

func TestAllows(t *testing.T) {
	for _, tc := range []struct {
		rooms []string
		room  string
		want  bool
	}{
		{nil, "anything", true},
		{[]string{}, "general", false},
		{[]string{"general"}, "general", true},
		{[]string{"general"}, "general2", false},
		{[]string{"general"}, "Xgeneral", false},
		{[]string{"team-*"}, "team-", true},
		{[]string{"team-*"}, "team-red", true},
		{[]string{"team-*"}, "team", false},
		{[]string{"*"}, "x", true},
		{[]string{"r?"}, "r1", true},
		{[]string{"r?"}, "r", false},
		{[]string{"r?"}, "r10", false},
		{[]string{"*-ops"}, "eu-ops", true},
		{[]string{"*-ops"}, "eu-ops-2", false},
		{[]string{"a*b*c"}, "aXbYbZc", true},
		{[]string{"a*b*c"}, "aXbYbZ", false},
		{[]string{"general", "team-*"}, "team-blue", true},
		{[]string{"general", "team-*"}, "random", false},
		{[]string{"[ab]"}, "a", false}, // no character classes: "[" is itself
	} {
		if got := (auth.Claims{Rooms: tc.rooms}).Allows(tc.room); got != tc.want {
			t.Errorf("Claims{Rooms: %q}.Allows(%q) = %v, want %v", tc.rooms, tc.room, got, tc.want)
		}
	}
}

func TestSignEmptyRoomsAllowsNone(t *testing.T) {
	s, _ := auth.NewHMACSigner(secret)
	v := newVerifier(t, auth.Config{HMACSecret: secret})
	c, err := v.Verify(context.Background(), sign(t, s, auth.Claims{User: "alice", Rooms: []string{}}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rooms == nil || c.Allows("general") {
		t.Fatalf("rooms [] round trip: %+v", c)
	}
}
