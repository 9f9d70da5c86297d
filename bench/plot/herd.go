package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// HerdBin is one row of the fleet benchmark's herd timeline: the requests
// the agent received from one library's caches in the 500 ms bin starting
// TMs milliseconds after the agent (Restart "agent") or the servers
// (Restart "servers") answered again.
type HerdBin struct {
	Library  string // "beacon" or "gokit"
	Restart  string // "agent" or "servers"
	TMs      int64
	Requests int64
}

// herdBinMs is the width of one bin of the timeline.
const herdBinMs = 500

// maxHerdMs bounds the timeline read: bins after 10 minutes are not a herd.
const maxHerdMs = 10 * 60 * 1000

// ParseHerd reads the herd timeline TSV (library, restart, t_ms,
// requests). A header line, blank lines, "#" comments and any row it
// cannot read (wrong field count, a name with characters other than
// letters, digits, '-' and '_', a negative or huge number) are skipped and
// counted in skipped. Only a read error is an error.
func ParseHerd(r io.Reader) (bins []HerdBin, skipped int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxLine)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			skipped++
			continue
		}
		lib, restart := strings.TrimSpace(f[0]), strings.TrimSpace(f[1])
		t, err1 := strconv.ParseInt(strings.TrimSpace(f[2]), 10, 64)
		n, err2 := strconv.ParseInt(strings.TrimSpace(f[3]), 10, 64)
		if err1 != nil || err2 != nil || !isName(lib) || !isName(restart) ||
			t < 0 || t > maxHerdMs || n < 0 || n > 1<<40 {
			// The header (library restart t_ms requests) lands here too.
			skipped++
			continue
		}
		bins = append(bins, HerdBin{Library: lib, Restart: restart, TMs: t, Requests: n})
	}
	if err := sc.Err(); err != nil {
		return bins, skipped, fmt.Errorf("plot: reading herd timeline: %w", err)
	}
	return bins, skipped, nil
}

func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// herdSeries is one library's timeline after one kind of restart, bins
// summed by start time (a run repeated appends its bins again) and sorted.
type herdSeries struct {
	Library, Restart string
	Bins             []HerdBin
}

// groupHerd splits bins by restart kind and library, in a fixed order:
// agent before servers, beacon before gokit, anything else after, by name.
func groupHerd(bins []HerdBin) []herdSeries {
	type key struct{ lib, restart string }
	sum := map[key]map[int64]int64{}
	for _, b := range bins {
		k := key{b.Library, b.Restart}
		if sum[k] == nil {
			sum[k] = map[int64]int64{}
		}
		sum[k][b.TMs] += b.Requests
	}
	var out []herdSeries
	for k, m := range sum {
		s := herdSeries{Library: k.lib, Restart: k.restart}
		for t, n := range m {
			s.Bins = append(s.Bins, HerdBin{Library: k.lib, Restart: k.restart, TMs: t, Requests: n})
		}
		slices.SortFunc(s.Bins, func(a, b HerdBin) int { return cmpInt(a.TMs, b.TMs) })
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b herdSeries) int {
		if c := cmpOrder(a.Restart, b.Restart, "agent", "servers"); c != 0 {
			return c
		}
		return cmpOrder(a.Library, b.Library, "beacon", "gokit")
	})
	return out
}

// cmpOrder orders the names in known first, in that order, then the rest
// by name.
func cmpOrder(a, b string, known ...string) int {
	ia, ib := slices.Index(known, a), slices.Index(known, b)
	if ia < 0 {
		ia = len(known)
	}
	if ib < 0 {
		ib = len(known)
	}
	if ia != ib {
		return ia - ib
	}
	return strings.Compare(a, b)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// herdSummary is what the table says of one series: requests in the first
// 10 s, the busiest bin, and the time by which 90 % of those requests had
// arrived (how far jitter spread them).
type herdSummary struct {
	First10s, Peak int64
	PeakAtMs       int64
	P90Ms          int64 // end of the bin where 90 % of the first 10 s was reached
}

func summarize(s herdSeries) herdSummary {
	var sum herdSummary
	for _, b := range s.Bins {
		if b.TMs < 10_000 {
			sum.First10s += b.Requests
		}
		if b.Requests > sum.Peak {
			sum.Peak, sum.PeakAtMs = b.Requests, b.TMs
		}
	}
	var acc int64
	for _, b := range s.Bins {
		if b.TMs >= 10_000 {
			break
		}
		acc += b.Requests
		if sum.First10s > 0 && acc*10 >= sum.First10s*9 {
			sum.P90Ms = b.TMs + herdBinMs
			break
		}
	}
	return sum
}
