package consulhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/beaconsd/beacon"
)

var _ beacon.PreparedQueries = (*Client)(nil)

// queryDef is a prepared query definition with Consul's field names: the
// body of POST and PUT /v1/query and an element of GET /v1/query.
type queryDef struct {
	ID      string `json:",omitempty"`
	Name    string
	Service queryService
}

type queryService struct {
	Service     string
	Tags        []string `json:",omitempty"`
	OnlyPassing bool
	Near        string `json:",omitempty"`
	Failover    struct {
		NearestN    int
		Datacenters []string `json:",omitempty"`
	}
}

func toQueryDef(q beacon.PreparedQuery) queryDef {
	def := queryDef{ID: q.ID, Name: q.Name, Service: queryService{
		Service: q.Service, Tags: q.Tags, OnlyPassing: q.OnlyPassing, Near: q.Near,
	}}
	def.Service.Failover.NearestN = q.Failover.NearestN
	def.Service.Failover.Datacenters = q.Failover.Datacenters
	return def
}

// writeRequest is a request that writes to the servers' prepared queries:
// unlike the agent's own endpoints, it goes to the configured datacenter.
func (c *Client) writeRequest(method, rawPath string) *request {
	req := c.newRequest(method, rawPath)
	if c.cfg.Datacenter != "" {
		req.query.Set("dc", c.cfg.Datacenter)
	}
	return req
}

// CreateQuery creates a prepared query (POST /v1/query) and returns its ID.
func (c *Client) CreateQuery(ctx context.Context, def beacon.PreparedQuery) (string, error) {
	if err := validateNewQuery(def); err != nil {
		return "", fmt.Errorf("consulhttp: create query %q: %w", def.Name, err)
	}
	req := c.writeRequest(http.MethodPost, "/v1/query")
	req.body = toQueryDef(def)
	resp, err := c.do(ctx, req)
	if err != nil {
		return "", fmt.Errorf("consulhttp: create query %q: %w", def.Name, err)
	}
	defer drainClose(resp.Body)
	id, err := decodeQueryCreated(resp.Body)
	if err != nil {
		return "", fmt.Errorf("consulhttp: create query %q: %w", def.Name, err)
	}
	return id, nil
}

// validateNewQuery is what CreateQuery checks: Consul chooses the ID.
func validateNewQuery(def beacon.PreparedQuery) error {
	if def.ID != "" {
		return &beacon.ValidationError{Field: "ID", Reason: "set; Consul chooses a new query's ID"}
	}
	return def.Validate()
}

// UpdateQuery replaces the definition of query def.ID
// (PUT /v1/query/:id). Consul answers an unknown ID with a server error;
// UpdateQuery then asks for the query, and reports its absence as an error
// matching beacon.ErrNotFound.
func (c *Client) UpdateQuery(ctx context.Context, def beacon.PreparedQuery) error {
	if err := validateQueryUpdate(def); err != nil {
		return fmt.Errorf("consulhttp: update query %q: %w", def.ID, err)
	}
	req := c.writeRequest(http.MethodPut, "/v1/query/"+url.PathEscape(def.ID))
	req.body = toQueryDef(def)
	if err := c.send(ctx, req); err != nil {
		if gone := beacon.QueryGone(ctx, c.GetQuery, def.ID, err); gone != nil {
			err = gone
		}
		return fmt.Errorf("consulhttp: update query %q: %w", def.ID, err)
	}
	return nil
}

// validateQueryUpdate is what UpdateQuery checks: the ID names the query.
func validateQueryUpdate(def beacon.PreparedQuery) error {
	if err := beacon.ValidateQueryID(def.ID); err != nil {
		return err
	}
	return def.Validate()
}

// GetQuery returns the prepared query with this ID (GET /v1/query/:id).
func (c *Client) GetQuery(ctx context.Context, id string) (beacon.PreparedQuery, error) {
	if err := beacon.ValidateQueryID(id); err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("consulhttp: query %q: %w", id, err)
	}
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/query/"+url.PathEscape(id)))
	if err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("consulhttp: query %q: %w", id, err)
	}
	defer drainClose(resp.Body)
	qs, err := decodeQueries(resp.Body)
	if err == nil && len(qs) != 1 {
		err = fmt.Errorf("%w: %d definitions for one ID", beacon.ErrMalformedResponse, len(qs))
	}
	if err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("consulhttp: query %q: %w", id, err)
	}
	return qs[0], nil
}

// ListQueries returns every prepared query the token may read
// (GET /v1/query), in Consul's order.
func (c *Client) ListQueries(ctx context.Context) ([]beacon.PreparedQuery, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/query"))
	if err != nil {
		return nil, fmt.Errorf("consulhttp: queries: %w", err)
	}
	defer drainClose(resp.Body)
	qs, err := decodeQueries(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("consulhttp: queries: %w", err)
	}
	return qs, nil
}

// DeleteQuery deletes the prepared query with this ID
// (DELETE /v1/query/:id). A query that does not exist is not an error.
func (c *Client) DeleteQuery(ctx context.Context, id string) error {
	if err := beacon.ValidateQueryID(id); err != nil {
		return fmt.Errorf("consulhttp: delete query %q: %w", id, err)
	}
	err := c.send(ctx, c.writeRequest(http.MethodDelete, "/v1/query/"+url.PathEscape(id)))
	if err != nil && beacon.QueryGone(ctx, c.GetQuery, id, err) == nil {
		return fmt.Errorf("consulhttp: delete query %q: %w", id, err)
	}
	return nil
}

// ExecuteQuery executes a prepared query by ID or name
// (GET /v1/query/:idOrName/execute): one request, which Consul answers at
// once. Its instances are decoded as Instances decodes a health answer.
func (c *Client) ExecuteQuery(ctx context.Context, idOrName string, opts beacon.ExecuteOptions) (beacon.PreparedQueryResult, error) {
	if err := beacon.ValidateQueryRef(idOrName); err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulhttp: execute query %q: %w", idOrName, err)
	}
	if err := opts.Validate(); err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulhttp: execute query %q: %w", idOrName, err)
	}
	req := c.newRequest(http.MethodGet, "/v1/query/"+url.PathEscape(idOrName)+"/execute")
	if opts.Datacenter != "" {
		req.query.Set("dc", opts.Datacenter)
	}
	if opts.Near != "" {
		req.query.Set("near", opts.Near)
	}
	if opts.Limit > 0 {
		req.query.Set("limit", strconv.Itoa(opts.Limit))
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulhttp: execute query %q: %w", idOrName, err)
	}
	defer drainClose(resp.Body)
	res, err := decodeExecute(resp.Header, resp.Body)
	if err != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("consulhttp: execute query %q: %w", idOrName, err)
	}
	return res, nil
}

// decodeQueryCreated reads POST /v1/query's answer, {"ID": "…"}: the ID
// must have a query ID's shape.
func decodeQueryCreated(body io.Reader) (string, error) {
	var out struct{ ID string }
	if err := decodeJSON(body, &out); err != nil {
		return "", err
	}
	if !beacon.IsQueryID(out.ID) {
		return "", fmt.Errorf("%w: created query ID %.60q is not a UUID", beacon.ErrMalformedResponse, out.ID)
	}
	return out.ID, nil
}

// decodeQueries reads GET /v1/query and /v1/query/:id answers: a list of
// definitions, each with a query ID's shape. Every malformed answer is an
// error wrapping beacon.ErrMalformedResponse.
func decodeQueries(body io.Reader) ([]beacon.PreparedQuery, error) {
	var defs []queryDef
	if err := decodeJSON(body, &defs); err != nil {
		return nil, err
	}
	out := make([]beacon.PreparedQuery, 0, len(defs))
	for i, d := range defs {
		if !beacon.IsQueryID(d.ID) {
			return nil, fmt.Errorf("%w: definition %d has ID %.60q, not a UUID", beacon.ErrMalformedResponse, i, d.ID)
		}
		if d.Service.Failover.NearestN < 0 {
			return nil, fmt.Errorf("%w: definition %d has NearestN %d", beacon.ErrMalformedResponse, i, d.Service.Failover.NearestN)
		}
		out = append(out, beacon.PreparedQuery{
			ID: d.ID, Name: d.Name, Service: d.Service.Service, Tags: d.Service.Tags,
			OnlyPassing: d.Service.OnlyPassing, Near: d.Service.Near,
			Failover: beacon.QueryFailover{NearestN: d.Service.Failover.NearestN, Datacenters: d.Service.Failover.Datacenters},
		})
	}
	return out, nil
}

// decodeExecute reads GET /v1/query/:id/execute's answer. Its Nodes are a
// health answer's entries and are decoded by decodeHealth, with the
// answer's headers; Datacenter must be a datacenter name and Failovers not
// negative. Every malformed answer is an error wrapping
// beacon.ErrMalformedResponse (beacon.ErrUnavailable for a connection that
// breaks mid-answer).
func decodeExecute(h http.Header, body io.Reader) (beacon.PreparedQueryResult, error) {
	var raw struct {
		Service    string
		Nodes      json.RawMessage
		Datacenter string
		Failovers  int
	}
	if err := decodeJSON(body, &raw); err != nil {
		return beacon.PreparedQueryResult{}, err
	}
	if raw.Nodes == nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("%w: no Nodes in the answer", beacon.ErrMalformedResponse)
	}
	if raw.Datacenter == "" || beacon.ValidateDatacenter(raw.Datacenter) != nil {
		return beacon.PreparedQueryResult{}, fmt.Errorf("%w: Datacenter %.80q is not a datacenter name", beacon.ErrMalformedResponse, raw.Datacenter)
	}
	if raw.Failovers < 0 {
		return beacon.PreparedQueryResult{}, fmt.Errorf("%w: Failovers %d is negative", beacon.ErrMalformedResponse, raw.Failovers)
	}
	insts, meta, err := decodeHealth(h, bytes.NewReader(raw.Nodes))
	if err != nil {
		return beacon.PreparedQueryResult{}, err
	}
	return beacon.PreparedQueryResult{
		Service: intern(raw.Service), Datacenter: intern(raw.Datacenter), Failovers: raw.Failovers,
		Instances: insts, Index: meta.LastIndex,
	}, nil
}
