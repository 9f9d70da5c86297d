package consulhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

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
	if q.Datacenter != "" {
		req.query.Set("dc", q.Datacenter)
	}
	switch q.Consistency {
	case beacon.ConsistencyStale:
		req.query.Set("stale", "")
	case beacon.ConsistencyConsistent:
		req.query.Set("consistent", "")
	}
	if q.WaitIndex > 0 {
		req.query.Set("index", strconv.FormatUint(q.WaitIndex, 10))
		if q.WaitTime > 0 {
			req.query.Set("wait", strconv.FormatInt(int64((q.WaitTime+time.Millisecond-1)/time.Millisecond), 10)+"ms")
		}
		req.timeout = c.cfg.BlockingTimeout(q.WaitTime)
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: node coordinates: %w", err)
	}
	defer drainClose(resp.Body)
	out, meta, err := decodeNodeCoordinates(resp.Header, resp.Body)
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: node coordinates: %w", err)
	}
	return out, meta, nil
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
