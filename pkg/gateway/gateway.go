package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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
//	/healthz  200 while the process runs
//	/readyz   200 when the broker is reachable and subscribed and the node is not draining
//	/metrics  Prometheus metrics
//	/         the browser client (Config.Web) and its assets (/app.js, ...)
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

	mu    sync.Mutex
	conns map[*conn]struct{}
	wg    sync.WaitGroup // connection handlers
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
	}
	g.metrics = newMetrics(cfg.Registry, cfg.NodeID)
	g.hub = newHub(g)
	b, err := cfg.NewBroker(g.hub)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("gateway: broker: %w", err)
	}
	g.broker = b
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
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := g.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	case "/metrics":
		g.metrics.handler().ServeHTTP(w, r)
	default:
		// Everything else is the browser client (Config.Web): the page at
		// "/" and its assets; it answers 404 for paths it does not have.
		g.cfg.Web.ServeHTTP(w, r)
	}
}

// Ready reports whether the node should receive new connections.
func (g *Gateway) Ready(ctx context.Context) error {
	if g.draining.Load() {
		return ErrDraining
	}
	return g.broker.Ready(ctx)
}

func (g *Gateway) track(c *conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
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
	err := g.broker.Close()
	g.hub.wait() // history repairs: none starts once the broker stops delivering
	return err
}
