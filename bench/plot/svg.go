package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The charts are SVG written by hand: a white background (GitHub's dark
// theme shows an <img> on its own background, so a transparent chart
// would put dark text on dark), system fonts, and colours that stay apart
// for colour-blind readers (Okabe and Ito's blue and vermillion).
const (
	colorBeacon = "#0072B2"
	colorGokit  = "#D55E00"
	colorText   = "#1f2328"
	colorMuted  = "#59636e"
	colorAxis   = "#59636e"
	colorGrid   = "#e6e8eb"
	fontFamily  = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif"
)

// Point is one value of a series. A point with Missing set has no value
// (the size failed, or was not run): it is left out of the line, which
// breaks there, and the chart says why at its x.
type Point struct {
	X, Y    float64
	Missing string
}

// Series is one line of a panel.
type Series struct {
	Name   string
	Color  string
	Dash   string // stroke-dasharray, "" for a solid line
	Square bool   // square markers instead of round ones
	Step   bool   // a step line: each point holds its Y until the next X (bins)
	StepW  float64
	Points []Point
}

// Target is a horizontal reference line (a target the issue sets).
type Target struct {
	Y     float64
	Label string
}

// Panel is one plot area with its own axes.
type Panel struct {
	Title          string
	XLabel, YLabel string
	LogX, LogY     bool
	XTicks         []float64 // explicit x ticks (the measured sizes), or nil
	YMin, YMax     float64   // forced y range when YMax > YMin
	Series         []Series
	Targets        []Target
}

// Figure is a titled chart of one or more panels side by side, with one
// legend for all of them.
type Figure struct {
	Title, Subtitle string
	Width, Height   int
	Panels          []Panel
}

type svgWriter struct{ bytes.Buffer }

func (w *svgWriter) f(format string, a ...any) { fmt.Fprintf(&w.Buffer, format, a...) }

// esc escapes text for XML character data and attribute values.
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '&':
			b.WriteString("&amp;")
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		default:
			if r < 0x20 && r != '\t' && r != '\n' || r == 0xFFFD || r == 0xFFFE || r == 0xFFFF {
				continue // not allowed in XML 1.0
			}
			b.WriteRune(r)
		}
	}
	return b.String()
}

// textWidth estimates the width of s at size px in a sans-serif font: the
// legend and labels are placed with it, so a generous figure is enough.
func textWidth(s string, size float64) float64 {
	return float64(len([]rune(s))) * size * 0.56
}

func (w *svgWriter) header(width, height int, title string) {
	w.f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" font-family="%s">`+"\n",
		width, height, width, height, esc(fontFamily))
	w.f("<title>%s</title>\n", esc(title))
	w.f(`<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
}

func (w *svgWriter) text(x, y float64, size float64, anchor, fill, weight, s string) {
	extra := ""
	if weight != "" {
		extra = ` font-weight="` + weight + `"`
	}
	w.f(`<text x="%s" y="%s" font-size="%s" text-anchor="%s" fill="%s"%s>%s</text>`+"\n",
		num(x), num(y), num(size), anchor, fill, extra, esc(s))
}

// num formats a coordinate with at most two decimals.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

// scale maps data to pixels on one axis.
type scale struct {
	lo, hi   float64 // data domain
	p0, p1   float64 // pixel range
	log      bool
	ticks    []float64
	minorLog []float64
}

func (s scale) px(v float64) float64 {
	a, b, x := s.lo, s.hi, v
	if s.log {
		a, b, x = math.Log10(a), math.Log10(b), math.Log10(v)
	}
	if b == a {
		return (s.p0 + s.p1) / 2
	}
	return s.p0 + (x-a)/(b-a)*(s.p1-s.p0)
}

// niceStep is a 1, 2 or 5 times a power of ten near span/target.
func niceStep(span float64, target int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(target)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// linearScale covers [0 or lo, hi] with nice ticks.
func linearScale(lo, hi float64, p0, p1 float64, headroom bool) scale {
	if lo > 0 {
		lo = 0 // counts and costs start at zero, so bars and lines compare honestly
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep(hi-lo, 5)
	top := math.Ceil(hi/step-1e-9) * step
	if headroom && top < hi*1.04 { // room above the highest point for its marker
		top += step
	}
	bottom := math.Floor(lo/step) * step
	s := scale{lo: bottom, hi: top, p0: p0, p1: p1}
	for v := bottom; v <= top+step/2 && len(s.ticks) < 50; v += step {
		s.ticks = append(s.ticks, math.Round(v/step)*step)
	}
	return s
}

// logScale covers [lo, hi] (both > 0) with whole decades, ticks at 1, 2
// and 5 times a power of ten when the span is short.
func logScale(lo, hi float64, p0, p1 float64) scale {
	if lo <= 0 {
		lo = hi / 10
	}
	if hi <= lo {
		hi = lo * 10
	}
	// The domain ends on a 1, 2 or 5 times a power of ten just outside
	// the values, so the data fill the panel.
	bottom, top := niceBelow(lo/1.15), niceAbove(hi*1.15)
	a := math.Floor(math.Log10(bottom))
	b := math.Ceil(math.Log10(top))
	s := scale{lo: bottom, hi: top, p0: p0, p1: p1, log: true}
	mults := []float64{1, 2, 5}
	if b-a > 4 {
		mults = []float64{1}
	}
	for e := a; e <= b && len(s.ticks) < 50; e++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, e)
			if v > s.hi*1.0001 {
				break
			}
			if v < s.lo*0.9999 {
				continue
			}
			if containsF(mults, m) {
				s.ticks = append(s.ticks, v)
			} else {
				s.minorLog = append(s.minorLog, v)
			}
		}
	}
	return s
}

// niceAbove is the least 1, 2 or 5 times a power of ten at or above v > 0.
func niceAbove(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v*0.9999 {
			return m * p
		}
	}
	return 10 * p
}

// niceBelow is the greatest 1, 2 or 5 times a power of ten at or below v > 0.
func niceBelow(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if m*p <= v*1.0001 {
			return m * p
		}
	}
	return p
}

// finite reports whether v is a number a chart can place (not NaN, not
// infinite, and far enough from the float64 limits for the scale's
// padding).
func finite(v float64) bool { return !math.IsNaN(v) && math.Abs(v) < 1e300 }

func containsF(xs []float64, v float64) bool {
	for _, x := range xs {
		if x == v {
			return true
		}
	}
	return false
}

// fmtNum formats a value for a tick or a table: thousands separated,
// at most three significant decimals below 10.
func fmtNum(v float64) string {
	if v == 0 {
		return "0"
	}
	a := math.Abs(v)
	var s string
	switch {
	case a >= 100:
		s = strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	case a >= 10:
		s = strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	default:
		s = strconv.FormatFloat(v, 'g', 3, 64)
	}
	if strings.Contains(s, ".") && !strings.ContainsAny(s, "e") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return groupThousands(s)
}

// groupThousands puts commas into the integer part of a decimal number.
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if len(intPart) <= 3 || strings.ContainsAny(intPart, "e") {
		return sign + s
	}
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if hasFrac {
		b.WriteString("." + frac)
	}
	return sign + b.String()
}

// SVG renders the figure. It never fails: a panel without any value draws
// its axes and says "no data".
func (fig Figure) SVG() []byte {
	w := &svgWriter{}
	width, height := fig.Width, fig.Height
	if width <= 0 {
		width = 760
	}
	if height <= 0 {
		height = 420
	}
	w.header(width, height, fig.Title)
	w.text(16, 26, 17, "start", colorText, "600", fig.Title)
	y := 26.0
	if fig.Subtitle != "" {
		y += 19
		w.text(16, y, 12.5, "start", colorMuted, "", fig.Subtitle)
	}

	// Legend: one entry per series name, in order of first appearance.
	var legend []Series
	seen := map[string]bool{}
	for _, p := range fig.Panels {
		for _, s := range p.Series {
			if !seen[s.Name] {
				seen[s.Name] = true
				legend = append(legend, s)
			}
		}
	}
	lx, ly := 16.0, y+22
	w.f("<g class=\"legend\">\n")
	for _, s := range legend {
		ew := 34 + textWidth(s.Name, 12.5) + 18
		if lx+ew > float64(width)-10 && lx > 16 {
			lx, ly = 16, ly+18
		}
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2.2"%s/>`+"\n",
			num(lx), num(ly-4), num(lx+26), num(ly-4), s.Color, dashAttr(s.Dash))
		if !s.Step {
			marker(w, lx+13, ly-4, s)
		}
		w.text(lx+32, ly, 12.5, "start", colorText, "", s.Name)
		lx += ew
	}
	w.f("</g>\n")

	top := ly + 22
	n := len(fig.Panels)
	if n == 0 {
		n = 1
	}
	left, right, bottom := 16.0, float64(width)-16, float64(height)-14
	gap := 24.0
	pw := (right - left - gap*float64(n-1)) / float64(n)
	for i, p := range fig.Panels {
		x0 := left + float64(i)*(pw+gap)
		drawPanel(w, p, x0, top, x0+pw, bottom)
	}
	w.f("</svg>\n")
	return w.Bytes()
}

func dashAttr(d string) string {
	if d == "" {
		return ""
	}
	return ` stroke-dasharray="` + d + `"`
}

func marker(w *svgWriter, x, y float64, s Series) {
	if s.Square {
		w.f(`<rect x="%s" y="%s" width="7" height="7" fill="#ffffff" stroke="%s" stroke-width="2"/>`+"\n", num(x-3.5), num(y-3.5), s.Color)
		return
	}
	w.f(`<circle cx="%s" cy="%s" r="3.8" fill="%s" stroke="#ffffff" stroke-width="1"/>`+"\n", num(x), num(y), s.Color)
}

// drawPanel draws one panel inside the box (x0, y0)–(x1, y1), labels
// included.
func drawPanel(w *svgWriter, p Panel, x0, y0, x1, y1 float64) {
	if p.Title != "" {
		w.text((x0+x1)/2, y0+2, 13, "middle", colorText, "600", p.Title)
		y0 += 14
	}
	// Plot area: room on the left for y tick labels and the y label,
	// below for x tick labels and the x label.
	px0, px1 := x0+72, x1-8
	py0, py1 := y0+8, y1-44

	// A value the axes cannot show is missing, not clamped: a point
	// missing for any reason keeps only its x, for its note.
	{
		series := make([]Series, len(p.Series))
		for i, s := range p.Series {
			s.Points = slices.Clone(s.Points)
			for j, pt := range s.Points {
				switch {
				case !finite(pt.X):
					s.Points[j] = Point{X: math.NaN(), Missing: "no value"}
				case pt.Missing != "":
				case !finite(pt.Y):
					s.Points[j].Missing = "no value"
				case p.LogY && pt.Y <= 0 || p.LogX && pt.X <= 0:
					s.Points[j].Missing = "≤ 0, off the log scale"
				}
			}
			series[i] = s
		}
		p.Series = series
	}
	if p.LogX {
		p.XTicks = slices.DeleteFunc(slices.Clone(p.XTicks), func(v float64) bool { return v <= 0 })
	}
	p.XTicks = slices.DeleteFunc(slices.Clone(p.XTicks), func(v float64) bool { return !finite(v) })
	p.Targets = slices.DeleteFunc(slices.Clone(p.Targets), func(t Target) bool { return !finite(t.Y) || p.LogY && t.Y <= 0 })

	// Domains from the values present (targets included, so their line
	// shows).
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if math.IsNaN(pt.X) || p.LogX && pt.X <= 0 {
				continue // its note goes at the left edge
			}
			xlo, xhi = math.Min(xlo, pt.X), math.Max(xhi, pt.X)
			if s.Step {
				xhi = math.Max(xhi, pt.X+s.StepW)
			}
			if pt.Missing == "" {
				ylo, yhi = math.Min(ylo, pt.Y), math.Max(yhi, pt.Y)
			}
		}
	}
	for _, t := range p.Targets {
		ylo, yhi = math.Min(ylo, t.Y), math.Max(yhi, t.Y)
	}
	for _, t := range p.XTicks {
		xlo, xhi = math.Min(xlo, t), math.Max(xhi, t)
	}
	empty := math.IsInf(ylo, 1)
	if math.IsInf(xlo, 1) {
		xlo, xhi = 1, 10
	}
	if empty {
		ylo, yhi = 0, 1
	}
	if p.YMax > p.YMin {
		ylo, yhi = p.YMin, p.YMax
	}

	var xs scale
	if p.LogX {
		// Half a decade of room either side, so end points are not on the frame.
		xs = scale{lo: xlo / 2, hi: xhi * 2, p0: px0, p1: px1, log: true}
		if p.XTicks != nil {
			xs.ticks = p.XTicks
		} else {
			xs.ticks = logScale(xlo, xhi, px0, px1).ticks
		}
	} else {
		xs = linearScale(xlo, xhi, px0, px1, false)
		xs.lo = math.Min(xs.lo, xlo)
		if p.XTicks != nil {
			xs.ticks = p.XTicks
		}
	}
	// A band at the top of the frame says which points are missing and
	// why, a line each, placed at the point's x; the values sit below it.
	band := 0
	hasData := map[float64]bool{}
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if pt.Missing != "" {
				band++
			} else {
				hasData[pt.X] = true
			}
		}
	}
	notesTop := py0
	if band > 0 {
		py0 += float64(band)*15 + 6
	}
	var ys scale
	if p.LogY {
		if ylo <= 0 {
			ylo = yhi / 100
		}
		ys = logScale(ylo, yhi, py1, py0)
	} else {
		ys = linearScale(ylo, yhi, py1, py0, true)
	}

	// Grid and y ticks.
	w.f("<g class=\"axes\">\n")
	for _, v := range ys.minorLog {
		if v < ys.lo || v > ys.hi {
			continue
		}
		yy := ys.px(v)
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="0.6"/>`+"\n", num(px0), num(yy), num(px1), num(yy), colorGrid)
	}
	for _, v := range ys.ticks {
		yy := ys.px(v)
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n", num(px0), num(yy), num(px1), num(yy), colorGrid)
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n", num(px0-5), num(yy), num(px0), num(yy), colorAxis)
		w.text(px0-8, yy+4, 11.5, "end", colorMuted, "", fmtNum(v))
	}
	for _, v := range xs.ticks {
		xx := xs.px(v)
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n", num(xx), num(py0), num(xx), num(py1), colorGrid)
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n", num(xx), num(py1), num(xx), num(py1+5), colorAxis)
		w.text(xx, py1+18, 11.5, "middle", colorMuted, "", fmtNum(v))
	}
	// Frame: the two axes.
	w.f(`<path d="M%s %sV%sH%s" fill="none" stroke="%s" stroke-width="1.2"/>`+"\n", num(px0), num(notesTop), num(py1), num(px1), colorAxis)
	w.text((px0+px1)/2, py1+36, 12.5, "middle", colorText, "", p.XLabel)
	w.f(`<text x="%s" y="%s" font-size="12.5" text-anchor="middle" fill="%s" transform="rotate(-90 %s %s)">%s</text>`+"\n",
		num(x0+14), num((py0+py1)/2), colorText, num(x0+14), num((py0+py1)/2), esc(p.YLabel))
	w.f("</g>\n")

	for _, t := range p.Targets {
		yy := ys.px(t.Y)
		w.f(`<g class="target"><line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1.2" stroke-dasharray="2 3"/>`+"\n",
			num(px0), num(yy), num(px1), num(yy), colorMuted)
		w.text(px1-4, yy-5, 11, "end", colorMuted, "", t.Label)
		w.f("</g>\n")
	}

	if empty {
		w.text((px0+px1)/2, (py0+py1)/2, 14, "middle", colorMuted, "", "no data")
	}

	// Series: lines broken at missing points, then markers on top.
	notes := 0                   // missing notes placed so far, a line each
	marked := map[float64]bool{} // x already marked by a vertical line
	for _, s := range p.Series {
		w.f(`<g class="series" data-series="%s">`+"\n", esc(s.Name))
		var seg []string
		flush := func() {
			if len(seg) > 1 {
				w.f(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2.2" stroke-linejoin="round"%s/>`+"\n",
					strings.Join(seg, " "), s.Color, dashAttr(s.Dash))
			}
			seg = seg[:0]
		}
		for i, pt := range s.Points {
			if pt.Missing != "" {
				flush()
				continue
			}
			xx, yy := xs.px(pt.X), ys.px(pt.Y)
			if s.Step {
				end := xs.px(pt.X + s.StepW)
				if i > 0 && s.Points[i-1].Missing == "" && s.Points[i-1].X+s.StepW == pt.X {
					seg = append(seg, num(xx)+","+num(yy))
				} else {
					flush()
					seg = append(seg, num(xx)+","+num(ys.px(math.Max(ys.lo, 0))), num(xx)+","+num(yy))
				}
				seg = append(seg, num(end)+","+num(yy))
				continue
			}
			seg = append(seg, num(xx)+","+num(yy))
		}
		flush()
		for _, pt := range s.Points {
			if pt.Missing != "" {
				xx := px0
				onAxis := finite(pt.X) && !(p.LogX && pt.X <= 0)
				if onAxis {
					xx = xs.px(pt.X)
				}
				yy := notesTop + 12 + float64(notes)*15
				notes++
				note := "× " + s.Name + ": " + pt.Missing
				tw := textWidth(note, 11.5)
				anchor := "middle"
				switch {
				case xx+tw/2 > px1:
					anchor, xx = "end", px1-2
				case xx-tw/2 < px0:
					anchor, xx = "start", px0+4
				}
				w.f(`<g class="missing">`)
				if onAxis && !marked[pt.X] && !hasData[pt.X] {
					marked[pt.X] = true
					w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1" stroke-dasharray="1 3"/>`+"\n",
						num(xs.px(pt.X)), num(py0), num(xs.px(pt.X)), num(py1), colorMuted)
				}
				w.f(`<text x="%s" y="%s" font-size="11.5" text-anchor="%s" fill="%s">%s</text></g>`+"\n",
					num(xx), num(yy), anchor, s.Color, esc(note))
				continue
			}
			if !s.Step {
				marker(w, xs.px(pt.X), ys.px(pt.Y), s)
			}
		}
		w.f("</g>\n")
	}
}

// BarChart is a horizontal bar per label, the value written at its end.
type BarChart struct {
	Title, Subtitle string
	XLabel          string
	Width           int
	Bars            []Bar
	Targets         []Target // vertical reference lines, at Y on the value axis
}

// Bar is one bar; Missing replaces the bar with a note.
type Bar struct {
	Label   string
	Value   float64
	Color   string
	Missing string
}

// SVG renders the bar chart.
func (c BarChart) SVG() []byte {
	w := &svgWriter{}
	width := c.Width
	if width <= 0 {
		width = 760
	}
	rowH := 34.0
	top := 76.0 // room for a target's label above the bars
	if c.Subtitle == "" {
		top = 60
	}
	height := int(top + rowH*float64(len(c.Bars)) + 58)
	w.header(width, height, c.Title)
	w.text(16, 26, 17, "start", colorText, "600", c.Title)
	if c.Subtitle != "" {
		w.text(16, 45, 12.5, "start", colorMuted, "", c.Subtitle)
	}
	labelW := 0.0
	for _, b := range c.Bars {
		labelW = math.Max(labelW, textWidth(b.Label, 12.5))
	}
	px0, px1 := 16+labelW+12, float64(width)-70
	hi := 0.0
	for _, b := range c.Bars {
		if b.Missing == "" {
			hi = math.Max(hi, b.Value)
		}
	}
	for _, t := range c.Targets {
		if finite(t.Y) {
			hi = math.Max(hi, t.Y)
		}
	}
	xs := linearScale(0, hi, px0, px1, true)
	py0, py1 := top, top+rowH*float64(len(c.Bars))
	for _, v := range xs.ticks {
		xx := xs.px(v)
		w.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s"/>`+"\n", num(xx), num(py0), num(xx), num(py1), colorGrid)
		w.text(xx, py1+16, 11.5, "middle", colorMuted, "", fmtNum(v))
	}
	w.f(`<path d="M%s %sV%sH%s" fill="none" stroke="%s" stroke-width="1.2"/>`+"\n", num(px0), num(py0), num(py1), num(px1), colorAxis)
	w.text((px0+px1)/2, py1+36, 12.5, "middle", colorText, "", c.XLabel)
	for i, b := range c.Bars {
		yy := py0 + float64(i)*rowH
		w.f(`<g class="series" data-series="%s">`+"\n", esc(b.Label))
		w.text(px0-8, yy+rowH/2+4, 12.5, "end", colorText, "", b.Label)
		if b.Missing != "" {
			w.text(px0+8, yy+rowH/2+4, 12, "start", b.Color, "", "× "+b.Missing)
		} else {
			x1 := xs.px(b.Value)
			w.f(`<rect x="%s" y="%s" width="%s" height="%s" fill="%s"/>`+"\n", num(px0), num(yy+6), num(math.Max(x1-px0, 1)), num(rowH-12), b.Color)
			w.text(x1+6, yy+rowH/2+4, 12, "start", colorText, "", fmtNum(b.Value))
		}
		w.f("</g>\n")
	}
	for _, t := range c.Targets {
		if !finite(t.Y) || t.Y < 0 {
			continue
		}
		xx := xs.px(t.Y)
		w.f(`<g class="target"><line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1.4" stroke-dasharray="2 3"/>`+"\n",
			num(xx), num(py0-4), num(xx), num(py1), colorText)
		w.text(xx+4, py0-6, 11, "start", colorMuted, "", t.Label)
		w.f("</g>\n")
	}
	w.f("</svg>\n")
	return w.Bytes()
}
