package main

import (
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readSample(t testing.TB) *BenchLog {
	t.Helper()
	f, err := os.Open("testdata/bench-scale.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := ParseBench(f)
	if err != nil {
		t.Fatalf("ParseBench(testdata/bench-scale.log) = %v", err)
	}
	return l
}

func TestParseBenchSample(t *testing.T) {
	l := readSample(t)
	if got, want := len(l.Results), 11; got != want {
		t.Errorf("results = %d, want %d", got, want)
	}
	if l.CPU != "AMD EPYC" {
		t.Errorf("CPU = %q, want %q", l.CPU, "AMD EPYC")
	}
	if got := len(l.LoadAvgs); got != 2 {
		t.Errorf("load averages = %q, want a before and an after", l.LoadAvgs)
	}
	r := l.Results[0]
	if r.Name != "BenchmarkWatchMany/inst=1000/beacon" || r.Procs != 2 || r.N != 1 {
		t.Errorf("first result = %q procs %d n %d, want BenchmarkWatchMany/inst=1000/beacon procs 2 n 1", r.Name, r.Procs, r.N)
	}
	for _, c := range []struct {
		name, unit string
		want       float64
	}{
		{"BenchmarkWatchMany/inst=1000/beacon", "B/inst", 1390},
		{"BenchmarkWatchMany/inst=10000/gokit", "conns", 1044},
		{"BenchmarkWatchMany/single=10000/beacon", "req/svc/wait", 0.5781},
		{"BenchmarkWatchMany/single=1000/gokit", "B/service", 16063},
		{"BenchmarkLargeService/gokit", "cpu-ms/change", 93.5},
		{"BenchmarkFleet/caches=200/beacon", "herd-req/watch", 1.05},
	} {
		v := l.Values(c.name, c.unit)
		if len(v) != 1 || v[0] != c.want {
			t.Errorf("Values(%q, %q) = %v, want [%v]", c.name, c.unit, v, c.want)
		}
	}
	f, ok := l.Failed("BenchmarkWatchMany/inst=100000/beacon")
	if !ok || !strings.HasPrefix(f.Reason, "watchmany_test.go:312: watch 2868") {
		t.Errorf("Failed(inst=100000/beacon) = %+v, %v; want the watch 2868 message", f, ok)
	}
	if _, ok := l.Failed("BenchmarkWatchMany/inst=100000/gokit"); ok {
		t.Errorf("go-kit at 100,000 reported failed; it was not run")
	}
	// The fixture's load time is read even as the message under a FAIL.
	want := []Load{{100000, 47671247583}, {100000, time.Minute + 809693326}}
	if !reflect.DeepEqual(l.Loads, want) {
		t.Errorf("Loads = %v, want %v", l.Loads, want)
	}
}

func TestParseBenchLines(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []Result
	}{
		{"standard", "BenchmarkA-8   \t 100\t 12.5 ns/op\t 3 B/op\n",
			[]Result{{"BenchmarkA", 8, 100, []Metric{{12.5, "ns/op"}, {3, "B/op"}}}}},
		{"no procs suffix", "BenchmarkA 1 2 x/y\n", []Result{{"BenchmarkA", 0, 1, []Metric{{2, "x/y"}}}}},
		{"dash in a sub-benchmark name", "BenchmarkA/b-c 1 2 u\n", []Result{{"BenchmarkA/b-c", 0, 1, []Metric{{2, "u"}}}}},
		{"split by other output", "BenchmarkA/x-2   \nagent: some log line\n       1\t 5 first-s\n",
			[]Result{{"BenchmarkA/x", 2, 1, []Metric{{5, "first-s"}}}}},
		{"CRLF", "BenchmarkA-2 1 7 u\r\n", []Result{{"BenchmarkA", 2, 1, []Metric{{7, "u"}}}}},
		{"odd fields", "BenchmarkA-2 1 7 u 8\n", nil},
		{"no metric", "BenchmarkA-2 1\n", nil},
		{"NaN value", "BenchmarkA-2 1 NaN u\n", nil},
		{"infinite value", "BenchmarkA-2 1 +Inf u\n", nil},
		{"zero iterations", "BenchmarkA-2 0 7 u\n", nil},
		{"number as unit", "BenchmarkA-2 1 7 8\n", nil},
		{"not a benchmark", "goos: linux\nPASS\nok  \tpkg\t1.2s\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := ParseBench(strings.NewReader(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(l.Results, c.want) {
				t.Errorf("ParseBench(%q) = %+v, want %+v", c.in, l.Results, c.want)
			}
		})
	}
}

func TestParseBenchFailures(t *testing.T) {
	in := "--- FAIL: BenchmarkX/a\n    x_test.go:1: boom | pipe\n--- SKIP: BenchmarkX/b\n    x_test.go:2: skipped\n    --- FAIL: BenchmarkX/c\n--- FAIL: TestY (0.1s)\n"
	l, err := ParseBench(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Failure{
		{Name: "BenchmarkX/a", Reason: "x_test.go:1: boom | pipe"},
		{Name: "BenchmarkX/b", Reason: "x_test.go:2: skipped", Skipped: true},
		{Name: "BenchmarkX/c"},
		{Name: "TestY"},
	}
	if !reflect.DeepEqual(l.Failures, want) {
		t.Errorf("Failures = %+v, want %+v", l.Failures, want)
	}
	if _, ok := l.Failed("BenchmarkX/b"); ok {
		t.Errorf("Failed(a skipped benchmark) = true, want false")
	}
}

func TestParseHerd(t *testing.T) {
	in := "library\trestart\tt_ms\trequests\n# comment\n\nbeacon\tagent\t0\t10\ngokit\tservers\t500\t7\nbeacon\tagent\t-5\t1\nbeacon\tagent\t500\nbe con\tagent\t0\t1\nbeacon\tagent\t0\t5\n"
	bins, skipped, err := ParseHerd(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []HerdBin{{"beacon", "agent", 0, 10}, {"gokit", "servers", 500, 7}, {"beacon", "agent", 0, 5}}
	if !reflect.DeepEqual(bins, want) || skipped != 4 {
		t.Errorf("ParseHerd = %v, %d skipped; want %v, 4 skipped", bins, skipped, want)
	}
	g := groupHerd(bins)
	if len(g) != 2 || g[0].Library != "beacon" || g[0].Restart != "agent" || g[0].Bins[0].Requests != 15 {
		t.Errorf("groupHerd = %+v, want beacon/agent first with 15 requests at 0 (two runs summed), then gokit/servers", g)
	}
}

func TestHerdSampleSummary(t *testing.T) {
	f, err := os.Open("testdata/herd.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bins, skipped, err := ParseHerd(f)
	if err != nil || skipped != 1 {
		t.Fatalf("ParseHerd(testdata/herd.tsv) = %d bins, %d skipped, %v; want the header skipped only", len(bins), skipped, err)
	}
	g := groupHerd(bins)
	if len(g) != 4 {
		t.Fatalf("groupHerd = %d series, want 4", len(g))
	}
	s := summarize(g[0]) // beacon, agent
	if s.First10s != 4699 || s.Peak != 1520 || s.PeakAtMs != 500 || s.P90Ms != 2000 {
		t.Errorf("summarize(beacon agent) = %+v, want 4699 in 10 s, peak 1520 at 500 ms, 90 %% by 2000 ms", s)
	}
}

// formatResult writes a result back as testing prints it.
func formatResult(r Result) string {
	var b strings.Builder
	b.WriteString(r.Name)
	if r.Procs > 0 {
		fmt.Fprintf(&b, "-%d", r.Procs)
	}
	fmt.Fprintf(&b, "\t%d", r.N)
	for _, m := range r.Metrics {
		fmt.Fprintf(&b, "\t%s %s", strconv.FormatFloat(m.Value, 'g', -1, 64), m.Unit)
	}
	return b.String()
}

// FuzzParseBench: any input parses without panic into results that hold
// the format's rules, and writing those results back as benchmark lines
// and parsing them again gives the same results.
func FuzzParseBench(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new input it finds, and
	// minimizing kilobytes takes it most of a minute each time.
	f.Add("cpu: AMD EPYC\nBenchmarkWatchMany/inst=1000/beacon-2  \t       1\t59857605155 ns/op\t      1390 B/inst\t        76.00 conns\n")
	f.Add("BenchmarkA-2 1 2 u\n")
	f.Add("BenchmarkA/x-2\nnoise\n 1 5 first-s\n")
	f.Add("--- FAIL: BenchmarkA\n    a_test.go:1: loaded 10 instances in 2s\n")
	f.Add("BenchmarkA-0 1 -0 u 1e308 v\n")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseBench(strings.NewReader(in))
		if err != nil {
			return // a line past maxLine: the scanner's own error
		}
		var again strings.Builder
		for _, r := range l.Results {
			if !strings.HasPrefix(r.Name, "Benchmark") || r.N <= 0 || len(r.Metrics) == 0 || r.Procs < 0 {
				t.Fatalf("result %+v breaks the format's rules", r)
			}
			for _, m := range r.Metrics {
				if math.IsNaN(m.Value) || math.IsInf(m.Value, 0) || m.Unit == "" || strings.ContainsAny(m.Unit, " \t\n") {
					t.Fatalf("metric %+v of %q is not a finite value with a unit", m, r.Name)
				}
			}
			again.WriteString(formatResult(r) + "\n")
		}
		for _, ld := range l.Loads {
			if ld.Instances <= 0 || ld.Took <= 0 {
				t.Fatalf("load %+v is not a positive count and time", ld)
			}
		}
		l2, err := ParseBench(strings.NewReader(again.String()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(l2.Results, l.Results) {
			t.Fatalf("round trip:\n%s\n= %+v, want %+v", again.String(), l2.Results, l.Results)
		}
	})
}

// FuzzParseHerd: any input parses without panic into bins within bounds,
// and the bins written back as TSV parse to the same bins.
func FuzzParseHerd(f *testing.F) {
	f.Add("library\trestart\tt_ms\trequests\nbeacon\tagent\t0\t1450\ngokit\tservers\t500\t410\n")
	f.Add("beacon\tagent\t0\t1\n")
	f.Add("a\tb\t600000\t1099511627776\n")
	f.Fuzz(func(t *testing.T, in string) {
		bins, _, err := ParseHerd(strings.NewReader(in))
		if err != nil {
			return
		}
		var again strings.Builder
		for _, b := range bins {
			if !isName(b.Library) || !isName(b.Restart) || b.TMs < 0 || b.TMs > maxHerdMs || b.Requests < 0 {
				t.Fatalf("bin %+v out of bounds", b)
			}
			fmt.Fprintf(&again, "%s\t%s\t%d\t%d\n", b.Library, b.Restart, b.TMs, b.Requests)
		}
		bins2, skipped, err := ParseHerd(strings.NewReader(again.String()))
		if err != nil || skipped != 0 || !reflect.DeepEqual(bins2, bins) {
			t.Fatalf("round trip = %v, %d skipped, %v; want %v", bins2, skipped, err, bins)
		}
		for _, s := range groupHerd(bins) {
			sum := summarize(s)
			if sum.First10s < 0 || sum.P90Ms < 0 {
				t.Fatalf("summarize(%+v) = %+v", s, sum)
			}
		}
	})
}
