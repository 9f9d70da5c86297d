package discovery_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// A prepared-query watch sees Consul fail the query over to dc2 and back,
// woken by the local watch of the query's service: with an hour between
// polls, nothing else would make it execute again.
func TestWatchPreparedFollowsFailover(t *testing.T) {
	f, dc1, _ := federation(t)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := registry(t, f.DC("dc1").Config()).CreateQuery(ctx, beacon.PreparedQuery{
		Name: "web-q", Service: "web", OnlyPassing: true, Failover: beacon.QueryFailover{Datacenters: []string{"dc2"}},
	}); err != nil {
		t.Fatalf("CreateQuery() = %v", err)
	}
	c := newCache(t, f.DC("dc1").Config(), discovery.WithQueryPoll(time.Hour))
	events, _ := listen(t, c)
	w, err := c.WatchPrepared("web-q")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s, err := w.Wait(ctx)
	if err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	if s.Service != "web" || s.Datacenter != "" || s.FailedOver || len(s.Instances) != 1 || s.Instances[0].ID != "web-1" {
		t.Fatalf("first snapshot = %+v, want web-1 from the local datacenter", s)
	}

	critical := time.Now()
	setHealth(t, dc1, "web-1", beacon.HealthCritical)
	until(t, w, "the query failed over to dc2", served("dc2", "web-2"))
	t.Logf("failover seen %v after web-1 went critical", time.Since(critical).Round(time.Millisecond))
	e := events.wait(t, "the failover event", func(e discovery.Event) bool { return e.Kind == discovery.EventFailedOver })
	if e.Service != "web-q"+discovery.QuerySuffix || e.Datacenter != "dc2" || e.Detail != "local → dc2" {
		t.Errorf("failover event = %+v, want web-q's, to dc2", e)
	}
	if e := events.wait(t, "web-2 added", func(e discovery.Event) bool { return e.Kind == discovery.EventInstanceAdded }); e.Instance != "web-2" || e.Datacenter != "dc2" {
		t.Errorf("instance event = %+v, want web-2 added in dc2", e)
	}

	setHealth(t, dc1, "web-1", beacon.HealthPassing)
	until(t, w, "the query back in dc1", served("", "web-1"))
	for _, st := range c.Stats() {
		if st.PreparedQuery == "web-q" {
			return
		}
	}
	t.Errorf("Stats() = %+v, want a watch of prepared query web-q", c.Stats())
}

func TestWatchPreparedErrors(t *testing.T) {
	f, _, _ := federation(t)
	c := newCache(t, f.DC("dc1").Config())
	if _, err := c.WatchPrepared("bad/name"); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("WatchPrepared(bad/name) = %v, want ErrInvalid", err)
	}
	w, err := c.WatchPrepared("no-such-query")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s := next(t, w)
	if s.Source != discovery.SourceNone || !errors.Is(s.Err, beacon.ErrNotFound) {
		t.Errorf("snapshot of a missing query = %+v, want SourceNone and an error matching ErrNotFound", s)
	}
}

// holdFirst holds the first health query of one service until released:
// a prepared-query watch's local watch that answers late.
type holdFirst struct {
	*consulhttp.Client
	service string
	once    sync.Once
	held    chan struct{} // closed when the first query is held
	release chan struct{}
}

func (h *holdFirst) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	first := false
	if q.Service == h.service {
		h.once.Do(func() { first = true })
	}
	if first {
		close(h.held)
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, beacon.QueryMeta{}, ctx.Err()
		}
	}
	return h.Client.Instances(ctx, q)
}

// TestWatchPreparedChangeBeforeLocalAnswer: a change between the query's
// first execution and the first answer of the local watch that follows
// its service wakes nobody (that answer already holds it, so it is no
// change); the watch still executes again and sees it, without waiting
// for the poll (an hour here).
func TestWatchPreparedChangeBeforeLocalAnswer(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	register(t, r, "pq-1", "pq", beacon.HealthPassing)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := r.CreateQuery(ctx, beacon.PreparedQuery{Name: "pq-q", Service: "pq", OnlyPassing: true}); err != nil {
		t.Fatalf("CreateQuery() = %v", err)
	}
	h := &holdFirst{service: "pq", held: make(chan struct{}), release: make(chan struct{})}
	c := newCache(t, srv.Config(), discovery.WithQueryPoll(time.Hour), discovery.WithBackend(func(cfg consul.Config) (beacon.Registry, error) {
		cl, err := consulhttp.New(cfg)
		h.Client = cl
		return h, err
	}))
	w, err := c.WatchPrepared("pq-q")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if s, err := w.Wait(ctx); err != nil || len(s.Instances) != 1 {
		t.Fatalf("Wait() = %+v, %v; want pq-1", s, err)
	}
	select {
	case <-h.held:
	case <-ctx.Done():
		t.Fatal("the local watch of pq sent no query")
	}
	setHealth(t, r, "pq-1", beacon.HealthCritical)
	close(h.release)
	until(t, w, "the query executed again after the local watch's first answer", func(s *discovery.Snapshot) bool { return len(s.Instances) == 0 })
}
