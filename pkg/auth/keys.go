package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms a Verifier may accept, each tied to one key type.
const (
	HS256 = "HS256" // a shared secret ([]byte)
	RS256 = "RS256" // an RSA key
	ES256 = "ES256" // an EC P-256 key
)

// algFor returns the algorithm key verifies, or "" for a key type no
// accepted algorithm uses.
func algFor(key any) string {
	switch k := key.(type) {
	case []byte:
		return HS256
	case *rsa.PublicKey:
		return RS256
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return ES256
		}
	}
	return ""
}

// parsePublicKeyPEM parses one RSA or EC P-256 public key in PEM.
func parsePublicKeyPEM(b []byte) (any, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(b); err == nil {
		return k, nil
	}
	k, err := jwt.ParseECPublicKeyFromPEM(b)
	if err != nil {
		return nil, errors.New("not a PEM RSA or EC public key")
	}
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("EC key on curve %s: only P-256 (ES256) is accepted", k.Curve.Params().Name)
	}
	return k, nil
}

// jwk is one key of a JWKS document; only what RSA and EC keys need.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS returns the signing keys of a JWKS document by kid. Keys
// without a kid, for encryption, of other types or curves, or that fail
// to decode are skipped: one odd key must not hide the others.
func parseJWKS(b []byte) (map[string]any, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("JWKS is not JSON: %w", err)
	}
	keys := make(map[string]any, len(doc.Keys))
	for _, k := range doc.Keys {
		if k.Kid == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if key, err := k.publicKey(); err == nil {
			keys[k.Kid] = key
		}
	}
	return keys, nil
}

func (k jwk) publicKey() (any, error) {
	dec := base64.RawURLEncoding.DecodeString
	switch k.Kty {
	case "RSA":
		n, err1 := dec(k.N)
		e, err2 := dec(k.E)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		ei := new(big.Int).SetBytes(e)
		if len(n) < 256 || !ei.IsInt64() || ei.Int64() < 3 || ei.Int64() > 1<<31 {
			return nil, errors.New("RSA key too small or odd exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(ei.Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, errors.New("EC key not on P-256")
		}
		x, err1 := dec(k.X)
		y, err2 := dec(k.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		// The uncompressed point form, so that the standard library
		// checks that the point is on the curve.
		pt := append([]byte{4}, append(pad32(x), pad32(y)...)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
		if err != nil {
			return nil, err
		}
		return pub, nil
	}
	return nil, fmt.Errorf("key type %q", k.Kty)
}

func pad32(b []byte) []byte {
	if len(b) >= 32 {
		return b
	}
	return append(make([]byte, 32-len(b)), b...)
}
