package beacon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"
)

// Coordinate is a network coordinate in Consul's Vivaldi system, as
// GET /v1/coordinate/datacenters and /v1/coordinate/nodes report it (serf's
// coordinate.Coordinate). Vec, Adjustment and Height are in seconds; Error
// is dimensionless.
type Coordinate struct {
	Vec        []float64
	Error      float64
	Adjustment float64
	Height     float64
}

// Valid reports whether every component of c is finite.
func (c Coordinate) Valid() bool {
	finite := func(f float64) bool { return !math.IsInf(f, 0) && !math.IsNaN(f) }
	for _, v := range c.Vec {
		if !finite(v) {
			return false
		}
	}
	return finite(c.Error) && finite(c.Adjustment) && finite(c.Height)
}

// DistanceTo estimates the round-trip time between the nodes of c and
// other as Consul does (serf's Coordinate.DistanceTo): the Euclidean
// distance between the two Vecs plus both Heights, then plus both
// Adjustments if that keeps it above zero. ok is false where Consul would
// panic or give no time: the Vecs differ in length, a coordinate is not
// Valid, or the estimate is negative, not finite or beyond a
// time.Duration.
func (c Coordinate) DistanceTo(other Coordinate) (rtt time.Duration, ok bool) {
	if len(c.Vec) != len(other.Vec) || !c.Valid() || !other.Valid() {
		return 0, false
	}
	var sum float64
	for i := range c.Vec {
		d := c.Vec[i] - other.Vec[i]
		sum += d * d
	}
	dist := math.Sqrt(sum) + c.Height + other.Height
	if adjusted := dist + c.Adjustment + other.Adjustment; adjusted > 0 {
		dist = adjusted
	}
	ns := dist * float64(time.Second)
	// Valid parts can still sum to +Inf; NaN fails every comparison.
	if !(ns >= 0 && ns < math.MaxInt64) {
		return 0, false
	}
	return time.Duration(ns), true
}

// NodeCoordinate is one node's network coordinate.
type NodeCoordinate struct {
	Node    string
	Segment string // a LAN network segment; "" in WAN coordinates
	Coord   Coordinate
}

// DatacenterCoordinates is one entry of GET /v1/coordinate/datacenters:
// the WAN coordinates of a datacenter's servers in one network area (Consul
// CE has one, "wan"). A server whose coordinate Consul has not learned yet
// (shortly after it joined) is missing from Coordinates.
type DatacenterCoordinates struct {
	Datacenter  string
	AreaID      string
	Coordinates []NodeCoordinate
}

// DatacenterRTT is a datacenter and its estimated WAN round-trip time from
// the local datacenter.
type DatacenterRTT struct {
	Name string
	// Local marks the datacenter of the agent asked; its RTT is 0.
	Local bool
	// RTT is the median of the estimated round-trip times between the
	// local datacenter's servers and this datacenter's servers. It is
	// never negative; it is meaningful only when Known.
	RTT time.Duration
	// Known is false when no estimate could be made: Consul has no
	// coordinate yet for the servers at one end or the other, coordinates
	// are disabled, or the local datacenter is unknown.
	Known bool
}

func (d DatacenterRTT) String() string {
	switch {
	case d.Local:
		return d.Name + " (local)"
	case d.Known:
		return fmt.Sprintf("%s (%v)", d.Name, d.RTT)
	default:
		return d.Name + " (RTT unknown)"
	}
}

// DatacenterLister is an optional capability of a backend: what an agent
// knows of the WAN federation it belongs to, for failover to the nearest
// datacenters and `beacon datacenters`, through NearestDatacenters. Both
// backends implement it; they are safe for concurrent use, and each call
// is bounded by ctx and the backend's request timeout.
type DatacenterLister interface {
	// Datacenters lists every datacenter the agent's servers know
	// (GET /v1/catalog/datacenters), Consul ordering them by its own
	// estimated RTT from the local servers: the local datacenter first.
	Datacenters(ctx context.Context) ([]string, error)
	// DatacenterCoordinates returns the WAN coordinates of every known
	// server (GET /v1/coordinate/datacenters). Consul answers 401 when
	// the agent has coordinates disabled (disable_coordinates).
	DatacenterCoordinates(ctx context.Context) ([]DatacenterCoordinates, error)
	// LocalDatacenter is the datacenter of the agent asked
	// (GET /v1/agent/self, Config.Datacenter; the token needs agent:read).
	LocalDatacenter(ctx context.Context) (string, error)
}

// NearestDatacenters asks l for the datacenters, their servers'
// coordinates and the local datacenter, and returns SortDatacentersByRTT
// of them: the local datacenter first, then the others nearest first.
//
// Two refusals are worked around rather than returned, as they take only
// the estimates away: when the agent has coordinates disabled (401), the
// remote datacenters keep Consul's own order with RTTs unknown; when the
// token may not read the agent (403 on /v1/agent/self), the local
// datacenter is taken to be the first Consul lists, which is where Consul
// puts it.
func NearestDatacenters(ctx context.Context, l DatacenterLister) ([]DatacenterRTT, error) {
	names, err := l.Datacenters(ctx)
	if err != nil {
		return nil, err
	}
	coords, err := l.DatacenterCoordinates(ctx)
	var se *StatusError
	if errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized {
		coords, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	local, err := l.LocalDatacenter(ctx)
	if errors.As(err, &se) && se.StatusCode == http.StatusForbidden && len(names) > 0 {
		local, err = names[0], nil
	}
	if err != nil {
		return nil, err
	}
	return SortDatacentersByRTT(local, names, coords), nil
}

// SortDatacentersByRTT ranks datacenters by their estimated WAN round-trip
// time from local, as Consul's own GetDatacentersByDistance does for one
// server: the local datacenter first with RTT 0, then the others by RTT
// (ties by name), then those with no estimate in the order they come in
// names, which is Consul's own order when names is Datacenters' answer.
// Every datacenter of names and of coords is listed once; local is listed
// even when neither holds it, unless it is "".
//
// Consul measures from the server that answers. A client has only the
// servers' coordinates, so the RTT to a datacenter is the median (the
// upper one for an even count, as Consul takes it) of the estimates over
// every pair of a local server and one of that datacenter's servers,
// within one network area; with several areas, the lowest median. Pairs
// whose estimate is impossible (see Coordinate.DistanceTo) are left out.
// It never fails: bad or missing coordinates only make RTTs unknown. At
// most 64 servers a datacenter and 65,536 pairs in all are looked at.
func SortDatacentersByRTT(local string, names []string, coords []DatacenterCoordinates) []DatacenterRTT {
	// Every datacenter once: names first, in their order, then those only
	// coords knows, by name.
	var order []string
	seen := map[string]bool{}
	add := func(name string) {
		if name != "" && !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
	}
	for _, n := range names {
		add(n)
	}
	var extra []string
	for _, d := range coords {
		if !seen[d.Datacenter] {
			extra = append(extra, d.Datacenter)
		}
	}
	slices.Sort(extra)
	for _, n := range extra {
		add(n)
	}
	add(local)

	rtts := medianRTTs(local, coords)
	out := make([]DatacenterRTT, len(order))
	for i, n := range order {
		d := DatacenterRTT{Name: n}
		switch rtt, ok := rtts[n]; {
		case n == local:
			d.Local, d.Known = true, true
		case ok:
			d.RTT, d.Known = rtt, true
		}
		out[i] = d
	}
	// Stable: unknown ones keep their order.
	slices.SortStableFunc(out, func(a, b DatacenterRTT) int {
		switch {
		case a.Local != b.Local:
			if a.Local {
				return -1
			}
			return 1
		case a.Known != b.Known:
			if a.Known {
				return -1
			}
			return 1
		case !a.Known:
			return 0
		}
		return cmp.Or(cmp.Compare(a.RTT, b.RTT), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// A datacenter has a handful of servers (Consul advises 3 or 5). These
// bounds keep the work linear in the answer's size, however hostile: the
// servers of a datacenter beyond the first maxServerCoords, and the pairs
// beyond maxRTTPairs, are not looked at.
const (
	maxServerCoords = 64
	maxRTTPairs     = 1 << 16
)

// appendCapped appends the coordinates of ns to cs up to maxServerCoords.
func appendCapped(cs []Coordinate, ns []NodeCoordinate) []Coordinate {
	for _, n := range ns[:min(len(ns), max(maxServerCoords-len(cs), 0))] {
		cs = append(cs, n.Coord)
	}
	return cs
}

// medianRTTs returns, for each remote datacenter it can estimate, the
// lowest over network areas of the median RTT between local's servers and
// that datacenter's servers.
func medianRTTs(local string, coords []DatacenterCoordinates) map[string]time.Duration {
	out := map[string]time.Duration{}
	if local == "" {
		return out
	}
	// The local servers of each area (an area may be listed more than once
	// on a hostile answer: all its entries count).
	localByArea := map[string][]Coordinate{}
	for _, d := range coords {
		if d.Datacenter == local {
			localByArea[d.AreaID] = appendCapped(localByArea[d.AreaID], d.Coordinates)
		}
	}
	// Each remote datacenter's servers, by area.
	type key struct{ dc, area string }
	remote := map[key][]Coordinate{}
	var keys []key
	for _, d := range coords {
		if d.Datacenter == local || d.Datacenter == "" {
			continue
		}
		k := key{d.Datacenter, d.AreaID}
		if _, ok := remote[k]; !ok {
			keys = append(keys, k)
		}
		remote[k] = appendCapped(remote[k], d.Coordinates)
	}
	budget := maxRTTPairs
	for _, k := range keys {
		if budget <= 0 {
			break
		}
		var pairs []time.Duration
		for _, a := range localByArea[k.area] {
			for _, b := range remote[k] {
				if budget--; budget < 0 {
					break
				}
				if rtt, ok := a.DistanceTo(b); ok {
					pairs = append(pairs, rtt)
				}
			}
		}
		if len(pairs) == 0 {
			continue
		}
		slices.Sort(pairs)
		m := pairs[len(pairs)/2]
		if cur, ok := out[k.dc]; !ok || m < cur {
			out[k.dc] = m
		}
	}
	return out
}
