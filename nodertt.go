package beacon

import (
	"cmp"
	"context"
	"iter"
	"slices"
	"time"
)

// CoordinatesQuery selects the LAN coordinates of every node of a
// datacenter (GET /v1/coordinate/nodes).
type CoordinatesQuery struct {
	Datacenter  string
	Consistency Consistency
	// WaitIndex and WaitTime make it a blocking query, as in Query.
	WaitIndex uint64
	WaitTime  time.Duration
}

// Validate checks q before it is sent.
func (q CoordinatesQuery) Validate() error {
	return ChecksQuery{Datacenter: q.Datacenter, Consistency: q.Consistency, WaitTime: q.WaitTime}.Validate()
}

// NodeCoordinateLister is an optional capability of a backend: the LAN
// network coordinates of a datacenter's nodes and the name of the agent's
// own node, from which a client estimates round-trip times to any node
// (NewNodeRTTs) without asking Consul to sort with ?near=, which keeps a
// health query off the agent's streaming backend. Both backends implement
// it; they are safe for concurrent use, and each call is bounded by ctx
// and the backend's request timeout (a blocking one by its wait too).
type NodeCoordinateLister interface {
	// NodeCoordinates lists the LAN coordinate of every node Consul has
	// one for (a node appears once per network segment; a node that has
	// not sent one yet is missing). With q.WaitIndex set it blocks until
	// a coordinate changes or q.WaitTime ends. Consul answers 401 when the
	// agent has coordinates disabled (disable_coordinates), a
	// *StatusError; a token without node:read sees fewer nodes.
	NodeCoordinates(ctx context.Context, q CoordinatesQuery) ([]NodeCoordinate, QueryMeta, error)
	// LocalNode is the node name of the agent asked (GET /v1/agent/self,
	// Config.NodeName; the token needs agent:read).
	LocalNode(ctx context.Context) (string, error)
}

// NodeRTTs is an immutable table of estimated round-trip times from one
// node (From) to the nodes of its datacenter, computed from their LAN
// coordinates as Consul computes them (Coordinate.DistanceTo). A new table
// is built for every change; compare tables by pointer to tell whether
// anything changed. A nil *NodeRTTs knows nothing, and its methods are
// safe to call.
type NodeRTTs struct {
	// From is the node the times are measured from.
	From string
	// Index is the X-Consul-Index of the coordinates it was built from.
	Index uint64
	rtt   map[string]time.Duration
}

// NewNodeRTTs estimates the round-trip time from node from to every node
// of coords. A node's time is the distance between its coordinate and
// from's in the same network segment (the lowest, when it shares several);
// from itself is 0, as a call to one's own node stays on it. Nodes whose
// estimate is impossible (see Coordinate.DistanceTo: mismatched
// dimensions, values that are not finite) are left out, and when from has
// no coordinate, or from is "", the table knows no node at all: times are
// only comparable when measured from the same point. It never fails and
// never panics, whatever coords holds; the work is linear in its size
// times the coordinates' dimensions.
func NewNodeRTTs(from string, index uint64, coords []NodeCoordinate) *NodeRTTs {
	t := &NodeRTTs{From: from, Index: index, rtt: map[string]time.Duration{}}
	if from == "" {
		return t
	}
	src := map[string]Coordinate{} // from's coordinate in each segment
	for _, c := range coords {
		if c.Node == from && c.Coord.Valid() {
			src[c.Segment] = c.Coord
		}
	}
	if len(src) == 0 {
		return t
	}
	for _, c := range coords {
		if c.Node == "" || c.Node == from {
			continue
		}
		s, ok := src[c.Segment]
		if !ok {
			continue
		}
		rtt, ok := s.DistanceTo(c.Coord)
		if !ok {
			continue
		}
		if cur, seen := t.rtt[c.Node]; !seen || rtt < cur {
			t.rtt[c.Node] = rtt
		}
	}
	t.rtt[from] = 0
	return t
}

// RTT returns the estimated round-trip time to node, and whether there is
// one.
func (t *NodeRTTs) RTT(node string) (time.Duration, bool) {
	if t == nil {
		return 0, false
	}
	d, ok := t.rtt[node]
	return d, ok
}

// Len returns how many nodes the table has a time for (From included,
// when it knows any).
func (t *NodeRTTs) Len() int {
	if t == nil {
		return 0
	}
	return len(t.rtt)
}

// All yields every node the table has a time for, and the time, in no
// particular order.
func (t *NodeRTTs) All() iter.Seq2[string, time.Duration] {
	return func(yield func(string, time.Duration) bool) {
		if t == nil {
			return
		}
		for n, d := range t.rtt {
			if !yield(n, d) {
				return
			}
		}
	}
}

// SortByRTT sorts insts nearest first by the estimated round-trip time to
// their nodes, as ?near= would have Consul sort them: those with no
// estimate last; ties, and those without, in their given order.
func SortByRTT(insts []Instance, t *NodeRTTs) {
	slices.SortStableFunc(insts, func(a, b Instance) int {
		ra, oka := t.RTT(a.Node)
		rb, okb := t.RTT(b.Node)
		switch {
		case oka != okb:
			if oka {
				return -1
			}
			return 1
		case !oka:
			return 0
		}
		return cmp.Compare(ra, rb)
	})
}
