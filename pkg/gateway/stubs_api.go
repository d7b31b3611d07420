package gateway

import "net/http"

// Temporary: each handler moves to its own file as it is written.

func notYet(w http.ResponseWriter, r *http.Request) {
	writeError(w, &opError{"internal", "not implemented yet"})
}

func (g *Gateway) apiPublish(w http.ResponseWriter, r *http.Request)      { notYet(w, r) }
func (g *Gateway) apiBroadcast(w http.ResponseWriter, r *http.Request)    { notYet(w, r) }
func (g *Gateway) apiPresence(w http.ResponseWriter, r *http.Request)     { notYet(w, r) }
func (g *Gateway) apiCreateRoom(w http.ResponseWriter, r *http.Request)   { notYet(w, r) }
func (g *Gateway) apiAddMember(w http.ResponseWriter, r *http.Request)    { notYet(w, r) }
func (g *Gateway) apiRemoveMember(w http.ResponseWriter, r *http.Request) { notYet(w, r) }
func (g *Gateway) apiUserRooms(w http.ResponseWriter, r *http.Request)    { notYet(w, r) }
func (g *Gateway) apiDisconnect(w http.ResponseWriter, r *http.Request)   { notYet(w, r) }
func (g *Gateway) serveMessages(w http.ResponseWriter, r *http.Request)   { notYet(w, r) }
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request)        { notYet(w, r) }
