package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	before := "# Title\n\ntext with a trailing space \n\n" + beginMarker + "\nold\nlines\n" + endMarker + "\n"
	after := "\n## Next\n\nno final newline"
	doc := []byte(before + after)
	once, err := Rewrite(doc, "new section\n")
	if err != nil {
		t.Fatal(err)
	}
	b := bytes.Index(once, []byte(beginMarker))
	e := bytes.Index(once, []byte(endMarker))
	if string(once[:b]) != before[:strings.Index(before, beginMarker)] {
		t.Errorf("text before the markers changed:\n%q", once[:b])
	}
	if string(once[e:]) != endMarker+"\n"+after {
		t.Errorf("text after the markers changed:\n%q", once[e:])
	}
	if got := string(once[b+len(beginMarker) : e]); got != "\n\nnew section\n\n" {
		t.Errorf("between the markers = %q, want the section with a blank line either side", got)
	}
	twice, err := Rewrite(once, "new section\n")
	if err != nil || !bytes.Equal(twice, once) {
		t.Errorf("Rewrite is not idempotent:\n%q\nthen\n%q (%v)", once, twice, err)
	}
	other, _ := Rewrite(once, "another\n")
	back, _ := Rewrite(other, "new section\n")
	if !bytes.Equal(back, once) {
		t.Errorf("rewriting another section and back gives\n%q\nwant\n%q", back, once)
	}
	noNL, _ := Rewrite(doc, "no newline")
	if !bytes.Contains(noNL, []byte("no newline\n\n"+endMarker)) {
		t.Errorf("a section without a final newline is not closed: %q", noNL)
	}
}

func TestRewriteBadMarkers(t *testing.T) {
	for _, doc := range []string{
		"no markers at all\n",
		beginMarker + "\nonly the begin\n",
		"only the end\n" + endMarker + "\n",
		endMarker + "\n" + beginMarker + "\n",
		beginMarker + "\n" + beginMarker + "\n" + endMarker + "\n",
		beginMarker + "\n" + endMarker + "\n" + endMarker + "\n",
	} {
		if _, err := Rewrite([]byte(doc), "x\n"); !errors.Is(err, ErrMarkers) {
			t.Errorf("Rewrite(%q) = %v, want ErrMarkers", doc, err)
		}
	}
}

// The repository's own docs/performance.md holds one pair of markers, so
// make bench-scale has a place to write.
func TestPerformanceDocHasMarkers(t *testing.T) {
	doc, err := os.ReadFile("../../docs/performance.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rewrite(doc, "x\n"); err != nil {
		t.Errorf("docs/performance.md: %v", err)
	}
}

// TestRun runs the command on the sample data into a copy of a document:
// the charts are written and parse, the section holds the numbers, a
// second run changes nothing, and the rest of the document is untouched.
func TestRun(t *testing.T) {
	machineFunc = func(string) Machine {
		return Machine{CPU: "Test CPU", Cores: 2, Memory: "1 GiB", Go: "go1.0", Consul: "Consul v0.0.0", LoadAvg: "1 2 3"}
	}
	t.Cleanup(func() { machineFunc = readMachine })
	dir := t.TempDir()
	docPath := filepath.Join(dir, "docs", "performance.md")
	imgDir := filepath.Join(dir, "docs", "img")
	if err := os.MkdirAll(filepath.Dir(docPath), 0o755); err != nil {
		t.Fatal(err)
	}
	head := "# Performance\n\nhand-written text\n\n"
	tail := "\n\n## Later\n\nmore hand-written text\n"
	doc := head + beginMarker + "\n" + endMarker + tail
	if err := os.WriteFile(docPath, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-bench", "testdata/bench-scale.log", "-herd", "testdata/herd.tsv",
		"-doc", docPath, "-img", imgDir, "-date", "2026-11-30", "-consul", ""}
	var stdout, stderr bytes.Buffer
	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatalf("run(%q) = %v\n%s", args, err, stderr.String())
	}
	first, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"watchmany-heap.svg", "watchmany-conns.svg", "watchmany-requests.svg",
		"watchmany-cpu.svg", "watchmany-first.svg", "largeservice-cpu.svg", "herd.svg"} {
		svg, err := os.ReadFile(filepath.Join(imgDir, f))
		if err != nil {
			t.Errorf("chart %s: %v", f, err)
			continue
		}
		checkXML(t, svg)
		if !bytes.Contains(first, []byte("](img/"+f+")")) {
			t.Errorf("the section does not show img/%s", f)
		}
	}
	s := string(first)
	if !strings.HasPrefix(s, head+beginMarker) || !strings.HasSuffix(s, endMarker+tail) {
		t.Errorf("text outside the markers changed:\n%s", s)
	}
	for _, want := range []string{
		"2026-11-30", "Test CPU, 2 cores, 1 GiB, go1.0, Consul v0.0.0",
		"Load average before: 1.92 2.41 3.05 3/181 25211; after:",
		"| 10,000 instances (1,000 × 10) | Beacon | 3.9 s | 582 B/inst | 76 | 0.913 | 20.2 ms |",
		"| 100,000 instances (10,000 × 10) | Beacon | **failed**: `watchmany_test.go:312: watch 2868",
		"| Beacon | 52.6 ms | 7.65 MB | 0.91 ms |",
		"| `caches=200/gokit` |",
		"| agent | Beacon | 4,699 |",
		"| 100,000 | 47.7 s, 60.8 s |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("the section lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "100,000 instances (10,000 × 10) | go-kit") {
		t.Errorf("go-kit, not run at 100,000, has a row:\n%s", s)
	}

	if err := run(args, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(docPath)
	if !bytes.Equal(first, second) {
		t.Errorf("a second run changed the document:\n%s\nthen\n%s", first, second)
	}
}

func TestRunUsageAndMissingInputs(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-nosuchflag"}, &out, &out); !errors.Is(err, errUsage) {
		t.Errorf("run(-nosuchflag) = %v, want a usage error", err)
	}
	if err := run([]string{"extra"}, &out, &out); !errors.Is(err, errUsage) {
		t.Errorf("run(extra) = %v, want a usage error", err)
	}
	dir := t.TempDir()
	if err := run([]string{"-bench", filepath.Join(dir, "none.log"), "-doc", ""}, &out, &out); err == nil {
		t.Errorf("run with a missing benchmark log = nil, want an error")
	}
	// No herd timeline yet: the charts are written, the section says so.
	doc := filepath.Join(dir, "p.md")
	if err := os.WriteFile(doc, []byte(beginMarker+"\n"+endMarker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	machineFunc = func(string) Machine { return Machine{} }
	t.Cleanup(func() { machineFunc = readMachine })
	err := run([]string{"-bench", "testdata/bench-scale.log", "-herd", filepath.Join(dir, "herd.tsv"),
		"-doc", doc, "-img", filepath.Join(dir, "img")}, &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(doc)
	if !strings.Contains(string(b), "No herd timeline: `") || strings.Contains(string(b), "herd.svg") {
		t.Errorf("section without a timeline:\n%s", b)
	}
}
