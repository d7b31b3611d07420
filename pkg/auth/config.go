package auth

import (
	"net/http"
	"time"
)

// Config configures a Verifier. Zero fields take the stated defaults; at
// least one of HMACSecret, PublicKeyFile and JWKSURL must be set.
type Config struct {
	// HMACSecret verifies HS256 tokens. Default none.
	HMACSecret []byte
	// PublicKeyFile is a PEM file holding one RSA or EC P-256 public key
	// (PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY" or a certificate): it
	// verifies RS256 or ES256 tokens, by the key's type, with or without
	// a "kid". Default none.
	PublicKeyFile string
	// JWKSURL is a JWKS document (RFC 7517) of RSA and EC P-256 keys,
	// fetched over HTTP(S) at the first token whose "kid" it may hold,
	// cached, and refetched when a token names a "kid" not in the cache.
	// A failed fetch keeps the cached keys. Default none.
	JWKSURL string
	// JWKSMinRefresh is the least time between two JWKS fetches, so that
	// tokens with made-up kids cannot make the verifier hammer the JWKS
	// server. Default 10s.
	JWKSMinRefresh time.Duration
	// JWKSTimeout bounds one JWKS fetch. Default 5s.
	JWKSTimeout time.Duration
	// Leeway is the clock skew allowed on "exp" and "nbf". Default 5s.
	Leeway time.Duration
	// HTTPClient fetches the JWKS. Default: a client of its own, with no
	// timeout but JWKSTimeout.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.JWKSMinRefresh <= 0 {
		c.JWKSMinRefresh = 10 * time.Second
	}
	if c.JWKSTimeout <= 0 {
		c.JWKSTimeout = 5 * time.Second
	}
	if c.Leeway <= 0 {
		c.Leeway = 5 * time.Second
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}
