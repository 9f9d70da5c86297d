package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
)

// checkXML parses svg with encoding/xml to the end and returns the
// data-series names and the text of every <text>, in order.
func checkXML(t testing.TB, svg []byte) (series, texts []string) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(svg))
	depth, root := 0, ""
	inText := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not XML: %v\n%s", err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				root = e.Name.Local
			}
			depth++
			for _, a := range e.Attr {
				if a.Name.Local == "data-series" {
					series = append(series, a.Value)
				}
			}
			inText = e.Name.Local == "text"
			if inText {
				texts = append(texts, "")
			}
		case xml.EndElement:
			depth--
			inText = false
		case xml.CharData:
			if inText {
				texts[len(texts)-1] += string(e)
			}
		}
	}
	if root != "svg" || depth != 0 {
		t.Fatalf("SVG root = %q, depth at end %d; want a closed <svg>", root, depth)
	}
	return series, texts
}

func TestWatchManyCharts(t *testing.T) {
	l := readSample(t)
	for _, m := range wmMetrics {
		t.Run(m.File, func(t *testing.T) {
			fig := wmFigure(l, m)
			series, texts := checkXML(t, fig.SVG())
			want := []string{
				"Beacon, 10 instances per service", "go-kit, 10 instances per service",
				"Beacon, services of one", "go-kit, services of one",
			}
			if !slices.Equal(series, want) {
				t.Errorf("series = %q, want %q", series, want)
			}
			for _, s := range append(want, m.Title, "watched instances (log scale)", "100,000", m.YLabel) {
				if !slices.ContainsFunc(texts, func(x string) bool { return strings.Contains(x, s) }) {
					t.Errorf("no text %q in the chart", s)
				}
			}
			// Beacon failed at 100,000: missing, said so, never zero.
			beacon := fig.Panels[0].Series[0]
			i := slices.IndexFunc(beacon.Points, func(p Point) bool { return p.X == 100000 })
			if i < 0 || beacon.Points[i].Missing != "failed" {
				t.Errorf("Beacon at 100,000 = %+v, want a point missing as failed", beacon.Points)
			}
			if !slices.Contains(texts, "× Beacon, 10 instances per service: failed") {
				t.Errorf("the chart does not say Beacon failed at 100,000: %q", texts)
			}
			if !slices.Contains(texts, "× go-kit, 10 instances per service: not run") {
				t.Errorf("the chart does not say go-kit did not run at 100,000: %q", texts)
			}
		})
	}
}

func TestHerdAndLargeCharts(t *testing.T) {
	f, err := os.Open("testdata/herd.tsv")
	if err != nil {
		t.Fatal(err)
	}
	bins, _, err := ParseHerd(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	series, texts := checkXML(t, herdFigure(groupHerd(bins)).SVG())
	if want := []string{"Beacon", "go-kit", "Beacon", "go-kit"}; !slices.Equal(series, want) {
		t.Errorf("herd series = %q, want %q (a pair per panel)", series, want)
	}
	for _, s := range []string{"agent restarted", "servers restarted", "requests per 500 ms"} {
		if !slices.Contains(texts, s) {
			t.Errorf("no text %q in the herd chart", s)
		}
	}

	c, ok := largeFigure(readSample(t))
	if !ok {
		t.Fatal("largeFigure(sample) found no figures")
	}
	series, texts = checkXML(t, c.SVG())
	if want := []string{"Beacon", "go-kit"}; !slices.Equal(series, want) {
		t.Errorf("large-service bars = %q, want %q", series, want)
	}
	if !slices.Contains(texts, "52.6") || !slices.Contains(texts, "93.5") {
		t.Errorf("bar values not written: %q", texts)
	}
}

// Timelines at the edges of what ParseHerd accepts render as XML.
func TestHerdEdgeTimelines(t *testing.T) {
	for _, in := range []string{
		"beacon\tagent\t0\t0\n",
		"beacon\tagent\t600000\t1099511627776\ngokit\tagent\t0\t1\n",
		"x\ty\t0\t1\nx\tz\t500\t2\nw\ty\t1000\t3\n",
	} {
		bins, _, err := ParseHerd(strings.NewReader(in))
		if err != nil || len(bins) == 0 {
			t.Fatalf("ParseHerd(%q) = %v, %v", in, bins, err)
		}
		svg := herdFigure(groupHerd(bins)).SVG()
		checkXML(t, svg)
		if bytes.Contains(svg, []byte("NaN")) || bytes.Contains(svg, []byte("Inf")) {
			t.Errorf("herd chart of %q holds a NaN or Inf coordinate", in)
		}
	}
}

func TestRenderEdgeCases(t *testing.T) {
	for _, c := range []struct {
		name string
		fig  Figure
		want string
	}{
		{"no series", Figure{Title: "t", Panels: []Panel{{XLabel: "x", YLabel: "y"}}}, "no data"},
		{"only missing", Figure{Title: "t", Panels: []Panel{{LogX: true, LogY: true, Series: []Series{
			{Name: "s", Points: []Point{{X: 1000, Missing: "failed"}}}}}}}, "× s: failed"},
		{"escaping", Figure{Title: `<a & "b">`, Panels: []Panel{{Series: []Series{
			{Name: "x<y & z>'", Points: []Point{{X: 1, Y: 2}, {X: 2, Y: 3}}}}}}}, `<a & "b">`},
		{"one point, log", Figure{Title: "t", Panels: []Panel{{LogX: true, LogY: true, Series: []Series{
			{Name: "s", Points: []Point{{X: 5, Y: 0.003}}}}}}}, "t"},
		{"zero on a log axis", Figure{Title: "t", Panels: []Panel{{LogY: true, Series: []Series{
			{Name: "s", Points: []Point{{X: 1, Y: 0}, {X: 2, Y: 10}}}}}}}, "t"},
		{"no panels", Figure{Title: "t"}, "t"},
	} {
		t.Run(c.name, func(t *testing.T) {
			svg := c.fig.SVG()
			_, texts := checkXML(t, svg)
			if !slices.Contains(texts, c.want) {
				t.Errorf("texts = %q, want %q among them", texts, c.want)
			}
			if bytes.Contains(svg, []byte("NaN")) || bytes.Contains(svg, []byte("Inf")) {
				t.Errorf("SVG holds a NaN or Inf coordinate:\n%s", svg)
			}
		})
	}
}

func TestFmtNum(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0, "0"}, {1000, "1,000"}, {100000, "100,000"}, {1234567, "1,234,567"},
		{582.3, "582"}, {52.6, "52.6"}, {1.05, "1.05"}, {0.5781, "0.578"}, {-2500, "-2,500"}, {20, "20"},
	} {
		if got := fmtNum(c.in); got != c.want {
			t.Errorf("fmtNum(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
