package auth

import (
	"crypto/elliptic"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/pkg/protocol"
)

// Signer makes tokens a Verifier with the matching key accepts: HS256
// with a secret, RS256 or ES256 with a private key.
type Signer struct {
	// Kid, when set, is put in each token's header: the JWKS key id
	// that verifies it.
	Kid string

	method jwt.SigningMethod
	key    any
}

// NewHMACSigner returns a Signer of HS256 tokens.
func NewHMACSigner(secret []byte) (*Signer, error) {
	if len(secret) == 0 {
		return nil, errors.New("auth: empty HMAC secret")
	}
	return &Signer{method: jwt.SigningMethodHS256, key: secret}, nil
}

// NewKeySigner returns a Signer for a PEM private key: RS256 for an RSA
// key (PKCS#1 or PKCS#8), ES256 for an EC P-256 key (SEC 1 or PKCS#8).
func NewKeySigner(pem []byte) (*Signer, error) {
	if k, err := jwt.ParseRSAPrivateKeyFromPEM(pem); err == nil {
		return &Signer{method: jwt.SigningMethodRS256, key: k}, nil
	}
	k, err := jwt.ParseECPrivateKeyFromPEM(pem)
	if err != nil {
		return nil, errors.New("auth: not a PEM RSA or EC private key")
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("auth: EC key on curve %s: only P-256 (ES256) is supported", k.Curve.Params().Name)
	}
	return &Signer{method: jwt.SigningMethodES256, key: k}, nil
}

// LoadKeySigner is NewKeySigner of a PEM file.
func LoadKeySigner(file string) (*Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("auth: private key: %w", err)
	}
	s, err := NewKeySigner(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, file)
	}
	return s, nil
}

// Algorithm is the alg of the tokens s makes.
func (s *Signer) Algorithm() string { return s.method.Alg() }

// Sign returns a token of c: sub c.User, "iat" now, "exp" c.Expires
// unless it is zero, "name" and "rooms" when set (a non-nil empty Rooms
// is signed as "rooms":[], which allows no room).
func (s *Signer) Sign(c Claims) (string, error) {
	if !protocol.ValidUser(c.User) {
		return "", fmt.Errorf("auth: %q is not a valid user name", c.User)
	}
	tc := tokenClaims{Name: c.Name, Rooms: c.Rooms}
	tc.Subject = c.User
	tc.IssuedAt = jwt.NewNumericDate(time.Now())
	if !c.Expires.IsZero() {
		tc.ExpiresAt = jwt.NewNumericDate(c.Expires)
	}
	var t *jwt.Token
	if c.Rooms != nil && len(c.Rooms) == 0 {
		// omitempty would drop an empty list, which means "no room".
		t = jwt.NewWithClaims(s.method, struct {
			tokenClaims
			Rooms []string `json:"rooms"`
		}{tc, c.Rooms})
	} else {
		t = jwt.NewWithClaims(s.method, tc)
	}
	if s.Kid != "" {
		t.Header["kid"] = s.Kid
	}
	tok, err := t.SignedString(s.key)
	if err != nil {
		return "", fmt.Errorf("auth: sign: %w", err)
	}
	return tok, nil
}

// Mint signs a token for user that expires after ttl (none when ttl is 0).
func (s *Signer) Mint(user string, ttl time.Duration) (string, error) {
	c := Claims{User: user}
	if ttl != 0 {
		c.Expires = time.Now().Add(ttl)
	}
	return s.Sign(c)
}
