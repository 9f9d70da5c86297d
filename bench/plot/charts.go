package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
)

// wmRow is one size of BenchmarkWatchMany: "inst" (services of 10
// instances) or "single" (services of one), N watched instances.
type wmRow struct {
	Kind string
	N    int
}

func (r wmRow) name(lib string) string {
	return fmt.Sprintf("BenchmarkWatchMany/%s=%d/%s", r.Kind, r.N, lib)
}

func (r wmRow) parent() string { return fmt.Sprintf("BenchmarkWatchMany/%s=%d", r.Kind, r.N) }

// Label is the row as the table says it.
func (r wmRow) Label() string {
	if r.Kind == "single" {
		return fmt.Sprintf("%s services of one", fmtNum(float64(r.N)))
	}
	return fmt.Sprintf("%s instances (%s × 10)", fmtNum(float64(r.N)), fmtNum(float64(r.N/10)))
}

var wmNameRe = regexp.MustCompile(`^BenchmarkWatchMany/(inst|single)=([0-9]+)(/|$)`)

// wmRows is every size BenchmarkWatchMany ran or failed at: services of
// 10 first, then services of one, each by size.
func wmRows(l *BenchLog) []wmRow {
	var rows []wmRow
	add := func(name string) {
		m := wmNameRe.FindStringSubmatch(name)
		if m == nil {
			return
		}
		n, err := strconv.Atoi(m[2])
		if err != nil || n <= 0 {
			return
		}
		r := wmRow{m[1], n}
		if !slices.Contains(rows, r) {
			rows = append(rows, r)
		}
	}
	for _, r := range l.Results {
		add(r.Name)
	}
	for _, f := range l.Failures {
		add(f.Name)
	}
	slices.SortFunc(rows, func(a, b wmRow) int {
		if a.Kind != b.Kind {
			return cmpOrder(a.Kind, b.Kind, "inst", "single")
		}
		return a.N - b.N
	})
	return rows
}

// status is a benchmark's values of unit, or why it has none: "failed"
// (it, or the size it belongs to before any library ran, failed) or "not
// run".
func status(l *BenchLog, name, parent, unit string) ([]float64, string) {
	if v := l.Values(name, unit); len(v) > 0 {
		return v, ""
	}
	if _, ok := l.Failed(name); ok {
		return nil, "failed"
	}
	if l.Ran(name) {
		return nil, "no " + unit
	}
	if _, ok := l.Failed(parent); ok && !l.anyUnder(parent) {
		return nil, "failed"
	}
	return nil, "not run"
}

// anyUnder reports whether a result or a failure exists below prefix.
func (l *BenchLog) anyUnder(prefix string) bool {
	p := prefix + "/"
	for _, r := range l.Results {
		if len(r.Name) > len(p) && r.Name[:len(p)] == p {
			return true
		}
	}
	for _, f := range l.Failures {
		if len(f.Name) > len(p) && f.Name[:len(p)] == p {
			return true
		}
	}
	return false
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// libs are the libraries BenchmarkWatchMany compares, as named in its
// sub-benchmarks and in the charts.
var libs = []struct{ key, name, color string }{
	{"beacon", "Beacon", colorBeacon},
	{"gokit", "go-kit", colorGokit},
}

// wmMetric is one chart of the cost curve.
type wmMetric struct {
	File, Title, YLabel string
	Units               map[string]string // row kind → benchmark unit
	Scale               float64           // multiplies the value (µs → ms)
	LogY                bool
	Targets             []Target
}

var wmMetrics = []wmMetric{
	{
		File: "watchmany-heap.svg", Title: "Heap per watched instance",
		YLabel: "bytes per watched instance", LogY: true,
		Units:   map[string]string{"inst": "B/inst", "single": "B/service"},
		Targets: []Target{{384, "target at 100,000, 10 per service: 384 B"}, {1024, "target, services of one: 1 KiB"}},
	},
	{
		File: "watchmany-conns.svg", Title: "Peak connections to the agent",
		YLabel: "connections (peak)", LogY: true,
		Units:   map[string]string{"inst": "conns", "single": "conns"},
		Targets: []Target{{76, "Beacon's cap: 76"}, {200, "agent's default limit per address: 200"}},
	},
	{
		File: "watchmany-requests.svg", Title: "Idle requests per service per wait period",
		YLabel:  "requests per service per wait",
		Units:   map[string]string{"inst": "req/svc/wait", "single": "req/svc/wait"},
		Targets: []Target{{1.05, "target: 1.05"}},
	},
	{
		File: "watchmany-cpu.svg", Title: "Client CPU per change to the fleet",
		YLabel: "CPU ms per change", LogY: true, Scale: 1e-3,
		Units: map[string]string{"inst": "cpu-us/change", "single": "cpu-us/change"},
	},
	{
		File: "watchmany-first.svg", Title: "Time until every watch has its first snapshot",
		YLabel: "seconds", LogY: true,
		Units:   map[string]string{"inst": "first-s", "single": "first-s"},
		Targets: []Target{{30, "target for 10,000 services: 30 s"}},
	},
}

// wmFigure is one cost-curve chart: a series per library and shape of
// fleet (10 instances per service, solid; one, dashed), against watched
// instances on a log scale. A library with no value at all in a shape has
// no series.
func wmFigure(l *BenchLog, m wmMetric) Figure {
	rows := wmRows(l)
	p := Panel{
		XLabel: "watched instances (log scale)", YLabel: m.YLabel,
		LogX: true, LogY: m.LogY, Targets: m.Targets,
	}
	for _, r := range rows {
		if !slices.Contains(p.XTicks, float64(r.N)) {
			p.XTicks = append(p.XTicks, float64(r.N))
		}
	}
	slices.Sort(p.XTicks)
	for _, kind := range []string{"inst", "single"} {
		for _, lib := range libs {
			s := Series{Color: lib.color}
			if kind == "inst" {
				s.Name = lib.name + ", 10 instances per service"
			} else {
				s.Name, s.Dash, s.Square = lib.name+", services of one", "6 4", true
			}
			values := 0
			for _, r := range rows {
				if r.Kind != kind {
					continue
				}
				v, why := status(l, r.name(lib.key), r.parent(), m.Units[kind])
				if why != "" {
					s.Points = append(s.Points, Point{X: float64(r.N), Missing: why})
					continue
				}
				y := median(v)
				if m.Scale != 0 {
					y *= m.Scale
				}
				s.Points = append(s.Points, Point{X: float64(r.N), Y: y})
				values++
			}
			if values > 0 {
				p.Series = append(p.Series, s)
			}
		}
	}
	return Figure{
		Title:    m.Title,
		Subtitle: "BenchmarkWatchMany: one process, one Consul agent; lower is better; a missing point failed or was not run",
		Panels:   []Panel{p},
	}
}

// herdFigure is the herd: requests per 500 ms bin after a restart, a panel
// per kind of restart, a step line per library.
func herdFigure(groups []herdSeries) Figure {
	var restarts []string
	for _, g := range groups {
		if !slices.Contains(restarts, g.Restart) {
			restarts = append(restarts, g.Restart)
		}
	}
	fig := Figure{
		Title:    "Requests after a restart, per 500 ms",
		Subtitle: "BenchmarkFleet: every cache's requests to the agent, in 500 ms bins, from the moment the restarted part answers again",
		Height:   400,
	}
	var yhi float64
	for _, g := range groups {
		for _, b := range g.Bins {
			yhi = max(yhi, float64(b.Requests))
		}
	}
	for _, r := range restarts {
		xl := "seconds after the agent answers again"
		if r == "servers" {
			xl = "seconds after the servers answer again"
		}
		p := Panel{
			Title:  restartTitle(r),
			XLabel: xl, YLabel: "requests per 500 ms",
			YMin: 0, YMax: yhi,
		}
		for _, g := range groups {
			if g.Restart != r {
				continue
			}
			s := Series{Name: libName(g.Library), Color: libColor(g.Library), Step: true, StepW: herdBinMs / 1000.0}
			for _, b := range g.Bins {
				s.Points = append(s.Points, Point{X: float64(b.TMs) / 1000, Y: float64(b.Requests)})
			}
			p.Series = append(p.Series, s)
		}
		fig.Panels = append(fig.Panels, p)
	}
	if len(fig.Panels) == 2 {
		fig.Width = 900
	}
	return fig
}

func restartTitle(r string) string {
	switch r {
	case "agent":
		return "agent restarted"
	case "servers":
		return "servers restarted"
	}
	return r + " restarted"
}

func libName(key string) string {
	for _, l := range libs {
		if l.key == key {
			return l.name
		}
	}
	return key
}

func libColor(key string) string {
	switch key {
	case "beacon":
		return colorBeacon
	case "gokit":
		return colorGokit
	}
	return colorMuted
}

// largeFigure is BenchmarkLargeService's CPU per change, a bar per
// library (the median of its runs), or false when the log has no
// BenchmarkLargeService line at all.
func largeFigure(l *BenchLog) (BarChart, bool) {
	c := BarChart{
		Title:    "One large service: client CPU per change",
		Subtitle: "BenchmarkLargeService (2,000 instances unless BEACON_LARGE_N says otherwise); lower is better",
		XLabel:   "CPU ms per change (median of the runs)",
	}
	if !l.anyUnder("BenchmarkLargeService") {
		return c, false
	}
	for _, lib := range libs {
		name := "BenchmarkLargeService/" + lib.key
		v, why := status(l, name, "BenchmarkLargeService", "cpu-ms/change")
		b := Bar{Label: lib.name, Color: lib.color, Missing: why}
		if why == "" {
			b.Value = median(v)
		}
		c.Bars = append(c.Bars, b)
	}
	bv, bok := medianOf(l, "BenchmarkLargeService/beacon", "cpu-ms/change")
	gv, gok := medianOf(l, "BenchmarkLargeService/gokit", "cpu-ms/change")
	if gok {
		label := "target for Beacon: ¼ of go-kit"
		if bok && gv > 0 {
			label += fmt.Sprintf(" (Beacon / go-kit: %.2f)", bv/gv)
		}
		c.Targets = []Target{{gv / 4, label}}
	}
	// A chart whose bars all failed still says so: the doc links it.
	return c, true
}

func medianOf(l *BenchLog, name, unit string) (float64, bool) {
	v := l.Values(name, unit)
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}
