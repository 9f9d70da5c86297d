package balancer

import (
	"testing"

	"github.com/beaconsd/beacon"
)

// benchSets are the 3-endpoint sets the benchmarks pick from: Consul's
// default weights for most balancers; 5, 1, 1 for Weighted, and 5001, 1000,
// 1000 for its mutex path (a cycle too long to precompute). The zone-aware
// cases pick from 4 endpoints, a:1 b:3: zone-local-* with no spread of
// callers known (every pick to zone a), zone-split-* with callers a:2 b:2
// (half the picks spill to b, drawn at random).
func benchCases() []struct {
	name string
	b    Balancer
	s    *Set
} {
	plain := NewSet([]beacon.Instance{inst("a"), inst("b"), inst("c")}, nil)
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
