package keeper_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/keeper"
)

// A service that registers itself, heartbeats the result of a GET of its
// own /health, and drains and deregisters when interrupted. It needs a
// Consul agent (CONSUL_HTTP_ADDR, or 127.0.0.1:8500), so it is compiled,
// not run; TestExample runs the same steps against a test agent.
func Example() {
	// The agent's address, token and TLS settings, from the same CONSUL_*
	// variables the consul CLI reads.
	cfg, err := consul.FromEnv()
	if err != nil {
		log.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	// Listen before registering: callers may arrive as soon as it passes.
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)

	k, err := keeper.New(cfg,
		beacon.Registration{ID: "hello-1", Service: "hello", Address: "127.0.0.1", Port: 8080},
		// Without WithHealth the heartbeat proves only that the process
		// runs; this one proves that /health answers.
		keeper.WithHealth(func(ctx context.Context) (beacon.Health, string) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:8080/health", nil)
			if err != nil {
				return beacon.HealthCritical, err.Error()
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return beacon.HealthCritical, "GET /health failed"
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return beacon.HealthCritical, "GET /health: " + resp.Status
			}
			return beacon.HealthPassing, "GET /health: 200 OK"
		}),
		keeper.WithLogger(logger))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := k.Start(ctx); err != nil {
		log.Fatal(err)
	}

	<-ctx.Done() // serve until interrupted

	// Drain first (critical, then the drain grace), then stop serving.
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.Stop(stopCtx); err != nil {
		logger.Error("deregister", "err", err)
	}
	srv.Shutdown(stopCtx)
}

// TestExample runs Example's steps against a test agent, on a free port,
// and checks what the example promises: passing after Start, critical
// when /health fails, gone after Stop. Beside it a keeper without
// WithHealth on an address where nothing listens stays passing: the
// default heartbeat proves only that the process runs.
func TestExample(t *testing.T) {
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	c := client(t, cfg)
	logs := &testutil.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var healthy atomic.Bool
	healthy.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		if !healthy.Load() {
			http.Error(w, "unwell", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	hs := &http.Server{Handler: mux}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	defer func() {
		hs.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve() = %v", err)
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)

	k, err := keeper.New(cfg,
		beacon.Registration{ID: "hello-1", Service: "kept", Address: "127.0.0.1", Port: addr.Port},
		keeper.WithTTL(900*time.Millisecond),
		keeper.WithHealth(func(ctx context.Context) (beacon.Health, string) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/health", nil)
			if err != nil {
				return beacon.HealthCritical, err.Error()
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return beacon.HealthCritical, "GET /health failed"
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return beacon.HealthCritical, "GET /health: " + resp.Status
			}
			return beacon.HealthPassing, "GET /health: 200 OK"
		}),
		keeper.WithLogger(logger))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	start(t, k)
	if !passing(c, "hello-1") {
		t.Fatal("instance not passing right after Start")
	}

	// The default heartbeat: nothing listens at this address, and it passes.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	plain := newKeeper(t, cfg, beacon.Registration{ID: "no-health", Service: "kept", Address: "127.0.0.1", Port: deadPort}, keeper.WithTTL(900*time.Millisecond))
	start(t, plain)

	healthy.Store(false)
	testutil.Eventually(t, deadline, "hello-1 critical once /health fails", func() error {
		all := instances(c, true)
		for _, in := range all {
			if in.ID == "hello-1" {
				return testutil.Want(in.Health == beacon.HealthCritical, "hello-1 is %s", in.Health)
			}
		}
		return testutil.Want(false, "hello-1 not among %+v", all)
	})
	first := plain.Status().LastHeartbeat
	testutil.Eventually(t, deadline, "three heartbeats without WithHealth", func() error {
		return testutil.Want(plain.Status().LastHeartbeat.Sub(first) >= 900*time.Millisecond, "Status() = %+v", plain.Status())
	})
	if !passing(c, "no-health") {
		t.Errorf("the keeper without WithHealth is not passing, though its process runs")
	}

	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Stop(ctx); err != nil {
		t.Fatalf("Stop() = %v", err)
	}
	for _, in := range instances(c, true) {
		if in.ID == "hello-1" {
			t.Errorf("after Stop hello-1 is still registered: %+v", in)
		}
	}
	if out := logs.String(); !strings.Contains(out, "keeper: registered") || !strings.Contains(out, "keeper: deregistered") {
		t.Errorf("the log does not show the registration and the deregistration:\n%s", out)
	}
}
