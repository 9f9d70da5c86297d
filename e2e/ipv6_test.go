package e2e_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/grpcresolver"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/keeper"
)

// deadline bounds every wait: generous for a loaded 2-core machine.
const deadline = 30 * time.Second

// TestIPv6EndToEnd registers an HTTP and a gRPC server listening on
// [::1] through keepers on a real agent (itself on 127.x), finds them
// through a discovery cache, and calls them through httpclient
// (http://v6web/...) and a gRPC client on grpcresolver (consul:///v6grpc):
// every layer must carry the address as IPv6, brackets included.
func TestIPv6EndToEnd(t *testing.T) {
	httpLis := listenV6(t)
	grpcLis := listenV6(t)
	srv := consultest.NewServer(t)
	cfg := srv.Config()

	// The HTTP instance: it answers, says on which local address the
	// request arrived, and remembers the Host header it was sent.
	var httpHits atomic.Int64
	var httpHost atomic.Value
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpHits.Add(1)
		httpHost.Store(r.Host)
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		io.WriteString(w, "hello over "+local.String())
	})}
	served := make(chan struct{})
	go func() { defer close(served); _ = hs.Serve(httpLis) }()
	t.Cleanup(func() { hs.Close(); <-served })

	// The gRPC instance: the standard health service, remembering the
	// peer address of each call.
	var grpcPeer atomic.Value
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if p, ok := peer.FromContext(ctx); ok {
			grpcPeer.Store(p.Addr.String())
		}
		return h(ctx, req)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(record))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	grpcServed := make(chan struct{})
	go func() { defer close(grpcServed); _ = gs.Serve(grpcLis) }()
	t.Cleanup(func() { gs.Stop(); <-grpcServed })

	wan := beacon.ServiceAddress{Address: "2001:db8::7", Port: 443}
	keep(t, cfg, beacon.Registration{
		ID: "v6web-1", Service: "v6web", Address: "::1", Port: port(httpLis),
		TaggedAddresses: map[string]beacon.ServiceAddress{beacon.TaggedWAN: wan},
	})
	keep(t, cfg, beacon.Registration{ID: "v6grpc-1", Service: "v6grpc", Address: "::1", Port: port(grpcLis)})

	cache, err := discovery.New(cfg)
	if err != nil {
		t.Fatalf("discovery.New() = %v", err)
	}
	t.Cleanup(func() { cache.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	// Discovery: the instance as registered, IPv6 address and tagged
	// address included, dialable with brackets.
	insts, err := cache.Instances(ctx, "v6web")
	if err != nil || len(insts) != 1 {
		t.Fatalf("Instances(v6web) = %+v, %v; want one instance", insts, err)
	}
	in := insts[0]
	if want := "[::1]:" + itoa(port(httpLis)); in.Address != "::1" || in.HostPort() != want {
		t.Errorf("Instances(v6web)[0] at %q (HostPort %q), want ::1 (%s)", in.Address, in.HostPort(), want)
	}
	if got := in.TaggedAddresses[beacon.TaggedWAN]; got != wan {
		t.Errorf("Instances(v6web)[0].TaggedAddresses[wan] = %+v, want %+v", got, wan)
	}
	if got, want := in.Translate(beacon.WAN).HostPort(), "[2001:db8::7]:443"; got != want {
		t.Errorf("Translate(WAN).HostPort() = %q, want %q", got, want)
	}

	// httpclient: http://v6web/ reaches the server on [::1].
	tr := httpclient.New(cache)
	t.Cleanup(func() { tr.Close() })
	client := &http.Client{Transport: tr, Timeout: deadline}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://v6web/hello", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET http://v6web/hello = %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "hello over [::1]:") || httpHits.Load() != 1 {
		t.Errorf("GET http://v6web/hello = %d %q (server hits %d), want 200 from the server on [::1]", resp.StatusCode, body, httpHits.Load())
	}
	// net/http would dial "::1:port" too; the Host header shows the
	// address was joined properly.
	if got, _ := httpHost.Load().(string); got != in.HostPort() {
		t.Errorf("the HTTP server was sent Host %q, want %q", got, in.HostPort())
	}

	// grpcresolver: consul:///v6grpc reaches the server on [::1].
	conn, err := grpc.NewClient("consul:///v6grpc",
		grpc.WithResolvers(grpcresolver.NewBuilder(cache)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(consul:///v6grpc) = %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check() through consul:///v6grpc = %v, %v; want SERVING", hr, err)
	}
	if p, _ := grpcPeer.Load().(string); !strings.HasPrefix(p, "[::1]:") {
		t.Errorf("the gRPC server saw the call from %q, want [::1]:port", p)
	}
}

// listenV6 listens on [::1], or skips the test when the machine has no
// IPv6 loopback.
func listenV6(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func port(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

func itoa(n int) string { return strconv.Itoa(n) }

// keep registers r through a keeper that is stopped when the test ends.
func keep(t *testing.T, cfg consul.Config, r beacon.Registration) {
	t.Helper()
	k, err := keeper.New(cfg, r)
	if err != nil {
		t.Fatalf("keeper.New(%q) = %v", r.ID, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = k.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatalf("Start(%q) = %v", r.ID, err)
	}
}
