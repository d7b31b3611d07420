// Command chart draws the fan-out chart of a bench/run.sh summary: p50 and
// p99 latency against the publish rate, for the gateway's fan-out steps and
// the raw ceiling's steps on the same axes, as a standalone SVG (standard
// library only).
//
//	go run ./bench/chart -in bench/results/<stamp>.json -out fanout.svg
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
)

// Step is one fan-out step of the summary JSON.
type Step struct {
	Rate            float64 `json:"rate"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	P50             float64 `json:"p50"`
	P99             float64 `json:"p99"`
	OK              bool    `json:"ok"`
}

// Series is a stepped fan-out run.
type Series struct {
	Members int     `json:"members"`
	Max     float64 `json:"max_deliveries_per_sec"`
	Steps   []Step  `json:"steps"`
}

// Summary is the part of the summary JSON the chart uses.
type Summary struct {
	Stamp   string `json:"stamp"`
	Machine struct {
		CPU   string `json:"cpu"`
		Cores int    `json:"cores"`
	} `json:"machine"`
	Fanout Series `json:"fanout"`
	Raw    Series `json:"raw"`
}

func main() {
	in := flag.String("in", "", "summary JSON written by bench/run.sh")
	out := flag.String("out", "", "SVG file to write (default: standard output)")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if in == "" {
		return fmt.Errorf("-in is required")
	}
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	w := io.Writer(os.Stdout)
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	_, err = io.WriteString(w, SVG(&s))
	return err
}

const (
	width, height = 900, 560
	left, right   = 80, 220 // plot margins; the legend sits on the right
	top, bottom   = 60, 70
	yLo, threshMS = 0.1, 100.0
)

// line is one drawn series.
type line struct {
	name, color, dash string
	pts               []Step
	val               func(Step) float64
}

// SVG renders the chart.
func SVG(s *Summary) string {
	lines := []line{
		{"gateway p50", "#1f5fbf", "", s.Fanout.Steps, func(p Step) float64 { return p.P50 }},
		{"gateway p99", "#1f5fbf", "7,4", s.Fanout.Steps, func(p Step) float64 { return p.P99 }},
		{"raw ceiling p50", "#d9730d", "", s.Raw.Steps, func(p Step) float64 { return p.P50 }},
		{"raw ceiling p99", "#d9730d", "7,4", s.Raw.Steps, func(p Step) float64 { return p.P99 }},
	}
	// Axes: log2 publish rate, log10 latency.
	xMin, xMax, yMin, yMax := math.Inf(1), math.Inf(-1), threshMS, 1000.0
	for _, l := range lines {
		for _, p := range l.pts {
			if p.Rate > 0 {
				xMin, xMax = math.Min(xMin, p.Rate), math.Max(xMax, p.Rate)
			}
			if v := l.val(p); v > 0 {
				yMin, yMax = math.Min(yMin, v), math.Max(yMax, v)
			}
		}
	}
	// The y axis starts at the decade below the smallest latency (not below
	// yLo), so the plot is not mostly empty.
	yFloor := math.Max(yLo, math.Pow(10, math.Floor(math.Log10(yMin))))
	if math.IsInf(xMin, 0) {
		xMin, xMax = 1, 2
	}
	if xMax <= xMin {
		xMax = xMin * 2
	}
	lx0, lx1 := math.Log2(xMin), math.Log2(xMax)
	ly0, ly1 := math.Log10(yFloor), math.Ceil(math.Log10(yMax))
	pw, ph := float64(width-left-right), float64(height-top-bottom)
	X := func(r float64) float64 { return left + (math.Log2(r)-lx0)/(lx1-lx0)*pw }
	Y := func(v float64) float64 {
		v = math.Max(v, yFloor)
		return top + ph - (math.Log10(v)-ly0)/(ly1-ly0)*ph
	}

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, sans-serif" font-size="13">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	title := fmt.Sprintf("Fan-out latency vs publish rate, one room of %d members", s.Fanout.Members)
	fmt.Fprintf(&b, `<text x="%d" y="28" font-size="17" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
	sub := fmt.Sprintf("run %s; %s, %d cores; hollow marker = step over the limit", s.Stamp, s.Machine.CPU, s.Machine.Cores)
	fmt.Fprintf(&b, `<text x="%d" y="47" font-size="12" fill="#555">%s</text>`+"\n", left, html.EscapeString(sub))

	// Grid and y labels (decades, plus 2 and 5).
	for e := ly0; e <= ly1; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if math.Log10(v) > ly1+1e-9 {
				continue
			}
			y := Y(v)
			stroke := "#e6e6e6"
			if m == 1 {
				stroke = "#cccccc"
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`+"\n", left, y, width-right, y, stroke)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#333">%s</text>`+"\n", left-6, y+4, fmtNum(v))
		}
	}
	// x ticks at every step rate.
	seen := map[float64]bool{}
	for _, l := range lines {
		for _, p := range l.pts {
			if p.Rate <= 0 || seen[p.Rate] {
				continue
			}
			seen[p.Rate] = true
			x := X(p.Rate)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eeeeee"/>`+"\n", x, top, x, height-bottom)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>`+"\n", x, height-bottom+18, fmtNum(p.Rate))
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#888"/>`+"\n", left, top, pw, ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">publish rate, messages/s (× %d members = deliveries/s offered)</text>`+"\n", left+pw/2, height-bottom+42, s.Fanout.Members)
	fmt.Fprintf(&b, `<text transform="translate(22,%.0f) rotate(-90)" text-anchor="middle">latency, ms (log scale)</text>`+"\n", top+ph/2)

	// The 100 ms limit.
	ty := Y(threshMS)
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#c0392b" stroke-dasharray="2,3" stroke-width="1.5"/>`+"\n", left, ty, width-right, ty)

	// Series.
	for _, l := range lines {
		var pts []string
		for _, p := range l.pts {
			if p.Rate > 0 && l.val(p) > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", X(p.Rate), Y(l.val(p))))
			}
		}
		dash := ""
		if l.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, l.dash)
		}
		fmt.Fprintf(&b, `<g class="series" data-name="%s">`+"\n", html.EscapeString(l.name))
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2.2"%s points="%s"/>`+"\n", l.color, dash, strings.Join(pts, " "))
		}
		for _, p := range l.pts {
			if p.Rate <= 0 || l.val(p) <= 0 {
				continue
			}
			fill := l.color
			if !p.OK {
				fill = "#ffffff"
			}
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s" stroke="%s" stroke-width="1.5"><title>%s: %g msgs/s, %.2f ms, %.0f deliveries/s</title></circle>`+"\n",
				X(p.Rate), Y(l.val(p)), fill, l.color, html.EscapeString(l.name), p.Rate, l.val(p), p.DeliveredPerSec)
		}
		b.WriteString("</g>\n")
	}

	// The limit's label, over the series.
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#c0392b" font-size="12" text-anchor="end" stroke="#ffffff" stroke-width="4" paint-order="stroke">p99 limit 100 ms</text>`+"\n", width-right-6, ty-5)

	// Legend and maxima.
	lx := float64(width - right + 18)
	for i, l := range lines {
		y := float64(top+14) + float64(i)*24
		dash := ""
		if l.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, l.dash)
		}
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2.2"%s/>`+"\n", lx, y, lx+30, y, l.color, dash)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s</text>`+"\n", lx+38, y+4, html.EscapeString(l.name))
	}
	y := float64(top + 14 + 4*24 + 20)
	for _, t := range []string{
		"max sustained (p99 < 100 ms):",
		"gateway " + fmtNum(math.Round(s.Fanout.Max)) + " deliv./s",
		"raw " + fmtNum(math.Round(s.Raw.Max)) + " deliv./s",
	} {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12">%s</text>`+"\n", lx, y, html.EscapeString(t))
		y += 18
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// fmtNum prints v without trailing zeros, with thousands separators for
// large whole numbers.
func fmtNum(v float64) string {
	if v >= 1000 && v == math.Trunc(v) {
		s := fmt.Sprintf("%.0f", v)
		var out []byte
		for i := range len(s) {
			if i > 0 && (len(s)-i)%3 == 0 {
				out = append(out, ',')
			}
			out = append(out, s[i])
		}
		return string(out)
	}
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}
