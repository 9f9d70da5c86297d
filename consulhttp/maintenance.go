package consulhttp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/beaconsd/beacon"
)

var _ beacon.Maintainer = (*Client)(nil)

// Maintenance puts the instance id in maintenance (on) or takes it out
// (PUT /v1/agent/service/maintenance/:id?enable=&reason=). The reason is
// validated before sending and sent only with on; an ID the agent does
// not know is an error matching beacon.ErrNotFound.
func (c *Client) Maintenance(ctx context.Context, id string, on bool, reason string) error {
	if err := beacon.ValidateMaintenance(id, reason); err != nil {
		return fmt.Errorf("consulhttp: maintenance %q: %w", id, err)
	}
	req := c.newRequest(http.MethodPut, "/v1/agent/service/maintenance/"+url.PathEscape(id))
	req.query.Set("enable", strconv.FormatBool(on))
	if on && reason != "" {
		req.query.Set("reason", reason)
	}
	if err := c.send(ctx, req); err != nil {
		return fmt.Errorf("consulhttp: maintenance %q: %w", id, err)
	}
	return nil
}

// InMaintenance reports whether the agent holds id's maintenance check
// (GET /v1/agent/checks filtered to its ID) and the check's notes.
func (c *Client) InMaintenance(ctx context.Context, id string) (bool, string, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return false, "", fmt.Errorf("consulhttp: maintenance of %q: %w", id, err)
	}
	req := c.newRequest(http.MethodGet, "/v1/agent/checks")
	req.query.Set("filter", fmt.Sprintf("CheckID == %q", beacon.MaintenanceCheckPrefix+id))
	resp, err := c.do(ctx, req)
	if err != nil {
		return false, "", fmt.Errorf("consulhttp: maintenance of %q: %w", id, err)
	}
	defer drainClose(resp.Body)
	var checks map[string]struct{ Notes string }
	if err := decodeJSON(resp.Body, &checks); err != nil {
		return false, "", fmt.Errorf("consulhttp: maintenance of %q: %w", id, err)
	}
	ch, ok := checks[beacon.MaintenanceCheckPrefix+id]
	return ok, ch.Notes, nil
}
