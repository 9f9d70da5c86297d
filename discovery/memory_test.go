package discovery_test

// The cache's decisions on registrytest's in-memory agent, with faults
// injected: the index rules of a watch's loop (backwards resets, errors and
// refused answers restart from 0), a hung agent, and the change feed. These
// run without a consul binary; the agent-backed tests beside them stay.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/registrytest"
)

// sent is one blocking-loop query the recorder saw, and how it ended.
type sent struct {
	index uint64
	err   error
}

// recorder is a Memory that reports every query a watch's loop sends for
// service (the loop's carry a wait; the ACL guard's second look does not).
type recorder struct {
	*registrytest.Memory
	service string
	queries chan sent
}

func newRecorder(service string) *recorder {
	return &recorder{Memory: registrytest.NewMemory(), service: service, queries: make(chan sent, 1000)}
}

func (r *recorder) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	insts, meta, err := r.Memory.Instances(ctx, q)
	if q.Service == r.service && q.WaitTime > 0 && ctx.Err() == nil {
		r.queries <- sent{q.WaitIndex, err}
	}
	return insts, meta, err
}

// expect reads the loop's queries until one satisfies cond.
func (r *recorder) expect(t *testing.T, what string, cond func(sent) bool) {
	t.Helper()
	end := time.After(deadline)
	for {
		select {
		case s := <-r.queries:
			if cond(s) {
				return
			}
		case <-end:
			t.Fatalf("%s: no such query within %v", what, deadline)
		}
	}
}

// memCache builds a cache on in-memory agents, one per registry given.
func memCache(t *testing.T, regs []beacon.Registry, opts ...discovery.Option) *discovery.Cache {
	t.Helper()
	cfg, backend := registrytest.Agents(regs...)
	return newCache(t, cfg, append([]discovery.Option{discovery.WithBackend(backend), discovery.WithRateLimit(10*time.Millisecond, 2)}, opts...)...)
}

// failOnce makes the first call of op for arg (a service name, "" for
// Checks) fail with err, and returns a channel closed when it has. The
// watchdog's and prober's lookups of "consul" are left alone.
func failOnce(m interface{ SetFault(registrytest.Fault) }, op registrytest.Op, arg string, err error) <-chan struct{} {
	var once sync.Once
	failed := make(chan struct{})
	m.SetFault(func(_ context.Context, o registrytest.Op, a string) error {
		fail := false
		if o == op && a == arg {
			once.Do(func() { fail = true; close(failed) })
		}
		if fail {
			return err
		}
		return nil
	})
	return failed
}

// TestMemoryIndexRules: on a blocking loop of the cache, an index that
// goes backwards is counted and the next query starts from 0; a failed
// query keeps the last instances, with the error, and the next query
// starts from 0; so does the query after an answer the cache refused (an
// empty list that ACLs caused), whose last instances stay.
func TestMemoryIndexRules(t *testing.T) {
	rec := newRecorder("web")
	register(t, rec, "web-1", "web", beacon.HealthPassing)
	m := &countingMetrics{}
	// A one-second wait: the agent's backwards index reaches a blocked
	// query only when its wait ends, as on Consul.
	c := memCache(t, []beacon.Registry{rec}, discovery.WithWaitTime(time.Second), discovery.WithMetrics(m))
	w, _ := waitFirst(t, c, "web")
	rec.expect(t, "a blocking query", func(s sent) bool { return s.index > 0 })

	t.Run("backwards", func(t *testing.T) {
		rec.SetIndex(1000)
		rec.expect(t, "blocking on the raised index", func(s sent) bool { return s.index == 1000 })
		rec.SetIndex(5)
		rec.expect(t, "index 0 after the backwards answer", func(s sent) bool { return s.index == 0 })
		if got := m.indexResets.Load(); got < 1 {
			t.Errorf("IndexReset counted %d times, want at least 1", got)
		}
	})

	t.Run("error", func(t *testing.T) {
		rateLimited := &beacon.StatusError{Method: "GET", Path: "/v1/health/service/web", StatusCode: 429, Message: "too many requests"}
		failed := failOnce(rec, registrytest.OpInstances, "web", rateLimited)
		register(t, rec, "web-2", "web", beacon.HealthPassing) // wakes the blocked query; the next one fails
		select {
		case <-failed:
		case <-time.After(deadline):
			t.Fatal("no query after the change")
		}
		rec.expect(t, "the failed query", func(s sent) bool { return errors.Is(s.err, beacon.ErrRateLimited) })
		rec.expect(t, "index 0 after the error", func(s sent) bool { return s.index == 0 })
		until(t, w, "both instances, without the error", func(s *discovery.Snapshot) bool {
			return s.Err == nil && slices.Equal(ids(s), []string{"web-1", "web-2"})
		})
		if got := m.watchErrors.Load(); got < 1 {
			t.Errorf("WatchError counted %d times, want at least 1", got)
		}
	})

	t.Run("refused", func(t *testing.T) {
		rec.SetACLs(beacon.ACLsNoToken) // and the anonymous token sees no "consul" service
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		for _, id := range []string{"web-1", "web-2"} {
			if err := rec.Deregister(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		s := until(t, w, "the hidden error", func(s *discovery.Snapshot) bool { return s.Err != nil })
		if !errors.Is(s.Err, discovery.ErrHiddenByACLs) || len(s.Instances) == 0 {
			t.Fatalf("snapshot = %v, %v; want the last instances and ErrHiddenByACLs", ids(s), s.Err)
		}
		rec.expect(t, "index 0 after the refused answer", func(s sent) bool { return s.index == 0 })
		register(t, rec, "web-3", "web", beacon.HealthPassing)
		until(t, w, "a non-empty answer, believed", func(s *discovery.Snapshot) bool {
			return s.Err == nil && slices.Equal(ids(s), []string{"web-3"})
		})
	})
}

// TestMemoryHungAgent: an agent that stops answering without an error (a
// paused agent) is found by the watchdog, its blocked query is cancelled,
// and the watch moves to the next agent, where a change is seen.
func TestMemoryHungAgent(t *testing.T) {
	a, b := registrytest.NewMemory(), registrytest.NewMemory()
	register(t, a, "web-1", "web", beacon.HealthPassing)
	register(t, b, "web-1", "web", beacon.HealthPassing)
	c := memCache(t, []beacon.Registry{a, b})
	w, _ := waitFirst(t, c, "web")
	a.Pause()
	defer a.Resume()
	register(t, b, "web-2", "web", beacon.HealthPassing)
	until(t, w, "the change on the second agent", func(s *discovery.Snapshot) bool {
		return s.Err == nil && slices.Equal(ids(s), []string{"web-1", "web-2"})
	})
}

// TestMemoryFeed: with a budget of one long poll, every watch follows the
// change feed. A service check's change refetches its service; a node
// check's change refetches every service on the node; a failed fetch is
// retried after a backoff rather than left to the sweep (ten minutes
// here); the feed goes on after its own query fails.
func TestMemoryFeed(t *testing.T) {
	mem := registrytest.NewMemory()
	for _, id := range []string{"web-1", "web-2", "api-1"} {
		register(t, mem, id, id[:3], beacon.HealthPassing)
	}
	c := memCache(t, []beacon.Registry{mem}, discovery.WithMaxLongPolls(1), discovery.WithWaitTime(10*time.Minute))
	web, _ := waitFirst(t, c, "web")
	api, _ := waitFirst(t, c, "api")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	if err := mem.UpdateTTL(ctx, "service:web-2", beacon.HealthCritical, "down"); err != nil {
		t.Fatal(err)
	}
	until(t, web, "a service check's change", func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"web-1"}) })

	if err := mem.SetHealth(registrytest.MemoryNodeCheck, beacon.HealthCritical); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*discovery.Watcher{web, api} {
		until(t, w, "a node check's change", func(s *discovery.Snapshot) bool { return s.Err == nil && len(s.Instances) == 0 })
	}

	failed := failOnce(mem, registrytest.OpInstances, "web", &beacon.StatusError{Method: "GET", Path: "/v1/health/service/web", StatusCode: 429, Message: "slow down"})
	if err := mem.SetHealth(registrytest.MemoryNodeCheck, beacon.HealthPassing); err != nil {
		t.Fatal(err)
	}
	select {
	case <-failed:
	case <-ctx.Done():
		t.Fatal("web was not fetched after the node check's change")
	}
	until(t, web, "web back after a failed fetch", func(s *discovery.Snapshot) bool { return s.Err == nil && slices.Equal(ids(s), []string{"web-1"}) })
	until(t, api, "api back after a failed fetch", func(s *discovery.Snapshot) bool { return s.Err == nil && slices.Equal(ids(s), []string{"api-1"}) })

	checksFailed := failOnce(mem, registrytest.OpChecks, "", &beacon.StatusError{Method: "GET", Path: "/v1/health/state/any", StatusCode: 500, Message: "no leader"})
	if err := mem.UpdateTTL(ctx, "service:web-2", beacon.HealthPassing, "up"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-checksFailed:
	case <-ctx.Done():
		t.Fatal("the feed's query was not asked again after a change")
	}
	if err := mem.UpdateTTL(ctx, "service:api-1", beacon.HealthCritical, "down"); err != nil {
		t.Fatal(err)
	}
	until(t, api, "a change after the feed's query failed", func(s *discovery.Snapshot) bool { return s.Err == nil && len(s.Instances) == 0 })
}
