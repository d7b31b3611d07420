package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/broker"
)

// ErrDraining is returned by Ready while the gateway drains.
var ErrDraining = errors.New("gateway draining")

// Gateway is one Parley gateway node. It is an http.Handler serving:
//
//	/ws and any other path with a WebSocket upgrade  the chat (v1 or plain text)
//	/healthz       200 while the process runs
//	/readyz        200 unless the node drains: whether a load balancer should send it
//	               new connections. A broker (Redis) outage does not take the node
//	               out: every node is equally affected, and its clients keep their
//	               connections (sends answer unavailable) until the broker is back.
//	/healthz/deep  the broker's health from the last background check, as JSON:
//	               200 when it passed and the node is not draining, else 503
//	/metrics       Prometheus metrics (unless Config.PrivateMetrics)
//	/v1/...        the HTTP API (routes.go): history and long-poll
//	               (/v1/rooms/{room}/messages), Server-Sent Events
//	               (/v1/rooms/{room}/events, /v1/events), the server API
//	/              the browser client (Config.Web) and its assets (/app.js, ...)
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	broker    broker.Broker
	hub       *hub
	metrics   *metrics
	mux       *http.ServeMux             // the routes (routes.go)
	kinds     kindCache                  // the kinds of created rooms (ops.go)
	presence  presenceState              // what the beat loop knows of other nodes (presence.go)
	chores    chan func(context.Context) // store writes that need not be waited for (chores.go)
	apiLimits apiLimits                  // HTTP callers' rate limits (httpapi.go)
	hooks     *hooks                     // webhooks (webhooks.go, notify.go); nil: off

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	draining atomic.Bool
	nextID   atomic.Uint64
	boot     string // random per process: keeps plain-text ids and guest names unique across restarts and nodes

	health atomic.Pointer[brokerHealth] // the last background check of the broker
	bg     sync.WaitGroup               // the health prober, the beat loop, the chores, the webhooks' goroutines

	mu    sync.Mutex
	conns map[client]struct{}
	users map[string]int     // connections per user (after hello), for MaxConnsPerUser
	ips   map[netip.Addr]int // connections per client address, for MaxConnsPerIP
	wg    sync.WaitGroup     // connection handlers
}

// New returns a Gateway and the broker it made with cfg.NewBroker.
func New(cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if cfg.Auth == nil && len(cfg.JWTSecret) > 0 {
		v, err := auth.New(auth.Config{HMACSecret: cfg.JWTSecret})
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		cfg.Auth = v
	}
	if !cfg.DevAuth && cfg.Auth == nil {
		return nil, errors.New("gateway: set a token verifier (Auth) or a JWT secret, or enable dev auth")
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.NodeID),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[client]struct{}),
		users:  make(map[string]int),
		ips:    make(map[netip.Addr]int),
		boot:   newBootID(),
	}
	m, err := newMetrics(cfg.Registerer, cfg.Gatherer, cfg.NodeID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.metrics = m
	g.hub = newHub(g)
	g.mux = g.routes()
	b, err := cfg.NewBroker(g.hub)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway: broker: %w", err)
	}
	g.broker = b
	if err := g.startWebhooks(); err != nil {
		cancel()
		_ = b.Close()
		return nil, err
	}
	g.health.Store(&brokerHealth{err: errors.New("not checked yet")})
	g.chores = make(chan func(context.Context), choreQueue)
	g.bg.Add(3)
	go g.probe()
	go g.beat()
	go g.runChores()
	return g, nil
}

// NodeID is the node's name.
func (g *Gateway) NodeID() string { return g.cfg.NodeID }

// Broker returns the gateway's broker.
func (g *Gateway) Broker() broker.Broker { return g.broker }

// MetricsHandler serves the gateway's metrics (Config.Gatherer), for an
// embedder that serves them on a private address.
func (g *Gateway) MetricsHandler() http.Handler { return g.metrics.handler() }

// Ready checks, now, that the node is not draining and that its broker
// answers. It waits on the broker; the /readyz and /healthz/deep endpoints
// do not (see Gateway).
func (g *Gateway) Ready(ctx context.Context) error {
	if g.draining.Load() {
		return ErrDraining
	}
	return g.broker.Ready(ctx)
}

// Close ends every connection at once, closes the broker and waits for
// the hub's history repairs.
func (g *Gateway) Close() error {
	g.draining.Store(true)
	g.mu.Lock()
	g.cancel()
	for c := range g.conns {
		c.kill()
	}
	g.mu.Unlock()
	g.wg.Wait()
	g.bg.Wait()
	err := g.broker.Close()
	g.hub.wait() // history repairs: none starts once the broker stops delivering
	return err
}

// newBootID returns 8 random hex digits.
func newBootID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
