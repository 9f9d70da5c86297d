package consulhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/beaconsd/beacon"
)

var _ beacon.ChangeFeed = (*Client)(nil)

// Checks lists every check of the datacenter (GET /v1/health/state/any);
// with q.WaitIndex set it blocks until a check changes or q.WaitTime ends.
func (c *Client) Checks(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: checks: %w", err)
	}
	req := c.newRequest(http.MethodGet, "/v1/health/state/any")
	c.setRead(req, q.Datacenter, q.Consistency, q.WaitIndex, q.WaitTime)
	// Not reused (reuse.go): the feed keeps only digests of this answer,
	// and a memo of every check in the datacenter would cost a watching
	// cache more heap per instance than all it keeps now.
	return getFeed(c, ctx, req, &c.feedSizes[feedChecks], func() string { return "checks" }, decodeChecks)
}

func (r checkEntry) state() beacon.CheckState {
	st := beacon.Health(r.Status)
	if !st.Valid() {
		st = beacon.HealthCritical
	}
	return beacon.CheckState{Node: r.Node, CheckID: r.CheckID, ServiceID: r.ServiceID, ServiceName: r.ServiceName, Status: st, ModifyIndex: r.ModifyIndex}
}

// checkEntry is one element of GET /v1/health/state/any.
type checkEntry struct {
	Node, CheckID, ServiceID, ServiceName, Status string
	ModifyIndex                                   uint64
}

// decodeChecks turns a /v1/health/state/any answer into check states. Every
// malformed answer is an error wrapping beacon.ErrMalformedResponse; a
// status Beacon does not know reads as critical.
func decodeChecks(h http.Header, body io.Reader) ([]beacon.CheckState, beacon.QueryMeta, error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	var raw []checkEntry
	if err := decodeJSON(body, &raw); err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	out := make([]beacon.CheckState, len(raw))
	for i, r := range raw {
		out[i] = r.state()
	}
	return out, meta, nil
}
