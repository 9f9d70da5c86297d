package consulhttp_test

// Behaviour every backend shares is tested against real agents by the
// registrytest suite (conformance_test.go). This file keeps what is
// particular to consulhttp, against a real agent.

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
)

// TestConfigDatacenter checks how the client applies consul.Config's
// Datacenter: to lookups, unless the query names its own, and never to the
// agent's own endpoints, which serve the local agent whatever the datacenter.
func TestConfigDatacenter(t *testing.T) {
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	cfg.Datacenter = "elsewhere"
	c, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	r := beacon.Registration{ID: "dc-1", Service: "dc", Port: 9000, Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}}}
	if err := c.Register(ctx, r); err != nil {
		t.Fatalf("Register(%q) with Config.Datacenter %q = %v, want nil", r.ID, cfg.Datacenter, err)
	}
	if err := c.UpdateTTL(ctx, r.CheckIDs()[0], beacon.HealthPassing, ""); err != nil {
		t.Errorf("UpdateTTL(%q) with Config.Datacenter %q = %v, want nil", r.CheckIDs()[0], cfg.Datacenter, err)
	}

	// Consul answers 500 "No path to datacenter".
	_, _, err = c.Instances(ctx, beacon.Query{Service: "dc"})
	var se *beacon.StatusError
	if !errors.As(err, &se) || se.StatusCode != 500 {
		t.Errorf("Instances(%q) with Config.Datacenter %q = %v, want a *beacon.StatusError with status 500", "dc", cfg.Datacenter, err)
	}
	got, _, err := c.Instances(ctx, beacon.Query{Service: "dc", Datacenter: "dc1"})
	if err != nil || len(got) != 1 || got[0].ID != r.ID {
		t.Errorf("Instances(%q in dc1) = %+v, %v; want [%q] (the query's datacenter wins)", "dc", got, err, r.ID)
	}

	if err := c.Deregister(ctx, r.ID); err != nil {
		t.Errorf("Deregister(%q) with Config.Datacenter %q = %v, want nil", r.ID, cfg.Datacenter, err)
	}
	got, _, err = c.Instances(ctx, beacon.Query{Service: "dc", Datacenter: "dc1", IncludeUnhealthy: true})
	if err != nil || len(got) != 0 {
		t.Errorf("Instances(%q in dc1) after Deregister = %+v, %v; want none", "dc", got, err)
	}
}
