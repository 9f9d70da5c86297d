package registrytest

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// maxLoopbackRTT bounds what counts as a sane WAN RTT estimate between
// agents on one machine: finite and far from absurd, not a timing claim.
const maxLoopbackRTT = 10 * time.Second

// testDatacenters checks beacon.DatacenterLister, and Query.Datacenter, on
// a two-datacenter federation (one server each), from both sides: each
// agent names its own datacenter, lists both with its own first, and
// NearestDatacenters ranks them with finite, non-negative RTTs once Consul
// has learned the servers' coordinates (a second or so after joining). A
// backend that does not implement beacon.DatacenterLister is skipped.
// Two single agents check the refusals NearestDatacenters works around.
func (s suite) testDatacenters(t *testing.T) {
	t.Parallel()
	t.Run("CoordinatesDisabled", s.testCoordinatesDisabled)
	t.Run("NoAgentRead", s.testNoAgentRead)
	names := []string{"dc1", "dc2"}
	fed := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: names[0], Servers: 1}, {Name: names[1], Servers: 1},
	}})
	regs := map[string]beacon.Registry{}
	for _, name := range names {
		s.lister(t, fed.DC(name).Config())
		regs[name] = s.registry(t, fed.DC(name).Config())
	}
	ctx := testContext(t)

	for i, local := range names {
		remote := names[1-i]
		l := regs[local].(beacon.DatacenterLister)
		t.Run("From"+local, func(t *testing.T) {
			if got, err := l.LocalDatacenter(ctx); err != nil || got != local {
				t.Errorf("LocalDatacenter() = %q, %v; want %q", got, err, local)
			}
			// Consul puts the local datacenter first: its RTT is 0, a
			// remote one's above 0, or infinite before it is known.
			if got, err := l.Datacenters(ctx); err != nil || fmt.Sprint(got) != fmt.Sprint([]string{local, remote}) {
				t.Errorf("Datacenters() = %q, %v; want [%s %s]", got, err, local, remote)
			}
			testutil.Eventually(t, waitLimit, "coordinates of both datacenters' servers", func() error {
				coords, err := l.DatacenterCoordinates(ctx)
				if err != nil {
					return err
				}
				seen := map[string]bool{}
				for _, d := range coords {
					for _, n := range d.Coordinates {
						if n.Node == "" || len(n.Coord.Vec) == 0 || !n.Coord.Valid() {
							return fmt.Errorf("datacenter %q: node %+v", d.Datacenter, n)
						}
						seen[d.Datacenter] = true
					}
				}
				return testutil.Want(seen[local] && seen[remote], "coordinates %+v", coords)
			})
			var got []beacon.DatacenterRTT
			testutil.Eventually(t, waitLimit, "NearestDatacenters with both RTTs known", func() error {
				var err error
				got, err = beacon.NearestDatacenters(ctx, l)
				if err != nil {
					return err
				}
				return testutil.Want(len(got) == 2 && got[1].Known, "NearestDatacenters() = %v", got)
			})
			if got[0] != (beacon.DatacenterRTT{Name: local, Local: true, Known: true}) {
				t.Errorf("NearestDatacenters()[0] = %+v, want %s, local, RTT 0", got[0], local)
			}
			if d := got[1]; d.Name != remote || d.Local || d.RTT <= 0 || d.RTT > maxLoopbackRTT {
				t.Errorf("NearestDatacenters()[1] = %+v, want %s with an RTT in (0, %v]", d, remote, maxLoopbackRTT)
			}
			t.Logf("NearestDatacenters() from %s = %v", local, got)
		})
	}

	// One datacenter read through another's agent (?dc=).
	t.Run("Query", func(t *testing.T) {
		mustRegister(t, ctx, regs["dc2"], ttlRegistration("far-1", "far"))
		awaitIDs(t, ctx, regs["dc1"], beacon.Query{Service: "far", Datacenter: "dc2"}, []string{"far-1"})
		if got, _ := lookup(t, ctx, regs["dc1"], beacon.Query{Service: "far", Datacenter: "dc1"}); len(got) != 0 {
			t.Errorf("Instances(far, dc dc1) = IDs %q, want none: far is in dc2", ids(got))
		}
		_, _, err := regs["dc1"].Instances(ctx, beacon.Query{Service: "far", Datacenter: "dc9"})
		var se *beacon.StatusError
		if !errors.As(err, &se) {
			t.Errorf("Instances(far, dc dc9) = %v, want a *beacon.StatusError (Consul knows no dc9)", err)
		}
	})
}

// lister returns the backend for cfg as a beacon.DatacenterLister, or
// skips the test.
func (s suite) lister(t *testing.T, cfg consul.Config) beacon.DatacenterLister {
	t.Helper()
	r := s.registry(t, cfg)
	l, ok := r.(beacon.DatacenterLister)
	if !ok {
		t.Skipf("%T does not implement beacon.DatacenterLister", r)
	}
	return l
}

// testCoordinatesDisabled: an agent with disable_coordinates answers 401
// for coordinates, and NearestDatacenters still names the local
// datacenter.
func (s suite) testCoordinatesDisabled(t *testing.T) {
	t.Parallel()
	srv := consultest.NewServer(t, consultest.WithConfigJSON(`{"disable_coordinates": true}`))
	l := s.lister(t, srv.Config())
	ctx := testContext(t)
	_, err := l.DatacenterCoordinates(ctx)
	var se *beacon.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Errorf("DatacenterCoordinates() with coordinates disabled = %v, want a *beacon.StatusError 401", err)
	}
	if got, err := beacon.NearestDatacenters(ctx, l); err != nil || fmt.Sprint(got) != "[dc1 (local)]" {
		t.Errorf("NearestDatacenters() with coordinates disabled = %v, %v; want [dc1 (local)]", got, err)
	}
}

// testNoAgentRead: a token without agent:read cannot ask the agent's
// datacenter (403), the rest needs no ACL, and NearestDatacenters still
// names the local datacenter.
func (s suite) testNoAgentRead(t *testing.T) {
	t.Parallel()
	srv := consultest.NewServer(t, consultest.WithACL())
	cfg := srv.Config()
	cfg.Token = srv.MintToken(t, `service_prefix "" { policy = "read" }`)
	l := s.lister(t, cfg)
	ctx := testContext(t)
	if got, err := l.LocalDatacenter(ctx); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("LocalDatacenter() without agent:read = %q, %v; want beacon.ErrPermissionDenied", got, err)
	}
	if got, err := l.Datacenters(ctx); err != nil || fmt.Sprint(got) != "[dc1]" {
		t.Errorf("Datacenters() without agent:read = %q, %v; want [dc1]", got, err)
	}
	if got, err := beacon.NearestDatacenters(ctx, l); err != nil || fmt.Sprint(got) != "[dc1 (local)]" {
		t.Errorf("NearestDatacenters() without agent:read = %v, %v; want [dc1 (local)]", got, err)
	}
}
