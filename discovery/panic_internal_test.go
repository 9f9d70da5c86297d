package discovery

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/beaconsd/beacon"
)

// TestPanicPolicy: what a watch with a threshold publishes of one answer,
// and whether it is in panic.
func TestPanicPolicy(t *testing.T) {
	// in makes instances from a spec per instance: p passing, w warning,
	// c critical, m in maintenance (critical), each at a port of its own.
	in := func(spec string) []beacon.Instance {
		var out []beacon.Instance
		for i, r := range spec {
			x := beacon.Instance{ID: fmt.Sprintf("%c%d", r, i), Node: "n", Address: "10.0.0.1", Port: 1000 + i}
			switch r {
			case 'p':
				x.Health = beacon.HealthPassing
			case 'w':
				x.Health = beacon.HealthWarning
			case 'c':
				x.Health = beacon.HealthCritical
			case 'm':
				x.Health, x.Maintenance = beacon.HealthCritical, true
			}
			out = append(out, x)
		}
		return out
	}
	idsOf := func(insts []beacon.Instance) string {
		var s string
		for _, x := range insts {
			s += x.ID + " "
		}
		return s
	}
	for _, tt := range []struct {
		p     float64
		spec  string
		panic bool
		want  string // IDs published
	}{
		{0.5, "pcccc", true, "p0 c1 c2 c3 c4 "},
		{0.5, "pcccm", true, "p0 c1 c2 c3 "},    // maintenance out, even in panic
		{0.5, "pppcm", false, "p0 p1 p2 "},      // 3 of 4 not in maintenance
		{0.5, "ppcc", false, "p0 p1 "},          // 2 of 4 is the share exactly
		{0.5, "ppccc", true, "p0 p1 c2 c3 c4 "}, // 2 of 5 is not
		{0.5, "wwcc", true, "w0 w1 c2 c3 "},     // none passing: panic, warning and critical
		{0.5, "", false, ""},                    // nothing to spread over
		{0.5, "mm", false, ""},                  // all in maintenance: nothing either
		{0.5, "ppmmmm", false, "p0 p1 "},        // maintenance does not count against the share
		{1, "pppw", true, "p0 p1 p2 w3 "},       // 1: any instance failing
		{0.01, "pccccccccc", false, "p0 "},      // 1 of 10 is above 1 %
		{0.5, "pppp", false, "p0 p1 p2 p3 "},    // all passing: the answer itself
		{0.2, "wcccm", true, "w0 c1 c2 c3 "},    // warning counts as not passing
		{0.75, "pppcm", false, "p0 p1 p2 "},     // 3 of 4
		{0.8, "pppcm", true, "p0 p1 p2 c3 "},    // 3 of 4 < 0.8
		{0.5, "pmmmmmmmm", false, "p0 "},        // 1 of 1 up
	} {
		insts := in(tt.spec)
		got, v := panicPolicy(tt.p, insts)
		if v.panic != tt.panic || idsOf(got) != tt.want {
			t.Errorf("panicPolicy(%v, %q) = %q, panic %v; want %q, panic %v", tt.p, tt.spec, idsOf(got), v.panic, tt.want, tt.panic)
		}
		if len(got) == len(insts) && len(got) > 0 && &got[0] != &insts[0] {
			t.Errorf("panicPolicy(%v, %q) copied an answer it keeps whole", tt.p, tt.spec)
		}
	}
}

// TestPanicPolicyCountsEndpointsOnce: a stale critical copy of a passing
// instance (same address and port, another node) is one endpoint, so it
// neither counts against the share nor gets published in panic.
func TestPanicPolicyCountsEndpointsOnce(t *testing.T) {
	w := &watch{panicAt: 0.5}
	live := beacon.Instance{ID: "a", Node: "n2", Address: "10.0.0.1", Port: 1, Health: beacon.HealthPassing}
	stale := live
	stale.Node, stale.Health = "n1", beacon.HealthCritical
	other := beacon.Instance{ID: "b", Node: "n1", Address: "10.0.0.2", Port: 1, Health: beacon.HealthPassing}
	got, v := policy(w, []beacon.Instance{stale, live, other})
	if v.panic || v.up != 2 || len(got) != 2 || !slices.ContainsFunc(got, func(x beacon.Instance) bool { return x.Node == "n2" }) {
		t.Errorf("policy(stale copy, live, other) = %+v, %+v; want the live copy and other, no panic, 2 up", got, v)
	}
}

// TestPanicPolicyExactShares: a share equal to the threshold is not panic,
// and one instance fewer is, for every threshold k/100 and up to 200
// instances (p·n in floating point rounds past some of them).
func TestPanicPolicyExactShares(t *testing.T) {
	for k := 1; k < 100; k++ {
		p := float64(k) / 100
		for up := 100; up <= 200; up += 100 {
			at := k * up / 100 // passing instances at exactly p
			for _, tt := range []struct {
				passing int
				panic   bool
			}{{at, false}, {at - 1, true}} {
				insts := make([]beacon.Instance, up)
				for i := range insts {
					insts[i] = beacon.Instance{ID: strconv.Itoa(i), Node: "n", Health: beacon.HealthCritical}
					if i < tt.passing {
						insts[i].Health = beacon.HealthPassing
					}
				}
				if _, v := panicPolicy(p, insts); v.panic != tt.panic {
					t.Errorf("panicPolicy(%v) with %d of %d passing: panic %v, want %v", p, tt.passing, up, v.panic, tt.panic)
				}
			}
		}
	}
}
