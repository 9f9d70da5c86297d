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
	order                      int
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

// markers returns the markers of this run's table in the report: make
// faults-stress has a table of its own next to make faults' one.
func markers() (begin, end string) {
	if testutil.Stressed() {
		return "<!-- faults-stress:begin (written by make faults-stress) -->", "<!-- faults-stress:end -->"
	}
	return "<!-- faults:begin (written by make faults) -->", "<!-- faults:end -->"
}

// writeReport replaces what lies between the markers in the markdown file
// at path with the table of this run, and prints the table.
func writeReport(path string, took time.Duration) error {
	resultsMu.Lock()
	rs := slices.Clone(results)
	resultsMu.Unlock()
	slices.SortFunc(rs, func(a, b result) int { return a.order - b.order })

	var b strings.Builder
	mode := "`make test` (5 s outages)"
	if faultsMode {
		mode = "`make faults` (30 s outages)"
	}
	if testutil.Stressed() {
		mode = strings.Replace(strings.Replace(mode, "make faults", "make faults-stress", 1), "outages)", fmt.Sprintf("outages, beside a CPU hog: %d busy processes, one per core)", runtime.NumCPU()), 1)
	}
	fmt.Fprintf(&b, "Run of %s on %s, %s; %d scenarios in %v.\n\n", mode, time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(), len(rs), took.Round(time.Second))
	b.WriteString("| scenario | what happened | failed calls | recovery time | requests to Consul |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, r := range rs {
		name := r.scenario
		if !r.passed {
			name += " **(FAILED)**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, cell(r.happened), cell(r.failed), cell(r.recovery), cell(r.requests))
	}
	table := b.String()
	fmt.Println()
	fmt.Print(table)

	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	beginMarker, endMarker := markers()
	i, j := bytes.Index(doc, []byte(beginMarker)), bytes.Index(doc, []byte(endMarker))
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q section", path, beginMarker, endMarker)
	}
	out := slices.Concat(doc[:i+len(beginMarker)], []byte("\n"+table), doc[j:])
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
