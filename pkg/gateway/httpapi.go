package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// This file holds what every HTTP endpoint under /v1/ shares: who calls
// (an API key or a user's token), JSON answers, errors with the
// protocol's codes, and the rate limits. The endpoints themselves are in
// api.go (the server API), sse.go (Server-Sent Events) and poll.go
// (long-poll).

// APIKey is a backend's key to the server API: sent as "Authorization:
// Bearer <Secret>", known in logs and metrics by Name. A key may act for
// any user in any room.
type APIKey struct {
	Name   string
	Secret string
}

// ParseAPIKeys reads API keys written as NAME:SECRET, separated by commas
// (PARLEY_API_KEYS). Names and secrets may not be empty; secrets must be
// at least 16 characters.
func ParseAPIKeys(s string) ([]APIKey, error) {
	var keys []APIKey
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, err := ParseAPIKey(part)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// ParseAPIKey reads one API key, NAME:SECRET.
func ParseAPIKey(s string) (APIKey, error) {
	name, secret, ok := strings.Cut(s, ":")
	switch {
	case !ok || name == "":
		return APIKey{}, errors.New("an API key is NAME:SECRET")
	case len(secret) < 16:
		// The secret is not echoed: errors reach logs.
		return APIKey{}, fmt.Errorf("API key %q: its secret must be at least 16 characters", name)
	}
	return APIKey{Name: name, Secret: secret}, nil
}

// caller is who makes an HTTP request under /v1/: a backend with an API
// key (key is its name), or a user with a token (p; key is "").
type caller struct {
	key string
	p   principal
	exp time.Time // the token's expiry (zero: none)
}

// backend reports whether the caller holds an API key.
func (c caller) backend() bool { return c.key != "" }

// who names the caller for logs and rate limits.
func (c caller) who() string {
	if c.backend() {
		return "key:" + c.key
	}
	return "user:" + c.p.user
}

// apiKey returns the name of the API key secret is, if it is one. Every
// key is compared, in constant time, so the time taken tells nothing.
func (g *Gateway) apiKey(secret string) (string, bool) {
	sum := sha256.Sum256([]byte(secret))
	name, found := "", false
	for _, k := range g.cfg.APIKeys {
		ks := sha256.Sum256([]byte(k.Secret))
		if subtle.ConstantTimeCompare(sum[:], ks[:]) == 1 && !found {
			name, found = k.Name, true
		}
	}
	return name, found
}

// httpCaller authenticates r: an API key or a user's token from
// "Authorization: Bearer", else a token from ?token= (EventSource cannot
// set headers), else under dev auth the user ?user= names. An API key
// is never taken from the query (proxies log URLs). keys says whether the
// endpoint takes API keys; users whether it takes users' tokens.
func (g *Gateway) httpCaller(r *http.Request, keys, users bool) (caller, *opError) {
	bearer := bearerToken(r.Header.Get("Authorization"))
	if bearer != "" {
		if name, ok := g.apiKey(bearer); ok {
			if !keys {
				return caller{}, &opError{protocol.CodeForbidden, "this endpoint is for users' tokens, not API keys"}
			}
			return caller{key: name}, nil
		}
	}
	if !users {
		if bearer == "" {
			return caller{}, &opError{protocol.CodeUnauthorized, "an API key is required (Authorization: Bearer <key>)"}
		}
		// A user's valid token is forbidden here, anything else unknown.
		ctx, cancel := g.authCtx(r.Context())
		defer cancel()
		if _, err := g.authenticate(ctx, bearer, ""); err == nil {
			return caller{}, &opError{protocol.CodeForbidden, "this endpoint is for API keys, not users' tokens"}
		}
		return caller{}, &opError{protocol.CodeUnauthorized, "unknown API key"}
	}
	q := r.URL.Query()
	token := bearer
	if token == "" {
		token = q.Get("token")
	}
	ctx, cancel := g.authCtx(r.Context())
	defer cancel()
	claims, err := g.authenticate(ctx, token, q.Get("user"))
	if err != nil {
		msg := err.Error()
		if keys && bearer != "" {
			// A backend with a wrong key must not be sent looking for a
			// token problem.
			msg = "not a known API key, nor a valid token (" + msg + ")"
		}
		return caller{}, &opError{protocol.CodeUnauthorized, msg}
	}
	return caller{p: principal{user: claims.User, rooms: claims.Rooms}, exp: claims.Expires}, nil
}

// httpStatus is the HTTP status of an error code.
func httpStatus(code string) int {
	switch code {
	case protocol.CodeBadRequest:
		return http.StatusBadRequest
	case protocol.CodeUnauthorized:
		return http.StatusUnauthorized
	case protocol.CodeForbidden:
		return http.StatusForbidden
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// apiError is the body of every error answer under /v1/.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeError answers an error with its status and {"code","message"}.
// unauthorized asks for a bearer token; rate_limited says when to retry
// (Retry-After, set by the caller).
func writeError(w http.ResponseWriter, oe *opError) {
	if oe.code == protocol.CodeUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
	}
	writeJSON(w, httpStatus(oe.code), apiError{Code: oe.code, Message: oe.msg})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"code":"internal","message":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// readJSON decodes r's body, at most limit bytes, into v: unknown fields
// and trailing data are bad_request, a larger body too_large.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *opError {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return &opError{protocol.CodeBadRequest, "the body must be JSON (Content-Type: application/json)"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return &opError{protocol.CodeTooLarge, fmt.Sprintf("the request body is over %d bytes", limit)}
		}
		return &opError{protocol.CodeBadRequest, "invalid JSON body: " + err.Error()}
	}
	if dec.More() {
		return &opError{protocol.CodeBadRequest, "invalid JSON body: data after the object"}
	}
	return nil
}

// apiLimits holds the HTTP callers' rate limit buckets: one per API key
// (APIRateLimit) and one per user (RateLimit, as a connection has). They
// are per gateway, like a connection's.
//
// Lock order: apiLimits.mu takes no other lock.
type apiLimits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

// apiLimitsMax is how many callers' buckets a gateway keeps; past it, the
// full ones (callers idle long enough to have earned their whole burst)
// are forgotten.
const apiLimitsMax = 10000

// allow takes a token from c's bucket, or answers rate_limited with
// Retry-After.
func (g *Gateway) allow(w http.ResponseWriter, c caller) bool {
	rate, burst := g.cfg.RateLimit, g.cfg.RateBurst
	if c.backend() {
		rate, burst = g.cfg.APIRateLimit, g.cfg.APIRateBurst
	}
	l := &g.apiLimits
	now := nowFunc()
	l.mu.Lock()
	if l.buckets == nil {
		l.buckets = make(map[string]*bucket)
	}
	b := l.buckets[c.who()]
	if b == nil {
		if len(l.buckets) >= apiLimitsMax {
			for k, old := range l.buckets {
				if old.refill(now); old.tokens >= old.burst {
					delete(l.buckets, k)
				}
			}
		}
		b = newBucket(rate, burst)
		l.buckets[c.who()] = b
	}
	ok := b.allow(now)
	retry := b.retryAfter()
	l.mu.Unlock()
	if ok {
		return true
	}
	w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	writeError(w, &opError{protocol.CodeRateLimited, fmt.Sprintf("over %g requests per second; retry in %s", rate, retry.Round(time.Millisecond))})
	return false
}

// cors lets pages of other origins call the endpoints under /v1/ that
// browsers use (long-poll, SSE, a user's publish), when their origin's
// host matches AllowedOrigins, as for WebSocket upgrades; a same-origin
// request needs nothing. A preflight (OPTIONS) is answered here.
func (g *Gateway) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && g.allowedOrigin(origin) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			h.Set("Access-Control-Expose-Headers", "Retry-After")
		}
		next.ServeHTTP(w, r)
	})
}

// allowedOrigin reports whether a page of origin may call the API from
// another origin: its host:port matches one of AllowedOrigins
// (path.Match), as the WebSocket upgrade checks it.
func (g *Gateway) allowedOrigin(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, pat := range g.cfg.AllowedOrigins {
		if ok, _ := path.Match(strings.ToLower(pat), strings.ToLower(u.Host)); ok {
			return true
		}
	}
	return false
}
