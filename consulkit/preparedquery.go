package consulkit

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
)

// Prepared queries go through consul/api's PreparedQuery client (go-kit
// has none).

var _ beacon.PreparedQueries = (*Client)(nil)

func toAPIQuery(q beacon.PreparedQuery) *api.PreparedQueryDefinition {
	return &api.PreparedQueryDefinition{
		ID:   q.ID,
		Name: q.Name,
		Service: api.ServiceQuery{
			Service: q.Service, Tags: q.Tags, OnlyPassing: q.OnlyPassing, Near: q.Near,
			Failover: api.QueryFailoverOptions{NearestN: q.Failover.NearestN, Datacenters: q.Failover.Datacenters},
		},
	}
}

func fromAPIQuery(d *api.PreparedQueryDefinition) beacon.PreparedQuery {
	return beacon.PreparedQuery{
		ID: d.ID, Name: d.Name, Service: d.Service.Service, Tags: d.Service.Tags,
		OnlyPassing: d.Service.OnlyPassing, Near: d.Service.Near,
		Failover: beacon.QueryFailover{NearestN: d.Service.Failover.NearestN, Datacenters: d.Service.Failover.Datacenters},
	}
}

// writeOptions bounds a write by the request timeout; consul/api fills dc
// from the configured datacenter, as consulhttp does for these writes.
func (c *Client) writeOptions(ctx context.Context) (*api.WriteOptions, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	return (&api.WriteOptions{}).WithContext(rctx), cancel
}

func (c *Client) queryOptions(ctx context.Context) (*api.QueryOptions, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	return (&api.QueryOptions{}).WithContext(rctx), cancel
}

// CreateQuery creates a prepared query and returns its ID.
func (c *Client) CreateQuery(ctx context.Context, def beacon.PreparedQuery) (string, error) {
	if def.ID != "" {
		return "", fmt.Errorf("consulkit: create query %q: %w", def.Name, &beacon.ValidationError{Field: "ID", Reason: "set; Consul chooses a new query's ID"})
	}
	if err := def.Validate(); err != nil {
		return "", fmt.Errorf("consulkit: create query %q: %w", def.Name, err)
	}
	wo, cancel := c.writeOptions(ctx)
	defer cancel()
	id, _, err := c.api.PreparedQuery().Create(toAPIQuery(def), wo)
	if err != nil {
		return "", fmt.Errorf("consulkit: create query %q: %w", def.Name, mapError(ctx, http.MethodPost, "/v1/query", err))
	}
	if !beacon.IsQueryID(id) {
		return "", fmt.Errorf("consulkit: create query %q: %w: created query ID %.60q is not a UUID", def.Name, beacon.ErrMalformedResponse, id)
	}
	return id, nil
}

// UpdateQuery replaces the definition of query def.ID. An unknown ID is an
// error matching beacon.ErrNotFound (see beacon.QueryGone).
func (c *Client) UpdateQuery(ctx context.Context, def beacon.PreparedQuery) error {
	if err := beacon.ValidateQueryID(def.ID); err != nil {
		return fmt.Errorf("consulkit: update query %q: %w", def.ID, err)
	}
	if err := def.Validate(); err != nil {
		return fmt.Errorf("consulkit: update query %q: %w", def.ID, err)
	}
	wo, cancel := c.writeOptions(ctx)
	defer cancel()
	if _, err := c.api.PreparedQuery().Update(toAPIQuery(def), wo); err != nil {
		err = mapError(ctx, http.MethodPut, "/v1/query/"+def.ID, err)
		if gone := beacon.QueryGone(ctx, c.GetQuery, def.ID, err); gone != nil {
			err = gone
		}
		return fmt.Errorf("consulkit: update query %q: %w", def.ID, err)
	}
	return nil
}

// GetQuery returns the prepared query with this ID.
func (c *Client) GetQuery(ctx context.Context, id string) (beacon.PreparedQuery, error) {
	if err := beacon.ValidateQueryID(id); err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("consulkit: query %q: %w", id, err)
	}
	qo, cancel := c.queryOptions(ctx)
	defer cancel()
	defs, _, err := c.api.PreparedQuery().Get(id, qo)
	if err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("consulkit: query %q: %w", id, mapError(ctx, http.MethodGet, "/v1/query/"+id, err))
	}
	qs, err := fromAPIQueries(defs)
	if err == nil && len(qs) != 1 {
		err = fmt.Errorf("%w: %d definitions for one ID", beacon.ErrMalformedResponse, len(qs))
	}
	if err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("consulkit: query %q: %w", id, err)
	}
	return qs[0], nil
}

// ListQueries returns every prepared query the token may read, in
// Consul's order.
func (c *Client) ListQueries(ctx context.Context) ([]beacon.PreparedQuery, error) {
	qo, cancel := c.queryOptions(ctx)
	defer cancel()
	defs, _, err := c.api.PreparedQuery().List(qo)
	if err != nil {
		return nil, fmt.Errorf("consulkit: queries: %w", mapError(ctx, http.MethodGet, "/v1/query", err))
	}
	qs, err := fromAPIQueries(defs)
	if err != nil {
		return nil, fmt.Errorf("consulkit: queries: %w", err)
	}
	return qs, nil
}

// fromAPIQueries holds consul/api's definitions to what consulhttp's
// decoder guarantees: each one present, with a query ID.
func fromAPIQueries(defs []*api.PreparedQueryDefinition) ([]beacon.PreparedQuery, error) {
	out := make([]beacon.PreparedQuery, 0, len(defs))
	for i, d := range defs {
		if d == nil || !beacon.IsQueryID(d.ID) || d.Service.Failover.NearestN < 0 {
			return nil, fmt.Errorf("%w: definition %d has no query ID or a negative NearestN", beacon.ErrMalformedResponse, i)
		}
		out = append(out, fromAPIQuery(d))
	}
	return out, nil
}

// DeleteQuery deletes the prepared query with this ID; one that does not
// exist is not an error.
func (c *Client) DeleteQuery(ctx context.Context, id string) error {
	if err := beacon.ValidateQueryID(id); err != nil {
		return fmt.Errorf("consulkit: delete query %q: %w", id, err)
	}
	wo, cancel := c.writeOptions(ctx)
	defer cancel()
	if _, err := c.api.PreparedQuery().Delete(id, wo); err != nil {
		err = mapError(ctx, http.MethodDelete, "/v1/query/"+id, err)
		if beacon.QueryGone(ctx, c.GetQuery, id, err) == nil {
			return fmt.Errorf("consulkit: delete query %q: %w", id, err)
		}
	}
	return nil
}

// ExecuteQuery executes a prepared query by ID or name: one request, which
// Consul answers at once. consul/api has no ?limit=, so opts.Limit is
// applied here, to the order Consul returned (shuffled or sorted by
// distance, as Consul's own limit would see it).
func (c *Client) ExecuteQuery(ctx context.Context, idOrName string, opts beacon.ExecuteOptions) (beacon.PreparedQueryResult, error) {
	if err := beacon.ValidateQueryRef(idOrName); err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulkit: execute query %q: %w", idOrName, err)
	}
	if err := opts.Validate(); err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulkit: execute query %q: %w", idOrName, err)
	}
	qo, cancel := c.queryOptions(ctx)
	defer cancel()
	if opts.Datacenter != "" {
		qo.Datacenter = opts.Datacenter
	}
	qo.Near = opts.Near
	resp, meta, err := c.api.PreparedQuery().Execute(idOrName, qo)
	if err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulkit: execute query %q: %w", idOrName, mapError(ctx, http.MethodGet, "/v1/query/"+idOrName+"/execute", err))
	}
	res, err := fromExecute(resp, meta)
	if err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulkit: execute query %q: %w", idOrName, err)
	}
	if opts.Limit > 0 && len(res.Instances) > opts.Limit {
		res.Instances = res.Instances[:opts.Limit:opts.Limit]
	}
	return res, nil
}

// fromExecute holds consul/api's execution answer to what consulhttp's
// decoder guarantees: a datacenter name, Failovers ≥ 0, and instances each
// with a node and a service with an ID.
func fromExecute(resp *api.PreparedQueryExecuteResponse, meta *api.QueryMeta) (beacon.PreparedQueryResult, error) {
	if resp == nil || meta == nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("%w: empty answer", beacon.ErrMalformedResponse)
	}
	if resp.Datacenter == "" || beacon.ValidateDatacenter(resp.Datacenter) != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("%w: Datacenter %.80q is not a datacenter name", beacon.ErrMalformedResponse, resp.Datacenter)
	}
	if resp.Failovers < 0 {
		return beacon.PreparedQueryResult{}, fmt.Errorf("%w: Failovers %d is negative", beacon.ErrMalformedResponse, resp.Failovers)
	}
	insts := make([]beacon.Instance, 0, len(resp.Nodes))
	var nm nodeMetas
	for i := range resp.Nodes {
		e := &resp.Nodes[i]
		if e.Node == nil || e.Service == nil || e.Service.ID == "" {
			return beacon.PreparedQueryResult{}, fmt.Errorf("%w: entry %d has no node or service", beacon.ErrMalformedResponse, i)
		}
		insts = append(insts, toInstance(e, &nm))
	}
	return beacon.PreparedQueryResult{
		Service: resp.Service, Datacenter: resp.Datacenter, Failovers: resp.Failovers,
		Instances: insts, Index: meta.LastIndex,
	}, nil
}
