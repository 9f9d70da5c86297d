package balancer

import (
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// benchSets are the 3-endpoint sets the benchmarks pick from: Consul's
// default weights for most balancers; 5, 1, 1 for Weighted, and 5001, 1000,
// 1000 for its mutex path (a cycle too long to precompute); for Nearest, two
// on the nearest node and one 30 ms away. The -slowstart cases turn slow
// start on with nothing ramping (the steady state); the -ramping ones pick
// while a fourth endpoint, new to the Set, ramps. The zone-aware cases
// pick from 4 endpoints, a:1 b:3: zone-local-* with no spread of callers
// known (every pick to zone a), zone-split-* with callers a:2 b:2 (half
// the picks spill to b, drawn at random).
func benchCases() []struct {
	name string
	b    Balancer
	s    *Set
} {
	plain := NewSet([]beacon.Instance{inst("a"), inst("b"), inst("c")}, nil)
	// nearest-*: two of three instances on the nearest node (see nearest_test.go).
	spread := NewSet([]beacon.Instance{onNode("a", "na"), onNode("b", "na"), onNode("c", "nc")}, nil)
	rtts := newSource(rttTable(map[string]float64{"na": 1, "nc": 30}))
	ramping := NewSet(insts("a", "b", "c", "new"), plain)
	slow := WithSlowStart(time.Hour)
	zonedSet := NewSet(zoned("a:1", "b:3"), nil)
	split := NewCallers(map[string]int{"a": 2, "b": 2})
	return []struct {
		name string
		b    Balancer
		s    *Set
	}{
		{"roundrobin", NewRoundRobin(), plain},
		{"random", NewRandom(), plain},
		{"weighted", NewWeighted(), NewSet(weightedInsts(5, 1, 1), nil)},
		{"weighted-mutex", NewWeighted(), NewSet(weightedInsts(5001, 1000, 1000), nil)},
		{"p2c", NewP2C(), plain},
		{"nearest-roundrobin", NewNearest(NewRoundRobin(), rtts), spread},
		{"nearest-p2c", NewNearest(NewP2C(), rtts), spread},
		{"weighted-slowstart", NewWeighted(slow), NewSet(weightedInsts(5, 1, 1), nil)},
		{"p2c-slowstart", NewP2C(slow), plain},
		{"weighted-ramping", NewWeighted(slow), ramping},
		{"p2c-ramping", NewP2C(slow), ramping},
		{"zone-local-roundrobin", NewZoneAware(NewRoundRobin(), "a"), zonedSet},
		{"zone-split-roundrobin", NewZoneAware(NewRoundRobin(), "a", WithCallers(split)), zonedSet},
		{"zone-split-p2c", NewZoneAware(NewP2C(), "a", WithCallers(split)), zonedSet},
	}
}

// BenchmarkPick measures one Pick and its Done.
func BenchmarkPick(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				e, err := bc.b.Pick(bc.s)
				if err != nil {
					b.Fatal(err)
				}
				e.Done()
			}
		})
	}
}

// BenchmarkPickParallel measures Pick and Done from GOMAXPROCS goroutines
// sharing one Balancer and one Set.
func BenchmarkPickParallel(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					e, err := bc.b.Pick(bc.s)
					if err != nil {
						b.Error(err)
						return
					}
					e.Done()
				}
			})
		})
	}
}
