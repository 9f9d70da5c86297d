package main

import (
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestRegisterCheckFlags: -grpc, -h2ping and -alias are accepted alone
// (beacon gets as far as the agent, which is not there: exit 1);
// combinations the agent would not run are usage errors (exit 2).
func TestRegisterCheckFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-grpc", "127.0.0.1:9090/pkg.Svc"},
		{"-grpc", "localhost:9443", "-grpc-tls", "-tls-skip-verify", "-interval", "2s"},
		{"-h2ping", "127.0.0.1:8080"},
		{"-h2ping", "127.0.0.1:8443", "-h2ping-tls"},
		{"-alias", "db-1"},
		{"-alias", "db-1", "-alias-node", "node-2"},
		{"-alias-node", "node-2"},
	} {
		argv := append([]string{"register", "-name", "web", "-port", "80", "-consul", "127.0.0.1:1", "-start-timeout", "1s"}, args...)
		r := beaconRun(t, nil, argv...)
		if r.code != 1 || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("beacon %q: exit %d, stderr %q; want 1 for want of an agent", argv, r.code, r.stderr)
		}
	}
	for _, args := range [][]string{
		{"-grpc", "127.0.0.1:9090", "-http", "http://127.0.0.1:9090/"},
		{"-h2ping", "127.0.0.1:8080", "-alias", "db-1"},
		{"-grpc-tls"},
		{"-h2ping-tls", "-grpc", "127.0.0.1:9090"},
		{"-grpc", "127.0.0.1/svc"},
		{"-grpc", "127.0.0.1:9090", "-tls-skip-verify"},
		{"-tls-skip-verify"},
		{"-h2ping", "https://127.0.0.1:8443"},
		{"-alias", "web-80"}, // itself
	} {
		argv := append([]string{"register", "-name", "web", "-port", "80", "-consul", "127.0.0.1:1"}, args...)
		r := beaconRun(t, nil, argv...)
		if r.code != 2 || !strings.HasPrefix(r.stderr, "beacon: ") {
			t.Errorf("beacon %q: exit %d, stderr %q; want 2 and a usage error", argv, r.code, r.stderr)
		}
	}
}

// TestRegisterGRPCCheck: beacon register -grpc has the agent ask a real gRPC
// health server, and the instance's health follows what it serves.
func TestRegisterGRPCCheck(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		<-served
	})
	port := strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
	p := beaconStart(t, nil, "register", "-consul", srv.HTTPAddr, "-name", "greeter", "-port", port, "-address", "127.0.0.1",
		"-id", "greeter-1", "-grpc", lis.Addr().String()+"/greeter", "-interval", "1s")
	await := func(want beacon.Health) {
		t.Helper()
		took := testutil.Eventually(t, deadline, "greeter-1 "+string(want), func() error {
			if p.exited() {
				t.Fatalf("beacon register exited early; stderr:\n%s", p.stderr.String())
			}
			in, ok := allInstances(t, c, "greeter")["greeter-1"]
			return testutil.Want(ok && in.Health == want, "greeter-1: %+v (registered: %v)", in, ok)
		})
		t.Logf("greeter-1 %s after %v", want, took.Round(time.Millisecond))
	}
	await(beacon.HealthPassing)
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_NOT_SERVING)
	await(beacon.HealthCritical)
	hs.SetServingStatus("greeter", healthpb.HealthCheckResponse_SERVING)
	await(beacon.HealthPassing)
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("beacon register after SIGINT: exit %d, want 0", code)
	}
	if got := allInstances(t, c, "greeter"); len(got) != 0 {
		t.Errorf("after beacon register stopped: %v, want no instance", got)
	}
}

// TestRegisterAliasCheck: beacon register -alias mirrors another instance
// on the same agent.
func TestRegisterAliasCheck(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	db := beacon.Registration{ID: "db-1", Service: "db", Port: 5432, Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}}}
	register(t, c, db)
	p := beaconStart(t, nil, "register", "-consul", srv.HTTPAddr, "-name", "front", "-port", "8080", "-address", "127.0.0.1",
		"-id", "front-1", "-alias", "db-1")
	for _, status := range []beacon.Health{beacon.HealthPassing, beacon.HealthCritical, beacon.HealthPassing} {
		if err := c.UpdateTTL(ctxT(t), db.CheckIDs()[0], status, ""); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, deadline, "front-1 "+string(status), func() error {
			if p.exited() {
				t.Fatalf("beacon register exited early; stderr:\n%s", p.stderr.String())
			}
			in, ok := allInstances(t, c, "front")["front-1"]
			return testutil.Want(ok && in.Health == status, "front-1: %+v (registered: %v)", in, ok)
		})
	}
	if code := p.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("beacon register after SIGINT: exit %d, want 0", code)
	}
}
