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
