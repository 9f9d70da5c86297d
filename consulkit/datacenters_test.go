package consulkit_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/registrytest"
)

// TestDatacenterListerHostile: what a real agent never sends. The calls go
// through consul/api's Raw() rather than Catalog().Datacenters() and the
// like so that a context can end them: a hung agent must not hold the
// caller past its context.
func TestDatacenterListerHostile(t *testing.T) {
	calls := map[string]func(context.Context, beacon.DatacenterLister) error{
		"/v1/catalog/datacenters": func(ctx context.Context, l beacon.DatacenterLister) error {
			_, err := l.Datacenters(ctx)
			return err
		},
		"/v1/coordinate/datacenters": func(ctx context.Context, l beacon.DatacenterLister) error {
			_, err := l.DatacenterCoordinates(ctx)
			return err
		},
		"/v1/agent/self": func(ctx context.Context, l beacon.DatacenterLister) error {
			_, err := l.LocalDatacenter(ctx)
			return err
		},
	}
	for _, tc := range []struct {
		path, body string
		status     int
		want       error
	}{
		{"/v1/catalog/datacenters", `["dc1",""]`, 200, beacon.ErrMalformedResponse},
		{"/v1/catalog/datacenters", `["dc1","dc1"]`, 200, beacon.ErrMalformedResponse},
		{"/v1/catalog/datacenters", `["dc1"] trailing`, 200, beacon.ErrMalformedResponse},
		{"/v1/catalog/datacenters", `{}`, 200, beacon.ErrMalformedResponse},
		{"/v1/coordinate/datacenters", `[null]`, 200, beacon.ErrMalformedResponse},
		{"/v1/coordinate/datacenters", `[{"Datacenter":"bad name"}]`, 200, beacon.ErrMalformedResponse},
		{"/v1/coordinate/datacenters", `[{"Datacenter":"dc1","Coordinates":[{"Node":"n"}]}]`, 200, beacon.ErrMalformedResponse},
		{"/v1/coordinate/datacenters", `[{"Datacenter":"dc1","Coordinates":[{"Node":"n","Coord":{"Vec":[1e999]}}]}]`, 200, beacon.ErrMalformedResponse},
		{"/v1/coordinate/datacenters", `Coordinate support disabled`, 401, beacon.ErrPermissionDenied},
		{"/v1/agent/self", `{"Config":{}}`, 200, beacon.ErrMalformedResponse},
		{"/v1/agent/self", `{"Config":{"Datacenter":"dc/1"}}`, 200, beacon.ErrMalformedResponse},
		{"/v1/agent/self", `Permission denied`, 403, beacon.ErrPermissionDenied},
		{"/v1/catalog/datacenters", `rpc error`, 500, beacon.ErrUnavailable},
	} {
		f := registrytest.NewFakeAgent(t, registrytest.Answer(tc.status, nil, tc.body))
		l := newClient(t, f.Config(consul.Config{}))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := calls[tc.path](ctx, l)
		cancel()
		if !errors.Is(err, tc.want) {
			t.Errorf("GET %s answered %d %s: %v, want an error matching %v", tc.path, tc.status, tc.body, err, tc.want)
		}
	}

	release := make(chan struct{})
	defer close(release)
	f := registrytest.NewFakeAgent(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	l := newClient(t, f.Config(consul.Config{}))
	for path, call := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- call(ctx, l) }()
		select {
		case err := <-done:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("GET %s on a hung agent, the context ended: %v, want context.DeadlineExceeded", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("GET %s on a hung agent did not end with its context", path)
		}
		cancel()
	}
}
