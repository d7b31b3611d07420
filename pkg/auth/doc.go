// Package auth verifies the tokens clients present to a Parley gateway.
//
// A token is a JWT. Its "sub" is the user (a valid protocol user name);
// "exp", when present, ends it; "name" is an optional display name and
// "rooms" an optional list of room patterns the token is limited to (see
// Claims.Allows). A Verifier accepts exactly the algorithms its keys allow:
// HS256 with a shared secret, RS256 with RSA public keys, ES256 with EC
// P-256 public keys, from a PEM file or a JWKS document fetched over HTTP
// and refetched when a token names a key id it does not know. Every
// refusal wraps ErrInvalid, and one of the more precise errors below.
//
// A Signer makes tokens: for `parley token`, tests and Go backends.
package auth
