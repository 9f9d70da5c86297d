// Command plot draws the fleet-scale benchmarks (issue 15) as SVG charts
// and rewrites the generated section of docs/performance.md with them and
// the numbers they are drawn from, the date and the machine.
//
//	go run ./bench/plot                       # bin/bench-scale.log, bin/herd.tsv → docs/img, docs/performance.md
//	go run ./bench/plot -bench x.log -herd "" -doc ""   # charts only, no herd timeline
//
// Its inputs are the text output of go test -bench (make bench-scale
// writes it to bin/bench-scale.log: BenchmarkWatchMany, LargeService and
// Fleet) and the herd timeline BenchmarkFleet writes to
// $BEACON_BENCH_DIR/herd.tsv (library, restart, t_ms, requests). A size
// that failed or was not run is drawn as missing, never as zero. The SVG
// is written by hand with the standard library: a white background, so it
// reads in GitHub's light and dark themes alike.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

// machineFunc is read once per run; tests replace it so their output does
// not depend on the machine.
var machineFunc = readMachine

func run(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("plot", flag.ContinueOnError)
	fl.SetOutput(stderr)
	benchPath := fl.String("bench", "bin/bench-scale.log", "go test -bench output to read")
	herdPath := fl.String("herd", "bin/herd.tsv", "herd timeline TSV (library, restart, t_ms, requests); \"\" for none")
	docPath := fl.String("doc", "docs/performance.md", "document whose bench-scale section is rewritten; \"\" to leave documents alone")
	imgDir := fl.String("img", "docs/img", "directory the SVG charts are written to")
	date := fl.String("date", time.Now().UTC().Format("2006-01-02"), "date the report gives")
	consulBin := fl.String("consul", os.Getenv("CONSUL_BIN"), "consul binary whose version the report gives")
	note := fl.String("note", "", "a sentence the section shows under its source line (e.g. that the data are a sample)")
	if err := fl.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fl.NArg() > 0 {
		fl.Usage()
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fl.Args())
	}

	f, err := os.Open(*benchPath)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	bench, err := ParseBench(f)
	f.Close()
	if err != nil {
		return err
	}

	in := Inputs{Date: *date, BenchPath: *benchPath, Bench: bench, HerdPath: *herdPath, Note: *note}
	switch hf, err := os.Open(*herdPath); {
	case *herdPath == "":
		in.HerdNote = "none given"
	case errors.Is(err, fs.ErrNotExist):
		in.HerdNote = fmt.Sprintf("`%s` does not exist (BenchmarkFleet writes it to `$BEACON_BENCH_DIR/herd.tsv`)", *herdPath)
	case err != nil:
		return fmt.Errorf("plot: %w", err)
	default:
		bins, skipped, err := ParseHerd(hf)
		hf.Close()
		if err != nil {
			return err
		}
		if len(bins) == 0 {
			in.HerdNote = fmt.Sprintf("`%s` holds no rows", *herdPath)
			break
		}
		in.Herd = groupHerd(bins)
		if skipped > 1 { // the header is one
			in.HerdNote = fmt.Sprintf("%d lines of `%s` were not rows and were skipped", skipped, *herdPath)
		}
	}

	if err := os.MkdirAll(*imgDir, 0o755); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	write := func(file string, svg []byte) error {
		p := filepath.Join(*imgDir, file)
		if err := os.WriteFile(p, svg, 0o644); err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		in.Charts = append(in.Charts, file)
		fmt.Fprintln(stdout, "wrote", p)
		return nil
	}
	if len(wmRows(bench)) > 0 {
		for _, m := range wmMetrics {
			if err := write(m.File, wmFigure(bench, m).SVG()); err != nil {
				return err
			}
		}
	}
	if c, ok := largeFigure(bench); ok {
		if err := write("largeservice-cpu.svg", c.SVG()); err != nil {
			return err
		}
	}
	if in.Herd != nil {
		if err := write("herd.svg", herdFigure(in.Herd).SVG()); err != nil {
			return err
		}
	}

	if *docPath == "" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(*docPath), *imgDir)
	if err != nil {
		return fmt.Errorf("plot: charts in %s cannot be linked from %s: %w", *imgDir, *docPath, err)
	}
	in.ImgRel = filepath.ToSlash(rel)
	in.Machine = machineFunc(*consulBin)
	doc, err := os.ReadFile(*docPath)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	out, err := Rewrite(doc, Markdown(in))
	if err != nil {
		return fmt.Errorf("%s: %w", *docPath, err)
	}
	if err := os.WriteFile(*docPath, out, 0o644); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	fmt.Fprintln(stdout, "rewrote the bench-scale section of", *docPath)
	return nil
}
