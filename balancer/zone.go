package balancer

import (
	"maps"
	"math/rand/v2"
	"slices"
	"sync/atomic"

	"github.com/beaconsd/beacon"
)

// Callers is how the callers of a service are spread over zones: the
// number of callers in each zone. It is immutable. A ZoneAware compares
// Callers by pointer, so a source should hand out the same *Callers for as
// long as the counts do not change.
type Callers struct {
	counts map[string]int
	total  int
}

// CallerSource gives a ZoneAware the callers' current spread over zones. A
// *Callers is one (a static spread); discovery.Cache.WatchCallers returns
// one that follows a service's passing instances in Consul.
type CallerSource interface {
	// Callers returns the current spread, or nil while it is unknown. It
	// is called at every pick: it must be cheap, allocate nothing in the
	// steady state, and be safe for concurrent use.
	Callers() *Callers
}

var _ CallerSource = (*Callers)(nil)

// NewCallers returns the spread counts describes: callers per zone. The map
// is copied; zones with a count of zero or less are left out. The zone ""
// counts callers without a zone.
func NewCallers(counts map[string]int) *Callers {
	c := &Callers{counts: make(map[string]int, len(counts))}
	for z, n := range counts {
		if n > 0 {
			c.counts[z] = n
			c.total += n
		}
	}
	return c
}

// CallersOf counts insts by zone (Instance.Zone(key)): the spread of a
// callers' service, as Envoy learns it from its local cluster.
func CallersOf(insts []beacon.Instance, key string) *Callers {
	c := &Callers{counts: map[string]int{}}
	for i := range insts {
		c.counts[insts[i].Zone(key)]++
		c.total++
	}
	return c
}

// Callers returns c: a *Callers is a static CallerSource.
func (c *Callers) Callers() *Callers { return c }

// Count returns the number of callers in zone.
func (c *Callers) Count(zone string) int {
	if c == nil {
		return 0
	}
	return c.counts[zone]
}

// Total returns the number of callers in every zone.
func (c *Callers) Total() int {
	if c == nil {
		return 0
	}
	return c.total
}

// Equal reports whether c and o count the same callers in the same zones.
func (c *Callers) Equal(o *Callers) bool {
	if c == nil || o == nil {
		return c == o
	}
	return c.total == o.total && maps.Equal(c.counts, o.counts)
}

// ZoneOption adjusts a ZoneAware.
type ZoneOption func(*ZoneAware)

// WithZoneKey sets the meta key naming an instance's zone, in its service
// meta or else its node's (see beacon.Instance.Zone). The default is
// beacon.DefaultZoneKey, "zone".
func WithZoneKey(key string) ZoneOption {
	return func(z *ZoneAware) {
		if key != "" {
			z.key = key
		}
	}
}

// WithCallers sets where the callers' spread over zones comes from. Without
// it (or while it returns nil), a ZoneAware sends every pick to its own zone
// when that has instances.
func WithCallers(src CallerSource) ZoneOption { return func(z *ZoneAware) { z.callers = src } }

// ZoneAware is a Balancer that prefers the instances in the caller's own
// zone and picks among the chosen zone's instances with another Balancer.
// Make one with NewZoneAware.
//
// Zones are chosen as Envoy's zone-aware routing chooses them. Let local be
// the caller's zone, u(z) a zone's share of the Set's instances and c(z)
// its share of the callers (from WithCallers):
//
//   - u(local) ≥ c(local): every pick goes to the local zone, which has at
//     least its share of the capacity;
//   - otherwise u(local)/c(local) of the picks stay local and the rest
//     spills to the other zones in proportion to their surplus,
//     max(0, u(z) − c(z)), so callers of a zone with too few instances send
//     only their excess elsewhere and no zone is loaded beyond its share
//     (when every caller does the same);
//   - with no spread known, every pick goes to the local zone;
//   - with no instance in the local zone, picks spill by surplus when the
//     spread is known and has some, and otherwise go to the whole Set.
//
// Instances without a zone form the zone "", which is never local but
// takes spilled picks like any other. With no zone information at all (the
// caller's zone is "" or no instance has one), a ZoneAware picks exactly as
// its inner Balancer does.
//
// The inner Balancer picks from a sub-Set of the Set given to Pick: its
// Endpoints are the Set's own, so the in-flight counts P2C steers by stay
// shared, an Ejection recognises the pick, and Done works as usual. Zones
// are drawn at random when picks are split; a round robin inner Balancer,
// whose position is shared by all zones, then still gives each instance of
// a zone its share on average. Weighted's position lives in each zone's
// sub-Set and restarts its cycle when the Set is replaced.
//
// The split (sub-Sets and thresholds) is computed once per Set and spread
// and kept for the last two Sets picked from (a retry's Set.Without beside
// the current one); a pick from a Set seen before is a few atomic loads, a
// random draw and the inner pick, and allocates nothing. Use one ZoneAware
// per service: picking from many services' Sets in turn recomputes the
// split at every pick. Safe for concurrent use.
type ZoneAware struct {
	inner   Balancer
	local   string
	key     string
	callers CallerSource

	// plans holds the plans of the last two Sets picked from, the most
	// recently built or hit first. Races between updates lose a plan at
	// worst, which is built again.
	plans [2]atomic.Pointer[zonePlan]
}

var _ Balancer = (*ZoneAware)(nil)

// NewZoneAware returns a Balancer that prefers instances in zone, the
// caller's own, and picks within the chosen zone with inner (a round robin
// when nil). With zone "" it picks exactly as inner.
func NewZoneAware(inner Balancer, zone string, opts ...ZoneOption) *ZoneAware {
	if inner == nil {
		inner = NewRoundRobin()
	}
	z := &ZoneAware{inner: inner, local: zone, key: beacon.DefaultZoneKey}
	for _, o := range opts {
		o(z)
	}
	return z
}

// Zone returns the caller's zone the ZoneAware prefers.
func (z *ZoneAware) Zone() string { return z.local }

// Key returns the meta key the ZoneAware reads instances' zones under.
func (z *ZoneAware) Key() string { return z.key }

// Pick picks an endpoint of s: a zone as the type's documentation says,
// then an endpoint of that zone with the inner Balancer. It returns
// beacon.ErrNoInstances for an empty Set.
func (z *ZoneAware) Pick(s *Set) (Picked, error) {
	if s.Len() == 0 {
		return Picked{}, beacon.ErrNoInstances
	}
	p := z.plan(s)
	switch p.mode {
	case routeLocal:
		return z.inner.Pick(p.local)
	case routeSplit:
		r := rand.Uint64() >> (64 - shareBits)
		if r < p.keep {
			return z.inner.Pick(p.local)
		}
		for i, c := range p.cum {
			if r < c {
				return z.inner.Pick(p.spill[i])
			}
		}
		return z.inner.Pick(p.spill[len(p.spill)-1])
	default:
		return z.inner.Pick(s)
	}
}

// ZoneShare is the share of a ZoneAware's picks that goes to one zone of a
// Set.
type ZoneShare struct {
	Zone      string
	Instances int
	// Share is the fraction of picks sent to the zone: for picks left to
	// the inner Balancer over the whole Set, the zone's share of the
	// instances (exact for round robin and random).
	Share float64
}

// Shares returns how z splits its picks from s over the zones of s, in the
// order of their names. It is for reports and tests; it allocates.
func (z *ZoneAware) Shares(s *Set) []ZoneShare {
	if s.Len() == 0 {
		return nil
	}
	p := z.plan(s)
	out := make([]ZoneShare, len(p.parts.names))
	for i, name := range p.parts.names {
		out[i] = ZoneShare{Zone: name, Instances: p.parts.sets[i].Len()}
		switch p.mode {
		case routeWhole:
			out[i].Share = float64(out[i].Instances) / float64(s.Len())
		case routeLocal:
			if i == p.parts.local {
				out[i].Share = 1
			}
		case routeSplit:
			if i == p.parts.local {
				out[i].Share = float64(p.keep) / shareOne
			}
			lo := p.keep
			for j, ss := range p.spill {
				if ss == p.parts.sets[i] {
					out[i].Share = float64(p.cum[j]-lo) / shareOne
				}
				lo = p.cum[j]
			}
		}
	}
	return out
}

// Shares are fixed-point fractions of shareOne: a 53-bit draw compared
// with thresholds computed in float64 without overflow.
const (
	shareBits = 53
	shareOne  = 1 << shareBits
)

type route uint8

const (
	routeWhole route = iota // the inner Balancer over the whole Set
	routeLocal              // the local zone only
	routeSplit              // keep/shareOne locally, the rest over spill by cum
)

// zonePlan is how picks from one Set, with one spread of callers, are
// routed. Immutable once published.
type zonePlan struct {
	src     *Set
	callers *Callers
	parts   *zoneParts
	mode    route
	local   *Set     // routeLocal, routeSplit: the local zone's sub-Set
	keep    uint64   // routeSplit: draws below it stay local
	spill   []*Set   // routeSplit: the zones that take the rest
	cum     []uint64 // routeSplit: spill[i] takes the draws in [cum[i-1], cum[i]), cum[0] from keep
}

// zoneParts is a Set partitioned by zone. Immutable once built, and shared
// by the plans of one Set.
type zoneParts struct {
	names []string // sorted; "" (no zone) sorts first
	sets  []*Set   // the endpoints of each zone, in the Set's order
	local int      // index of the caller's zone in names, or -1
}

// plan returns the plan for s and the current spread, building it when
// neither cached plan fits.
func (z *ZoneAware) plan(s *Set) *zonePlan {
	var cs *Callers
	if z.callers != nil {
		cs = z.callers.Callers()
	}
	p0 := z.plans[0].Load()
	if p0 != nil && p0.src == s && p0.callers == cs {
		return p0
	}
	p1 := z.plans[1].Load()
	if p1 != nil && p1.src == s && p1.callers == cs {
		// Keep the hotter Set first, so a retry's one-off Set does not
		// evict the current one.
		z.plans[0].Store(p1)
		z.plans[1].Store(p0)
		return p1
	}
	var parts *zoneParts
	switch {
	case p0 != nil && p0.src == s:
		parts = p0.parts // only the spread changed
	case p1 != nil && p1.src == s:
		parts = p1.parts
	default:
		parts = z.partition(s)
	}
	p := z.route(s, parts, cs)
	z.plans[1].Store(p0)
	z.plans[0].Store(p)
	return p
}

// partition splits s by zone. A zone holding every endpoint gets s itself.
func (z *ZoneAware) partition(s *Set) *zoneParts {
	eps := s.Endpoints()
	idx := map[string]int{}
	var names []string
	for _, e := range eps {
		zn := e.Instance.Zone(z.key)
		if _, ok := idx[zn]; !ok {
			idx[zn] = -1
			names = append(names, zn)
		}
	}
	slices.Sort(names)
	for i, n := range names {
		idx[n] = i
	}
	parts := &zoneParts{names: names, sets: make([]*Set, len(names)), local: -1}
	if i, ok := idx[z.local]; ok && z.local != "" {
		parts.local = i
	}
	if len(names) == 1 {
		parts.sets[0] = s
		return parts
	}
	byZone := make([][]*Endpoint, len(names))
	for _, e := range eps {
		i := idx[e.Instance.Zone(z.key)]
		byZone[i] = append(byZone[i], e)
	}
	for i, zeps := range byZone {
		// A sub-Set shares s's Endpoints, not copies: their load is the
		// same, and so are the pointers an Ejection records by.
		parts.sets[i] = s.subset(zeps)
	}
	return parts
}

// route computes Envoy's zone-aware split of parts for the spread cs.
func (z *ZoneAware) route(s *Set, parts *zoneParts, cs *Callers) *zonePlan {
	p := &zonePlan{src: s, callers: cs, parts: parts}
	if z.local == "" || (len(parts.names) == 1 && parts.names[0] == "") {
		return p // no zone information: as the inner Balancer
	}
	known := cs.Total() > 0
	n := float64(s.Len())
	// surplus of the non-local zones: their share of instances beyond
	// their share of callers.
	surplus := func() ([]*Set, []float64, float64) {
		var sets []*Set
		var ws []float64
		sum := 0.0
		for i, name := range parts.names {
			if i == parts.local {
				continue
			}
			w := float64(parts.sets[i].Len())/n - float64(cs.Count(name))/float64(cs.Total())
			if w > 0 {
				sets, ws = append(sets, parts.sets[i]), append(ws, w)
				sum += w
			}
		}
		return sets, ws, sum
	}
	if parts.local < 0 { // no instance in the caller's zone
		if !known {
			return p
		}
		sets, ws, sum := surplus()
		if sum <= 0 {
			return p
		}
		p.mode = routeSplit
		p.spill, p.cum = sets, thresholds(0, ws, sum)
		return p
	}
	p.local = parts.sets[parts.local]
	p.mode = routeLocal
	if !known {
		return p
	}
	u := float64(p.local.Len()) / n
	c := float64(cs.Count(z.local)) / float64(cs.Total())
	if u >= c {
		return p
	}
	sets, ws, sum := surplus()
	if sum <= 0 { // cannot happen when u < c, but rounding is rounding
		return p
	}
	p.mode = routeSplit
	p.keep = uint64(u / c * shareOne)
	p.spill, p.cum = sets, thresholds(p.keep, ws, sum)
	return p
}

// thresholds splits [keep, shareOne) in proportion to ws, which sum to sum.
// The last threshold is shareOne, so every draw lands somewhere.
func thresholds(keep uint64, ws []float64, sum float64) []uint64 {
	cum := make([]uint64, len(ws))
	rest := float64(shareOne - keep)
	acc := 0.0
	for i, w := range ws {
		acc += w
		cum[i] = keep + uint64(acc/sum*rest)
	}
	cum[len(cum)-1] = shareOne
	return cum
}
