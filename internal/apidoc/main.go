// Command apidoc renders docs/api.md from docs/openapi.yaml: per
// endpoint its method and path, summary, description, who may call it,
// its parameters, its request body's fields, its answers and an example.
//
//	go run ./internal/apidoc -o docs/api.md
//
// Without -o it writes to standard output. A test fails when docs/api.md
// differs from a fresh render.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

func main() {
	in := flag.String("i", "docs/openapi.yaml", "the OpenAPI document")
	out := flag.String("o", "", "write here (default: standard output)")
	flag.Parse()
	b, err := renderFile(*in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "apidoc: %v\n", err)
		os.Exit(1)
	}
	if *out == "" {
		_, err = os.Stdout.Write(b)
	} else {
		err = os.WriteFile(*out, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "apidoc: %v\n", err)
		os.Exit(1)
	}
}

// renderFile loads, validates and renders the document at path.
func renderFile(path string) ([]byte, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var buf bytes.Buffer
	render(&buf, doc)
	return buf.Bytes(), nil
}

// methodOrder is the order of an endpoint's methods in the render.
var methodOrder = []string{"GET", "POST", "PUT", "DELETE"}

// endpoint is one operation.
type endpoint struct {
	method, path string
	op           *openapi3.Operation
	params       openapi3.Parameters // the path item's and the operation's
}

// render writes the Markdown of doc to w: an index by tag, then each
// endpoint.
func render(w io.Writer, doc *openapi3.T) {
	fmt.Fprintf(w, "# %s\n\n", doc.Info.Title)
	fmt.Fprintf(w, "<!-- Rendered from openapi.yaml by `go run ./internal/apidoc -o docs/api.md`: edit the YAML, not this file. -->\n\n")
	fmt.Fprintf(w, "%s\n", strings.TrimSpace(doc.Info.Description))
	fmt.Fprintf(w, "\nThe machine-readable document is [openapi.yaml](openapi.yaml) (OpenAPI %s).\n", doc.OpenAPI)

	byTag := map[string][]endpoint{}
	paths := doc.Paths.InMatchingOrder()
	sort.Strings(paths)
	for _, p := range paths {
		item := doc.Paths.Value(p)
		for _, m := range methodOrder {
			op := item.GetOperation(m)
			if op == nil {
				continue
			}
			tag := "other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			params := append(slices.Clone(item.Parameters), op.Parameters...)
			byTag[tag] = append(byTag[tag], endpoint{method: m, path: p, op: op, params: params})
		}
	}
	var tags []*openapi3.Tag
	for _, t := range doc.Tags {
		if len(byTag[t.Name]) > 0 {
			tags = append(tags, t)
		}
	}
	fmt.Fprintf(w, "\n## Endpoints\n\n")
	for _, t := range tags {
		fmt.Fprintf(w, "- %s\n", t.Description)
		for _, e := range byTag[t.Name] {
			fmt.Fprintf(w, "  - [`%s %s`](#%s): %s\n", e.method, e.path, anchor(e), e.op.Summary)
		}
	}
	for _, t := range tags {
		for _, e := range byTag[t.Name] {
			renderEndpoint(w, doc, e)
		}
	}
}

// anchor is an endpoint's heading anchor: its operation id, in lower case.
func anchor(e endpoint) string { return strings.ToLower(e.op.OperationID) }

func renderEndpoint(w io.Writer, doc *openapi3.T, e endpoint) {
	op := e.op
	fmt.Fprintf(w, "\n<a id=\"%s\"></a>\n\n## `%s %s`\n\n", anchor(e), e.method, e.path)
	fmt.Fprintf(w, "**%s.**\n", op.Summary)
	if d := strings.TrimSpace(op.Description); d != "" {
		fmt.Fprintf(w, "\n%s\n", d)
	}
	fmt.Fprintf(w, "\n**Callers:** %s.\n", callers(doc, op))

	if len(e.params) > 0 {
		fmt.Fprintf(w, "\n| parameter | in | type | required | description |\n|---|---|---|---|---|\n")
		for _, pr := range e.params {
			p := pr.Value
			fmt.Fprintf(w, "| `%s` | %s | %s | %s | %s |\n", p.Name, p.In, typeOf(p.Schema), yesNo(p.Required), cell(p.Description))
		}
	}

	if rb := op.RequestBody; rb != nil && rb.Value != nil {
		body := rb.Value
		for _, ct := range sortedKeys(body.Content) {
			mt := body.Content[ct]
			opt := ""
			if !body.Required {
				opt = ", optional"
			}
			fmt.Fprintf(w, "\n**Request body** (`%s`%s):\n", ct, opt)
			renderFields(w, mt.Schema)
			if mt.Example != nil {
				fmt.Fprintf(w, "\nExample:\n\n```json\n%s\n```\n", jsonText(mt.Example))
			}
		}
	}

	fmt.Fprintf(w, "\n**Answers:**\n\n| status | meaning |\n|---|---|\n")
	codes := sortedKeys(op.Responses.Map())
	for _, code := range codes {
		r := op.Responses.Value(code).Value
		desc := ""
		if r.Description != nil {
			desc = *r.Description
		}
		fmt.Fprintf(w, "| %s | %s |\n", code, cell(desc))
	}
	for _, code := range codes {
		r := op.Responses.Value(code).Value
		if !strings.HasPrefix(code, "2") {
			continue
		}
		for _, ct := range sortedKeys(r.Content) {
			mt := r.Content[ct]
			if mt.Example == nil {
				continue
			}
			if s, ok := mt.Example.(string); ok {
				fmt.Fprintf(w, "\nExample answer (%s, `%s`):\n\n```\n%s\n```\n", code, ct, strings.TrimRight(s, "\n"))
			} else {
				fmt.Fprintf(w, "\nExample answer (%s):\n\n```json\n%s\n```\n", code, jsonText(mt.Example))
			}
		}
	}
}

// callers says who may call op, from its security requirements.
func callers(doc *openapi3.T, op *openapi3.Operation) string {
	if op.Security == nil {
		return "anyone"
	}
	var who []string
	for _, req := range *op.Security {
		for name := range req {
			switch name {
			case "apiKey":
				who = append(who, "backends (API key)")
			case "userToken":
				who = append(who, "users (token)")
			case "queryToken":
				who = append(who, "users (`?token=`)")
			default:
				who = append(who, name)
			}
		}
	}
	return strings.Join(who, ", ")
}

// renderFields writes a table of an object schema's fields.
func renderFields(w io.Writer, ref *openapi3.SchemaRef) {
	if ref == nil || ref.Value == nil {
		return
	}
	s := ref.Value
	fmt.Fprintf(w, "\n| field | type | required | description |\n|---|---|---|---|\n")
	for _, name := range sortedKeys(s.Properties) {
		p := s.Properties[name]
		fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", name, typeOf(p), yesNo(slices.Contains(s.Required, name)), cell(describe(p)))
	}
}

// describe is a schema's description with its limits.
func describe(ref *openapi3.SchemaRef) string {
	s := ref.Value
	var parts []string
	if s.Description != "" {
		parts = append(parts, strings.TrimSuffix(s.Description, "."))
	}
	if len(s.Enum) > 0 {
		var vs []string
		for _, v := range s.Enum {
			vs = append(vs, fmt.Sprintf("`%v`", v))
		}
		parts = append(parts, "one of "+strings.Join(vs, ", "))
	}
	if s.Default != nil {
		parts = append(parts, fmt.Sprintf("default `%v`", s.Default))
	}
	if s.Pattern != "" {
		parts = append(parts, fmt.Sprintf("pattern `%s`", s.Pattern))
	}
	if s.MinLength > 0 {
		parts = append(parts, fmt.Sprintf("at least %d characters", s.MinLength))
	}
	if s.MaxLength != nil {
		parts = append(parts, fmt.Sprintf("at most %d bytes", *s.MaxLength))
	}
	if s.MinItems > 0 {
		parts = append(parts, fmt.Sprintf("at least %d", s.MinItems))
	}
	if s.MaxItems != nil {
		parts = append(parts, fmt.Sprintf("at most %d", *s.MaxItems))
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, "; ") + "."
}

// typeOf names a schema's type: "string", "array of string", or the
// schema's name.
func typeOf(ref *openapi3.SchemaRef) string {
	if ref == nil || ref.Value == nil {
		return ""
	}
	s := ref.Value
	if s.Type.Is("array") && s.Items != nil {
		return "array of " + typeOf(s.Items)
	}
	if s.Type.Is("object") && ref.Ref != "" {
		return ref.Ref[strings.LastIndex(ref.Ref, "/")+1:]
	}
	if s.Type != nil && len(*s.Type) > 0 {
		return (*s.Type)[0]
	}
	return "any"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// cell makes text fit a table cell: one line, pipes escaped.
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

// jsonText is v as indented JSON.
func jsonText(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
