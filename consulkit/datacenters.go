package consulkit

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
)

var _ beacon.DatacenterLister = (*Client)(nil)

// consul/api's Catalog().Datacenters(), Coordinate().Datacenters() and
// Agent().Self() take no context or QueryOptions, so nothing could cancel
// them. The calls below make the same requests through consul/api's Raw(),
// which does take a context, into consul/api's own answer types.

// Datacenters implements beacon.DatacenterLister as
// Catalog().Datacenters() does (GET /v1/catalog/datacenters): Consul's
// order, nearest first. Names Consul would not accept, empty or repeated
// ones, make the answer malformed, as in consulhttp.
func (c *Client) Datacenters(ctx context.Context) ([]string, error) {
	const path = "/v1/catalog/datacenters"
	var dcs []string
	if err := c.rawQuery(ctx, path, &dcs); err != nil {
		return nil, fmt.Errorf("consulkit: datacenters: %w", err)
	}
	seen := make(map[string]bool, len(dcs))
	for _, dc := range dcs {
		if err := checkDatacenterName(dc); err != nil {
			return nil, fmt.Errorf("consulkit: datacenters: %w", err)
		}
		if seen[dc] {
			return nil, fmt.Errorf("consulkit: datacenters: %w: datacenter %q listed twice", beacon.ErrMalformedResponse, dc)
		}
		seen[dc] = true
	}
	if dcs == nil {
		dcs = []string{}
	}
	return dcs, nil
}

// DatacenterCoordinates implements beacon.DatacenterLister as
// Coordinate().Datacenters() does (GET /v1/coordinate/datacenters). An
// agent with coordinates disabled answers 401, a *beacon.StatusError.
func (c *Client) DatacenterCoordinates(ctx context.Context) ([]beacon.DatacenterCoordinates, error) {
	const path = "/v1/coordinate/datacenters"
	var raw []*api.CoordinateDatacenterMap
	if err := c.rawQuery(ctx, path, &raw); err != nil {
		return nil, fmt.Errorf("consulkit: datacenter coordinates: %w", err)
	}
	out := make([]beacon.DatacenterCoordinates, 0, len(raw))
	for i, d := range raw {
		if d == nil {
			return nil, fmt.Errorf("consulkit: datacenter coordinates: %w: datacenter entry %d is null", beacon.ErrMalformedResponse, i)
		}
		if err := checkDatacenterName(d.Datacenter); err != nil {
			return nil, fmt.Errorf("consulkit: datacenter coordinates: %w", err)
		}
		dc := beacon.DatacenterCoordinates{Datacenter: d.Datacenter, AreaID: d.AreaID, Coordinates: make([]beacon.NodeCoordinate, 0, len(d.Coordinates))}
		for j, n := range d.Coordinates {
			if n.Node == "" || n.Coord == nil {
				return nil, fmt.Errorf("consulkit: datacenter coordinates: %w: datacenter %q: node entry %d has no name or no coordinate",
					beacon.ErrMalformedResponse, d.Datacenter, j)
			}
			dc.Coordinates = append(dc.Coordinates, beacon.NodeCoordinate{Node: n.Node, Segment: n.Segment, Coord: beacon.Coordinate{
				Vec: n.Coord.Vec, Error: n.Coord.Error, Adjustment: n.Coord.Adjustment, Height: n.Coord.Height,
			}})
		}
		out = append(out, dc)
	}
	return out, nil
}

// LocalDatacenter implements beacon.DatacenterLister from what
// Agent().Self() reads (GET /v1/agent/self, Config.Datacenter; needs
// agent:read).
func (c *Client) LocalDatacenter(ctx context.Context) (string, error) {
	var self struct{ Config struct{ Datacenter string } }
	if err := c.rawQuery(ctx, "/v1/agent/self", &self); err != nil {
		return "", fmt.Errorf("consulkit: agent self: %w", err)
	}
	if err := checkDatacenterName(self.Config.Datacenter); err != nil {
		return "", fmt.Errorf("consulkit: agent self: %w", err)
	}
	return self.Config.Datacenter, nil
}

// rawQuery GETs path into out through consul/api, bounded by ctx and the
// request timeout, with errors mapped to Beacon's.
func (c *Client) rawQuery(ctx context.Context, path string, out any) error {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	_, err := c.api.Raw().Query(path, out, (&api.QueryOptions{}).WithContext(rctx))
	return mapError(ctx, http.MethodGet, path, err)
}

// checkDatacenterName refuses a datacenter name in an answer that Consul
// would not accept in its configuration: it could not be asked for with
// ?dc=.
func checkDatacenterName(dc string) error {
	if dc == "" {
		return fmt.Errorf("%w: an empty datacenter name", beacon.ErrMalformedResponse)
	}
	if err := beacon.ValidateDatacenter(dc); err != nil {
		return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	return nil
}
