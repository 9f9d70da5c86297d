package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Metric is one value-unit pair of a benchmark line.
type Metric struct {
	Value float64
	Unit  string
}

// Result is one benchmark line: its name without the -GOMAXPROCS suffix,
// the iteration count and the metrics in the order printed.
type Result struct {
	Name    string
	Procs   int
	N       int64
	Metrics []Metric
}

// Value is the result's metric in unit, and whether it has one.
func (r Result) Value(unit string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Unit == unit {
			return m.Value, true
		}
	}
	return 0, false
}

// Failure is a "--- FAIL:" (or "--- SKIP:") line and the first message
// under it.
type Failure struct {
	Name    string
	Reason  string
	Skipped bool
}

// Load is a "loaded N instances ... in D" line: the scale fixture's load
// time, logged by the benchmarks and by consultest's TestPopulateScale.
type Load struct {
	Instances int
	Took      time.Duration
}

// BenchLog is what ParseBench understood of a go test -bench output.
type BenchLog struct {
	CPU      string   // the "cpu:" header, if any
	LoadAvgs []string // "loadavg <when>: ..." lines (the Makefile writes them)
	Results  []Result
	Failures []Failure
	Loads    []Load
}

// Values is every value of unit reported by benchmark name, in order (one
// per -count run).
func (l *BenchLog) Values(name, unit string) []float64 {
	var out []float64
	for _, r := range l.Results {
		if r.Name != name {
			continue
		}
		if v, ok := r.Value(unit); ok {
			out = append(out, v)
		}
	}
	return out
}

// Ran reports whether benchmark name printed a result line.
func (l *BenchLog) Ran(name string) bool {
	return slices.ContainsFunc(l.Results, func(r Result) bool { return r.Name == name })
}

// Failed is the failure recorded for exactly name, if any.
func (l *BenchLog) Failed(name string) (Failure, bool) {
	for _, f := range l.Failures {
		if f.Name == name && !f.Skipped {
			return f, true
		}
	}
	return Failure{}, false
}

var (
	loadedRe  = regexp.MustCompile(`\bloaded ([0-9]+) instances\b.*? in ([0-9][0-9a-zµ.]*)`)
	loadavgRe = regexp.MustCompile(`^loadavg ([A-Za-z-]+): (.*)$`)
)

// maxLine bounds one line of input: benchmark lines are short, and a
// runaway log line must not take the parser's memory.
const maxLine = 1 << 20

// ParseBench reads go test -bench output. It knows the standard benchmark
// line (name, iterations, then value-unit pairs, as testing prints it, or
// split after the name when other output came between), "--- FAIL:" and
// "--- SKIP:" lines with the first message under them, the "cpu:" header,
// "loadavg <when>: ..." lines and the fixture's "loaded N instances ... in
// D" lines; it ignores every other line. Only a read error is an error.
func ParseBench(r io.Reader) (*BenchLog, error) {
	out := &BenchLog{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxLine)
	var (
		pending     string // a benchmark name printed alone on its line
		pendProcs   int
		lastFailure = -1 // index in out.Failures awaiting its reason
	)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		trimmed := strings.TrimSpace(line)
		if lastFailure >= 0 {
			// The first indented message under a FAIL line is its reason;
			// a nested "--- FAIL:" is not.
			if strings.HasPrefix(line, "    ") && trimmed != "" && !strings.HasPrefix(trimmed, "---") {
				// Not continue: the message may be a line this parser
				// reads for itself (the fixture's load time).
				out.Failures[lastFailure].Reason = trimReason(trimmed)
			}
			lastFailure = -1
		}
		switch {
		case strings.HasPrefix(trimmed, "--- FAIL: "), strings.HasPrefix(trimmed, "--- SKIP: "):
			rest := trimmed[len("--- FAIL: "):]
			name, _, _ := strings.Cut(rest, " ")
			if !strings.HasPrefix(name, "Benchmark") && !strings.HasPrefix(name, "Test") {
				continue
			}
			out.Failures = append(out.Failures, Failure{Name: name, Skipped: strings.HasPrefix(trimmed, "--- SKIP")})
			lastFailure = len(out.Failures) - 1
			continue
		case strings.HasPrefix(line, "cpu: "):
			out.CPU = strings.TrimSpace(line[len("cpu: "):])
			continue
		}
		if m := loadavgRe.FindStringSubmatch(trimmed); m != nil {
			out.LoadAvgs = append(out.LoadAvgs, m[1]+": "+strings.TrimSpace(m[2]))
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.HasPrefix(fields[0], "Benchmark") {
			name, procs := splitProcs(fields[0])
			if len(fields) == 1 {
				pending, pendProcs = name, procs
				continue
			}
			if res, ok := parseRest(fields[1:]); ok {
				res.Name, res.Procs = name, procs
				out.Results = append(out.Results, res)
			}
			pending = ""
			continue
		}
		if pending != "" {
			if res, ok := parseRest(fields); ok {
				res.Name, res.Procs = pending, pendProcs
				out.Results = append(out.Results, res)
				pending = ""
				continue
			}
		}
		if m := loadedRe.FindStringSubmatch(line); m != nil {
			n, err1 := strconv.Atoi(m[1])
			d, err2 := time.ParseDuration(m[2])
			if err1 == nil && err2 == nil && n > 0 && d > 0 {
				out.Loads = append(out.Loads, Load{Instances: n, Took: d})
			}
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("plot: reading benchmark output: %w", err)
	}
	return out, nil
}

// trimReason keeps a failure message short enough for a table cell.
func trimReason(s string) string {
	const limit = 160
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// splitProcs splits "BenchmarkX/a-2" into "BenchmarkX/a" and 2. A name
// whose last dash is not followed by digits only has no suffix.
func splitProcs(s string) (string, int) {
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return s, 0
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n <= 0 || strings.ContainsAny(s[i+1:], "+-") {
		return s, 0
	}
	return s[:i], n
}

// parseRest reads "iterations value unit value unit ...". Anything else
// (odd fields, a value that is not a finite number) is not a benchmark
// line.
func parseRest(f []string) (Result, bool) {
	if len(f) < 3 || len(f)%2 == 0 {
		return Result{}, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n <= 0 {
		return Result{}, false
	}
	res := Result{N: n, Metrics: make([]Metric, 0, (len(f)-1)/2)}
	for i := 1; i+1 < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Result{}, false
		}
		unit := f[i+1]
		if _, err := strconv.ParseFloat(unit, 64); err == nil {
			return Result{}, false // two numbers in a row: not a pair
		}
		res.Metrics = append(res.Metrics, Metric{Value: v, Unit: unit})
	}
	return res, true
}
