package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/protocol"
)

// errAuth is wrapped by every authentication failure.
var errAuth = errors.New("authentication failed")

// authenticate returns who a hello (or plain-text query) proves to be:
// the claims of a token Config.Auth verifies, or under dev auth the named
// user, with no rooms claim (every room) and no expiry. ctx bounds a JWKS
// fetch.
func (g *Gateway) authenticate(ctx context.Context, token, user string) (auth.Claims, error) {
	if token != "" && g.cfg.Auth != nil {
		c, err := g.cfg.Auth.Verify(ctx, token)
		if err != nil {
			return auth.Claims{}, fmt.Errorf("%w: %w", errAuth, err)
		}
		return c, nil
	}
	if g.cfg.DevAuth && user != "" {
		if !protocol.ValidUser(user) {
			return auth.Claims{}, fmt.Errorf("%w: invalid user name %q", errAuth, user)
		}
		return auth.Claims{User: user}, nil
	}
	if token != "" {
		return auth.Claims{}, fmt.Errorf("%w: this gateway verifies no tokens; under dev auth send user", errAuth)
	}
	if g.cfg.DevAuth {
		return auth.Claims{}, fmt.Errorf("%w: hello needs a user (dev auth) or a token", errAuth)
	}
	return auth.Claims{}, fmt.Errorf("%w: a token is required", errAuth)
}

// authCtx bounds an authentication (a JWKS fetch) made for conn.
func (g *Gateway) authCtx(conn context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(conn, g.cfg.RequestTimeout)
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header, or "".
func bearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
