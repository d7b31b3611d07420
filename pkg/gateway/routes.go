package gateway

import (
	"fmt"
	"net/http"
	"strings"
)

// routes returns the gateway's HTTP routes (see Gateway). A WebSocket
// upgrade is the chat on any path (ServeHTTP sends it to serveWS before
// the mux): plain-text clients name their room by the path.
func (g *Gateway) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", g.serveReady)
	mux.HandleFunc("GET /healthz/deep", func(w http.ResponseWriter, r *http.Request) {
		g.serveDeepHealth(w)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.PrivateMetrics {
			http.NotFound(w, r)
			return
		}
		g.metrics.handler().ServeHTTP(w, r)
	})
	// Everything else is the browser client (Config.Web): the page at "/"
	// and its assets; it answers 404 for paths it does not have.
	mux.Handle("/", g.cfg.Web)
	return mux
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isWebSocket(r) {
		g.serveWS(w, r)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// isWebSocket reports whether r asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// serveReady answers /readyz from state the node holds: never a call to
// Redis, so a frozen Redis cannot make the check time out.
func (g *Gateway) serveReady(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		http.Error(w, "not ready: "+ErrDraining.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}
