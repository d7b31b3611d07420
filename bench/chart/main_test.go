package main

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSVGWellFormedWithSeries(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "s.json")
	summary := `{"stamp":"20261122T000000Z","machine":{"cpu":"Test <CPU> & co","cores":2},
	"fanout":{"members":2000,"max_deliveries_per_sec":40000,"steps":[
		{"rate":5,"delivered_per_sec":10000,"p50":1.5,"p99":4,"ok":true},
		{"rate":20,"delivered_per_sec":40000,"p50":3,"p99":40,"ok":true},
		{"rate":40,"delivered_per_sec":50000,"p50":90,"p99":900,"ok":false}]},
	"raw":{"members":2000,"max_deliveries_per_sec":80000,"steps":[
		{"rate":5,"delivered_per_sec":10000,"p50":0.4,"p99":2,"ok":true},
		{"rate":40,"delivered_per_sec":80000,"p50":2,"p99":30,"ok":true}]}}`
	if err := os.WriteFile(in, []byte(summary), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "c.svg")
	if err := run(in, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	svg := string(b)
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		if _, err := d.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, svg)
		}
	}
	for _, want := range []string{`<svg xmlns="http://www.w3.org/2000/svg"`, `data-name="gateway p50"`, `data-name="gateway p99"`,
		`data-name="raw ceiling p50"`, `data-name="raw ceiling p99"`, "p99 limit 100 ms", "40,000 deliv./s", "&lt;CPU&gt; &amp; co"} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 4 {
		t.Errorf("%d polylines, want 4", n)
	}
	if n := strings.Count(svg, "<circle"); n != 10 {
		t.Errorf("%d markers, want 10", n)
	}
}

func TestMissingInput(t *testing.T) {
	if err := run("", ""); err == nil {
		t.Error("no -in: no error")
	}
	if err := run(filepath.Join(t.TempDir(), "nope.json"), ""); err == nil {
		t.Error("missing file: no error")
	}
}
