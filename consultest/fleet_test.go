package consultest

import (
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

// healthOf returns service's instances from /v1/health/service, passing
// only or all.
func healthOf(t *testing.T, srv *Server, service string, passing bool) []struct {
	Node    struct{ Node, Address string }
	Service struct {
		ID, Address string
		Port        int
		Tags        []string
		Meta        map[string]string
	}
} {
	t.Helper()
	path := "/v1/health/service/" + service
	if passing {
		path += "?passing"
	}
	var out []struct {
		Node    struct{ Node, Address string }
		Service struct {
			ID, Address string
			Port        int
			Tags        []string
			Meta        map[string]string
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.getJSON(ctx, path, &out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return out
}

func TestPopulate(t *testing.T) {
	srv := NewServer(t, WithConfigJSON(`{"log_level": "info"}`))
	f := Fleet{Services: 7, Instances: 50, Prefix: "pop", Tags: []string{"a", "b"}, Meta: map[string]string{"version": "1"}}
	p := Populate(t, srv, f)
	t.Logf("loaded %d instances in %v", f.Services*f.Instances, p.Loaded)
	if got := p.Services(); len(got) != 7 || got[3] != "pop3" {
		t.Fatalf("Services() = %v, want pop0..pop6", got)
	}
	seen := map[string]bool{}
	for _, svc := range p.Services() {
		insts := healthOf(t, srv, svc, true)
		if len(insts) != f.Instances {
			t.Fatalf("health/service/%s?passing: %d instances, want %d", svc, len(insts), f.Instances)
		}
		for _, in := range insts {
			if in.Service.Meta["version"] != "1" || len(in.Service.Tags) != 2 {
				t.Fatalf("instance %s: tags %v meta %v, want [a b] and version=1", in.Service.ID, in.Service.Tags, in.Service.Meta)
			}
			key := in.Service.Address + ":" + strconv.Itoa(in.Service.Port)
			if seen[key] {
				t.Fatalf("instance %s: address %s used twice", in.Service.ID, key)
			}
			seen[key] = true
		}
	}
	// The agent's own anti-entropy never sees them: its local services are
	// only its own.
	var local map[string]any
	if err := srv.getJSON(context.Background(), "/v1/agent/services", &local); err != nil {
		t.Fatal(err)
	}
	if len(local) != 0 {
		t.Fatalf("agent/services has %d services, want 0", len(local))
	}
}

func TestPopulateInvalid(t *testing.T) {
	srv := &Server{}
	for _, f := range []Fleet{{}, {Services: 1}, {Instances: 1}, {Services: -1, Instances: 3}} {
		if _, err := populate(srv, f); err == nil {
			t.Errorf("populate(%+v) = nil error, want one", f)
		}
	}
}

func TestChurn(t *testing.T) {
	srv := NewServer(t, WithConfigJSON(`{"log_level": "info"}`))
	p := Populate(t, srv, Fleet{Services: 3, Instances: 5, Prefix: "churn"})
	if _, err := p.Churn(context.Background(), 0, time.Second); err == nil {
		t.Fatal("Churn at rate 0: nil error, want one")
	}
	if _, err := p.Churn(context.Background(), 10, time.Second, Change(9)); err == nil {
		t.Fatal("Churn of Change(9): nil error, want one")
	}
	// 40 changes a second for at most 1 s: 40 changes, ending by itself.
	c, err := p.Churn(context.Background(), 40, time.Second, FlipHealth, AddInstance, RemoveInstance)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var st ChurnStats
	go func() { st, err = c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("Churn of 1s still running after 60s")
	}
	if err != nil {
		t.Fatalf("Churn: %v", err)
	}
	if st.Changes == 0 || st.Changes > 40 {
		t.Fatalf("Churn(40/s, 1s) made %d changes, want 1..40", st.Changes)
	}
	t.Logf("churn: %d changes in %v: %v", st.Changes, st.Elapsed, st.ByKind)
	// The catalog agrees with the population's record.
	for i, svc := range p.Services() {
		all, passing := healthOf(t, srv, svc, false), healthOf(t, srv, svc, true)
		if len(all) != p.Instances(i) || len(passing) != p.Passing(i) {
			t.Errorf("%s: catalog has %d instances (%d passing), population says %d (%d)", svc, len(all), len(passing), p.Instances(i), p.Passing(i))
		}
	}
	// Stop ends a long churn early, and twice is fine.
	c, err = p.Churn(context.Background(), 20, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	// One left running is stopped by the test's cleanup (goleak checks).
	if _, err := p.Churn(context.Background(), 5, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// TestPopulateScale loads BEACON_SCALE_INSTANCES instances (100,000 with
// BEACON_SCALE=full) and logs how long it took; skipped otherwise.
func TestPopulateScale(t *testing.T) {
	n := 0
	if os.Getenv("BEACON_SCALE") == "full" {
		n = 100000
	}
	if v := os.Getenv("BEACON_SCALE_INSTANCES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	if n == 0 {
		t.Skip("BEACON_SCALE=full (or BEACON_SCALE_INSTANCES=n) loads a large fleet")
	}
	srv := NewServer(t, WithConfigJSON(`{"log_level": "info"}`))
	p := Populate(t, srv, Fleet{Services: n / 10, Instances: 10, Tags: []string{"scale"},
		Meta: map[string]string{"version": "1", "zone": "a"}})
	t.Logf("loaded %d instances (%d services of 10) in %v (%.0f instances/s)", n, n/10, p.Loaded, float64(n)/p.Loaded.Seconds())
	if got := len(healthOf(t, srv, "fleet0", true)); got != 10 {
		t.Fatalf("fleet0: %d passing, want 10", got)
	}
	// What a query over every check costs at this size (discovery's feed
	// makes one at each change): bytes and time of one answer.
	start := time.Now()
	resp, err := http.Get(srv.URL() + "/v1/health/state/any")
	if err != nil {
		t.Fatal(err)
	}
	size, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("/v1/health/state/any: %d bytes in %v", size, time.Since(start))
}
