package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/parley-chat/parley/pkg/protocol"
)

// brokerHealth is the outcome of one background check of the broker.
type brokerHealth struct {
	err error     // nil: the broker answered and its subscriptions are live
	at  time.Time // when the check ended
}

// probe is the health prober, owned by the Gateway (g.bg): every
// HealthInterval it checks the broker, bounded by the interval, and keeps
// the outcome for /healthz/deep and the parley_redis_up metric.
func (g *Gateway) probe() {
	defer g.bg.Done()
	t := time.NewTicker(g.cfg.HealthInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(g.ctx, g.cfg.HealthInterval)
		err := g.broker.Ready(ctx)
		cancel()
		if g.ctx.Err() != nil {
			return
		}
		prev := g.health.Swap(&brokerHealth{err: err, at: time.Now()})
		switch {
		case err == nil:
			g.metrics.brokerUp.Set(1)
			if prev.err != nil && !prev.at.IsZero() {
				g.log.Info("message store reachable again")
			}
		default:
			g.metrics.brokerUp.Set(0)
			if prev.err == nil {
				g.log.Warn("message store unreachable: sends answer unavailable until it is back; connections stay open", "err", err)
			}
		}
		select {
		case <-t.C:
		case <-g.ctx.Done():
			return
		}
	}
}

// serveDeepHealth answers /healthz/deep from the last check.
func (g *Gateway) serveDeepHealth(w http.ResponseWriter) {
	h := g.health.Load()
	out := struct {
		Node     string `json:"node"`
		Ready    bool   `json:"ready"`
		Draining bool   `json:"draining"`
		Redis    string `json:"redis"`
		Checked  string `json:"checked,omitempty"`
	}{Node: g.cfg.NodeID, Draining: g.draining.Load(), Redis: "ok"}
	if h.err != nil {
		out.Redis = h.err.Error()
	}
	if !h.at.IsZero() {
		out.Checked = protocol.FormatTime(h.at)
	}
	out.Ready = h.err == nil && !out.Draining
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !out.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(out)
}
