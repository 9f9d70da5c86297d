package consulhttp_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
)

// deadline bounds every wait in these tests: generous, so a loaded 2-core
// machine does not flake, and still a bound.
const deadline = 30 * time.Second

func newClient(t *testing.T, srv *consultest.Server) *consulhttp.Client {
	t.Helper()
	c, err := consulhttp.New(srv.Config())
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ttlRegistration(id, service string, tags ...string) beacon.Registration {
	return beacon.Registration{
		ID: id, Service: service, Address: "127.0.0.1", Port: 9000, Tags: tags,
		Checks: []beacon.Check{{TTL: time.Minute, InitialStatus: beacon.HealthPassing}},
	}
}

func lookup(t *testing.T, c *consulhttp.Client, q beacon.Query) []beacon.Instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	insts, _, err := c.Instances(ctx, q)
	if err != nil {
		t.Fatalf("Instances(%+v) = %v", q, err)
	}
	return insts
}

func ids(insts []beacon.Instance) []string {
	out := make([]string, 0, len(insts))
	for _, in := range insts {
		out = append(out, in.ID)
	}
	slices.Sort(out)
	return out
}

func TestRegisterReadBack(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv)
	ctx := context.Background()
	r := beacon.Registration{
		ID: "web/1#a", Service: "web", Address: "127.0.0.2", Port: 8080,
		Tags:    []string{"v1", "canary"},
		Meta:    map[string]string{"version": "1.2.3", "zone": "a"},
		Weights: beacon.Weights{Passing: 10, Warning: 2},
		Checks: []beacon.Check{
			{TTL: time.Minute, InitialStatus: beacon.HealthPassing},
			{HTTP: "http://127.0.0.1:1/health", Interval: time.Hour, InitialStatus: beacon.HealthPassing, DeregisterCriticalAfter: time.Minute},
		},
	}
	if err := c.Register(ctx, r); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	got := lookup(t, c, beacon.Query{Service: "web"})
	if len(got) != 1 {
		t.Fatalf("Instances() = %d instances, want 1: %+v", len(got), got)
	}
	in := got[0]
	want := beacon.Instance{
		ID: r.ID, Service: "web", Node: srv.Name, Address: "127.0.0.2", Port: 8080,
		Tags: r.Tags, Meta: r.Meta, Weights: r.Weights, Health: beacon.HealthPassing,
	}
	if in.ID != want.ID || in.Service != want.Service || in.Node != want.Node || in.Address != want.Address ||
		in.Port != want.Port || !slices.Equal(in.Tags, want.Tags) || in.Weights != want.Weights || in.Health != want.Health {
		t.Errorf("Instances()[0] = %+v, want %+v", in, want)
	}
	for k, v := range want.Meta {
		if in.Meta[k] != v {
			t.Errorf("Instances()[0].Meta[%q] = %q, want %q", k, in.Meta[k], v)
		}
	}

	// Register is an upsert: same ID, new meta, one instance.
	r.Meta = map[string]string{"version": "2"}
	if err := c.Register(ctx, r); err != nil {
		t.Fatalf("Register(again) = %v", err)
	}
	got = lookup(t, c, beacon.Query{Service: "web"})
	if len(got) != 1 || got[0].Meta["version"] != "2" || got[0].Meta["zone"] != "" {
		t.Errorf("after upsert Instances() = %+v, want one instance with meta version=2 only", got)
	}

	if err := c.Deregister(ctx, r.ID); err != nil {
		t.Fatalf("Deregister(%q) = %v", r.ID, err)
	}
	if got := lookup(t, c, beacon.Query{Service: "web", IncludeUnhealthy: true}); len(got) != 0 {
		t.Errorf("after Deregister Instances() = %+v, want none", got)
	}
	if err := c.Deregister(ctx, r.ID); err != nil {
		t.Errorf("Deregister(%q) twice = %v, want nil", r.ID, err)
	}
	if err := c.Deregister(ctx, "never-registered"); err != nil {
		t.Errorf("Deregister(unknown) = %v, want nil", err)
	}
}

func TestTTLStatus(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv)
	ctx := context.Background()
	r := ttlRegistration("api-1", "api")
	if err := c.Register(ctx, r); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	check := r.CheckIDs()[0]
	for _, tc := range []struct {
		status      beacon.Health
		wantPassing int
	}{
		{beacon.HealthWarning, 0},
		{beacon.HealthCritical, 0},
		{beacon.HealthPassing, 1},
	} {
		if err := c.UpdateTTL(ctx, check, tc.status, "status "+string(tc.status)); err != nil {
			t.Fatalf("UpdateTTL(%q, %q) = %v", check, tc.status, err)
		}
		if got := lookup(t, c, beacon.Query{Service: "api"}); len(got) != tc.wantPassing {
			t.Errorf("after UpdateTTL(%q) passing-only Instances() = %d, want %d", tc.status, len(got), tc.wantPassing)
		}
		all := lookup(t, c, beacon.Query{Service: "api", IncludeUnhealthy: true})
		if len(all) != 1 || all[0].Health != tc.status {
			t.Errorf("after UpdateTTL(%q) Instances(all) = %+v, want one with that health", tc.status, all)
		}
	}
	err := c.UpdateTTL(ctx, "no-such-check", beacon.HealthPassing, "")
	if !errors.Is(err, beacon.ErrNotFound) {
		t.Errorf("UpdateTTL(unknown) = %v, want ErrNotFound", err)
	}
}

func TestTagFilter(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv)
	ctx := context.Background()
	for _, r := range []beacon.Registration{
		ttlRegistration("a", "svc", "blue"),
		ttlRegistration("b", "svc", "green"),
		ttlRegistration("c", "svc", "blue", "canary"),
	} {
		if err := c.Register(ctx, r); err != nil {
			t.Fatalf("Register(%q) = %v", r.ID, err)
		}
	}
	tests := []struct {
		tags []string
		want []string
	}{
		{nil, []string{"a", "b", "c"}},
		{[]string{"blue"}, []string{"a", "c"}},
		{[]string{"blue", "canary"}, []string{"c"}},
		{[]string{"red"}, []string{}},
	}
	for _, tt := range tests {
		got := ids(lookup(t, c, beacon.Query{Service: "svc", Tags: tt.tags}))
		if !slices.Equal(got, tt.want) {
			t.Errorf("Instances(tags %q) = %q, want %q", tt.tags, got, tt.want)
		}
	}
	got := ids(lookup(t, c, beacon.Query{Service: "svc", Filter: `"green" in Service.Tags`}))
	if !slices.Equal(got, []string{"b"}) {
		t.Errorf("Instances(filter green) = %q, want [b]", got)
	}
	for _, mode := range []beacon.Consistency{beacon.ConsistencyStale, beacon.ConsistencyConsistent} {
		if got := lookup(t, c, beacon.Query{Service: "svc", Consistency: mode}); len(got) != 3 {
			t.Errorf("Instances(consistency %d) = %d instances, want 3", mode, len(got))
		}
	}
}

func TestBlockingQuery(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := c.Register(ctx, ttlRegistration("b-1", "blk")); err != nil {
		t.Fatalf("Register() = %v", err)
	}
	_, meta, err := c.Instances(ctx, beacon.Query{Service: "blk"})
	if err != nil || meta.LastIndex == 0 {
		t.Fatalf("Instances() = index %d, %v; want an index", meta.LastIndex, err)
	}

	t.Run("returns after wait when nothing changes", func(t *testing.T) {
		const wait = time.Second
		start := time.Now()
		got, m2, err := c.Instances(ctx, beacon.Query{Service: "blk", WaitIndex: meta.LastIndex, WaitTime: wait})
		if err != nil {
			t.Fatalf("Instances(blocking) = %v", err)
		}
		// A lower bound cannot flake: a slow machine only waits longer.
		if el := time.Since(start); el < wait/2 {
			t.Errorf("blocking query returned after %v, want it to block about %v", el, wait)
		}
		if m2.LastIndex != meta.LastIndex || len(got) != 1 {
			t.Errorf("Instances(blocking, unchanged) = %d instances at index %d, want 1 at %d", len(got), m2.LastIndex, meta.LastIndex)
		}
	})

	t.Run("returns on a change", func(t *testing.T) {
		type result struct {
			insts []beacon.Instance
			meta  beacon.QueryMeta
			err   error
		}
		done := make(chan result, 1)
		go func() {
			insts, m, err := c.Instances(ctx, beacon.Query{Service: "blk", WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute})
			done <- result{insts, m, err}
		}()
		if err := c.Register(ctx, ttlRegistration("b-2", "blk")); err != nil {
			t.Fatalf("Register() = %v", err)
		}
		select {
		case r := <-done:
			if r.err != nil {
				t.Fatalf("Instances(blocking) = %v", r.err)
			}
			if r.meta.LastIndex <= meta.LastIndex {
				t.Errorf("index after change = %d, want > %d", r.meta.LastIndex, meta.LastIndex)
			}
			if got := ids(r.insts); !slices.Equal(got, []string{"b-1", "b-2"}) {
				t.Errorf("Instances(blocking) = %q, want [b-1 b-2]", got)
			}
		case <-time.After(deadline):
			t.Fatalf("blocking query did not return within %v of a change", deadline)
		}
	})
}

func TestCallerContextCancelsBlockingQuery(t *testing.T) {
	srv := consultest.NewServer(t)
	c := newClient(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	_, meta, err := c.Instances(ctx, beacon.Query{Service: "nothing"})
	if err != nil {
		t.Fatalf("Instances() = %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Instances(ctx, beacon.Query{Service: "nothing", WaitIndex: meta.LastIndex, WaitTime: 5 * time.Minute})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Instances(cancelled) = %v, want context.Canceled", err)
		}
	case <-time.After(deadline):
		t.Fatal("cancelling the context did not end the blocking query")
	}
}
