package auth

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// jwksCache holds the keys of a JWKS document by kid, and refetches the
// document when asked for a kid it does not hold: at most once per
// minRefresh, one fetch at a time, each bounded by timeout. A failed
// fetch keeps the cached keys.
type jwksCache struct {
	url        string
	client     *http.Client
	minRefresh time.Duration
	timeout    time.Duration
	now        func() time.Time

	keys atomic.Pointer[map[string]any] // read without a lock

	sem  chan struct{} // one fetch at a time; a waiter's ctx may end it
	mu   sync.Mutex
	last time.Time // the last fetch's start, under mu
}

func newJWKSCache(cfg Config) *jwksCache {
	return &jwksCache{url: cfg.JWKSURL, client: cfg.HTTPClient, minRefresh: cfg.JWKSMinRefresh,
		timeout: cfg.JWKSTimeout, now: cfg.Now, sem: make(chan struct{}, 1)}
}

func (j *jwksCache) cached(kid string) any {
	if m := j.keys.Load(); m != nil {
		return (*m)[kid]
	}
	return nil
}

// key returns the key kid names, refetching the document when it is not
// cached and the last fetch is at least minRefresh old. The error says why
// there is none.
func (j *jwksCache) key(ctx context.Context, kid string) (any, error) {
	if k := j.cached(kid); k != nil {
		return k, nil
	}
	select {
	case j.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: kid %q not cached, and no time to fetch the JWKS: %w", ErrUnknownKey, kid, ctx.Err())
	}
	defer func() { <-j.sem }()
	if k := j.cached(kid); k != nil { // the fetch we waited for brought it
		return k, nil
	}
	j.mu.Lock()
	now := j.now()
	recent := !j.last.IsZero() && now.Sub(j.last) < j.minRefresh
	if !recent {
		j.last = now
	}
	j.mu.Unlock()
	if recent {
		return nil, fmt.Errorf("%w: kid %q is not in the JWKS (fetched less than %v ago)", ErrUnknownKey, kid, j.minRefresh)
	}
	if err := j.fetch(ctx); err != nil {
		return nil, fmt.Errorf("%w: kid %q is not cached and the JWKS fetch failed: %w", ErrUnknownKey, kid, err)
	}
	if k := j.cached(kid); k != nil {
		return k, nil
	}
	return nil, fmt.Errorf("%w: kid %q is not in the JWKS", ErrUnknownKey, kid)
}

// fetch gets the document and replaces the cache with its keys.
func (j *jwksCache) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch JWKS: HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read JWKS: %w", err)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return err
	}
	j.keys.Store(&keys)
	return nil
}
