package consulkit

import (
	"context"
	"fmt"
	"net/http"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
)

var _ beacon.Maintainer = (*Client)(nil)

// Maintenance puts the instance id in maintenance (on) or takes it out
// through consul/api (go-kit has no such call), bounded by ctx and the
// request timeout. The reason is validated before sending; an ID the
// agent does not know is an error matching beacon.ErrNotFound.
func (c *Client) Maintenance(ctx context.Context, id string, on bool, reason string) error {
	if err := beacon.ValidateMaintenance(id, reason); err != nil {
		return fmt.Errorf("consulkit: maintenance %q: %w", id, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(rctx)
	var err error
	if on {
		err = c.api.Agent().EnableServiceMaintenanceOpts(id, reason, q)
	} else {
		err = c.api.Agent().DisableServiceMaintenanceOpts(id, q)
	}
	if err != nil {
		return fmt.Errorf("consulkit: maintenance %q: %w", id, mapError(ctx, http.MethodPut, "/v1/agent/service/maintenance/"+id, err))
	}
	return nil
}
