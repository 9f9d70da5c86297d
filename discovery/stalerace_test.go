package discovery_test

// The streaming race of Consul 1.14 (hashicorp/consul#16871) made to
// happen on the project's real agent, and Beacon's repair of what it
// leaves. Skipped unless BEACON_STALE_RACE=1: it runs for up to
// BEACON_STALE_RACE_FOR (default 3 minutes) and loads the machine.
//
//	BEACON_STALE_RACE=1 go test -race -run TestStaleRace -v ./discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
)

// raceAgent is raw HTTP to the agent, as fast as the race needs.
type raceAgent struct {
	base string
	hc   *http.Client
}

// txn applies catalog operations in one transaction.
func (a *raceAgent) txn(ctx context.Context, ops []map[string]any) error {
	body, _ := json.Marshal(ops)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, a.base+"/v1/txn", bytes.NewReader(body))
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("txn: %s: %s", resp.Status, b)
	}
	return nil
}

// registerOps returns the operations that register instance id of each
// service on node at port, with a passing check. Every node has address
// 127.0.0.1, so each instance needs its own port: discovery merges
// entries with one address and port into one (dedupe.go).
func registerOps(node, id string, port int, services []string) []map[string]any {
	ops := []map[string]any{{"Node": map[string]any{"Verb": "set", "Node": map[string]any{"Node": node, "Address": "127.0.0.1"}}}}
	for _, s := range services {
		sid := s + "-" + id
		ops = append(ops,
			map[string]any{"Service": map[string]any{"Verb": "set", "Node": node, "Service": map[string]any{"ID": sid, "Service": s, "Port": port}}},
			map[string]any{"Check": map[string]any{"Verb": "set", "Check": map[string]any{"Node": node, "CheckID": "c-" + sid, "Name": sid, "Status": "passing", "ServiceID": sid}}})
	}
	return ops
}

// health reads service's passing instance IDs with extra query parameters.
func (a *raceAgent) health(ctx context.Context, service string, q url.Values) ([]string, uint64, string, error) {
	q.Set("passing", "1")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.base+"/v1/health/service/"+url.PathEscape(service)+"?"+q.Encode(), nil)
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, "", err
	}
	defer resp.Body.Close()
	var entries []struct{ Service struct{ ID string } }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&entries); err != nil {
		return nil, 0, "", err
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.Service.ID)
	}
	slices.Sort(ids)
	return ids, idx, resp.Header.Get("X-Consul-Query-Backend"), nil
}

// staleFound is a service whose streaming view lost instance B.
type staleFound struct {
	service   string
	after     time.Duration // since the race began
	viewIndex uint64
	plainIdx  uint64
}

// raceOnce races the first blocking queries of 16 fresh services against
// one transaction registering B for all of them, and returns the services
// whose view lost B (the plain read has it, a read of the view does not).
func raceOnce(ctx context.Context, a *raceAgent, try int) ([]staleFound, error) {
	const n = 16
	node := "race-" + strconv.Itoa(try)
	services := make([]string, n)
	for i := range services {
		services[i] = fmt.Sprintf("race-%d-%d", try, i)
	}
	if err := a.txn(ctx, registerOps(node, "a", 1, services)); err != nil {
		return nil, err
	}
	plain := make([]uint64, n)
	for i, s := range services {
		_, idx, _, err := a.health(ctx, s, url.Values{})
		if err != nil {
			return nil, err
		}
		plain[i] = idx
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	got := make([][]string, n)
	errs := make([]error, n+1)
	for i, s := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got[i], _, _, errs[i] = a.health(ctx, s, url.Values{"index": {strconv.FormatUint(plain[i], 10)}, "wait": {"1s"}})
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-start
		errs[n] = a.txn(ctx, registerOps(node, "b", 2, services))
	}()
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var found []staleFound
	for i, s := range services {
		if len(got[i]) == 2 {
			continue
		}
		// The blocking answer lacked B: stale if the truth has it and the
		// view still does not (?index=1 answers from the view at once).
		truth, pidx, _, err := a.health(ctx, s, url.Values{})
		if err != nil {
			return nil, err
		}
		view, vidx, backend, err := a.health(ctx, s, url.Values{"index": {"1"}})
		if err != nil {
			return nil, err
		}
		if len(truth) == 2 && len(view) == 1 && backend == "streaming" {
			found = append(found, staleFound{service: s, viewIndex: vidx, plainIdx: pidx})
		}
	}
	return found, nil
}

// TestStaleRace makes Consul 1.14.8 lose a change to a first streaming
// subscriber, then points a discovery watch at the stale view, changes the
// service once more (the view gets that change, at a higher index, and
// still not the lost one), and proves the watch shows the truth within the
// bound. It reports tries, stale views and repair times.
func TestStaleRace(t *testing.T) {
	if os.Getenv("BEACON_STALE_RACE") != "1" {
		t.Skip("set BEACON_STALE_RACE=1 to race Consul's streaming backend on a real agent (up to 3 minutes)")
	}
	budget := 3 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("BEACON_STALE_RACE_FOR")); err == nil {
		budget = d
	}
	const (
		bound    = 10 * time.Second
		workers  = 4
		maxFound = 20 // repairs to prove; the race stops after
	)
	srv := consultest.NewServer(t, consultest.WithEnv("GOMAXPROCS=32"))
	a := &raceAgent{base: srv.URL(), hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 128}}}
	t.Cleanup(a.hc.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()

	var tries, stale atomic.Int64
	foundCh := make(chan staleFound, 256)
	began := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for try := w; ctx.Err() == nil; try += workers { // bounded by the budget
				found, err := raceOnce(ctx, a, try)
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("try %d: %v", try, err)
						cancel()
					}
					return
				}
				tries.Add(1)
				for _, f := range found {
					f.after = time.Since(began)
					stale.Add(1)
					select {
					case foundCh <- f:
					default: // counted, not repaired
					}
				}
			}
		}()
	}

	var repairs []time.Duration
	for len(repairs) < maxFound {
		var f staleFound
		select {
		case f = <-foundCh:
		case <-ctx.Done():
		}
		if f.service == "" {
			break
		}
		t.Logf("stale view %d: %s after %v and %d tries (view index %d, plain read index %d)", len(repairs)+1, f.service, f.after.Round(time.Millisecond), tries.Load(), f.viewIndex, f.plainIdx)
		d, views := repair(t, srv, a, f.service, bound)
		t.Logf("  Beacon showed the truth %v after the next change; the guard repaired %d stale view(s)", d.Round(time.Millisecond), views)
		repairs = append(repairs, d)
	}
	cancel()
	wg.Wait()
	elapsed := time.Since(began)
	slices.Sort(repairs)
	t.Logf("REPORT: %d tries (16 services each) in %v at GOMAXPROCS=32; %d stale views served by Consul; %d pointed at and repaired by Beacon within %v; repair times %v",
		tries.Load(), elapsed.Round(time.Second), stale.Load(), len(repairs), bound, repairs)
	if stale.Load() == 0 {
		t.Logf("the race did not happen in %v on this machine (%d tries)", budget, tries.Load())
	}
}

// repair points a discovery watch at service's stale view, registers one
// more instance (C) and returns how long after that the watch showed the
// truth ([a b c]), failing past bound, and the stale views the guard found.
func repair(t *testing.T, srv *consultest.Server, a *raceAgent, service string, bound time.Duration) (time.Duration, int64) {
	t.Helper()
	if view, vidx, backend, err := a.health(context.Background(), service, url.Values{"index": {"1"}}); err != nil || len(view) != 1 {
		t.Fatalf("the view of %s before the watch: %v at %d (%s), %v; want still [a] only", service, view, vidx, backend, err)
	}
	c := newCache(t, srv.Config(), discovery.WithWaitTime(30*time.Second), discovery.WithStaleBound(bound))
	w, err := c.Watch(beacon.Query{Service: service})
	if err != nil {
		t.Fatalf("Watch(%q) = %v", service, err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := w.Wait(ctx); err != nil {
		t.Fatalf("Wait() = %v", err)
	}
	// Let the loop reach the view (its first blocking query).
	time.Sleep(200 * time.Millisecond) // not a synchronisation: either order is a valid run
	node := "race-c-" + service
	start := time.Now()
	if err := a.txn(ctx, registerOps(node, "c", 3, []string{service})); err != nil {
		t.Fatal(err)
	}
	want := []string{service + "-a", service + "-b", service + "-c"}
	waitFor(t, w, want, bound)
	d := time.Since(start)
	views := int64(0)
	for _, st := range c.Stats() {
		if st.Service == service {
			views = st.StaleViews
		}
	}
	c.Close()
	return d, views
}
