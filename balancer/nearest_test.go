package balancer

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// onNode returns a passing instance with ID id on node.
func onNode(id, node string) beacon.Instance {
	in := inst(id)
	in.Node = node
	return in
}

// rttTable builds an RTT table from "me" with each node ms milliseconds
// away along one axis.
func rttTable(ms map[string]float64) *beacon.NodeRTTs {
	coords := []beacon.NodeCoordinate{{Node: "me", Coord: beacon.Coordinate{Vec: []float64{0}}}}
	for node, d := range ms {
		coords = append(coords, beacon.NodeCoordinate{Node: node, Coord: beacon.Coordinate{Vec: []float64{d / 1000}}})
	}
	return beacon.NewNodeRTTs("me", 1, coords)
}

// tableSource is an RTTSource whose table a test swaps.
type tableSource struct {
	p atomic.Pointer[beacon.NodeRTTs]
}

func (s *tableSource) RTTs() *beacon.NodeRTTs { return s.p.Load() }

func newSource(t *beacon.NodeRTTs) *tableSource {
	s := &tableSource{}
	s.p.Store(t)
	return s
}

// countPicks picks n times and counts the IDs picked.
func countPicks(t *testing.T, b Balancer, s *Set, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		p, err := b.Pick(s)
		if err != nil {
			t.Fatalf("Pick() = %v", err)
		}
		got[p.Instance.ID]++
		p.Done()
	}
	return got
}

func TestNearestGroups(t *testing.T) {
	set := NewSet([]beacon.Instance{
		onNode("far-1", "far"), onNode("near-1", "near"), onNode("mid-1", "mid"), onNode("near-2", "near"),
		onNode("close-1", "close"), onNode("x-1", "unknown"), onNode("me-1", "me"),
	}, nil)
	tab := rttTable(map[string]float64{"near": 0.4, "close": 1.2, "mid": 10, "far": 30})
	for _, tc := range []struct {
		name string
		opts []NearestOption
		tab  *beacon.NodeRTTs
		want []string
	}{
		// me is 0 away, near 0.4 ms: both within the default 1 ms.
		{"default", nil, tab, []string{"me-1", "near-1", "near-2"}},
		{"tolerance 0", []NearestOption{WithNearestTolerance(0)}, tab, []string{"me-1"}},
		{"tolerance 2ms", []NearestOption{WithNearestTolerance(2 * time.Millisecond)}, tab, []string{"close-1", "me-1", "near-1", "near-2"}},
		{"tolerance huge", []NearestOption{WithNearestTolerance(1 << 62)}, tab, []string{"close-1", "far-1", "me-1", "mid-1", "near-1", "near-2"}},
		{"at least 5", []NearestOption{WithNearestTolerance(0), WithNearestAtLeast(5)}, tab, []string{"close-1", "me-1", "mid-1", "near-1", "near-2"}},
		{"at least 7", []NearestOption{WithNearestAtLeast(7)}, tab, []string{"close-1", "far-1", "me-1", "mid-1", "near-1", "near-2", "x-1"}},
		{"no table", nil, nil, []string{"close-1", "far-1", "me-1", "mid-1", "near-1", "near-2", "x-1"}},
		{"empty table", nil, beacon.NewNodeRTTs("", 1, nil), []string{"close-1", "far-1", "me-1", "mid-1", "near-1", "near-2", "x-1"}},
		// Instances in another coordinate space: none has an estimate.
		{"no node known", nil, rttTable(map[string]float64{"elsewhere": 1}), []string{"close-1", "far-1", "mid-1", "near-1", "near-2", "x-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := set
			if tc.name == "no node known" {
				s = set.Without(func(e *Endpoint) bool { return e.Instance.Node == "me" })
			}
			b := NewNearest(NewRoundRobin(), newSource(tc.tab), tc.opts...)
			got := countPicks(t, b, s, 7*len(tc.want))
			var ids []string
			for id, n := range got {
				ids = append(ids, id)
				if n != 7 {
					t.Errorf("Pick() chose %s %d times in %d, want 7 (round robin over %v)", id, n, 7*len(tc.want), tc.want)
				}
			}
			slices.Sort(ids)
			if !slices.Equal(ids, tc.want) {
				t.Errorf("Pick() chose %v, want %v", ids, tc.want)
			}
		})
	}
}

func TestNearestFollowsTheTable(t *testing.T) {
	set := NewSet([]beacon.Instance{onNode("a", "na"), onNode("b", "nb"), onNode("c", "nc")}, nil)
	src := newSource(rttTable(map[string]float64{"na": 5, "nb": 20, "nc": 30}))
	b := NewNearest(NewRoundRobin(), src)
	if got := countPicks(t, b, set, 10); got["a"] != 10 {
		t.Errorf("picks = %v, want a only", got)
	}
	src.p.Store(rttTable(map[string]float64{"na": 50, "nb": 20, "nc": 30}))
	if got := countPicks(t, b, set, 10); got["b"] != 10 {
		t.Errorf("picks after nb became nearest = %v, want b only", got)
	}
	src.p.Store(nil) // the table is gone: every endpoint
	if got := countPicks(t, b, set, 9); got["a"] != 3 || got["b"] != 3 || got["c"] != 3 {
		t.Errorf("picks without a table = %v, want 3 each", got)
	}
	if _, err := b.Pick(nil); !errors.Is(err, beacon.ErrNoInstances) {
		t.Errorf("Pick(nil) = %v, want ErrNoInstances", err)
	}
	if _, err := NewNearest(nil, nil).Pick(NewSet(nil, nil)); !errors.Is(err, beacon.ErrNoInstances) {
		t.Errorf("Pick(empty) = %v, want ErrNoInstances", err)
	}
}

// TestNearestComposes: a retry's Set (Without the tried instance) and an
// ejection's go to the next nearest; P2C's in-flight counts are shared
// with the Set picked from; the plans of several Sets are kept.
func TestNearestComposes(t *testing.T) {
	set := NewSet([]beacon.Instance{onNode("a", "na"), onNode("b", "nb"), onNode("c", "nc")}, nil)
	src := newSource(rttTable(map[string]float64{"na": 5, "nb": 20, "nc": 30}))
	b := NewNearest(NewP2C(), src)
	p, _ := b.Pick(set)
	if p.Instance.ID != "a" || set.Endpoints()[0].InFlight() != 1 {
		t.Fatalf("Pick() = %s with a's in-flight %d, want a, 1", p.Instance.ID, set.Endpoints()[0].InFlight())
	}
	p.Done()
	retry := set.Without(func(e *Endpoint) bool { return e.Instance.ID == "a" })
	for range 3 { // alternate: both plans stay
		if p, _ := b.Pick(retry); p.Instance.ID != "b" {
			t.Errorf("Pick(without a) = %s, want b, the next nearest", p.Instance.ID)
		} else {
			p.Done()
		}
		if p, _ := b.Pick(set); p.Instance.ID != "a" {
			t.Errorf("Pick(set) = %s, want a", p.Instance.ID)
		} else {
			p.Done()
		}
	}
	ej := NewEjection(1, time.Minute, nil)
	ej.Filter(set)
	ej.Failed(set.Endpoints()[0])
	if p, _ := b.Pick(ej.Filter(set)); p.Instance.ID != "b" {
		t.Errorf("Pick(a ejected) = %s, want b", p.Instance.ID)
	}
}

// TestNearestAllocs: a steady-state pick allocates nothing, whatever the
// inner balancer.
func TestNearestAllocs(t *testing.T) {
	set := NewSet([]beacon.Instance{onNode("a", "na"), onNode("b", "na"), onNode("c", "nc")}, nil)
	src := newSource(rttTable(map[string]float64{"na": 1, "nc": 30}))
	for _, bal := range balancers {
		b := NewNearest(bal.new(), src)
		pick := func() {
			p, err := b.Pick(set)
			if err != nil || p.Instance.Node != "na" {
				t.Fatalf("Pick() = %v, %v; want an instance on na", p.Endpoint, err)
			}
			p.Done()
		}
		pick()
		if got := testing.AllocsPerRun(1000, pick); got != 0 {
			t.Errorf("AllocsPerRun(nearest %s) = %v, want 0", bal.name, got)
		}
	}
}

// TestNearestConcurrent picks from many goroutines while the table and
// the Set change (for the race detector): every pick is a nearest one
// under one of the tables.
func TestNearestConcurrent(t *testing.T) {
	sets := []*Set{
		NewSet([]beacon.Instance{onNode("a", "na"), onNode("b", "nb")}, nil),
		NewSet([]beacon.Instance{onNode("a", "na"), onNode("b", "nb"), onNode("c", "nc")}, nil),
	}
	tabs := []*beacon.NodeRTTs{rttTable(map[string]float64{"na": 1, "nb": 20, "nc": 30}), rttTable(map[string]float64{"na": 40, "nb": 20, "nc": 30})}
	src := newSource(tabs[0])
	b := NewNearest(NewP2C(), src)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if g == 0 && i%100 == 0 {
					src.p.Store(tabs[i/100%2])
				}
				p, err := b.Pick(sets[(g+i)%2])
				if err != nil || (p.Instance.ID != "a" && p.Instance.ID != "b") {
					errs <- fmt.Errorf("Pick() = %v, %v; want a or b", p.Endpoint, err)
					return
				}
				p.Done()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, s := range sets {
		for _, e := range s.Endpoints() {
			if e.InFlight() != 0 {
				t.Errorf("InFlight(%s) = %d after every Done, want 0", e.Instance.ID, e.InFlight())
			}
		}
	}
}

// TestNearestSlowStart: a new instance alone on the nearest node does not
// take every pick at the start of its ramp: it ramps beside the next
// nearest warm ones, and once its ramp is over the group is built again
// and it is the nearest group alone, picked with no clock read.
func TestNearestSlowStart(t *testing.T) {
	const n = 4000
	for _, bal := range []struct {
		name string
		new  func() Balancer
	}{
		{"p2c", func() Balancer { return NewP2C(WithSlowStart(testWindow)) }},
		{"weighted", func() Balancer { return NewWeighted(WithSlowStart(testWindow)) }},
	} {
		t.Run(bal.name, func(t *testing.T) {
			clock := useFakeClock(t, time.Unix(1_800_000_000, 0))
			warm := NewSet([]beacon.Instance{onNode("a", "far"), onNode("b", "far")}, nil)
			s := NewSet([]beacon.Instance{onNode("a", "far"), onNode("b", "far"), onNode("new", "near")}, warm)
			b := NewNearest(bal.new(), newSource(rttTable(map[string]float64{"near": 1, "far": 20})))

			// At the ramp's start: the minimum factor's share beside the two warm ones.
			f := DefaultSlowStartMinWeight
			within(t, "new at 0", countPicks(t, b, s, n)["new"], n, f/(2+f))
			clock.advance(testWindow / 2)
			within(t, "new at half", countPicks(t, b, s, n)["new"], n, 0.5/2.5)

			// Ramp over: the plan is built again; new is the nearest group.
			clock.advance(testWindow / 2)
			if got := countPicks(t, b, s, n)["new"]; got != n {
				t.Errorf("after the ramp: new got %d of %d picks, want all", got, n)
			}
			reads := clock.reads.Load()
			countPicks(t, b, s, 100)
			if d := clock.reads.Load() - reads; d != 0 {
				t.Errorf("%d clock reads in 100 picks after the ramps, want 0", d)
			}
		})
	}
}

// TestNearestSlowStartAtLeast: ramping endpoints within the group's reach
// are in it but do not count toward WithNearestAtLeast, which counts warm
// ones; while every endpoint ramps, the group is the usual one.
func TestNearestSlowStartAtLeast(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	useFakeClock(t, t0)
	tab := rttTable(map[string]float64{"n1": 1, "n2": 2, "n5": 5, "n9": 9})
	warm := NewSet([]beacon.Instance{onNode("w5", "n5"), onNode("w9", "n9")}, nil)
	s := NewSet([]beacon.Instance{onNode("w5", "n5"), onNode("w9", "n9"), onNode("r1", "n1"), onNode("r2", "n2")}, warm)
	got := nearestGroup(s, tab, 0, 2, int64(testWindow), t0.UnixNano())
	if ids := setIDs(got); !slices.Equal(ids, []string{"w5", "w9", "r1", "r2"}) {
		t.Errorf("at least 2 warm: group %v, want every endpoint", ids)
	}
	got = nearestGroup(s, tab, 0, 1, int64(testWindow), t0.UnixNano())
	if ids := setIDs(got); !slices.Equal(ids, []string{"w5", "r1", "r2"}) {
		t.Errorf("at least 1 warm: group %v, want w5 and the nearer ramping ones", ids)
	}
	all := NewSet([]beacon.Instance{onNode("r1", "n1"), onNode("r2", "n2")}, NewSet([]beacon.Instance{onNode("x", "n9")}, nil))
	if ids := setIDs(nearestGroup(all, tab, 0, 1, int64(testWindow), t0.UnixNano())); !slices.Equal(ids, []string{"r1"}) {
		t.Errorf("every endpoint ramping: group %v, want the nearest, r1", ids)
	}
}

func setIDs(s *Set) []string {
	var ids []string
	for _, e := range s.Endpoints() {
		ids = append(ids, e.Instance.ID)
	}
	return ids
}

// TestNearestPanicking: a panicking Set is not grouped: every instance
// takes picks, as panic asks.
func TestNearestPanicking(t *testing.T) {
	insts := []beacon.Instance{onNode("a", "na"), onNode("b", "nb"), onNode("c", "nc")}
	for i := range insts {
		insts[i].Health = beacon.HealthCritical
	}
	s := newSet(insts, nil, true)
	b := NewNearest(NewRoundRobin(), newSource(rttTable(map[string]float64{"na": 1, "nb": 20, "nc": 30})))
	got := countPicks(t, b, s, 300)
	for _, id := range []string{"a", "b", "c"} {
		if got[id] != 100 {
			t.Errorf("panicking Set: picks %v, want 100 each", got)
			break
		}
	}
}
