package discovery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// perService counts the watches' queries per service.
type perService struct {
	countingMetrics
	mu sync.Mutex
	n  map[string]int
}

func (m *perService) Request(s string) {
	m.countingMetrics.Request(s)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[s]++
}

func (m *perService) counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.n))
	for k, v := range m.n {
		out[k] = v
	}
	return out
}

// catalogRegister writes body to PUT /v1/catalog/register on srv.
func catalogRegister(t *testing.T, srv *consultest.Server, body map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, srv.URL()+"/v1/catalog/register", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/catalog/register: %s", resp.Status)
	}
}

// externalNode registers node with a node check (serfHealth, as an agent
// has) of status, and one instance of service with a passing check.
func externalNode(t *testing.T, srv *consultest.Server, node, service string, status beacon.Health) {
	t.Helper()
	catalogRegister(t, srv, map[string]any{
		"Node": node, "Address": "127.0.0.9",
		"Service": map[string]any{"ID": service + "-ext", "Service": service, "Port": 7000},
		"Checks": []map[string]any{
			{"CheckID": "serfHealth", "Name": "node", "Status": string(status)},
			{"CheckID": "service:" + service + "-ext", "Name": "svc", "Status": "passing", "ServiceID": service + "-ext"},
		},
	})
}

// TestFeedSummariesWakeTheRightWatch: on a real agent, the change feed
// follows the service summaries, and each kind of change they show wakes
// the watch of the service it concerns and no other: a health flip, a
// registration, a deregistration, and a node check going critical (which
// changes no check of the service's own). Every watch is driven by the
// feed, whose wait is ten minutes, so the sweep cannot be what delivers
// them. After each change, a sentinel service is flipped and awaited: the
// feed queues its fetches in order, so by the time the sentinel's fetch
// has run, any fetch the change queued has been counted.
//
// This test can fail: a feed that fetched every watch at each change
// would count fetches of the bystanders; one blind to node checks would
// leave "node" at its instance until the deadline.
func TestFeedSummariesWakeTheRightWatch(t *testing.T) {
	srv := consultest.NewServer(t)
	r := registry(t, srv.Config())
	m := &perService{}
	c := newCache(t, srv.Config(), discovery.WithMaxLongPolls(1), discovery.WithWaitTime(10*time.Minute), discovery.WithMetrics(m))
	services := []string{"flip", "grow", "shrink", "node", "bystander", "sentinel"}
	for _, svc := range services {
		if svc != "node" {
			register(t, r, svc+"-a", svc, beacon.HealthPassing)
		}
	}
	register(t, r, "shrink-b", "shrink", beacon.HealthPassing)
	externalNode(t, srv, "ext-node", "node", beacon.HealthPassing)
	ws := map[string]*discovery.Watcher{}
	for _, svc := range services {
		w, err := c.Watch(beacon.Query{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		ws[svc] = w
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for svc, w := range ws {
		if _, err := w.Wait(ctx); err != nil {
			t.Fatalf("watch %q first answer: %v", svc, err)
		}
	}
	until(t, ws["shrink"], "both shrink instances", func(s *discovery.Snapshot) bool { return len(s.Instances) == 2 })
	until(t, ws["node"], "the external instance", func(s *discovery.Snapshot) bool { return len(s.Instances) == 1 })

	sentinelUp := true
	flipSentinel := func() {
		t.Helper()
		st, want := beacon.HealthCritical, 0
		if !sentinelUp {
			st, want = beacon.HealthPassing, 1
		}
		sentinelUp = !sentinelUp
		if err := r.UpdateTTL(ctx, "service:sentinel-a", st, "sentinel"); err != nil {
			t.Fatal(err)
		}
		until(t, ws["sentinel"], fmt.Sprintf("sentinel at %d instances", want), func(s *discovery.Snapshot) bool { return len(s.Instances) == want })
	}
	flipSentinel() // the first rounds' fetches of every watch are counted before the baseline
	for _, step := range []struct {
		name, service string
		change        func()
		done          func(*discovery.Snapshot) bool
	}{
		{"health flip", "flip", func() {
			if err := r.UpdateTTL(ctx, "service:flip-a", beacon.HealthCritical, "down"); err != nil {
				t.Fatal(err)
			}
		}, func(s *discovery.Snapshot) bool { return len(s.Instances) == 0 }},
		{"registration", "grow", func() { register(t, r, "grow-b", "grow", beacon.HealthPassing) },
			func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"grow-a", "grow-b"}) }},
		{"deregistration", "shrink", func() {
			if err := r.Deregister(ctx, "shrink-b"); err != nil {
				t.Fatal(err)
			}
		}, func(s *discovery.Snapshot) bool { return slices.Equal(ids(s), []string{"shrink-a"}) }},
		{"node check critical", "node", func() { externalNode(t, srv, "ext-node", "node", beacon.HealthCritical) },
			func(s *discovery.Snapshot) bool { return len(s.Instances) == 0 }},
	} {
		before := m.counts()
		step.change()
		until(t, ws[step.service], step.name+" through the feed", step.done)
		flipSentinel()
		after := m.counts()
		for _, svc := range services {
			d := after[svc] - before[svc]
			switch {
			case svc == step.service && d < 1:
				t.Errorf("%s: %q fetched %d times, want at least once", step.name, svc, d)
			case svc != step.service && svc != "sentinel" && d != 0:
				t.Errorf("%s: bystander %q fetched %d times, want 0", step.name, svc, d)
			}
		}
		t.Logf("%s: fetches %v", step.name, diffCounts(before, after))
	}
}

func diffCounts(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// TestFeedFallsBackToChecks: an agent that does not serve service
// summaries (404, or 405 from one that knows the path for other methods)
// is asked once; the feed then follows every check, as before summaries,
// and a change reaches a feed-driven watch through it. The wait is ten
// minutes: the sweep cannot be what delivers it.
//
// This test can fail: a feed that kept asking for summaries would never
// deliver the change, nor stop counting requests for them.
func TestFeedFallsBackToChecks(t *testing.T) {
	for _, status := range []int{http.StatusNotFound, http.StatusMethodNotAllowed} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			fake := newStaleAgent(t, state{10, []string{"a"}}, state{10, []string{"a"}})
			fake.mu.Lock()
			fake.summaryStatus = status
			fake.mu.Unlock()
			// One long poll: the feed's; the watch is feed-driven.
			c := newCache(t, fake.config(), discovery.WithMaxLongPolls(1), discovery.WithWaitTime(10*time.Minute), discovery.WithStaleBound(0))
			w, _ := waitFirst(t, c, "web")
			// The fallback's first answer refetches every watch: change
			// the state only once its second query (the blocking one) is
			// out, so that the change reaches the watch through the
			// checks' diff and not through that first refetch.
			testutil.Eventually(t, deadline, "the checks feed's blocking query", func() error {
				fake.mu.Lock()
				defer fake.mu.Unlock()
				return testutil.Want(fake.checks >= 2, "%d checks queries", fake.checks)
			})
			fake.set(state{20, []string{"a", "b"}}, state{20, []string{"a", "b"}})
			waitFor(t, w, []string{"a", "b"}, deadline)
			fake.mu.Lock()
			summaries, checks := fake.summaries, fake.checks
			fake.mu.Unlock()
			if summaries != 1 || checks < 1 {
				t.Errorf("requests for summaries %d, for every check %d; want 1 and at least 1", summaries, checks)
			}
		})
	}
}

// TestSlowFeedDoesNotMarkAgentDown: the feed's query answers nothing
// within its deadline (at 100,000 instances, every check is 50 MB and
// did not arrive while 10,000 watches made their first reads) while the
// agent answers everything else. The feed's error is logged and retried;
// the agent is not marked unreachable, so watches keep being served.
//
// This test can fail: before, a local feed query's timeout marked the
// agent down ("agent unreachable; probing it"), cutting every request in
// flight to it and failing new watches with an UnreachableError.
func TestSlowFeedDoesNotMarkAgentDown(t *testing.T) {
	var mu sync.Mutex
	feedCalls := 0
	second, quit := make(chan struct{}), make(chan struct{})
	srv, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v1/internal/ui/services":
			mu.Lock()
			feedCalls++
			if feedCalls == 2 {
				close(second)
			}
			mu.Unlock()
			select { // hang until the client gives up
			case <-r.Context().Done():
			case <-quit:
			}
		case strings.HasPrefix(r.URL.Path, "/v1/health/service/"):
			w.Header().Set("X-Consul-Index", "5")
			w.Header().Set("Content-Type", "application/json")
			if strings.HasSuffix(r.URL.Path, "/consul") {
				_, _ = w.Write([]byte("[]"))
				return
			}
			_, _ = w.Write([]byte(`[{"Node":{"Node":"n1","Address":"127.0.0.1"},"Service":{"ID":"a","Service":"web","Port":8080},"Checks":[{"Status":"passing"}]}]`))
		default:
			http.NotFound(w, r)
		}
	})
	t.Cleanup(func() { close(quit) }) // before the server's Close, which waits for its handlers
	cfg := fakeConfig(srv)
	cfg.Timeout = 300 * time.Millisecond // the feed's first query gives up after this
	logs := &testutil.Buffer{}
	c := newCache(t, cfg, discovery.WithMaxLongPolls(1), discovery.WithStaleBound(0), discovery.WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	waitFirst(t, c, "web")
	select {
	case <-second: // the first query's error has been handled: the loop asked again
	case <-time.After(deadline):
		t.Fatal("the feed did not ask again after its query timed out")
	}
	if strings.Contains(logs.String(), "agent unreachable") {
		t.Errorf("the agent was marked unreachable for the feed's timeout:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "change feed error") {
		t.Errorf("the feed's timeout was not logged:\n%s", logs.String())
	}
}
