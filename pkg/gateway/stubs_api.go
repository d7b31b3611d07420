package gateway

import "net/http"

// Temporary: each handler moves to its own file as it is written.

func notYet(w http.ResponseWriter, r *http.Request) {
	writeError(w, &opError{"internal", "not implemented yet"})
}

func (g *Gateway) apiDeadLetters(w http.ResponseWriter, r *http.Request) { notYet(w, r) }
func (g *Gateway) apiReplayDead(w http.ResponseWriter, r *http.Request)  { notYet(w, r) }
