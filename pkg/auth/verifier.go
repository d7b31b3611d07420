package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/pkg/protocol"
)

// Verifier verifies client tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	static []any      // the secret and the PEM key, tried for tokens without a kid
	jwks   *jwksCache // nil without JWKSURL
	algs   []string   // the algorithms the keys allow
}

// New returns a Verifier for cfg. It reads PublicKeyFile now; the JWKS is
// fetched at the first token that needs it.
func New(cfg Config) (*Verifier, error) {
	cfg.setDefaults()
	v := &Verifier{cfg: cfg}
	if len(cfg.HMACSecret) > 0 {
		v.static = append(v.static, cfg.HMACSecret)
		v.algs = append(v.algs, HS256)
	}
	if cfg.PublicKeyFile != "" {
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: %w", err)
		}
		k, err := parsePublicKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("auth: public key %s: %w", cfg.PublicKeyFile, err)
		}
		v.static = append(v.static, k)
		v.algs = append(v.algs, algFor(k))
	}
	if cfg.JWKSURL != "" {
		if !strings.HasPrefix(cfg.JWKSURL, "https://") && !strings.HasPrefix(cfg.JWKSURL, "http://") {
			return nil, fmt.Errorf("auth: JWKS URL %q is not http(s)", cfg.JWKSURL)
		}
		v.jwks = newJWKSCache(cfg)
		v.algs = append(v.algs, RS256, ES256)
	}
	if len(v.algs) == 0 {
		return nil, errors.New("auth: no key: set an HMAC secret, a public key file or a JWKS URL")
	}
	slices.Sort(v.algs)
	v.algs = slices.Compact(v.algs)
	return v, nil
}

// Algorithms returns the algorithms v accepts.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.algs) }

// tokenClaims is the JSON form of a token's claims.
type tokenClaims struct {
	jwt.RegisteredClaims
	Name  string   `json:"name,omitempty"`
	Rooms []string `json:"rooms,omitempty"`
}

// Verify checks token and returns its claims. ctx bounds a JWKS fetch the
// token's kid may need. Every error wraps ErrInvalid and one of the
// precise errors (ErrAlgorithm, ErrExpired, ...); none quotes the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	var tc tokenClaims
	// The header first, to say precisely what is wrong with its alg and
	// kid before any key is tried.
	unverified, _, err := jwt.NewParser().ParseUnverified(token, &tokenClaims{})
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, shortJWTError(err))
	}
	alg, _ := unverified.Header["alg"].(string)
	if strings.EqualFold(alg, "none") || alg == "" {
		return Claims{}, fmt.Errorf(`%w: alg "none" (an unsigned token) is never accepted`, ErrAlgorithm)
	}
	if !slices.Contains(v.algs, alg) {
		return Claims{}, fmt.Errorf("%w: alg %q; this gateway's keys accept %s", ErrAlgorithm, alg, strings.Join(v.algs, ", "))
	}
	kid, _ := unverified.Header["kid"].(string)
	key, err := v.key(ctx, alg, kid)
	if err != nil {
		return Claims{}, err
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{alg}), jwt.WithLeeway(v.cfg.Leeway), jwt.WithTimeFunc(v.cfg.Now))
	_, err = p.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return key, nil })
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return Claims{}, ErrSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return Claims{}, ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenMalformed):
		return Claims{}, fmt.Errorf("%w: %v", ErrMalformed, shortJWTError(err))
	default:
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, shortJWTError(err))
	}
	if tc.Subject == "" {
		return Claims{}, fmt.Errorf("%w: the token has no sub", ErrSubject)
	}
	if !protocol.ValidUser(tc.Subject) {
		return Claims{}, fmt.Errorf("%w: sub is not a valid user name (1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit)", ErrSubject)
	}
	c := Claims{User: tc.Subject, Name: tc.Name, Rooms: tc.Rooms}
	if tc.ExpiresAt != nil {
		c.Expires = tc.ExpiresAt.Time
	}
	return c, nil
}

// key returns the key that verifies a token of alg with kid. A token with
// a kid is verified by the JWKS key of that kid when there is a JWKS, else
// by the static keys; a token without one by the static keys. The key's
// type must fit alg: an HS256 token is never checked against a public key
// (whose bytes anyone has) and an RS256 token never against a secret.
func (v *Verifier) key(ctx context.Context, alg, kid string) (any, error) {
	if kid != "" && v.jwks != nil {
		k, err := v.jwks.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		if got := algFor(k); got != alg {
			return nil, fmt.Errorf("%w: alg %q, but key %q is for %s", ErrAlgorithm, alg, kid, got)
		}
		return k, nil
	}
	for _, k := range v.static {
		if algFor(k) == alg {
			return k, nil
		}
	}
	if kid == "" && v.jwks != nil {
		return nil, fmt.Errorf("%w: the token has no kid, and no key without one verifies %s", ErrUnknownKey, alg)
	}
	return nil, fmt.Errorf("%w: alg %q; no configured key verifies it", ErrAlgorithm, alg)
}

// shortJWTError is err without the jwt package's chain of prefixes.
func shortJWTError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return s
}
