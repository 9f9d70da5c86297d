package discovery_test

import (
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// sendLog records when each health query of a watched service was sent.
type sendLog struct {
	base http.RoundTripper
	mu   sync.Mutex
	sent map[string][]time.Time // service → sending times
}

func (l *sendLog) RoundTrip(r *http.Request) (*http.Response, error) {
	if svc, ok := strings.CutPrefix(r.URL.Path, "/v1/health/service/"); ok && svc != "consul" {
		l.mu.Lock()
		l.sent[svc] = append(l.sent[svc], time.Now())
		l.mu.Unlock()
	}
	return l.base.RoundTrip(r)
}

// newSendLog returns a log and the backend option whose clients record
// into it.
func newSendLog() (*sendLog, discovery.Option) {
	log := &sendLog{sent: map[string][]time.Time{}}
	return log, discovery.WithBackend(func(cfg consul.Config) (beacon.Registry, error) {
		hc, _, err := cfg.NewHTTPClient()
		if err != nil {
			return nil, err
		}
		log.base = hc.Transport
		hc.Transport = log
		return consulhttp.New(cfg, consulhttp.WithHTTPClient(hc))
	})
}

// firstAfter returns, per service, the first sending at or after t.
func (l *sendLog) firstAfter(t time.Time) map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]time.Time{}
	for svc, ts := range l.sent {
		for _, s := range ts {
			if !s.Before(t) {
				out[svc] = s
				break
			}
		}
	}
	return out
}

// TestRecoverySpread: when a killed agent comes back, the watches that
// waited for it do not all ask at once. Every cache of a fleet marks the
// agent down when it dies and probes it on the same beat, so without a
// spread every watch of every host asks within a round trip of the first
// probe answered (BenchmarkFleet's herd). Here 30 watches of one cache on
// a real agent that is stopped and started again: their first queries
// after the restart must span at least 1 s (they are spread uniformly
// over recoverySpread, 3 s: 30 draws within 1 s of each other happen
// about 30 × (1/3)^29 ≈ 4e-13 of the time). Before the spread they went
// out within a few milliseconds of one another.
func TestRecoverySpread(t *testing.T) {
	const services = 30
	srv := consultest.NewServer(t)
	pop := consultest.Populate(t, srv, consultest.Fleet{Services: services, Instances: 1, Prefix: "herd"})
	log, backend := newSendLog()
	c := newCache(t, srv.Config(), backend)
	var ws []*discovery.Watcher
	for _, svc := range pop.Services() {
		w, _ := waitFirst(t, c, svc)
		ws = append(ws, w)
	}

	srv.Stop()
	for _, w := range ws {
		until(t, w, "the outage is visible", func(s *discovery.Snapshot) bool { return s.Err != nil })
	}
	restarted := time.Now()
	srv.Restart(t)
	var first map[string]time.Time
	testutil.Eventually(t, deadline, "every watch asks the restarted agent", func() error {
		first = log.firstAfter(restarted)
		return testutil.Want(len(first) == services, "%d of %d watches asked", len(first), services)
	})
	var ts []time.Time
	for _, s := range first {
		ts = append(ts, s)
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	span := ts[len(ts)-1].Sub(ts[0])
	t.Logf("the first queries of %d watches after the restart span %v", services, span.Round(time.Millisecond))
	if span < time.Second {
		t.Errorf("the first queries of %d watches after the restart span %v, want at least 1s: the watches herd", services, span)
	}
}

// TestSlowAgentNotMarkedDown: an overloaded agent (a fleet's herd makes
// one) answers, but late. Here a fake agent answers the watch's blocking
// queries every 200 ms, each at a new index, and the watchdog's liveness
// question (a stale read of "consul") only after 3 s, past its 2-s
// deadline. An agent that answers is alive: the watch must never see an
// error. Before, the watchdog asked twice, 5 s after the watch started,
// marked the agent down after the two misses and cut the long poll in
// flight (an error published within about 10 s); a real agent cannot be
// made this slow for one question only, hence the fake.
func TestSlowAgentNotMarkedDown(t *testing.T) {
	var index, webAnswers atomic.Int64
	index.Store(10)
	srv, _ := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		service, _ := strings.CutPrefix(r.URL.Path, "/v1/health/service/")
		delay := 200 * time.Millisecond
		if service == "consul" {
			delay = 3 * time.Second
		} else if r.URL.Query().Get("index") == "" {
			delay = 0
		}
		select {
		case <-time.After(delay):
		case <-r.Context().Done(): // the client gave up, or the server closes
			return
		}
		w.Header().Set("X-Consul-Index", strconv.FormatInt(index.Add(1), 10))
		w.Header().Set("X-Consul-KnownLeader", "true")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, healthAnswer(service, []string{"a"}))
		if service != "consul" {
			webAnswers.Add(1)
		}
	})
	c := newCache(t, fakeConfig(srv))
	w, _ := waitFirst(t, c, "web")
	// 100 answers take about 17 s: past the watchdog's rounds at 5, 10 and
	// 15 s (before, the first round cut the poll after about 53 answers).
	// Equal answers wake no subscriber, so the snapshot is looked at on a
	// tick.
	end := time.After(deadline + 30*time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for webAnswers.Load() < 100 {
		if s := w.Snapshot(); s.Err != nil {
			t.Fatalf("after %d answers the watch has error %v, want none: an agent that answers was taken for dead", webAnswers.Load(), s.Err)
		}
		select {
		case <-tick.C:
		case <-end:
			t.Fatalf("only %d answers to the watch within %v", webAnswers.Load(), deadline+30*time.Second)
		}
	}
	if s := w.Snapshot(); s.Err != nil {
		t.Fatalf("after %d answers the watch has error %v, want none", webAnswers.Load(), s.Err)
	}
}

// TestRequestCapHoldsAfterOutage: the cache-wide cap (WithMaxRequestRate)
// holds when a killed agent comes back. 30 watches of a cache capped at 5
// requests a second after a burst of 5 wait through a 6-s outage, longer
// than the bucket takes to fill and than the cap takes to hand out 30
// tokens; in any 2 s after the agent answers again the
// agent may receive at most what the bucket holds and refills (5 + 10)
// and 3 of slack. Before, each waiting request took its token before
// waiting for an agent, so all 30 held one at the restart and went out on
// it, beyond the cap, within the recovery spread.
func TestRequestCapHoldsAfterOutage(t *testing.T) {
	const (
		services  = 30
		perSecond = 5
		burst     = 5
		window    = 2 * time.Second
	)
	srv := consultest.NewServer(t)
	pop := consultest.Populate(t, srv, consultest.Fleet{Services: services, Instances: 1, Prefix: "capped"})
	log, backend := newSendLog()
	c := newCache(t, srv.Config(), backend, discovery.WithMaxRequestRate(perSecond, burst))
	var ws []*discovery.Watcher
	for _, svc := range pop.Services() {
		w, _ := waitFirst(t, c, svc)
		ws = append(ws, w)
	}

	srv.Stop()
	// A watch whose query waited for the cap when the agent died sees no
	// error (it waits for an agent): one that was asking does.
	until(t, ws[0], "the outage is visible", func(s *discovery.Snapshot) bool { return s.Err != nil })
	// Long enough for the bucket to fill and for the cap to have handed a
	// token to every watch waiting to retry, had they taken one first.
	time.Sleep(6 * time.Second) // a span of outage, not a synchronisation
	restarted := time.Now()
	srv.Restart(t)
	testutil.Eventually(t, deadline, "every watch asks the restarted agent", func() error {
		return testutil.Want(len(log.firstAfter(restarted)) == services, "%d of %d watches asked", len(log.firstAfter(restarted)), services)
	})
	log.mu.Lock()
	var ts []time.Time
	for _, sent := range log.sent {
		for _, s := range sent {
			if !s.Before(restarted) {
				ts = append(ts, s)
			}
		}
	}
	log.mu.Unlock()
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i := range ts {
		n := 0
		for j := i; j < len(ts) && ts[j].Sub(ts[i]) < window; j++ {
			n++
		}
		most = max(most, n)
	}
	// 3 of slack: a request is logged when sent, a moment after it took
	// its token, so a window can catch a few of the window before's.
	limit := burst + perSecond*int(window/time.Second) + 3
	t.Logf("after the restart: %d health queries, at most %d in any %v (limit %d); RequestCap = %+v", len(ts), most, window, limit, c.RequestCap())
	if most > limit {
		t.Errorf("%d health queries in %v after the restart, want at most %d (the cap: %d a second after %d)", most, window, limit, perSecond, burst)
	}
}
