// Package web is Parley's browser client: a chat page (index.html, app.js,
// style.css) and the protocol client it is built on (parley.js, an ES module
// other pages may import), embedded in the binary with go:embed. There is no
// build step and nothing is loaded from another origin (no CDN scripts or
// fonts), so the page works on a network without internet access, behind
// any proxy that passes WebSockets.
//
// Every gateway serves it at "/" (see gateway.Config.Web); the page opens a
// WebSocket with subprotocol "parley.v1" to the host that served it.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed index.html app.js parley.js style.css favicon.svg
var files embed.FS

// FS returns the client's files: index.html, app.js, parley.js, style.css
// and favicon.svg, at the root of the file system.
func FS() fs.FS { return files }

// asset is one embedded file, read once.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

var assets = load()

func load() map[string]asset {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	out := map[string]asset{}
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		panic("web: " + err.Error())
	}
	for _, e := range entries {
		b, err := fs.ReadFile(files, e.Name())
		if err != nil {
			panic("web: " + err.Error())
		}
		sum := sha256.Sum256(b)
		out["/"+e.Name()] = asset{
			body:        b,
			contentType: types[path.Ext(e.Name())],
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
	}
	return out
}

// contentSecurityPolicy allows the page to load only its own scripts,
// styles and images and to open WebSockets only to its own host. Message
// text is always inserted as text; this is the second line of defence.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the client: GET or HEAD of "/" (or "/index.html") returns
// the page and "/app.js", "/parley.js", "/style.css", "/favicon.svg" its
// assets; any other path is 404 and any other method 405.
//
// Every response carries an ETag (a hash of the file) and
// "Cache-Control: no-cache": browsers keep a copy but revalidate it on each
// load, which costs a 304 and guarantees that a page and its scripts
// always come from the same release during a rolling update.
// parley.js may be imported by pages of any origin (Access-Control-Allow-Origin: *).
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "/" {
		p = "/index.html"
	}
	a, ok := assets[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if p == "/index.html" {
		h.Set("Content-Security-Policy", contentSecurityPolicy)
	}
	if p == "/parley.js" {
		h.Set("Access-Control-Allow-Origin", "*")
	}
	// ServeContent handles HEAD, Range, Content-Length and, with the ETag
	// set above, If-None-Match (304).
	http.ServeContent(w, r, p, time.Time{}, bytes.NewReader(a.body))
}
