package consulhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/beaconsd/beacon"
)

var _ beacon.DatacenterLister = (*Client)(nil)

// Datacenters implements beacon.DatacenterLister: every datacenter the
// agent's servers know, in Consul's order, nearest first
// (GET /v1/catalog/datacenters; no ACL needed).
func (c *Client) Datacenters(ctx context.Context) ([]string, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/catalog/datacenters"))
	if err != nil {
		return nil, fmt.Errorf("consulhttp: datacenters: %w", err)
	}
	defer drainClose(resp.Body)
	dcs, err := decodeDatacenters(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("consulhttp: datacenters: %w", err)
	}
	return dcs, nil
}

// decodeDatacenters reads GET /v1/catalog/datacenters' answer, a list of
// names. A name Consul would not accept (beacon.ValidateDatacenter), an
// empty one or a repeated one makes the answer malformed: it could not be
// asked for with ?dc=.
func decodeDatacenters(body io.Reader) ([]string, error) {
	var dcs []string
	if err := decodeJSON(body, &dcs); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(dcs))
	for _, dc := range dcs {
		if err := checkDatacenterName(dc); err != nil {
			return nil, err
		}
		if seen[dc] {
			return nil, fmt.Errorf("%w: datacenter %q listed twice", beacon.ErrMalformedResponse, dc)
		}
		seen[dc] = true
	}
	if dcs == nil {
		dcs = []string{}
	}
	return dcs, nil
}

// checkDatacenterName refuses a datacenter name in an answer that Consul
// would not accept in its configuration.
func checkDatacenterName(dc string) error {
	if dc == "" {
		return fmt.Errorf("%w: an empty datacenter name", beacon.ErrMalformedResponse)
	}
	if err := beacon.ValidateDatacenter(dc); err != nil {
		return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	return nil
}

// DatacenterCoordinates implements beacon.DatacenterLister: the WAN
// coordinates of every server the agent's servers know
// (GET /v1/coordinate/datacenters; no ACL needed). An agent with
// coordinates disabled answers 401, a *beacon.StatusError.
func (c *Client) DatacenterCoordinates(ctx context.Context) ([]beacon.DatacenterCoordinates, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/coordinate/datacenters"))
	if err != nil {
		return nil, fmt.Errorf("consulhttp: datacenter coordinates: %w", err)
	}
	defer drainClose(resp.Body)
	out, err := decodeDatacenterCoordinates(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("consulhttp: datacenter coordinates: %w", err)
	}
	return out, nil
}

// decodeDatacenterCoordinates reads GET /v1/coordinate/datacenters'
// answer. Every entry needs a valid datacenter name, and every node a
// name and a coordinate; Consul sends no other. Numbers beyond float64
// make it malformed (encoding/json refuses them); odd but finite values
// are kept, for beacon.SortDatacentersByRTT to leave out.
func decodeDatacenterCoordinates(body io.Reader) ([]beacon.DatacenterCoordinates, error) {
	var raw []*struct {
		Datacenter  string
		AreaID      string
		Coordinates []*struct {
			Node    string
			Segment string
			Coord   *beacon.Coordinate
		}
	}
	if err := decodeJSON(body, &raw); err != nil {
		return nil, err
	}
	out := make([]beacon.DatacenterCoordinates, 0, len(raw))
	for i, d := range raw {
		if d == nil {
			return nil, fmt.Errorf("%w: datacenter entry %d is null", beacon.ErrMalformedResponse, i)
		}
		if err := checkDatacenterName(d.Datacenter); err != nil {
			return nil, err
		}
		dc := beacon.DatacenterCoordinates{Datacenter: d.Datacenter, AreaID: d.AreaID, Coordinates: make([]beacon.NodeCoordinate, 0, len(d.Coordinates))}
		for j, n := range d.Coordinates {
			if n == nil || n.Node == "" || n.Coord == nil {
				return nil, fmt.Errorf("%w: datacenter %q: node entry %d has no name or no coordinate", beacon.ErrMalformedResponse, d.Datacenter, j)
			}
			dc.Coordinates = append(dc.Coordinates, beacon.NodeCoordinate{Node: n.Node, Segment: n.Segment, Coord: *n.Coord})
		}
		out = append(out, dc)
	}
	return out, nil
}

// LocalDatacenter implements beacon.DatacenterLister: the agent's own
// datacenter, from Self (GET /v1/agent/self; needs agent:read).
func (c *Client) LocalDatacenter(ctx context.Context) (string, error) {
	self, err := c.Self(ctx)
	if err != nil {
		return "", err
	}
	if err := checkDatacenterName(self.Datacenter); err != nil {
		return "", fmt.Errorf("consulhttp: agent self: %w", err)
	}
	return self.Datacenter, nil
}
