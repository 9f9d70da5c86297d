package registrytest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/beaconsd/beacon"
)

// testQuery checks what a Query selects: tags, filters, read modes and
// datacenters.
func (s suite) testQuery(t *testing.T) {
	t.Parallel()
	_, r := s.agent(t)
	ctx := testContext(t)
	for _, reg := range []beacon.Registration{
		ttlRegistration("a", "svc", "blue"),
		ttlRegistration("b", "svc", "green"),
		ttlRegistration("c", "svc", "blue", "canary"),
	} {
		reg.Meta = map[string]string{"version": reg.ID}
		mustRegister(t, ctx, r, reg)
	}

	t.Run("Tags", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		for _, tt := range []struct {
			tags []string
			want []string
		}{
			{nil, []string{"a", "b", "c"}},
			{[]string{"blue"}, []string{"a", "c"}},
			{[]string{"blue", "canary"}, []string{"c"}},
			{[]string{"green", "canary"}, []string{}},
			{[]string{"red"}, []string{}},
		} {
			q := beacon.Query{Service: "svc", Tags: tt.tags}
			if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), tt.want) {
				t.Errorf("Instances(%s) = IDs %q, want %q", describe(q), ids(got), tt.want)
			}
		}
	})

	t.Run("Filter", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		for _, tt := range []struct {
			filter string
			want   []string
		}{
			{`"green" in Service.Tags`, []string{"b"}},
			{`Service.Meta.version != "a"`, []string{"b", "c"}},
			{`Service.Meta.version == "z"`, []string{}},
		} {
			q := beacon.Query{Service: "svc", Filter: tt.filter}
			if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), tt.want) {
				t.Errorf("Instances(%s) = IDs %q, want %q", describe(q), ids(got), tt.want)
			}
		}
	})

	t.Run("Consistency", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		for _, mode := range []beacon.Consistency{beacon.ConsistencyDefault, beacon.ConsistencyStale, beacon.ConsistencyConsistent} {
			q := beacon.Query{Service: "svc", Consistency: mode}
			got, meta := lookup(t, ctx, r, q)
			if !slices.Equal(ids(got), []string{"a", "b", "c"}) {
				t.Errorf("Instances(%s) = IDs %q, want [a b c]", describe(q), ids(got))
			}
			if meta.LastIndex == 0 || !meta.KnownLeader {
				t.Errorf("Instances(%s) = %+v, want an index and a known leader", describe(q), meta)
			}
		}
	})

	t.Run("AgentCache", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		q := beacon.Query{Service: "svc", Cached: true}
		got, meta := lookup(t, ctx, r, q)
		if !slices.Equal(ids(got), []string{"a", "b", "c"}) || meta.LastIndex == 0 {
			t.Errorf("Instances(%s) = IDs %q at index %d, want [a b c] and an index", describe(q), ids(got), meta.LastIndex)
		}
	})

	// Consul registers names DNS cannot serve, only warning about them:
	// a backend must register and find every one of them, even those
	// that need escaping in a URL path.
	t.Run("NamesDNSCannotServe", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		for i, name := range []string{"legacy_svc", "api.v2", "café", "a b?c#d"} {
			reg := ttlRegistration(fmt.Sprintf("odd-%d", i), name)
			mustRegister(t, ctx, r, reg)
			q := beacon.Query{Service: name, IncludeUnhealthy: true}
			if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), []string{reg.ID}) {
				t.Errorf("Instances(%s) = IDs %q, want [%s]", describe(q), ids(got), reg.ID)
			}
		}
	})

	t.Run("Datacenter", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		// consultest's dev agents run in Consul's default datacenter.
		q := beacon.Query{Service: "svc", Datacenter: "dc1"}
		if got, _ := lookup(t, ctx, r, q); !slices.Equal(ids(got), []string{"a", "b", "c"}) {
			t.Errorf("Instances(%s) = IDs %q, want [a b c]", describe(q), ids(got))
		}
		// Consul answers 500 "No path to datacenter". Which sentinel that
		// matches is the backend's choice; that it is an error is not.
		q.Datacenter = "no-such-dc"
		if got, _, err := r.Instances(ctx, q); err == nil {
			t.Errorf("Instances(%s) = %+v, nil; want an error", describe(q), got)
		}
	})
}
