package consulhttp_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
)

func TestServicesAndServiceInstances(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, r := range []beacon.Registration{
		{ID: "web-1", Service: "web", Port: 8080, Tags: []string{"v2", "a"}, Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}}},
		{ID: "web-2", Service: "web", Port: 8081, Tags: []string{"b"}, Checks: []beacon.Check{{TTL: time.Minute}}}, // starts critical
	} {
		if err := c.Register(ctx, r); err != nil {
			t.Fatalf("Register(%q) = %v", r.ID, err)
		}
	}
	svcs, meta, err := c.Services(ctx)
	if err != nil {
		t.Fatalf("Services() = %v", err)
	}
	if meta.LastIndex == 0 {
		t.Errorf("Services() LastIndex = 0, want the catalog's index")
	}
	i := slices.IndexFunc(svcs, func(s consulhttp.CatalogService) bool { return s.Name == "web" })
	if i < 0 || !slices.Equal(svcs[i].Tags, []string{"a", "b", "v2"}) {
		t.Errorf("Services() = %+v, want web with tags [a b v2]", svcs)
	}
	if !slices.IsSortedFunc(svcs, func(a, b consulhttp.CatalogService) int { return strings.Compare(a.Name, b.Name) }) {
		t.Errorf("Services() = %+v, want sorted by name", svcs)
	}

	insts, _, err := c.ServiceInstances(ctx, "web")
	if err != nil {
		t.Fatalf("ServiceInstances(web) = %v", err)
	}
	health := map[string]beacon.Health{}
	for _, in := range insts {
		health[in.ID] = in.Health
	}
	if health["web-1"] != beacon.HealthPassing || health["web-2"] != beacon.HealthCritical {
		t.Errorf("ServiceInstances(web) health = %v, want web-1 passing and web-2 critical", health)
	}
	// A name Instances refuses (not a DNS label) is still asked for.
	if got, _, err := c.ServiceInstances(ctx, "not_a_label"); err != nil || len(got) != 0 {
		t.Errorf("ServiceInstances(not_a_label) = %v, %v; want none, nil", got, err)
	}
	if _, _, err := c.ServiceInstances(ctx, ""); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("ServiceInstances(\"\") = %v, want ErrInvalid", err)
	}
}

func TestOperatorCalls(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if leader, err := c.Leader(ctx); err != nil || leader == "" {
		t.Errorf("Leader() = %q, %v; want an address", leader, err)
	}
	self, err := c.Self(ctx)
	if err != nil || self.Node != srv.Name || self.Datacenter != "dc1" || !self.Server || self.Version == "" {
		t.Errorf("Self() = %+v, %v; want node %q in dc1, a server with a version", self, err, srv.Name)
	}
	if _, err := c.TokenSelf(ctx); !errors.Is(err, consulhttp.ErrACLDisabled) {
		t.Errorf("TokenSelf() without ACLs = %v, want ErrACLDisabled", err)
	}
	if b, err := c.HealthQueryBackend(ctx, "consul"); err != nil || b != "streaming" {
		t.Errorf("HealthQueryBackend(consul) = %q, %v; want streaming (a 1.14 agent's default)", b, err)
	}
}

func TestOperatorCallsWithACLs(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithACL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := srv.Config()
	cfg.Token = srv.MintToken(t, `service_prefix "" { policy = "read" }`)
	c := newClient(t, cfg)
	tok, err := c.TokenSelf(ctx)
	if err != nil || tok.AccessorID == "" || len(tok.Policies) != 1 || !strings.HasPrefix(tok.Policies[0], "consultest-") {
		t.Errorf("TokenSelf() = %+v, %v; want an accessor and the minted policy", tok, err)
	}
	if svcs, _, err := c.Services(ctx); err != nil || !slices.ContainsFunc(svcs, func(s consulhttp.CatalogService) bool { return s.Name == "consul" }) {
		t.Errorf("Services() with service:read = %+v, %v; want consul listed", svcs, err)
	}
	// The leader needs no token.
	if leader, err := c.Leader(ctx); err != nil || leader == "" {
		t.Errorf("Leader() = %q, %v; want an address", leader, err)
	}

	cfg.Token = "00000000-0000-0000-0000-00000000dead"
	bad := newClient(t, cfg)
	_, err = bad.TokenSelf(ctx)
	if !errors.Is(err, beacon.ErrPermissionDenied) || strings.Contains(err.Error(), cfg.Token) {
		t.Errorf("TokenSelf() with an unknown token = %v, want ErrPermissionDenied without the token", err)
	}

	cfg.Token = ""
	anon := newClient(t, cfg)
	if svcs, _, err := anon.Services(ctx); err != nil || len(svcs) != 0 {
		t.Errorf("Services() with the anonymous token = %+v, %v; want an empty list (ACLs hide, they do not refuse)", svcs, err)
	}
}
