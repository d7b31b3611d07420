package gateway

import (
	"errors"
	"fmt"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/pkg/protocol"
)

// errAuth is wrapped by every authentication failure.
var errAuth = errors.New("authentication failed")

// authenticate returns the user a hello (or plain-text query) proves: the
// "sub" of an HS256 token signed with the JWT secret, or under dev auth the
// named user.
func (g *Gateway) authenticate(token, user string) (string, error) {
	if token != "" && len(g.cfg.JWTSecret) > 0 {
		return g.verifyToken(token)
	}
	if g.cfg.DevAuth && user != "" {
		if !protocol.ValidUser(user) {
			return "", fmt.Errorf("%w: invalid user name %q", errAuth, user)
		}
		return user, nil
	}
	if token != "" {
		return "", fmt.Errorf("%w: this gateway has no JWT secret; under dev auth send user", errAuth)
	}
	if g.cfg.DevAuth {
		return "", fmt.Errorf("%w: hello needs a user (dev auth) or a token", errAuth)
	}
	return "", fmt.Errorf("%w: a token is required", errAuth)
}

func (g *Gateway) verifyToken(token string) (string, error) {
	claims := jwt.RegisteredClaims{}
	_, err := jwt.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) {
		return g.cfg.JWTSecret, nil
	}, jwt.WithValidMethods([]string{"HS256"}))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "", fmt.Errorf("%w: token expired", errAuth)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "", fmt.Errorf("%w: bad token signature", errAuth)
	case err != nil:
		return "", fmt.Errorf("%w: invalid token", errAuth)
	}
	if claims.Subject == "" || !protocol.ValidUser(claims.Subject) {
		return "", fmt.Errorf("%w: token has no valid sub", errAuth)
	}
	return claims.Subject, nil
}
