package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/parley-chat/parley/pkg/protocol"
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
	// The HTTP API (httpapi.go): the server API for backends (api.go),
	// Server-Sent Events (sse.go), history and long-poll (poll.go), and
	// the webhook outbox's dead letters (webhooks.go).
	v1 := http.NewServeMux()
	g.apiRoutes(v1)
	mux.Handle("/v1/", g.cors(v1))
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

// apiRoutes adds the endpoints under /v1/ to mux.
func (g *Gateway) apiRoutes(mux *http.ServeMux) {
	// The server API (api.go).
	mux.HandleFunc("POST /v1/rooms/{room}/messages", g.apiPublish)
	mux.HandleFunc("POST /v1/messages", g.apiBroadcast)
	mux.HandleFunc("GET /v1/rooms/{room}/presence", g.apiPresence)
	mux.HandleFunc("POST /v1/rooms", g.apiCreateRoom)
	mux.HandleFunc("PUT /v1/rooms/{room}/members/{user}", g.apiAddMember)
	mux.HandleFunc("DELETE /v1/rooms/{room}/members/{user}", g.apiRemoveMember)
	mux.HandleFunc("GET /v1/users/{user}/rooms", g.apiUserRooms)
	mux.HandleFunc("POST /v1/users/{user}/disconnect", g.apiDisconnect)
	// History and long-poll (poll.go), Server-Sent Events (sse.go).
	mux.HandleFunc("GET /v1/rooms/{room}/messages", g.serveMessages)
	mux.HandleFunc("GET /v1/rooms/{room}/events", g.serveSSE)
	mux.HandleFunc("GET /v1/events", g.serveSSE)
	// The webhook outbox's dead letters (webhooks.go).
	mux.HandleFunc("GET /v1/webhooks/dead", g.apiDeadLetters)
	mux.HandleFunc("POST /v1/webhooks/dead/replay", g.apiReplayDead)
	// Anything else under /v1/ is a JSON 404, or a 405 naming the methods
	// the path takes.
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSON(w, http.StatusMethodNotAllowed, apiError{Code: protocol.CodeBadRequest,
				Message: fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", "))})
			return
		}
		writeError(w, &opError{protocol.CodeNotFound, "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
}

// allowedMethods lists the methods mux has an endpoint for at r's path
// (besides its catch-all "/v1/").
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/v1/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}
