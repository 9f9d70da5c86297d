package discovery_test

// The stale guard against a fake agent that does what Consul 1.14 does
// only by a race (hashicorp/consul#16871): serve a watch from a stale
// streaming view. Blocking and ?cached reads get the view (its old index
// and old body at each timeout, later a higher index still without the
// lost instance); a plain read and near=_agent get the truth. The real
// race is made to happen in stalerace_test.go.

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// state is what one backend of the fake serves: instance IDs at an index.
type state struct {
	index uint64
	ids   []string
}

// staleAgent serves GET /v1/health/service/web from a view or the truth,
// and GET /v1/health/state/any (the change feed) from the truth.
type staleAgent struct {
	srv  *httptest.Server
	quit chan struct{}

	mu            sync.Mutex
	truth, view   state
	changed       chan struct{} // closed and replaced at every change
	plain         int           // plain reads of web
	summaries     int           // requests for service summaries, answered summaryStatus (404 if 0)
	checks        int           // requests for every check
	summaryStatus int
	viewReads     int           // reads of web served from the view
	nearBlocked   chan struct{} // closed at the first blocking near=_agent read
}

func newStaleAgent(t *testing.T, truth, view state) *staleAgent {
	t.Helper()
	a := &staleAgent{truth: truth, view: view, changed: make(chan struct{}), nearBlocked: make(chan struct{})}
	a.srv, a.quit = fakeServer(t, a.serve)
	return a
}

func (a *staleAgent) config() consul.Config { return fakeConfig(a.srv) }

// set changes what the truth and the view hold, waking blocked reads.
func (a *staleAgent) set(truth, view state) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.truth, a.view = truth, view
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *staleAgent) counts() (plain, view int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.plain, a.viewReads
}

func (a *staleAgent) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	idx, _ := strconv.ParseUint(q.Get("index"), 10, 64)
	wait, err := time.ParseDuration(q.Get("wait"))
	if err != nil {
		wait = 5 * time.Minute
	}
	if r.URL.Path == "/v1/internal/ui/services" {
		// An agent that does not serve summaries (an older Consul): the
		// change feed falls back to every check.
		a.mu.Lock()
		a.summaries++
		st := a.summaryStatus
		a.mu.Unlock()
		http.Error(w, "no such endpoint", cmp.Or(st, http.StatusNotFound))
		return
	}
	checks := r.URL.Path == "/v1/health/state/any"
	if checks {
		a.mu.Lock()
		a.checks++
		a.mu.Unlock()
	}
	service, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
	if r.Method != http.MethodGet || (!ok && !checks) {
		http.NotFound(w, r)
		return
	}
	_, cached := q["cached"]
	fromView := service == "web" && (idx > 0 || cached) && q.Get("near") == ""
	a.mu.Lock()
	pick := func() state {
		if fromView {
			return a.view
		}
		return a.truth
	}
	switch {
	case service == "web" && fromView:
		a.viewReads++
	case service == "web" && idx == 0 && q.Get("near") == "":
		a.plain++
	case service == "web" && idx > 0 && pick().index <= idx:
		select {
		case <-a.nearBlocked:
		default:
			close(a.nearBlocked)
		}
	}
	st, changed := pick(), a.changed
	a.mu.Unlock()
	// Block as an agent does, until the state moves past idx or wait ends;
	// a view that times out answers its old index and old body.
	if idx > 0 && st.index <= idx {
		t := time.NewTimer(wait)
		defer t.Stop()
	blocked:
		for range 1000 { // bounded: each round is a change of state
			select {
			case <-t.C:
				break blocked
			case <-a.quit:
				return
			case <-r.Context().Done():
				return
			case <-changed:
			}
			a.mu.Lock()
			st, changed = pick(), a.changed
			a.mu.Unlock()
			if st.index > idx {
				break
			}
		}
	}
	backend := "blocking-query"
	if fromView {
		backend = "streaming"
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(st.index, 10))
	w.Header().Set("X-Consul-KnownLeader", "true")
	w.Header().Set("X-Consul-Query-Backend", backend)
	w.Header().Set("Content-Type", "application/json")
	var body []map[string]any
	if checks {
		// One check per instance of web in the truth: the feed's digest
		// changes when the truth's instances or index do.
		for _, id := range st.ids {
			body = append(body, map[string]any{"Node": "n1", "CheckID": "service:" + id, "Status": "passing", "ServiceID": id, "ServiceName": "web", "ModifyIndex": st.index})
		}
	} else if service == "web" {
		for i, id := range st.ids {
			body = append(body, map[string]any{
				"Node": map[string]any{"Node": "n1", "Address": "127.0.0.1"},
				// A port each: one address and port would be copies of one
				// instance, which discovery merges.
				"Service": map[string]any{"ID": id, "Service": "web", "Port": 8080 + i},
				"Checks":  []map[string]any{{"Status": "passing"}},
			})
		}
	}
	if body == nil {
		body = []map[string]any{}
	}
	_ = json.NewEncoder(w).Encode(body)
}

// waitFor waits, within d, for w's snapshot to hold want, and returns when
// it did.
func waitFor(t *testing.T, w *discovery.Watcher, want []string, d time.Duration) time.Time {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if s := w.Snapshot(); s != nil && slices.Equal(ids(s), want) {
			return time.Now()
		}
		select {
		case <-w.Changed():
		case <-timer.C:
			s := w.Snapshot()
			t.Fatalf("snapshot after %v = %v, want %v", d, ids(s), want)
		}
	}
}

type staleMetrics struct {
	countingMetrics
	stale atomic.Int64
}

func (m *staleMetrics) StaleView(string) { m.stale.Add(1) }

// statsOf returns the stats of service's watch.
func statsOf(t *testing.T, c *discovery.Cache, service string) discovery.WatchStats {
	t.Helper()
	for _, st := range c.Stats() {
		if st.Service == service {
			return st
		}
	}
	t.Fatalf("Stats() has no watch of %q", service)
	return discovery.WatchStats{}
}

// TestStaleViewFirstQuery: the watch's first blocking query creates a
// view that missed a change (b, made just after the loop's plain read):
// re-blocks time out at the old index with the old body, and a later
// change reaches the view at a higher index, still without b. The guard's
// verification of the first blocking query finds it, publishes the truth,
// and moves the watch past the view (near=_agent), whose answers no longer
// reach callers. How soon is logged against the stale bound (the target:
// WithStaleBound's promise; about bound/7 on an idle machine); the waits
// here give it the bound and the package deadline, so that a loaded
// machine is not taken for a guard that is late (these tests fail a guard
// that never repairs).
//
// This test can fail: with WithStaleBound(0) the watch serves [a] until
// the deadline (the view never shows b).
func TestStaleViewFirstQuery(t *testing.T) {
	const bound = 10 * time.Second
	fake := newStaleAgent(t, state{10, []string{"a"}}, state{10, []string{"a"}})
	m := &staleMetrics{}
	c := newCache(t, fake.config(), discovery.WithWaitTime(200*time.Millisecond), discovery.WithMetrics(m), discovery.WithStaleBound(bound))
	events, _ := listen(t, c)
	w, first := waitFirst(t, c, "web")
	start := time.Now()
	if got := ids(first); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first snapshot = %v, want the plain read's [a]", got)
	}
	// b is registered as the first blocking query snapshots the view: lost.
	fake.set(state{20, []string{"a", "b"}}, state{10, []string{"a"}})
	time.AfterFunc(500*time.Millisecond, func() { fake.set(state{21, []string{"a", "b"}}, state{12, []string{"a"}}) })
	repaired := waitFor(t, w, []string{"a", "b"}, bound+deadline)
	t.Logf("stale view repaired %v after the first answer (target: within the stale bound %v)", repaired.Sub(start).Round(time.Millisecond), bound)

	// Past the view: a blocking near=_agent read is held by the agent.
	select {
	case <-fake.nearBlocked:
	case <-time.After(deadline):
		t.Fatal("no blocking near=_agent read after the repair")
	}
	_, viewBefore := fake.counts()
	st := statsOf(t, c, "web")
	if st.StaleViews != 1 || !st.OffStream || st.Backend != beacon.QueryBackendBlockingQuery {
		t.Errorf("Stats() = StaleViews %d, OffStream %v, Backend %q; want 1, true, %q", st.StaleViews, st.OffStream, st.Backend, beacon.QueryBackendBlockingQuery)
	}
	if n := m.stale.Load(); n != 1 {
		t.Errorf("StaleView counted %d, want 1", n)
	}
	if e := events.wait(t, "the stale view event", func(e discovery.Event) bool { return e.Kind == discovery.EventStaleViewRepaired }); e.Service != "web" || !strings.Contains(e.Detail, "→ 21, found by") {
		t.Errorf("stale view event = %+v, want web, the plain read's index 21 and what found it", e)
	}
	// A view change now reaches nobody: the watch no longer reads it.
	fake.set(state{22, []string{"a", "b"}}, state{13, []string{"a"}})
	if _, view := fake.counts(); view != viewBefore {
		t.Errorf("the view was read %d times after the move, want 0", view-viewBefore)
	}
	if s := w.Snapshot(); !slices.Equal(ids(s), []string{"a", "b"}) {
		t.Errorf("snapshot after the move = %v, want [a b]", ids(s))
	}
}

// TestStaleViewBehind: the view is behind the agent's own state: blocking
// from the plain read's index (20) answers, at the wait's end, a lower
// index (10) without b. The loop would publish it, reset, read the truth
// and flip between the two at every timeout; the guard checks the lower
// answer at once, so the stale body is never published.
//
// This test can fail: without the check (guard.behind) the view's [a] is
// published at the first timeout, a second Published call.
func TestStaleViewBehind(t *testing.T) {
	fake := newStaleAgent(t, state{20, []string{"a", "b"}}, state{10, []string{"a"}})
	m := &staleMetrics{}
	c := newCache(t, fake.config(), discovery.WithWaitTime(200*time.Millisecond), discovery.WithMetrics(m))
	w, first := waitFirst(t, c, "web")
	start := time.Now()
	if got := ids(first); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first snapshot = %v, want the plain read's [a b]", got)
	}
	select {
	case <-fake.nearBlocked:
		t.Logf("off the view %v after the first answer", time.Since(start).Round(time.Millisecond))
	case <-time.After(deadline):
		t.Fatal("no blocking near=_agent read: the view behind was not left")
	}
	if st := statsOf(t, c, "web"); st.StaleViews != 1 || !st.OffStream {
		t.Errorf("Stats() = StaleViews %d, OffStream %v; want 1, true", st.StaleViews, st.OffStream)
	}
	if n := m.published.Load(); n != 1 {
		t.Errorf("Published called %d times, want 1 (the view's [a] must never be published)", n)
	}
	if s := w.Snapshot(); !slices.Equal(ids(s), []string{"a", "b"}) {
		t.Errorf("snapshot = %v, want [a b]", ids(s))
	}
}

// TestStaleViewTripwire: the view is right at first and the first
// verification passes; then a change is lost to the view (the truth gains
// b at a higher index, the view never does). The change feed's query on
// every check is the tripwire: the watch is verified and repaired within
// the bound of the change, long before the backstop (10 wait periods).
//
// This test can fail: without the tripwire (feed.changed not wired) the
// watch serves [a] until the backstop, 10 minutes here.
func TestStaleViewTripwire(t *testing.T) {
	const bound = 10 * time.Second
	fake := newStaleAgent(t, state{10, []string{"a"}}, state{10, []string{"a"}})
	m := &staleMetrics{}
	c := newCache(t, fake.config(), discovery.WithWaitTime(time.Minute), discovery.WithMetrics(m), discovery.WithStaleBound(bound))
	w, _ := waitFirst(t, c, "web")
	// The first verification (a plain read, bound/7 after the first answer).
	testutil.Eventually(t, deadline, "the first answer verified", func() error {
		plain, _ := fake.counts()
		return testutil.Want(plain > 0, "no plain read yet")
	})
	start := time.Now()
	fake.set(state{30, []string{"a", "b"}}, state{10, []string{"a"}})
	repaired := waitFor(t, w, []string{"a", "b"}, bound+deadline)
	t.Logf("lost change repaired %v after it was made (target: within the stale bound %v)", repaired.Sub(start).Round(time.Millisecond), bound)
	if st := statsOf(t, c, "web"); st.StaleViews != 1 {
		t.Errorf("Stats().StaleViews = %d, want 1", st.StaleViews)
	}
}

// TestStaleViewPropagating: a change that reaches the view a little after
// the plain read (Consul's own propagation) is not a stale view: the
// second read, grace later, agrees with the watch.
func TestStaleViewPropagating(t *testing.T) {
	const bound = 10 * time.Second
	fake := newStaleAgent(t, state{10, []string{"a"}}, state{10, []string{"a"}})
	m := &staleMetrics{}
	c := newCache(t, fake.config(), discovery.WithWaitTime(time.Minute), discovery.WithMetrics(m), discovery.WithStaleBound(bound))
	w, _ := waitFirst(t, c, "web")
	// The truth gains b now; the view 300 ms later (under bound/10).
	fake.set(state{30, []string{"a", "b"}}, state{10, []string{"a"}})
	time.AfterFunc(300*time.Millisecond, func() { fake.set(state{30, []string{"a", "b"}}, state{30, []string{"a", "b"}}) })
	waitFor(t, w, []string{"a", "b"}, bound+deadline)
	// Every verification this change asked for has run by settle + grace
	// + slack; none may have found a stale view.
	time.Sleep(bound/7 + bound/10 + time.Second) // the window being checked, not a synchronisation
	if plain, _ := fake.counts(); plain == 0 {
		t.Fatal("no verification ran; the test proves nothing")
	}
	if st := statsOf(t, c, "web"); st.StaleViews != 0 || st.OffStream {
		t.Errorf("Stats() = StaleViews %d, OffStream %v; want 0, false (a change in propagation is not a stale view)", st.StaleViews, st.OffStream)
	}
}

// TestStaleViewFeedCached: a watch driven by the change feed makes plain
// reads and cannot see a view, unless WithAgentCache has it read the
// agent's cache, which is the streaming view: then its first answer is
// verified like a long poll's, and once repaired it reads past the cache.
//
// This test can fail: without the feed's answered hook the feed watch
// serves the view's [a] until the deadline (its fetches keep reading it).
func TestStaleViewFeedCached(t *testing.T) {
	const bound = 10 * time.Second
	fake := newStaleAgent(t, state{20, []string{"a", "b"}}, state{10, []string{"a"}})
	m := &staleMetrics{}
	// One long poll: the feed's; every watch is feed-driven.
	c := newCache(t, fake.config(), discovery.WithMaxLongPolls(1), discovery.WithAgentCache(), discovery.WithMetrics(m), discovery.WithStaleBound(bound))
	w, first := waitFirst(t, c, "web")
	start := time.Now()
	if got := ids(first); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first snapshot = %v, want the cached view's [a]", got)
	}
	repaired := waitFor(t, w, []string{"a", "b"}, bound+deadline)
	t.Logf("feed watch's stale view repaired %v after its first answer (target: within the stale bound %v)", repaired.Sub(start).Round(time.Millisecond), bound)
	if st := statsOf(t, c, "web"); st.StaleViews != 1 || !st.OffStream {
		t.Errorf("Stats() = StaleViews %d, OffStream %v; want 1, true", st.StaleViews, st.OffStream)
	}
}

// TestStaleViewTripwireSkipsWatchAhead: when the change feed reports a
// change the watch has already answered (its view moved to the feed
// answer's index with it), the tripwire's plain read is skipped: the
// watch's view is at least as new. When the next change reaches the truth
// and not the view, the same tripwire reads and repairs, so the skip in
// the first half is the guard's choice, not a dead tripwire.
//
// This test can fail: without the index comparison (checkAt) the first
// change costs a plain read settle later.
func TestStaleViewTripwireSkipsWatchAhead(t *testing.T) {
	const bound = 7 * time.Second // settle 1 s, grace 700 ms
	fake := newStaleAgent(t, state{10, []string{"a"}}, state{10, []string{"a"}})
	c := newCache(t, fake.config(), discovery.WithWaitTime(time.Minute), discovery.WithStaleBound(bound))
	w, _ := waitFirst(t, c, "web")
	// The loop's first read is plain too: the verification is the second.
	testutil.Eventually(t, deadline, "the first blocking query verified", func() error {
		plain, _ := fake.counts()
		return testutil.Want(plain > 1, "no verification yet")
	})
	before, _ := fake.counts()

	// The view moves with the truth: the watch answers at the feed's index.
	fake.set(state{30, []string{"a", "b"}}, state{30, []string{"a", "b"}})
	waitFor(t, w, []string{"a", "b"}, bound+deadline)
	time.Sleep(bound/7 + bound/10 + time.Second) // the window being checked, not a synchronisation
	if plain, _ := fake.counts(); plain != before {
		t.Errorf("plain reads after a change the watch already had: %d, want 0", plain-before)
	}

	// The next change is lost to the view: the tripwire reads and repairs.
	fake.set(state{40, []string{"a", "b", "c"}}, state{30, []string{"a", "b"}})
	waitFor(t, w, []string{"a", "b", "c"}, bound+deadline/2)
	if st := statsOf(t, c, "web"); st.StaleViews != 1 {
		t.Errorf("Stats().StaleViews = %d, want 1", st.StaleViews)
	}
}
