package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/keeper"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStats is a cache whose Stats the test sets.
type fakeStats struct {
	mu    sync.Mutex
	stats []discovery.WatchStats
	calls chan struct{} // receives after each Stats, when not nil
}

func (f *fakeStats) Stats() []discovery.WatchStats {
	f.mu.Lock()
	out := append([]discovery.WatchStats(nil), f.stats...)
	f.mu.Unlock()
	if f.calls != nil {
		select {
		case f.calls <- struct{}{}:
		default:
		}
	}
	return out
}

func (f *fakeStats) set(s ...discovery.WatchStats) {
	f.mu.Lock()
	f.stats = s
	f.mu.Unlock()
}

type fakeKeeper keeper.Status

func (k fakeKeeper) Status() keeper.Status { return keeper.Status(k) }

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestMethodsRefused(t *testing.T) {
	h := New()
	defer h.Close()
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "TRACE"} {
		rec := get(t, h, m, "/debug/beacon")
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: status %d, want 405", m, rec.Code)
		}
		if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
			t.Errorf("%s: Allow %q, want %q", m, got, "GET, HEAD")
		}
		if rec.Header().Get("Content-Security-Policy") == "" {
			t.Errorf("%s: refusal without a CSP header", m)
		}
	}
	head := get(t, h, http.MethodHead, "/debug/beacon")
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "0" {
		t.Errorf("HEAD: status %d, %d body bytes, Content-Length %q; want 200, none, the GET's length", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
}

func TestHeaders(t *testing.T) {
	h := New()
	defer h.Close()
	rec := get(t, h, http.MethodGet, "/debug/beacon")
	csp := rec.Header().Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'sha256-", "frame-ancestors 'none'", "form-action 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"script-src", "unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q allows %q", csp, bad)
		}
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q, want nosniff", got)
	}
	// The hash in the policy must be that of the page's one style element,
	// or a browser would drop the styles.
	body := rec.Body.String()
	i, j := strings.Index(body, "<style>"), strings.Index(body, "</style>")
	if i < 0 || j < i || body[i+len("<style>"):j] != css {
		t.Fatalf("the page's style element is not the hashed css")
	}
	if strings.Count(body, "<style") != 1 || strings.Contains(body, "<script") || strings.Contains(body, " style=") {
		t.Errorf("page holds a script, a style attribute or a second style element")
	}
	for _, ext := range []string{"src=", "href=\"http", "@import", "url("} {
		if strings.Contains(body, ext) {
			t.Errorf("page refers to an external asset (%q)", ext)
		}
	}
}

func TestFormat(t *testing.T) {
	h := New()
	defer h.Close()
	for _, tc := range []struct {
		target, accept string
		want           string // content type prefix, or "400"
	}{
		{"/", "", "text/html"},
		{"/", "text/html,application/xhtml+xml,*/*;q=0.8", "text/html"},
		{"/", "application/json", "application/json"},
		{"/", "application/json;q=0.9, text/plain", "application/json"},
		{"/", "application/json;q=0", "text/html"},
		{"/", "text/html, application/json", "text/html"},
		{"/?format=json", "text/html", "application/json"},
		{"/?format=html", "application/json", "text/html"},
		{"/?format=xml", "", "400"},
		{"/", strings.Repeat("a/b,", 1000) + "application/json", "text/html"},
	} {
		rec := get(t, h, http.MethodGet, tc.target, "Accept", tc.accept)
		if tc.want == "400" {
			if rec.Code != http.StatusBadRequest {
				t.Errorf("GET %s Accept %.40q: status %d, want 400", tc.target, tc.accept, rec.Code)
			}
			continue
		}
		if got := rec.Header().Get("Content-Type"); !strings.HasPrefix(got, tc.want) {
			t.Errorf("GET %s Accept %.40q: Content-Type %q, want %s", tc.target, tc.accept, got, tc.want)
		}
	}
}

var (
	t0      = time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	errDown = errors.New("dial tcp 127.0.0.1:8500: connect: connection refused")
)

func TestReportFromStats(t *testing.T) {
	fs := &fakeStats{}
	fs.set(
		discovery.WatchStats{Service: "web", Instances: 3, Age: 2 * time.Second, Backend: "streaming", ReadPath: discovery.ReadStreaming, StaleViews: 1},
		discovery.WatchStats{Service: "db", Instances: 1, Age: time.Minute, Err: fmt.Errorf("x: %w", discovery.ErrHiddenByACLs), Datacenter: "dc2", Failover: true, Failovers: 2, FailoverSince: t0, FailoverReason: "no passing instance in dc1",
			FailoverPolicy: discovery.Failover{Datacenters: []string{"dc2"}, NearestN: 2, MinPassing: 1, HoldDown: 10 * time.Second}},
	)
	k := fakeKeeper{Agent: "127.0.0.1:8500", Registered: true, LastHeartbeat: t0, Failovers: 1}
	h := New(WithCache(fs), WithKeeper(k, "web-1"), WithAgents("http://user:secret@127.0.0.1:8500/?token=secret2", "127.0.0.2:8500"), WithSampling(0, 0))
	defer h.Close()
	rec := get(t, h, http.MethodGet, "/?format=json")
	var rep Report
	if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
		t.Fatalf("decoding the JSON: %v", err)
	}
	if rep.WatchCount != 2 || len(rep.Watches) != 2 {
		t.Fatalf("WatchCount %d, %d watches; want 2, 2", rep.WatchCount, len(rep.Watches))
	}
	web, db := rep.Watches[0], rep.Watches[1]
	if web.Service != "web" || web.Instances != 3 || web.AgeSeconds != 2 || !web.Answered || web.Backend != "streaming" || web.ReadPath != "streaming" || web.StaleViews != 1 || web.Error != "" || web.ACLHidden {
		t.Errorf("web row = %+v", web)
	}
	if !db.ACLHidden || db.Datacenter != "dc2" || !db.Failover || db.Failovers != 2 || db.FailoverSince == nil || !db.FailoverSince.Equal(t0) || db.FailoverReason == "" {
		t.Errorf("db row = %+v", db)
	}
	if p := db.FailoverPolicy; p == nil || !slices.Equal(p.Datacenters, []string{"dc2"}) || p.NearestN != 2 || p.MinPassing != 1 || p.HoldDownSeconds != 10 || web.FailoverPolicy != nil {
		t.Errorf("failover policies: db %+v, web %+v; want dc2 then the 2 nearest, below 1 passing, 10 s hold-down; none for web", db.FailoverPolicy, web.FailoverPolicy)
	}
	if rep.Keeper == nil || rep.Keeper.InstanceID != "web-1" || rep.Keeper.Status != "registered" || rep.Keeper.Agent != "127.0.0.1:8500" || rep.Keeper.LastHeartbeat == nil {
		t.Errorf("keeper = %+v", rep.Keeper)
	}
	if len(rep.Agents) != 2 || rep.Agents[0].Address != "http://127.0.0.1:8500/" || rep.Agents[1].Address != "127.0.0.2:8500" {
		t.Errorf("agents = %+v", rep.Agents)
	}
	for _, f := range []string{"?format=json", "?format=html"} {
		if b := get(t, h, http.MethodGet, "/"+f).Body.String(); strings.Contains(b, "secret") || strings.Contains(b, "user") {
			t.Errorf("%s shows an address's user info or query: %s", f, b)
		}
	}
	html := get(t, h, http.MethodGet, "/").Body.String()
	for _, want := range []string{"<strong>web</strong>", "ACL-hidden", "web-1", "failover ×2", "to dc2, nearest 2 below 1 passing, back after 10s", "127.0.0.2:8500"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

func TestEscaping(t *testing.T) {
	fs := &fakeStats{}
	fs.set(discovery.WatchStats{Service: `<script>alert(1)</script>`, Err: errors.New(`"><img src=x onerror=alert(1)>`)})
	h := New(WithCache(fs), WithSampling(time.Hour, 10))
	defer h.Close()
	h.Events().Record(Event{Kind: InstanceAdded, Detail: "<svg onload=alert(1)>"})
	body := get(t, h, http.MethodGet, "/").Body.String()
	for _, bad := range []string{"<script>", "<img", "<svg onload"} {
		if strings.Contains(body, bad) {
			t.Errorf("page holds unescaped %q", bad)
		}
	}
}

func TestEventsRing(t *testing.T) {
	r := NewEvents(3)
	for i := range 5 {
		r.Record(Event{Kind: InstanceAdded, Instance: fmt.Sprint(i)})
	}
	var got []string
	for _, e := range r.Last() {
		got = append(got, e.Instance)
		if e.Time.IsZero() {
			t.Errorf("event %s has no time", e.Instance)
		}
	}
	if strings.Join(got, ",") != "4,3,2" {
		t.Errorf("Last() = %v, want 4,3,2 (newest first, oldest dropped)", got)
	}
	var nilRing *Events
	nilRing.Record(Event{}) // must not panic
	long := strings.Repeat("é", MaxText)
	r.Record(Event{Detail: long})
	if d := r.Last()[0].Detail; len(d) > MaxText || !strings.HasSuffix(d, "…") {
		t.Errorf("a long detail is kept at %d bytes, want at most %d ending in …", len(d), MaxText)
	}
}

// TestSampler checks the history and the events derived from successive
// samples, and that Close stops the sampler (goleak).
func TestSampler(t *testing.T) {
	fs := &fakeStats{calls: make(chan struct{}, 1)}
	fs.set(discovery.WatchStats{Service: "web", Instances: 3, Age: time.Second})
	h := New(WithCache(fs), WithSampling(time.Millisecond, 5))
	defer h.Close()
	wait := func() {
		t.Helper()
		// Two Stats calls: the sample in flight when set ran is done.
		for range 2 {
			select {
			case <-fs.calls:
			case <-time.After(30 * time.Second):
				t.Fatal("the sampler did not sample within 30 s")
			}
		}
	}
	wait()
	fs.set(discovery.WatchStats{Service: "web", Instances: 1, Age: time.Second, StaleViews: 1, Panic: true, PanicThreshold: 0.5})
	wait()
	rep := h.Report()
	if len(rep.Services) != 1 || rep.Services[0].Service != "web" {
		t.Fatalf("Services = %+v", rep.Services)
	}
	if p := rep.Services[0].Passing; len(p) < 2 || p[0] != 3 || p[len(p)-1] != 1 {
		t.Errorf("passing history %v, want 3 … 1", p)
	}
	kinds := map[EventKind]bool{}
	for _, e := range rep.Events {
		kinds[e.Kind] = true
	}
	for _, k := range []EventKind{InstancesChanged, StaleViewRepaired, PanicEntered} {
		if !kinds[k] {
			t.Errorf("no %s event among %+v", k, rep.Events)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	body := get(t, h, http.MethodGet, "/").Body.String()
	if !strings.Contains(body, "<svg class=\"spark\"") || !strings.Contains(body, "<polyline points=\"") {
		t.Errorf("page lacks the sparkline")
	}
}

func TestSparkline(t *testing.T) {
	for _, v := range [][]int{nil, {0}, {5}, {0, 0, 0}, {1, 5, 3}} {
		s := sparkOf(v, 10)
		if len(v) > 0 && strings.Count(s.Points, ",") < 2 {
			t.Errorf("sparkOf(%v).Points = %q, want at least two points", v, s.Points)
		}
		if strings.ContainsAny(s.Points, "NaInf") {
			t.Errorf("sparkOf(%v).Points = %q", v, s.Points)
		}
	}
}

// synthetic is a report of n watches, as many services, full histories
// and a full timeline.
func synthetic(n int) Report {
	rep := Report{Generated: t0, Started: t0.Add(-time.Hour), WatchCount: n, SampleSeconds: 10}
	for i := range n {
		svc := fmt.Sprintf("service-%05d", i)
		w := Watch{Service: svc, Instances: i % 17, Answered: true, AgeSeconds: float64(i % 300), ReadPath: "streaming", Backend: "streaming", StaleViews: int64(i % 3)}
		if i%50 == 0 {
			w.Error, w.ACLHidden = "discovery: ACLs hide the service from this client", true
		}
		rep.Watches = append(rep.Watches, w)
		h := History{Service: svc, Passing: make([]int, DefaultSamples)}
		for j := range h.Passing {
			h.Passing[j] = (i + j) % 17
		}
		rep.Services = append(rep.Services, h)
	}
	for i := range DefaultEvents {
		rep.Events = append(rep.Events, Event{Time: t0, Kind: InstancesChanged, Service: fmt.Sprintf("service-%05d", i), Detail: "3 → 2 instances in the local datacenter"})
	}
	return rep
}

// TestTenThousandWatches bounds the page for 10,000 watches, every one
// with a history that changes at every sample (the worst case for the
// pictures): HTML and JSON each under 8 MiB. Times are in the benchmarks.
func TestTenThousandWatches(t *testing.T) {
	rep := synthetic(10_000)
	var buf bytes.Buffer
	if err := RenderHTML(&buf, rep); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 watches: HTML %.2f MB, JSON %.2f MB", float64(buf.Len())/1e6, float64(len(js))/1e6)
	if buf.Len() > 8<<20 || len(js) > 8<<20 {
		t.Errorf("HTML %d bytes, JSON %d bytes: want each under 8 MiB", buf.Len(), len(js))
	}
}

func BenchmarkRender10kHTML(b *testing.B) {
	rep := synthetic(10_000)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := RenderHTML(&buf, rep); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/1e6, "MB/page")
}

func BenchmarkRender10kJSON(b *testing.B) {
	rep := synthetic(10_000)
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := json.NewEncoder(&buf).Encode(rep); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len())/1e6, "MB/page")
}
