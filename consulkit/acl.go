package consulkit

import (
	"context"
	"errors"
	"net/http"

	"github.com/hashicorp/consul/api"

	"github.com/beaconsd/beacon"
)

var _ beacon.ACLProber = (*Client)(nil)

// ProbeACLs implements beacon.ACLProber through consul/api's
// ACL().TokenReadSelf: Consul answers 401 there only when ACLs are off,
// and 403 for a missing or unknown token.
func (c *Client) ProbeACLs(ctx context.Context) (beacon.ACLs, error) {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout())
	defer cancel()
	_, _, err := c.api.ACL().TokenReadSelf((&api.QueryOptions{}).WithContext(rctx))
	err = mapError(ctx, http.MethodGet, "/v1/acl/token/self", err)
	var se *beacon.StatusError
	switch {
	case err == nil:
		return beacon.ACLsToken, nil
	case errors.As(err, &se) && se.StatusCode == http.StatusUnauthorized:
		return beacon.ACLsDisabled, nil
	case errors.As(err, &se) && se.StatusCode == http.StatusForbidden:
		return beacon.ACLsNoToken, nil
	default:
		return beacon.ACLsUnknown, err
	}
}
