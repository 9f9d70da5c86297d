package balancer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// zoned returns instances spec describes, "a:2 b:1" giving a1, a2 in zone a
// (from their node's meta) and b1 in zone b; zone "-" gives instances
// without one.
func zoned(spec ...string) []beacon.Instance {
	var out []beacon.Instance
	for _, zs := range spec {
		var z string
		var n int
		if _, err := fmt.Sscanf(zs, "%1s:%d", &z, &n); err != nil {
			panic(zs)
		}
		for i := range n {
			in := inst(fmt.Sprintf("%s%d", z, i+1))
			in.Node = "node-" + z
			if z != "-" {
				in.NodeMeta = map[string]string{"zone": z}
			}
			out = append(out, in)
		}
	}
	return out
}

// zoneOf is the zone of the picked endpoint.
func zoneOf(p Picked) string { return p.Instance.Zone("") }

// shareMap is Shares as zone → share.
func shareMap(z *ZoneAware, s *Set) map[string]float64 {
	m := map[string]float64{}
	for _, sh := range z.Shares(s) {
		m[sh.Zone] = sh.Share
	}
	return m
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestZoneAwareShares checks the split against Envoy's rules, worked by
// hand.
func TestZoneAwareShares(t *testing.T) {
	for _, tt := range []struct {
		name    string
		local   string
		insts   []string
		callers map[string]int // nil: unknown
		want    map[string]float64
	}{
		{"local has its share", "a", []string{"a:2", "b:2"}, map[string]int{"a": 1, "b": 1}, map[string]float64{"a": 1, "b": 0}},
		{"local has more than its share", "a", []string{"a:3", "b:1"}, map[string]int{"a": 1, "b": 1}, map[string]float64{"a": 1, "b": 0}},
		// u(a) = 1/4, c(a) = 1/2: keep 1/2, spill the rest to b.
		{"local short", "a", []string{"a:1", "b:3"}, map[string]int{"a": 2, "b": 2}, map[string]float64{"a": 0.5, "b": 0.5}},
		{"other zone short stays local", "b", []string{"a:1", "b:3"}, map[string]int{"a": 2, "b": 2}, map[string]float64{"a": 0, "b": 1}},
		// u = a 1/6, b 2/6, c 3/6; callers a 1/2, b 1/4, c 1/4. Keep 1/3;
		// surplus b 1/12, c 3/12: the other 2/3 splits 1:3.
		{"spill by surplus", "a", []string{"a:1", "b:2", "c:3"}, map[string]int{"a": 2, "b": 1, "c": 1}, map[string]float64{"a": 1.0 / 3, "b": 2.0 / 3 / 4, "c": 2.0 / 3 * 3 / 4}},
		{"no spread: local only", "a", []string{"a:1", "b:3"}, nil, map[string]float64{"a": 1, "b": 0}},
		{"no spread, no local instance: whole set", "a", []string{"b:1", "c:3"}, nil, map[string]float64{"b": 0.25, "c": 0.75}},
		// No instance in a; callers a 1/2, b 1/2; surplus b 0, c 1/2.
		{"known spread, no local instance: by surplus", "a", []string{"b:2", "c:2"}, map[string]int{"a": 2, "b": 2}, map[string]float64{"b": 0, "c": 1}},
		{"caller without zone", "", []string{"a:1", "b:3"}, map[string]int{"a": 1}, map[string]float64{"a": 0.25, "b": 0.75}},
		{"instances without zone", "a", []string{"-:4"}, nil, map[string]float64{"-": 1}},
		// Instances without a zone are zone "" and take spill like any other.
		{"zoneless zone takes spill", "a", []string{"a:1", "-:3"}, map[string]int{"a": 1}, map[string]float64{"a": 0.25, "": 0.75}},
		{"zoneless instance never local", "", []string{"a:1", "-:1"}, nil, map[string]float64{"a": 0.5, "": 0.5}},
		{"caller zone absent from the spread", "a", []string{"a:1", "b:3"}, map[string]int{"b": 5}, map[string]float64{"a": 1, "b": 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var opts []ZoneOption
			if tt.callers != nil {
				opts = append(opts, WithCallers(NewCallers(tt.callers)))
			}
			z := NewZoneAware(NewRoundRobin(), tt.local, opts...)
			s := NewSet(zoned(tt.insts...), nil)
			got := shareMap(z, s)
			want := map[string]float64{}
			for k, v := range tt.want {
				if k == "-" {
					k = ""
				}
				want[k] = v
			}
			for k, v := range want {
				if !near(got[k], v) {
					t.Errorf("Shares(%v) with callers %v from %q = %v, want %v", tt.insts, tt.callers, tt.local, got, want)
					break
				}
			}
			// The picks follow the shares.
			const n = 20000
			count := map[string]int{}
			for range n {
				p, err := z.Pick(s)
				if err != nil {
					t.Fatal(err)
				}
				count[zoneOf(p)]++
				p.Done()
			}
			for k, v := range want {
				if got := float64(count[k]) / n; math.Abs(got-v) > 0.02 {
					t.Errorf("%d picks: zone %q got %.3f of them, want %.3f (counts %v)", n, k, got, v, count)
				}
			}
		})
	}
}

// TestZoneAwareNoZonesIsInner checks that without zone information the
// picks are exactly the inner balancer's.
func TestZoneAwareNoZonesIsInner(t *testing.T) {
	plain := NewSet(insts("a", "b", "c"), nil)
	withZones := NewSet(zoned("a:2", "b:1"), nil)
	for _, tt := range []struct {
		name  string
		local string
		s     *Set
	}{
		{"no instance has a zone", "a", plain},
		{"caller has no zone", "", withZones},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := pickIDs(t, NewRoundRobin(), tt.s, 10)
			got := pickIDs(t, NewZoneAware(NewRoundRobin(), tt.local), tt.s, 10)
			if !slices.Equal(got, want) {
				t.Errorf("ZoneAware(round robin, %q) picked %v, want round robin's %v", tt.local, got, want)
			}
		})
	}
}

func TestZoneAwareEmpty(t *testing.T) {
	z := NewZoneAware(NewP2C(), "a")
	for _, s := range []*Set{nil, NewSet(nil, nil)} {
		if p, err := z.Pick(s); !errors.Is(err, beacon.ErrNoInstances) || p.Endpoint != nil {
			t.Errorf("Pick(%v) = %v, %v; want beacon.ErrNoInstances", s, p, err)
		}
	}
}

// TestZoneAwareComposes runs the wrapper over every balancer: picks stay in
// the local zone, and within it follow the inner balancer (weights too).
func TestZoneAwareComposes(t *testing.T) {
	in := zoned("a:2", "b:2")
	in[0].Weights = beacon.Weights{Passing: 3, Warning: 1} // a1: 3, a2: 1
	s := NewSet(in, nil)
	for name, b := range map[string]Balancer{"roundrobin": NewRoundRobin(), "random": NewRandom(), "weighted": NewWeighted(), "p2c": NewP2C()} {
		t.Run(name, func(t *testing.T) {
			z := NewZoneAware(b, "a")
			count := map[string]int{}
			for range 400 {
				p, err := z.Pick(s)
				if err != nil {
					t.Fatal(err)
				}
				count[p.Instance.ID]++
				p.Done()
			}
			if count["b1"]+count["b2"] != 0 || count["a1"] == 0 || count["a2"] == 0 {
				t.Errorf("400 picks from zone a over %s: %v, want all in a1 and a2", name, count)
			}
			if name == "weighted" && (count["a1"] != 300 || count["a2"] != 100) {
				t.Errorf("weighted in zone a: %v, want a1 300 and a2 100 (weights 3 and 1)", count)
			}
		})
	}
}

// TestZoneAwareSharesLoad checks that P2C's in-flight counts are the Set's
// own: a pick through the wrapper counts on the endpoint of s, and P2C
// inside the zone steers by them.
func TestZoneAwareSharesLoad(t *testing.T) {
	s := NewSet(zoned("a:2", "b:2"), nil)
	z := NewZoneAware(NewP2C(), "a")
	p, err := z.Pick(s)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Endpoints(), p.Endpoint) {
		t.Fatalf("picked endpoint %p is not one of the Set's", p.Endpoint)
	}
	if p.InFlight() != 1 {
		t.Errorf("InFlight after a pick = %d, want 1", p.InFlight())
	}
	// With one request stuck on the first pick, P2C in zone a picks the
	// other a instance every time.
	for range 50 {
		q, err := z.Pick(s)
		if err != nil {
			t.Fatal(err)
		}
		if q.Endpoint == p.Endpoint || zoneOf(q) != "a" {
			t.Fatalf("pick %s while %s has a request in flight, want the other instance of zone a", q.Instance.ID, p.Instance.ID)
		}
		q.Done()
	}
	p.Done()
	if p.InFlight() != 0 {
		t.Errorf("InFlight after Done = %d, want 0", p.InFlight())
	}
}

// TestZoneAwareWithFilters checks the wrapper over an Ejection's Set and a
// retry's Set.Without: leaving the zone when the local instances are gone.
func TestZoneAwareWithFilters(t *testing.T) {
	s := NewSet(zoned("a:1", "b:2"), nil)
	z := NewZoneAware(NewRoundRobin(), "a")
	p, err := z.Pick(s)
	if err != nil || p.Instance.ID != "a1" {
		t.Fatalf("Pick = %v, %v; want a1", p, err)
	}
	// A retry without a1 leaves the zone.
	rest := s.Without(func(e *Endpoint) bool { return e.Instance.ID == "a1" })
	for range 4 {
		q, err := z.Pick(rest)
		if err != nil || zoneOf(q) != "b" {
			t.Fatalf("Pick(Set without a1) = %v, %v; want an instance of zone b", q, err)
		}
	}
	// And the current Set's plan survived the retry's.
	if q, _ := z.Pick(s); q.Instance.ID != "a1" {
		t.Errorf("Pick(s) after the retry = %s, want a1", q.Instance.ID)
	}

	// Ejected: a1 fails twice and is skipped.
	ej := NewEjection(2, time.Minute, nil)
	for range 2 {
		q, _ := z.Pick(ej.Filter(s))
		ej.Failed(q.Endpoint)
	}
	for range 4 {
		q, err := z.Pick(ej.Filter(s))
		if err != nil || zoneOf(q) != "b" {
			t.Fatalf("Pick(Filter(s)) with a1 ejected = %v, %v; want zone b", q, err)
		}
		ej.Succeeded(q.Endpoint)
	}
}

// TestZoneAwareFollowsCallers checks that a new spread from the source is
// taken at the next pick.
func TestZoneAwareFollowsCallers(t *testing.T) {
	src := &swapSource{}
	s := NewSet(zoned("a:1", "b:3"), nil)
	z := NewZoneAware(NewRoundRobin(), "a", WithCallers(src))
	if got := shareMap(z, s); !near(got["a"], 1) {
		t.Errorf("Shares with no spread yet = %v, want all to a", got)
	}
	src.set(NewCallers(map[string]int{"a": 2, "b": 2}))
	if got := shareMap(z, s); !near(got["a"], 0.5) || !near(got["b"], 0.5) {
		t.Errorf("Shares with callers a:2 b:2 = %v, want a 0.5, b 0.5", got)
	}
}

type swapSource struct {
	mu sync.Mutex
	c  *Callers
}

func (s *swapSource) set(c *Callers) { s.mu.Lock(); s.c = c; s.mu.Unlock() }
func (s *swapSource) Callers() *Callers {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func TestZoneAwarePickAllocatesNothing(t *testing.T) {
	s := NewSet(zoned("a:1", "b:3"), nil)
	for name, b := range map[string]Balancer{"roundrobin": NewRoundRobin(), "p2c": NewP2C(), "weighted": NewWeighted()} {
		z := NewZoneAware(b, "a", WithCallers(NewCallers(map[string]int{"a": 2, "b": 2})))
		if n := testing.AllocsPerRun(1000, func() {
			p, err := z.Pick(s)
			if err != nil {
				t.Fatal(err)
			}
			p.Done()
		}); n != 0 {
			t.Errorf("ZoneAware over %s: %v allocations per pick, want 0", name, n)
		}
	}
}

// TestZoneAwareConcurrent picks from many goroutines while the Set and the
// spread change, for the race detector.
func TestZoneAwareConcurrent(t *testing.T) {
	src := &swapSource{}
	z := NewZoneAware(NewP2C(), "a", WithCallers(src))
	sets := []*Set{NewSet(zoned("a:1", "b:3"), nil), NewSet(zoned("a:2", "b:2"), nil)}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				p, err := z.Pick(sets[(i+g)%2])
				if err != nil {
					t.Error(err)
					return
				}
				p.Done()
			}
		}()
	}
	for i := range 100 {
		src.set(NewCallers(map[string]int{"a": i % 3, "b": 2}))
	}
	wg.Wait()
	for _, s := range sets {
		for _, e := range s.Endpoints() {
			if e.InFlight() != 0 {
				t.Errorf("%s: %d in flight after every Done", e.Instance.ID, e.InFlight())
			}
		}
	}
}

func TestCallers(t *testing.T) {
	c := NewCallers(map[string]int{"a": 2, "b": 0, "c": -1, "": 1})
	if c.Total() != 3 || c.Count("a") != 2 || c.Count("b") != 0 || c.Count("") != 1 {
		t.Errorf("NewCallers = total %d, a %d, b %d, \"\" %d; want 3, 2, 0, 1", c.Total(), c.Count("a"), c.Count("b"), c.Count(""))
	}
	of := CallersOf(zoned("a:2", "-:1"), "")
	if !of.Equal(c) {
		t.Errorf("CallersOf(a:2, -:1) = %v, want equal to %v", of, c)
	}
	var none *Callers
	if none.Total() != 0 || none.Count("a") != 0 || !none.Equal(nil) || c.Equal(nil) {
		t.Errorf("nil *Callers: Total %d, Count %d, Equal(nil) %v; c.Equal(nil) %v", none.Total(), none.Count("a"), none.Equal(nil), c.Equal(nil))
	}
}
