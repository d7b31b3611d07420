package auth

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every refusal of a token.
var ErrInvalid = errors.New("invalid token")

// The precise refusals; each wraps ErrInvalid, and Verify's errors wrap
// one of them with details.
var (
	// ErrMalformed: not a JWT, or a claim of the wrong type.
	ErrMalformed = fmt.Errorf("%w: malformed token", ErrInvalid)
	// ErrAlgorithm: "alg" is none, or not one the configured keys allow,
	// or does not fit the type of the key that would verify it.
	ErrAlgorithm = fmt.Errorf("%w: algorithm not accepted", ErrInvalid)
	// ErrUnknownKey: "kid" names no key, even after a JWKS refetch; or
	// the token has no "kid" and only a JWKS can verify it.
	ErrUnknownKey = fmt.Errorf("%w: unknown key", ErrInvalid)
	// ErrSignature: the signature does not verify.
	ErrSignature = fmt.Errorf("%w: bad token signature", ErrInvalid)
	// ErrExpired: "exp" is past (beyond the leeway).
	ErrExpired = fmt.Errorf("%w: token expired", ErrInvalid)
	// ErrNotYetValid: "nbf" is in the future (beyond the leeway).
	ErrNotYetValid = fmt.Errorf("%w: token not valid yet", ErrInvalid)
	// ErrSubject: "sub" is missing or not a valid user name.
	ErrSubject = fmt.Errorf("%w: token has no valid sub", ErrInvalid)
)
