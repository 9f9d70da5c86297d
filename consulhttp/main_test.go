package consulhttp_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
)

// TestMain fails the run if any goroutine outlives the tests: every fake
// server is closed and every client's idle connections released.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newClient returns a client built from cfg and opts, closed when the test
// ends.
func newClient(t *testing.T, cfg consul.Config, opts ...consulhttp.Option) *consulhttp.Client {
	t.Helper()
	c, err := consulhttp.New(cfg, opts...)
	if err != nil {
		t.Fatalf("consulhttp.New(%v) = %v, want nil", cfg.Addresses, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
