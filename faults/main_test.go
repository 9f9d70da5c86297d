package faults

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon/internal/testutil"
)

func TestMain(m *testing.M) {
	began := time.Now()
	code := m.Run()
	fmt.Print(windowSummary())
	if code == 0 {
		// Every keeper, cache, transport, load and server is stopped by its
		// test's cleanups; anything still running leaked.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	if path := os.Getenv("BEACON_FAULTS_DOC"); path != "" {
		if err := writeReport(path, time.Since(began)); err != nil {
			fmt.Fprintf(os.Stderr, "faults report: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// result is one scenario's line in the report.
type result struct {
	order int
	// table is the report's table the line goes into: "" the cluster
	// scenarios', tableFederation the federation's.
	table                      string
	scenario, happened         string
	failed, recovery, requests string
	passed                     bool
}

var (
	resultsMu sync.Mutex
	results   []result
)

// report records the scenario's figures; whether it passed is read when
// the test ends.
func report(t *testing.T, r *result) {
	t.Cleanup(func() {
		r.passed = !t.Failed()
		t.Logf("report: %s | %s | failed calls %s | recovery %s | requests to Consul %s", r.scenario, r.happened, r.failed, r.recovery, r.requests)
		resultsMu.Lock()
		results = append(results, *r)
		resultsMu.Unlock()
	})
}

// tableFederation is the table of the scenarios on a WAN federation.
const tableFederation = "federation"

// markers returns the markers of this run's table in the report: make
// faults-stress has a table of its own next to make faults' one, and the
// federation scenarios have theirs ("faults-federation", ...).
func markers(table string) (begin, end string) {
	name, by := "faults", "make faults"
	if testutil.Stressed() {
		name, by = "faults-stress", "make faults-stress"
	}
	if table != "" {
		name = strings.Replace(name, "faults", "faults-"+table, 1)
	}
	return "<!-- " + name + ":begin (written by " + by + ") -->", "<!-- " + name + ":end -->"
}

// writeReport replaces what lies between the markers in the markdown file
// at path with the tables of this run (each table that has a line), and
// prints them.
func writeReport(path string, took time.Duration) error {
	resultsMu.Lock()
	rs := slices.Clone(results)
	resultsMu.Unlock()
	slices.SortFunc(rs, func(a, b result) int { return a.order - b.order })
	for _, table := range []string{"", tableFederation} {
		var in []result
		for _, r := range rs {
			if r.table == table {
				in = append(in, r)
			}
		}
		if len(in) == 0 {
			continue
		}
		if err := writeTable(path, table, in, len(rs), took); err != nil {
			return err
		}
	}
	return nil
}

// writeTable writes one table of the report.
func writeTable(path, table string, rs []result, all int, took time.Duration) error {
	var b strings.Builder
	mode := "`make test` (5 s outages)"
	if faultsMode {
		mode = "`make faults` (30 s outages)"
	}
	if testutil.Stressed() {
		mode = strings.Replace(strings.Replace(mode, "make faults", "make faults-stress", 1), "outages)", fmt.Sprintf("outages, beside a CPU hog: %d busy processes, one per core)", runtime.NumCPU()), 1)
	}
	fmt.Fprintf(&b, "Run of %s on %s, %s; %d scenarios here, of %d in %v.\n\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), len(rs), all, took.Round(time.Second))
	timing := "recovery time"
	if table == tableFederation {
		timing = "timings"
	}
	fmt.Fprintf(&b, "| scenario | what happened | failed calls | %s | requests to Consul |\n", timing)
	b.WriteString("|---|---|---|---|---|\n")
	for _, r := range rs {
		name := r.scenario
		if !r.passed {
			name += " **(FAILED)**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, cell(r.happened), cell(r.failed), cell(r.recovery), cell(r.requests))
	}
	text := b.String()
	fmt.Println()
	fmt.Print(text)

	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	beginMarker, endMarker := markers(table)
	i, j := bytes.Index(doc, []byte(beginMarker)), bytes.Index(doc, []byte(endMarker))
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q section", path, beginMarker, endMarker)
	}
	out := slices.Concat(doc[:i+len(beginMarker)], []byte("\n"+text), doc[j:])
	return os.WriteFile(path, out, 0o644)
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// machine describes where the run happened: CPU, cores, Go, Consul.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	consulVersion := "consul ?"
	if bin := os.Getenv("CONSUL_BIN"); bin != "" {
		if out, err := exec.Command(bin, "version").Output(); err == nil {
			consulVersion = strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
		}
	}
	return fmt.Sprintf("%s %s, %d cores (%s), %s, %s, race detector on", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpu, runtime.Version(), consulVersion)
}
