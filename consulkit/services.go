package consulkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/uisummary"
)

var _ beacon.ServiceSummaries = (*Client)(nil)

const summariesPath = "/v1/internal/ui/services"

// ServiceSummaries implements beacon.ServiceSummaries through consul/api's
// Raw().Query on GET /v1/internal/ui/services, an endpoint internal to
// Consul (see beacon.ServiceSummaries), which consul/api has no call for.
// Its body cap is a multiple of the client's that grows with the largest
// answer seen, as consulhttp's: the answer grows with the datacenter.
func (c *Client) ServiceSummaries(ctx context.Context, q beacon.ServicesQuery) ([]beacon.ServiceSummary, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: service summaries: %w", err)
	}
	timeout := c.cfg.RequestTimeout()
	opts := &api.QueryOptions{
		Datacenter:        q.Datacenter,
		AllowStale:        q.Consistency == beacon.ConsistencyStale,
		RequireConsistent: q.Consistency == beacon.ConsistencyConsistent,
		Filter:            q.Filter(),
	}
	if q.WaitIndex > 0 {
		opts.WaitIndex, opts.WaitTime = q.WaitIndex, q.WaitTime
		timeout = c.cfg.BlockingTimeout(q.WaitTime)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rctx = context.WithValue(rctx, bodyCapKey{}, max(DefaultMaxBodyBytes*feedCapFactor, c.summariesSize.Load()*feedGrowth))
	var out summaries
	meta, err := c.api.Raw().Query(summariesPath, &out, opts.WithContext(rctx))
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulkit: service summaries: %w", mapError(ctx, http.MethodGet, summariesPath, err))
	}
	for n := out.size; ; {
		old := c.summariesSize.Load()
		if n <= old || c.summariesSize.CompareAndSwap(old, n) {
			break
		}
	}
	return out.list, beacon.QueryMeta{LastIndex: meta.LastIndex, KnownLeader: meta.KnownLeader, LastContact: meta.LastContact,
		FilteredByACLs: meta.ResultsFilteredByACLs, Backend: beacon.ParseQueryBackend(meta.QueryBackend)}, nil
}

// Body caps of the summaries' answers, as consulhttp's feed queries have.
const (
	feedCapFactor = 8
	feedGrowth    = 4
)

// bodyCapKey, in a request's context, replaces the transport's body cap
// for that request (an int64).
type bodyCapKey struct{}

// summaries decodes the answer with uisummary, so consul/api's decoding
// keeps no node names either.
type summaries struct {
	list []beacon.ServiceSummary
	size int64
}

func (s *summaries) UnmarshalJSON(data []byte) error {
	list, err := uisummary.Decode(json.NewDecoder(bytes.NewReader(data)))
	if err != nil {
		return fmt.Errorf("%w: %w", errMalformed, err)
	}
	s.list, s.size = list, int64(len(data))
	return nil
}
