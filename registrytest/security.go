package registrytest

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
)

// testTLS checks a backend against an agent that serves HTTPS only and
// requires client certificates: it must use the CA and the client
// certificate the Config names.
func (s suite) testTLS(t *testing.T) {
	t.Parallel()
	srv := consultest.NewServer(t, consultest.WithTLS())
	cfg := srv.Config()
	r := s.registry(t, cfg)
	ctx := testContext(t)

	reg := ttlRegistration("secure-1", "secure")
	mustRegister(t, ctx, r, reg)
	q := beacon.Query{Service: "secure"}
	if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), []string{reg.ID}) {
		t.Errorf("Instances(%s) over TLS = IDs %q, want [%q]", describe(q), ids(got), reg.ID)
	}
	mustDeregister(t, ctx, r, reg.ID)
	if got, _ := lookup(t, ctx, r, q); len(got) != 0 {
		t.Errorf("Instances(%s) over TLS after Deregister = %+v, want none", describe(q), got)
	}

	// Without the CA the agent's certificate cannot be verified, and a
	// backend must not skip verification unless told to.
	noCA := cfg
	noCA.TLS.CAFile = ""
	if err := s.registry(t, noCA).Register(ctx, ttlRegistration("unverified-1", "secure")); err == nil {
		t.Errorf("Register(%q) without the agent's CA = nil, want an error (certificate not verified)", "unverified-1")
	}
	if got, _ := lookup(t, ctx, r, q); len(got) != 0 {
		t.Errorf("Instances(%s) after a Register without the agent's CA = %+v, want none", describe(q), got)
	}
}

// serviceWriter is an ACL policy that lets a token register any service and
// look it up.
const serviceWriter = `service_prefix "" { policy = "write" } node_prefix "" { policy = "read" }`

// testACL checks a backend against an agent with ACLs on (default deny):
// it must send Config.Token and report refusals as such.
func (s suite) testACL(t *testing.T) {
	t.Parallel()
	srv := consultest.NewServer(t, consultest.WithACL())
	ctx := testContext(t)
	anon := s.registry(t, srv.Config()) // Config carries no token
	cfg := srv.Config()
	cfg.Token = srv.MintToken(t, serviceWriter)
	r := s.registry(t, cfg)

	reg := ttlRegistration("acl-1", "guarded")
	err := anon.Register(ctx, reg)
	if !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("Register(%q) without a token = %v, want an error matching beacon.ErrPermissionDenied", reg.ID, err)
	}
	var se *beacon.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden {
		t.Errorf("Register(%q) without a token = %v, want a *beacon.StatusError with status %d", reg.ID, err, http.StatusForbidden)
	}
	if err != nil && !strings.Contains(err.Error(), "ACL") {
		t.Errorf("Register(%q) without a token = %q, want a message that names ACLs", reg.ID, err)
	}

	mustRegister(t, ctx, r, reg)
	q := beacon.Query{Service: "guarded"}
	if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), []string{reg.ID}) {
		t.Errorf("Instances(%s) with a token = IDs %q, want [%q]", describe(q), ids(got), reg.ID)
	}

	// Consul filters what a token may not read out of the answer instead
	// of refusing the query: without a token the lookup succeeds, empty.
	if got, _, err := anon.Instances(ctx, q); err != nil || len(got) != 0 {
		t.Errorf("Instances(%s) without a token = %+v, %v; want none and nil error", describe(q), got, err)
	}

	// A refused Deregister is not "already gone": it must not succeed.
	if err := anon.Deregister(ctx, reg.ID); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("Deregister(%q) without a token = %v, want an error matching beacon.ErrPermissionDenied", reg.ID, err)
	}
	check := reg.CheckIDs()[0]
	if err := anon.UpdateTTL(ctx, check, beacon.HealthCritical, ""); !errors.Is(err, beacon.ErrPermissionDenied) {
		t.Errorf("UpdateTTL(%q) without a token = %v, want an error matching beacon.ErrPermissionDenied", check, err)
	}
	if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), []string{reg.ID}) {
		t.Errorf("Instances(%s) after refused calls = IDs %q, want [%q] still passing", describe(q), ids(got), reg.ID)
	}
	mustDeregister(t, ctx, r, reg.ID)

	t.Run("PreparedQuery", func(t *testing.T) { s.testPreparedQueryACL(t, srv) })
}
