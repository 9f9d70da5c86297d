package consulhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/beaconsd/beacon"
)

var _ beacon.NodeCoordinateLister = (*Client)(nil)

// NodeCoordinates implements beacon.NodeCoordinateLister: the LAN
// coordinate of every node (GET /v1/coordinate/nodes; node:read filters
// them). With q.WaitIndex set it is a blocking query bounded by
// q.WaitTime. An agent with coordinates disabled answers 401, a
// *beacon.StatusError.
func (c *Client) NodeCoordinates(ctx context.Context, q beacon.CoordinatesQuery) ([]beacon.NodeCoordinate, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: node coordinates: %w", err)
	}
	req := c.newRequest(http.MethodGet, "/v1/coordinate/nodes")
	c.setRead(req, q.Datacenter, q.Consistency, q.WaitIndex, q.WaitTime)
	return getDecoded(c, ctx, req, func() string { return "node coordinates" }, decodeNodeCoordinates)
}

// decodeNodeCoordinates reads GET /v1/coordinate/nodes' answer. Every
// entry needs a node name and a coordinate; Consul sends no other. Numbers
// beyond float64 make it malformed (encoding/json refuses them); odd but
// finite values, or vectors of another length, are kept for
// beacon.NewNodeRTTs to leave out.
func decodeNodeCoordinates(h http.Header, body io.Reader) ([]beacon.NodeCoordinate, beacon.QueryMeta, error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	var raw []*struct {
		Node    string
		Segment string
		Coord   *beacon.Coordinate
	}
	if err := decodeJSON(body, &raw); err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	out := make([]beacon.NodeCoordinate, 0, len(raw))
	for i, n := range raw {
		if n == nil || n.Node == "" || n.Coord == nil {
			return nil, beacon.QueryMeta{}, fmt.Errorf("%w: node coordinate %d has no node name or no coordinate", beacon.ErrMalformedResponse, i)
		}
		out = append(out, beacon.NodeCoordinate{Node: intern(n.Node), Segment: n.Segment, Coord: *n.Coord})
	}
	return out, meta, nil
}

// LocalNode implements beacon.NodeCoordinateLister: the agent's own node
// name, from Self (GET /v1/agent/self; needs agent:read).
func (c *Client) LocalNode(ctx context.Context) (string, error) {
	self, err := c.Self(ctx)
	if err != nil {
		return "", err
	}
	if self.Node == "" {
		return "", fmt.Errorf("consulhttp: agent self: %w: no node name", beacon.ErrMalformedResponse)
	}
	return self.Node, nil
}
