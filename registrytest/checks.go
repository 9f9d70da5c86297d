package registrytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// testChecks registers each check kind the agent runs itself (gRPC,
// H2PING, alias) and watches the agent's verdict follow a real endpoint:
// a gRPC health server switched between SERVING and NOT_SERVING, an
// HTTP/2 server that stops, a TTL check an alias mirrors.
func (s suite) testChecks(t *testing.T) {
	t.Parallel()
	srv, r := s.agent(t)

	t.Run("GRPC", func(t *testing.T) {
		t.Parallel()
		s.grpcCheck(t, srv, r, false)
	})
	t.Run("GRPCUseTLS", func(t *testing.T) {
		t.Parallel()
		s.grpcCheck(t, srv, r, true)
	})
	t.Run("H2PING", func(t *testing.T) {
		t.Parallel()
		s.h2pingCheck(t, srv, r, false)
	})
	t.Run("H2PingUseTLS", func(t *testing.T) {
		t.Parallel()
		s.h2pingCheck(t, srv, r, true)
	})

	t.Run("AliasService", func(t *testing.T) {
		t.Parallel()
		ctx := checksContext(t)
		db := ttlRegistration("alias-db-1", "alias-db")
		mustRegister(t, ctx, r, db)
		dbCheck := db.CheckIDs()[0]
		// The alias comes first in the registration and starts critical:
		// only the agent following db-1 can make it pass.
		reg := beacon.Registration{
			ID: "alias-web-1", Service: "alias-web", Address: "127.0.0.1", Port: 9001,
			Checks: []beacon.Check{{ID: "alias-web-1:db", AliasService: db.ID, InitialStatus: beacon.HealthCritical}},
		}
		mustRegister(t, ctx, r, reg)
		awaitCheck(t, ctx, srv, reg.ID, "alias-web-1:db", beacon.HealthPassing)
		for _, status := range []beacon.Health{beacon.HealthCritical, beacon.HealthWarning, beacon.HealthPassing} {
			mustUpdateTTL(t, ctx, r, dbCheck, status)
			awaitCheck(t, ctx, srv, reg.ID, "alias-web-1:db", status)
			awaitHealth(t, ctx, r, reg.Service, reg.ID, status)
		}
		// Not asserted: that deregistering db-1 turns the alias critical.
		// Consul 1.14.8 does so only after up to a minute: it wakes the
		// alias while the removed service is still in its local state
		// (marked deleted, awaiting sync) and so still "exists"; nothing
		// wakes it when the entry goes, until its one-minute refresh.
	})

	t.Run("AliasNode", func(t *testing.T) {
		t.Parallel()
		ctx := checksContext(t)
		// The agent's own node: passing while serfHealth passes.
		reg := beacon.Registration{
			ID: "alias-node-1", Service: "alias-node", Port: 9002,
			Checks: []beacon.Check{{AliasNode: srv.Name, InitialStatus: beacon.HealthCritical}},
		}
		mustRegister(t, ctx, r, reg)
		awaitCheck(t, ctx, srv, reg.ID, reg.CheckIDs()[0], beacon.HealthPassing)
		awaitHealth(t, ctx, r, reg.Service, reg.ID, beacon.HealthPassing)
	})
}

// grpcCheck serves the standard gRPC health service and registers a check
// on one of its services: SERVING is passing, NOT_SERVING critical.
func (s suite) grpcCheck(t *testing.T, srv *consultest.Server, r beacon.Registry, useTLS bool) {
	ctx := checksContext(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if useTLS {
		opts = append(opts, grpc.Creds(credentials.NewTLS(selfSignedTLS(t))))
	}
	gs := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	const service = "beacon.test.Greeter"
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("gRPC Serve = %v", err)
		}
	})

	id := "grpc-1"
	if useTLS {
		id = "grpc-tls-1"
	}
	reg := beacon.Registration{
		ID: id, Service: id[:len(id)-2], Address: "127.0.0.1", Port: lis.Addr().(*net.TCPAddr).Port,
		Checks: []beacon.Check{{
			GRPC: lis.Addr().String() + "/" + service, GRPCUseTLS: useTLS, TLSSkipVerify: useTLS,
			Interval: time.Second, Timeout: 5 * time.Second,
		}},
	}
	mustRegister(t, ctx, r, reg)
	check := reg.CheckIDs()[0]
	awaitCheck(t, ctx, srv, reg.ID, check, beacon.HealthPassing)
	awaitHealth(t, ctx, r, reg.Service, reg.ID, beacon.HealthPassing)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	awaitCheck(t, ctx, srv, reg.ID, check, beacon.HealthCritical)
	awaitHealth(t, ctx, r, reg.Service, reg.ID, beacon.HealthCritical)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	awaitCheck(t, ctx, srv, reg.ID, check, beacon.HealthPassing)
}

// h2pingCheck serves HTTP/2 (cleartext with prior knowledge, or over TLS)
// and registers an H2PING check on it: passing while it serves, critical
// once it stops.
func (s suite) h2pingCheck(t *testing.T, srv *consultest.Server, r beacon.Registry, useTLS bool) {
	ctx := checksContext(t)
	h := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	if useTLS {
		h.EnableHTTP2 = true
		h.StartTLS()
	} else {
		h.Config.Protocols = new(http.Protocols)
		h.Config.Protocols.SetHTTP1(true)
		h.Config.Protocols.SetUnencryptedHTTP2(true)
		h.Start()
	}
	t.Cleanup(h.Close)

	id := "h2ping-1"
	if useTLS {
		id = "h2ping-tls-1"
	}
	addr := h.Listener.Addr().(*net.TCPAddr)
	reg := beacon.Registration{
		ID: id, Service: id[:len(id)-2], Address: "127.0.0.1", Port: addr.Port,
		Checks: []beacon.Check{{
			H2PING: addr.String(), H2PingUseTLS: useTLS, TLSSkipVerify: useTLS,
			Interval: time.Second, Timeout: 5 * time.Second,
		}},
	}
	mustRegister(t, ctx, r, reg)
	check := reg.CheckIDs()[0]
	awaitCheck(t, ctx, srv, reg.ID, check, beacon.HealthPassing)
	awaitHealth(t, ctx, r, reg.Service, reg.ID, beacon.HealthPassing)
	h.Close()
	awaitCheck(t, ctx, srv, reg.ID, check, beacon.HealthCritical)
	awaitHealth(t, ctx, r, reg.Service, reg.ID, beacon.HealthCritical)
}

// checksContext bounds a whole subtest of testChecks, which waits several
// times, each wait up to waitLimit: the context must outlast them all.
func checksContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 8*waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// awaitCheck polls the agent (directly, not through the backend) until
// its check checkID of serviceID has status want.
func awaitCheck(t *testing.T, ctx context.Context, srv *consultest.Server, serviceID, checkID string, want beacon.Health) {
	t.Helper()
	took := testutil.Eventually(t, waitLimit, fmt.Sprintf("agent check %q %s", checkID, want), func() error {
		for _, c := range agentChecks(t, ctx, srv, serviceID) {
			if c.CheckID == checkID {
				return testutil.Want(c.Status == string(want), "status %q", c.Status)
			}
		}
		return errors.New("not on the agent")
	})
	t.Logf("agent check %q %s after %v", checkID, want, took.Round(time.Millisecond))
}

// awaitHealth polls the backend under test until it reports instance id
// of service with health want.
func awaitHealth(t *testing.T, ctx context.Context, r beacon.Registry, service, id string, want beacon.Health) {
	t.Helper()
	q := beacon.Query{Service: service, IncludeUnhealthy: true}
	testutil.Eventually(t, waitLimit, fmt.Sprintf("Instances(%s) %q %s", describe(q), id, want), func() error {
		insts, _, err := r.Instances(ctx, q)
		if err != nil {
			return err
		}
		for _, in := range insts {
			if in.ID == id {
				return testutil.Want(in.Health == want, "health %q", in.Health)
			}
		}
		return fmt.Errorf("IDs %q", ids(insts))
	})
}

// selfSignedTLS is a server configuration with a fresh self-signed
// certificate for 127.0.0.1: the checks that use it skip verification.
func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "registrytest"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}

// oneCheck replaces a registration's checks with c.
func oneCheck(c beacon.Check) func(*beacon.Registration) {
	return func(r *beacon.Registration) { r.Checks = []beacon.Check{c} }
}

// testCheckKindsOnTheWire: each check kind reaches the agent in Consul's
// field names, with nothing the registration did not ask for, and an
// H2PING check says H2PingUseTLS even when it is false (Consul reads a
// missing one as true).
func (s suite) testCheckKindsOnTheWire(t *testing.T) {
	t.Parallel()
	reg := beacon.Registration{
		ID: "web-1", Service: "web", Address: "10.0.0.5", Port: 8080,
		Checks: []beacon.Check{
			{ID: "grpc", GRPC: "10.0.0.5:9090/pkg.Svc", GRPCUseTLS: true, TLSServerName: "web.internal", Interval: 2 * time.Second, Timeout: time.Second},
			{ID: "h2c", H2PING: "10.0.0.5:8080", Interval: 3 * time.Second},
			{ID: "h2", H2PING: "10.0.0.5:8443", H2PingUseTLS: true, TLSSkipVerify: true, Interval: 4 * time.Second},
			{ID: "alias", AliasService: "db-1", AliasNode: "node-2", InitialStatus: beacon.HealthPassing},
		},
	}
	want := []map[string]any{
		{"CheckID": "grpc", "GRPC": "10.0.0.5:9090/pkg.Svc", "GRPCUseTLS": true, "TLSServerName": "web.internal", "Interval": "2s", "Timeout": "1s"},
		{"CheckID": "h2c", "H2PING": "10.0.0.5:8080", "H2PingUseTLS": false, "Interval": "3s"},
		{"CheckID": "h2", "H2PING": "10.0.0.5:8443", "H2PingUseTLS": true, "TLSSkipVerify": true, "Interval": "4s"},
		{"CheckID": "alias", "AliasService": "db-1", "AliasNode": "node-2", "Status": "passing"},
	}
	f := NewFakeAgent(t, nil)
	r := s.fakeRegistry(t, f, consul.Config{})
	if err := r.Register(testContext(t), reg); err != nil {
		t.Fatalf("Register(%q) = %v, want nil", reg.ID, err)
	}
	reqs := f.RequestsTo(http.MethodPut, "/v1/agent/service/register")
	if len(reqs) != 1 {
		t.Fatalf("the fake agent saw %q, want one PUT /v1/agent/service/register", f.Requests())
	}
	var sent struct{ Checks []map[string]any }
	if err := json.Unmarshal(reqs[0].Body, &sent); err != nil {
		t.Fatalf("%s sent body %q: %v", reqs[0], reqs[0].Body, err)
	}
	if len(sent.Checks) != len(want) {
		t.Fatalf("Register(%q) sent checks %v, want %d", reg.ID, sent.Checks, len(want))
	}
	for i, w := range want {
		got := sent.Checks[i]
		delete(got, "Name") // each backend's default name is its own business
		if !maps.EqualFunc(got, w, func(a, b any) bool { return a == b }) {
			t.Errorf("Register(%q) sent check %d as %v, want %v", reg.ID, i, got, w)
		}
	}
}
