package consulkit

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
)

var _ beacon.NodeCoordinateLister = (*Client)(nil)

// NodeCoordinates implements beacon.NodeCoordinateLister through
// consul/api's Coordinate().Nodes (GET /v1/coordinate/nodes), which takes
// QueryOptions and so a context and a blocking index. Entries without a
// node name or a coordinate make the answer malformed, as in consulhttp.
func (c *Client) NodeCoordinates(ctx context.Context, q beacon.CoordinatesQuery) ([]beacon.NodeCoordinate, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: node coordinates: %w", err)
	}
	timeout := c.cfg.RequestTimeout()
	opts := &api.QueryOptions{
		Datacenter:        q.Datacenter,
		AllowStale:        q.Consistency == beacon.ConsistencyStale,
		RequireConsistent: q.Consistency == beacon.ConsistencyConsistent,
	}
	if q.WaitIndex > 0 {
		opts.WaitIndex, opts.WaitTime = q.WaitIndex, q.WaitTime
		timeout = c.cfg.BlockingTimeout(q.WaitTime)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	entries, meta, err := c.api.Coordinate().Nodes(opts.WithContext(rctx))
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: node coordinates: %w", mapError(ctx, http.MethodGet, "/v1/coordinate/nodes", err))
	}
	out := make([]beacon.NodeCoordinate, 0, len(entries))
	for i, e := range entries {
		if e == nil || e.Node == "" || e.Coord == nil {
			return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: node coordinates: %w: node coordinate %d has no node name or no coordinate", beacon.ErrMalformedResponse, i)
		}
		out = append(out, beacon.NodeCoordinate{Node: e.Node, Segment: e.Segment, Coord: beacon.Coordinate{
			Vec: e.Coord.Vec, Error: e.Coord.Error, Adjustment: e.Coord.Adjustment, Height: e.Coord.Height,
		}})
	}
	return out, beacon.QueryMeta{LastIndex: meta.LastIndex, KnownLeader: meta.KnownLeader, LastContact: meta.LastContact,
		FilteredByACLs: meta.ResultsFilteredByACLs, Backend: beacon.ParseQueryBackend(meta.QueryBackend)}, nil
}

// LocalNode implements beacon.NodeCoordinateLister from what
// Agent().Self() reads (GET /v1/agent/self, Config.NodeName; needs
// agent:read).
func (c *Client) LocalNode(ctx context.Context) (string, error) {
	var self struct{ Config struct{ NodeName string } }
	if err := c.rawQuery(ctx, "/v1/agent/self", &self); err != nil {
		return "", fmt.Errorf("consulkit: agent self: %w", err)
	}
	if self.Config.NodeName == "" {
		return "", fmt.Errorf("consulkit: agent self: %w: no node name", beacon.ErrMalformedResponse)
	}
	return self.Config.NodeName, nil
}
