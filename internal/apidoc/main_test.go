package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestAPIDocIsFresh: docs/api.md is what the renderer makes of
// docs/openapi.yaml now.
func TestAPIDocIsFresh(t *testing.T) {
	want, err := renderFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatalf("%v; render it: go run ./internal/apidoc -o docs/api.md", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("docs/api.md is not the render of docs/openapi.yaml; regenerate it: go run ./internal/apidoc -o docs/api.md")
	}
}

// TestRenderHasEveryEndpoint: each operation has its heading, its
// answers and an example.
func TestRenderHasEveryEndpoint(t *testing.T) {
	b, err := renderFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, h := range []string{
		"## `POST /v1/rooms/{room}/messages`",
		"## `GET /v1/rooms/{room}/messages`",
		"## `POST /v1/messages`",
		"## `GET /v1/rooms/{room}/presence`",
		"## `POST /v1/rooms`",
		"## `PUT /v1/rooms/{room}/members/{user}`",
		"## `DELETE /v1/rooms/{room}/members/{user}`",
		"## `GET /v1/users/{user}/rooms`",
		"## `POST /v1/users/{user}/disconnect`",
		"## `GET /v1/rooms/{room}/events`",
		"## `GET /v1/events`",
		"## `GET /v1/webhooks/dead`",
		"## `POST /v1/webhooks/dead/replay`",
	} {
		i := strings.Index(md, h)
		if i < 0 {
			t.Errorf("no section %s", h)
			continue
		}
		section := md[i+len(h):]
		if j := strings.Index(section, "\n## "); j >= 0 {
			section = section[:j]
		}
		if !strings.Contains(section, "**Answers:**") || !strings.Contains(section, "Example answer") || !strings.Contains(section, "**Callers:**") {
			t.Errorf("section %s lacks answers, callers or an example", h)
		}
	}
}
