package consulhttp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/beaconsd/beacon"
)

// CatalogService is one service name in the catalog with the tags its
// instances carry.
type CatalogService struct {
	Name string
	Tags []string
}

// Services lists every service of the datacenter, sorted by name
// (GET /v1/catalog/services). With ACLs on, services the token may not read
// are left out without an error, as Consul does.
func (c *Client) Services(ctx context.Context) ([]CatalogService, beacon.QueryMeta, error) {
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/catalog/services"))
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: services: %w", err)
	}
	defer drainClose(resp.Body)
	out, meta, err := decodeServices(resp.Header, resp.Body)
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: services: %w", err)
	}
	return out, meta, nil
}

// decodeServices turns a GET /v1/catalog/services answer (service name to
// tags) into services sorted by name, each with its tags sorted and never
// nil. Every malformed answer is an error wrapping
// beacon.ErrMalformedResponse.
func decodeServices(h http.Header, body io.Reader) ([]CatalogService, beacon.QueryMeta, error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	var raw map[string][]string
	if err := decodeJSON(body, &raw); err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	out := make([]CatalogService, 0, len(raw))
	for name, tags := range raw {
		if tags == nil {
			tags = []string{}
		}
		slices.Sort(tags)
		out = append(out, CatalogService{Name: name, Tags: tags})
	}
	slices.SortFunc(out, func(a, b CatalogService) int { return strings.Compare(a.Name, b.Name) })
	return out, meta, nil
}

// ServiceInstances returns every instance of service in any health state
// (GET /v1/health/service/:name without ?passing). Unlike Instances it
// accepts any non-empty name the catalog may hold, DNS label or not, so a
// tool can report on services registered by others.
func (c *Client) ServiceInstances(ctx context.Context, service string) ([]beacon.Instance, beacon.QueryMeta, error) {
	if service == "" {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: instances: %w", &beacon.ValidationError{Field: "Service", Reason: "empty"})
	}
	resp, err := c.do(ctx, c.newRequest(http.MethodGet, "/v1/health/service/"+url.PathEscape(service)))
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: instances of %q: %w", service, err)
	}
	defer drainClose(resp.Body)
	insts, meta, err := decodeHealth(resp.Header, resp.Body)
	if err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: instances of %q: %w", service, err)
	}
	return insts, meta, nil
}
