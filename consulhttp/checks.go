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

var _ beacon.ChangeFeed = (*Client)(nil)

// Checks lists every check of the datacenter (GET /v1/health/state/any);
// with q.WaitIndex set it blocks until a check changes or q.WaitTime ends.
func (c *Client) Checks(ctx context.Context, q beacon.ChecksQuery) ([]beacon.CheckState, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: checks: %w", err)
	}
	req := c.newRequest(http.MethodGet, "/v1/health/state/any")
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
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: checks: %w", err)
	}
	defer drainClose(resp.Body)
	out, meta, err := decodeChecks(resp.Header, resp.Body)
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: checks: %w", err)
	}
	return out, meta, nil
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
		st := beacon.Health(r.Status)
		if !st.Valid() {
			st = beacon.HealthCritical
		}
		out[i] = beacon.CheckState{Node: r.Node, CheckID: r.CheckID, ServiceID: r.ServiceID, ServiceName: r.ServiceName, Status: st, ModifyIndex: r.ModifyIndex}
	}
	return out, meta, nil
}
