package discovery

import (
	"hash/maphash"
	"strings"
	"sync"

	"github.com/beaconsd/beacon"
)

// dedupe returns insts with one entry per endpoint (address and port), so a
// caller is never offered one instance twice. Copies appear when an instance
// moved to another agent while the old agent still holds (or restored) a
// copy of it, or when one process is registered under two IDs: either way
// they answer at the same address and port, and a caller that picked both
// would send that endpoint twice its share.
//
// Same ID on several nodes at different addresses is not a copy: Consul's
// IDs are unique per agent only, and many fleets register the same ID (the
// service name, Consul's default) on every node. An entry with no address
// is never merged: its endpoint is unknown.
//
// Which copy wins: the best health (passing, then warning, then critical),
// so a stale critical copy never hides a live passing one; among equals, the
// lowest node name, then the lowest ID. Instances carry no modify index to
// prefer the newest by, and the endpoint is the same whichever wins.
//
// The winners keep the order of insts. With no copies (the usual case)
// insts itself is returned and nothing is allocated: up to smallDedupe
// instances are compared pair by pair, larger answers go through a pooled
// hash table in one pass.
func dedupe(insts []beacon.Instance) []beacon.Instance {
	n := len(insts)
	if n < 2 {
		return insts
	}
	if n <= smallDedupe {
		return dedupeSmall(insts)
	}
	sp := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sp)
	return sp.dedupe(insts)
}

// smallDedupe is the size up to which copies are looked for pair by pair:
// at most 496 comparisons (32·31/2) of two endpoints, no allocation.
const smallDedupe = 32

func dedupeSmall(insts []beacon.Instance) []beacon.Instance {
	var drop []bool
	for i := range insts {
		if insts[i].Address == "" || (drop != nil && drop[i]) {
			continue
		}
		best := i
		for j := i + 1; j < len(insts); j++ {
			if (drop != nil && drop[j]) || !sameEndpoint(&insts[best], &insts[j]) {
				continue
			}
			if drop == nil {
				drop = make([]bool, len(insts))
			}
			if better(&insts[j], &insts[best]) {
				drop[best], best = true, j
			} else {
				drop[j] = true
			}
		}
	}
	if drop == nil {
		return insts
	}
	return keep(insts, drop)
}

// keep returns a new slice of the entries of insts not dropped, in order;
// insts may be shared, so it is never modified.
func keep(insts []beacon.Instance, drop []bool) []beacon.Instance {
	n := 0
	for _, d := range drop {
		if !d {
			n++
		}
	}
	out := make([]beacon.Instance, 0, n)
	for i := range insts {
		if !drop[i] {
			out = append(out, insts[i])
		}
	}
	return out
}

func sameEndpoint(a, b *beacon.Instance) bool {
	return a.Port == b.Port && a.Address == b.Address && a.Address != ""
}

// better reports whether copy a should win over copy b: better health,
// then the lower node name, then the lower ID.
func better(a, b *beacon.Instance) bool {
	if ra, rb := healthRank(a.Health), healthRank(b.Health); ra != rb {
		return ra < rb
	}
	if c := strings.Compare(a.Node, b.Node); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// healthRank orders states best first; anything unknown counts as critical,
// as beacon.Health.Worse does.
func healthRank(h beacon.Health) int {
	switch h {
	case beacon.HealthPassing:
		return 0
	case beacon.HealthWarning:
		return 1
	}
	return 2
}

// scratch is what dedupe reuses between answers: an open-addressing table
// holding, per endpoint, the index (plus one; zero is empty) of the copy
// winning so far, and each entry's hash.
type scratch struct {
	table []int32
	hs    []uint64
}

// dedupe is dedupe for any size, in one pass over the table.
func (s *scratch) dedupe(insts []beacon.Instance) []beacon.Instance {
	size := 1
	for size < 2*len(insts) {
		size <<= 1
	}
	if cap(s.table) < size {
		s.table = make([]int32, size)
	}
	table := s.table[:size]
	clear(table)
	if cap(s.hs) < len(insts) {
		s.hs = make([]uint64, len(insts))
	}
	hs := s.hs[:len(insts)]
	mask := uint64(size - 1)
	var drop []bool // allocated at the first copy found
	for i := range insts {
		if insts[i].Address == "" {
			continue
		}
		h := hashEndpoint(&insts[i])
		hs[i] = h
		// Linear probing: the table is at most half full, so the loop ends.
		for slot := h & mask; ; slot = (slot + 1) & mask {
			w := int(table[slot]) - 1
			if w < 0 {
				table[slot] = int32(i + 1)
				break
			}
			if hs[w] != h || !sameEndpoint(&insts[w], &insts[i]) {
				continue
			}
			if drop == nil {
				drop = make([]bool, len(insts))
			}
			if better(&insts[i], &insts[w]) {
				drop[w], table[slot] = true, int32(i+1)
			} else {
				drop[i] = true
			}
			break
		}
	}
	if drop == nil {
		return insts
	}
	return keep(insts, drop)
}

var (
	endpointSeed = maphash.MakeSeed()
	scratchPool  = sync.Pool{New: func() any { return new(scratch) }}
)

func hashEndpoint(in *beacon.Instance) uint64 {
	// The port mixed in by multiplication: cheaper than hashing its digits,
	// and equal endpoints still hash equal.
	return maphash.String(endpointSeed, in.Address) ^ (uint64(uint32(in.Port)) * 0x9e3779b97f4a7c15)
}
