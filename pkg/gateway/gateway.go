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
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
//	/              the browser client (Config.Web) and its assets (/app.js, ...)
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	broker  broker.Broker
	hub     *hub
	metrics *metrics

	ctx    context.Context // ends on Close
	cancel context.CancelFunc

	draining atomic.Bool
	nextID   atomic.Uint64
	boot     string // random per process: keeps plain-text ids and guest names unique across restarts and nodes

	health atomic.Pointer[brokerHealth] // the last background check of the broker
	bg     sync.WaitGroup               // the health prober

	mu    sync.Mutex
	conns map[*conn]struct{}
	users map[string]int     // connections per user (after hello), for MaxConnsPerUser
	ips   map[netip.Addr]int // connections per client address, for MaxConnsPerIP
	wg    sync.WaitGroup     // connection handlers
}

// New returns a Gateway and the broker it made with cfg.NewBroker.
func New(cfg Config) (*Gateway, error) {
	cfg.setDefaults()
	if !cfg.DevAuth && len(cfg.JWTSecret) == 0 {
		return nil, errors.New("gateway: set a JWT secret, or enable dev auth")
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:    cfg,
		log:    cfg.Logger.With("node", cfg.NodeID),
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*conn]struct{}),
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
	b, err := cfg.NewBroker(g.hub)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway: broker: %w", err)
	}
	g.broker = b
	g.health.Store(&brokerHealth{err: errors.New("not checked yet")})
	g.bg.Add(1)
	go g.probe()
	return g, nil
}

// NodeID is the node's name.
func (g *Gateway) NodeID() string { return g.cfg.NodeID }

// Broker returns the gateway's broker.
func (g *Gateway) Broker() broker.Broker { return g.broker }

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		g.serveWS(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		fmt.Fprintln(w, "ok")
	case "/readyz":
		// From state the node holds: never a call to Redis, so a frozen
		// Redis cannot make the check time out.
		if g.draining.Load() {
			http.Error(w, "not ready: "+ErrDraining.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	case "/healthz/deep":
		g.serveDeepHealth(w)
	case "/metrics":
		if g.cfg.PrivateMetrics {
			http.NotFound(w, r)
			return
		}
		g.metrics.handler().ServeHTTP(w, r)
	default:
		// Everything else is the browser client (Config.Web): the page at
		// "/" and its assets; it answers 404 for paths it does not have.
		g.cfg.Web.ServeHTTP(w, r)
	}
}

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

func (g *Gateway) track(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	// Draining too: Drain sets draining before it takes its snapshot of
	// conns under mu, so a connection that passed serveWS's check just
	// before the drain began is either in the snapshot or refused here,
	// never missed.
	if g.ctx.Err() != nil || g.draining.Load() {
		return false
	}
	g.conns[c] = struct{}{}
	g.wg.Add(1)
	g.metrics.connections.Inc()
	return true
}

func (g *Gateway) untrack(c *conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.releaseLocked(c)
	g.mu.Unlock()
	g.metrics.connections.Dec()
	g.wg.Done()
}

// Drain takes the node out of service: Ready turns false at once, then every
// connection is closed with 1012 (service restart), the closes spread over
// DrainSpread so clients do not reconnect all at once. Drain returns when
// every connection has ended or ctx is done.
func (g *Gateway) Drain(ctx context.Context) error {
	g.draining.Store(true)
	g.metrics.draining.Set(1)
	g.mu.Lock()
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	g.log.Info("draining", "connections", len(conns), "spread", g.cfg.DrainSpread)
	var step time.Duration
	if len(conns) > 1 {
		step = g.cfg.DrainSpread / time.Duration(len(conns))
	}
	for i, c := range conns {
		if i > 0 && step > 0 {
			t := time.NewTimer(step)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		c.closeWith(1012, "service restart: reconnect and resume", true)
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}

// Close ends every connection at once, closes the broker and waits for
// the hub's history repairs.
func (g *Gateway) Close() error {
	g.draining.Store(true)
	g.mu.Lock()
	g.cancel()
	for c := range g.conns {
		c.cancel()
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
