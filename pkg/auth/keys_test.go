package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Test keys, made once: RSA key generation is slow under -race.
var (
	keysOnce sync.Once
	rsaKey   *rsa.PrivateKey
	rsaKey2  *rsa.PrivateKey
	ecKey    *ecdsa.PrivateKey
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
}

// writePEM writes a PEM block of der to a file in t's temp dir.
func writePEM(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func publicPEM(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, "pub.pem", "PUBLIC KEY", der)
}

func privatePEM(t testing.TB, priv any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// jwksDoc is a JWKS document of the public halves of keys by kid.
func jwksDoc(t testing.TB, keys map[string]any) []byte {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	var out []map[string]string
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			out = append(out, map[string]string{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
				"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PrivateKey:
			pt, err := k.PublicKey.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
				"x": b64(pt[1:33]), "y": b64(pt[33:])})
		}
	}
	b, _ := json.Marshal(map[string]any{"keys": out})
	return b
}

func readFile(name string) ([]byte, error) { return os.ReadFile(name) }
