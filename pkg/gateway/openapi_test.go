package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// openapiPath is the API's document, from this package's directory.
const openapiPath = "../../docs/openapi.yaml"

// openapi is the document and its router, loaded once for every test.
var openapi struct {
	once   sync.Once
	doc    *openapi3.T
	router routers.Router
	err    error
}

// loadOpenAPI loads and validates docs/openapi.yaml (once).
func loadOpenAPI(t *testing.T) (*openapi3.T, routers.Router) {
	t.Helper()
	openapi.once.Do(func() {
		doc, err := openapi3.NewLoader().LoadFromFile(openapiPath)
		if err == nil {
			err = doc.Validate(context.Background())
		}
		if err == nil {
			openapi.router, err = gorillamux.NewRouter(doc)
		}
		openapi.doc, openapi.err = doc, err
	})
	if openapi.err != nil {
		t.Fatalf("%s: %v", openapiPath, openapi.err)
	}
	return openapi.doc, openapi.router
}

// checkOpenAPI checks one exchange with the HTTP API against
// docs/openapi.yaml: req (its body readable again) and the answer resp
// with its body. A request the document takes must get an answer the
// document describes, status included; one it does not take (a bad
// room name, a missing field) must get an error. A path or method that
// is no operation must get a JSON 404 or 405. For text/event-stream
// answers only the status and the content type are checked (body may be
// nil).
func checkOpenAPI(t *testing.T, req *http.Request, resp *http.Response, body []byte) {
	t.Helper()
	_, router := loadOpenAPI(t)
	for _, p := range openAPIProblems(router, req, resp, body) {
		t.Errorf("openapi: %s", p)
	}
}

// openAPIProblems lists how an exchange departs from the document (see
// checkOpenAPI).
func openAPIProblems(router routers.Router, req *http.Request, resp *http.Response, body []byte) []string {
	var problems []string
	route, params, err := router.FindRoute(req)
	if err != nil {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			problems = append(problems, fmt.Sprintf("%s %s is no operation of the document (%v), yet answered %d", req.Method, req.URL.Path, err, resp.StatusCode))
		}
		var e struct{ Code, Message string }
		if json.Unmarshal(body, &e) != nil || e.Code == "" || e.Message == "" {
			problems = append(problems, fmt.Sprintf("%s %s answered %d without a JSON error: %s", req.Method, req.URL.Path, resp.StatusCode, body))
		}
		return problems
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{
		Request:    req,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	if reqErr != nil && resp.StatusCode < 400 {
		problems = append(problems, fmt.Sprintf("%s %s: the document refuses the request (%v), yet it was answered %d", req.Method, req.URL, reqErr, resp.StatusCode))
	}
	stream := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: stream},
	}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		problems = append(problems, fmt.Sprintf("%s %s answered %d %s: not as documented: %v", req.Method, req.URL.Path, resp.StatusCode, bytes.TrimSpace(body), err))
	}
	return problems
}

// TestOpenAPICheckFindsProblems: the check is not blind. Answers the
// document does not describe, and a success to a request it refuses,
// are found.
func TestOpenAPICheckFindsProblems(t *testing.T) {
	_, router := loadOpenAPI(t)
	jsonResp := func(status int, body string) (*http.Response, []byte) {
		h := http.Header{"Content-Type": {"application/json"}}
		return &http.Response{StatusCode: status, Header: h}, []byte(body)
	}
	post := func(path, body string) *http.Request {
		r, _ := http.NewRequest("POST", "http://127.0.0.1"+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer x")
		return r
	}
	ack := `{"room":"general","id":"m1","seq":1,"epoch":"e","ts":"2026-11-22T10:00:00.000Z"}`
	for _, c := range []struct {
		name         string
		req          *http.Request
		status       int
		body         string
		wantProblems bool
	}{
		{"documented", post("/v1/rooms/general/messages", `{"id":"m1","body":"hi"}`), 200, ack, false},
		{"undocumented status", post("/v1/rooms/general/messages", `{"id":"m1","body":"hi"}`), 418, `{"code":"internal","message":"x"}`, true},
		{"ack without seq", post("/v1/rooms/general/messages", `{"id":"m1","body":"hi"}`), 200, `{"room":"general","id":"m1","epoch":"e","ts":"t"}`, true},
		{"unknown error code", post("/v1/rooms/general/messages", `{"id":"m1","body":"hi"}`), 400, `{"code":"oops","message":"x"}`, true},
		{"success to a refused request", post("/v1/rooms/general/messages", `{"id":"m 1","body":"hi"}`), 200, ack, true},
		{"no such operation", post("/v1/nothing", `{}`), 200, `{}`, true},
		{"no such operation, 404", post("/v1/nothing", `{}`), 404, `{"code":"not_found","message":"x"}`, false},
	} {
		resp, body := jsonResp(c.status, c.body)
		if got := openAPIProblems(router, c.req, resp, body); (len(got) > 0) != c.wantProblems {
			t.Errorf("%s: problems %q, want some: %v", c.name, got, c.wantProblems)
		}
	}
}

// routePattern finds the /v1/ routes in routes.go.
var routePattern = regexp.MustCompile(`HandleFunc\("(GET|POST|PUT|DELETE) (/v1/[^"]*)"`)

// TestOpenAPIMatchesRoutes: every /v1/ route of routes.go is an operation
// of docs/openapi.yaml, and every operation is a route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	doc, _ := loadOpenAPI(t)
	src, err := os.ReadFile("routes.go")
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, m := range routePattern.FindAllStringSubmatch(string(src), -1) {
		routes = append(routes, m[1]+" "+m[2])
	}
	if len(routes) < 13 {
		t.Fatalf("found %d routes in routes.go: %v", len(routes), routes)
	}
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	slices.Sort(routes)
	slices.Sort(ops)
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("route %s is not in %s", r, openapiPath)
		}
	}
	for _, o := range ops {
		if !slices.Contains(routes, o) {
			t.Errorf("%s documents %s, which routes.go does not have", openapiPath, o)
		}
	}
}
