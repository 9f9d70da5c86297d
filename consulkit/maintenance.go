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

// InMaintenance reports whether the agent holds id's maintenance check
// and the check's notes, through consul/api.
func (c *Client) InMaintenance(ctx context.Context, id string) (bool, string, error) {
	if err := beacon.ValidateID("ID", id); err != nil {
		return false, "", fmt.Errorf("consulkit: maintenance of %q: %w", id, err)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	checkID := beacon.MaintenanceCheckPrefix + id
	checks, err := c.api.Agent().ChecksWithFilterOpts(fmt.Sprintf("CheckID == %q", checkID), (&api.QueryOptions{}).WithContext(rctx))
	if err != nil {
		return false, "", fmt.Errorf("consulkit: maintenance of %q: %w", id, mapError(ctx, http.MethodGet, "/v1/agent/checks", err))
	}
	ch, ok := checks[checkID]
	if !ok || ch == nil {
		return false, "", nil
	}
	return true, ch.Notes, nil
}
