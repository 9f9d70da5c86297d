package status_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/status"
)

// These tests read the page's JSON (?format=json, decoded into a
// status.Report) from a Handler over a real cache on real agents, and check
// every field issue 16 lists by value: a watch's service, tags,
// datacenter, failover policy, passing / total, index, age, agent, read
// path, backend, last error and since when, ACL-hidden state and stale
// repairs; each agent, up or down, since when and the watchdog's verdict;
// the keeper's instance, agent, heartbeat, maintenance and registration;
// and the timeline's events of the same moments.

// jsonURL is the page's URL asking for JSON by query, as `beacon status`
// does (fetch asks by Accept).
func jsonURL(url string) string { return url + "?format=json" }

// find returns the row of service with exactly tags, datacenter dc and,
// when pinned, a pinned read path.
func find(r status.Report, service string, tags []string, dc string, pinned bool) (status.Watch, bool) {
	for _, w := range r.Watches {
		if w.Service == service && slices.Equal(w.Tags, tags) && w.Datacenter == dc && w.ReadPinned == pinned {
			return w, true
		}
	}
	return status.Watch{}, false
}

// within reports whether t is set and lies in [from, to].
func within(t *time.Time, from, to time.Time) bool {
	return t != nil && !t.Before(from) && !t.After(to)
}

// nextPort gives each registered instance a port of its own: discovery
// folds instances at the same address and port into one.
var nextPort atomic.Int32

// register registers id of service through r, with a TTL check starting
// at health and the given tags.
func register(t *testing.T, r beacon.Registry, id, service string, health beacon.Health, tags ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := r.Register(ctx, beacon.Registration{ID: id, Service: service, Tags: tags, Address: "127.0.0.1", Port: 9100 + int(nextPort.Add(1)),
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: health}}}); err != nil {
		t.Fatalf("Register(%s) = %v", id, err)
	}
}

func registry(t *testing.T, cfg consul.Config) beacon.Registry {
	t.Helper()
	r, err := consulhttp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func watchQ(t *testing.T, c *discovery.Cache, q beacon.Query, opts ...discovery.WatchOption) *discovery.Watcher {
	t.Helper()
	w, err := c.Watch(q, opts...)
	if err != nil {
		t.Fatalf("Watch(%+v) = %v", q, err)
	}
	t.Cleanup(w.Close)
	return w
}

// dump is the report as indented JSON, for failure messages.
func dump(r status.Report) string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// TestPageJSONFieldsOnRealAgent: one agent, a keeper registering web-1
// (tag v1), and four watches that differ in every watch field the page
// has: web by tag on the default read path, web in datacenter dc1 pinned
// to blocking reads, api with unhealthy instances included (1 of 3
// passing), and pay with a failover policy (shown with its defaults
// filled in). Each row's fields hold the
// values the cache's own snapshots and the agent give; the agent row and
// the keeper's hold theirs; maintenance set through the keeper shows in
// the keeper section, in web's counts and on the timeline.
func TestPageJSONFieldsOnRealAgent(t *testing.T) {
	start := time.Now()
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	k := startKeeper(t, cfg, "web-1", "web", "v1")
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	r := registry(t, cfg)
	register(t, r, "api-1", "api", beacon.HealthPassing)
	register(t, r, "api-2", "api", beacon.HealthCritical)
	register(t, r, "api-3", "api", beacon.HealthCritical)
	register(t, r, "pay-1", "pay", beacon.HealthPassing)

	c := newCache(t, cfg)
	tagged := watchQ(t, c, beacon.Query{Service: "web", Tags: []string{"v1"}})
	inDC := watchQ(t, c, beacon.Query{Service: "web", Datacenter: "dc1"}, discovery.UseReadPath(discovery.ReadBlocking))
	anyHealth := watchQ(t, c, beacon.Query{Service: "api", IncludeUnhealthy: true})
	fo := watchQ(t, c, beacon.Query{Service: "pay"}, discovery.FailOver(discovery.Failover{Datacenters: []string{"dc2"}}))
	// The policy as the page shows it: the defaults filled in.
	payPolicy := status.FailoverPolicy{Datacenters: []string{"dc2"}, MinPassing: 1, HoldDownSeconds: discovery.DefaultHoldDown.Seconds()}
	url := serve(t, status.New(status.WithCache(c), status.WithKeeper(k, "web-1"), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10)))

	// Every watch answered; then web-2 joins, so the streaming watch's
	// later answer comes from the agent's streaming backend (its first is
	// the plain read that verifies a new watch).
	until(t, jsonURL(url), "every watch answered", func(r status.Report) bool {
		n := 0
		for _, w := range r.Watches {
			if w.Answered {
				n++
			}
		}
		return n == len(r.Watches) && n >= 4
	})
	register(t, r, "web-2", "web", beacon.HealthPassing, "v1")

	var rep status.Report
	var w status.Watch
	until(t, jsonURL(url), "web's rows with web-2, the rows agreeing with the cache's snapshots, and the pictures caught up", func(got status.Report) bool {
		rep = got
		var ok bool
		if w, ok = find(rep, "web", []string{"v1"}, "", false); !ok || w.Instances != 2 || w.Backend != string(beacon.QueryBackendStreaming) {
			return false
		}
		if d, ok := find(rep, "web", nil, "dc1", true); !ok || d.Instances != 2 {
			return false
		}
		// The pictures: each service's history ends at its first row's
		// count, once the sampler has run since.
		hist := map[string][]int{}
		for _, h := range rep.Services {
			hist[h.Service] = h.Passing
		}
		for svc, want := range map[string]int{"web": 2, "api": 3, "pay": 1} {
			if p := hist[svc]; len(p) == 0 || p[len(p)-1] != want {
				return false
			}
		}
		// Index and age as the snapshots say, read after the page: a
		// snapshot that moved meanwhile means asking again.
		for _, p := range []struct {
			w  *discovery.Watcher
			st status.Watch
		}{{tagged, w}, {inDC, must(find(rep, "web", nil, "dc1", true))}, {anyHealth, must(find(rep, "api", nil, "", false))}, {fo, must(find(rep, "pay", nil, "", false))}} {
			s := p.w.Snapshot()
			age := rep.Generated.Sub(s.Updated).Seconds()
			if p.st.Index != s.Index || p.st.AgeSeconds < age-0.001 || p.st.AgeSeconds > age+1 {
				return false
			}
		}
		return true
	})
	end := time.Now()
	t.Logf("report:\n%s", dump(rep))

	if rep.Generated.Before(start) || rep.Generated.After(end) || rep.Started.Before(start) || rep.Started.After(rep.Generated) {
		t.Errorf("generated %v, started %v; want both within the test (%v..%v), started first", rep.Generated, rep.Started, start, end)
	}
	if stats := c.Stats(); rep.WatchCount != len(stats) || len(rep.Watches) != len(stats) || rep.Truncated {
		t.Errorf("watch_count %d, %d rows, truncated %v; want the cache's %d watches, all shown", rep.WatchCount, len(rep.Watches), rep.Truncated, len(stats))
	}

	// Fields every row shares: fresh, read from the one agent, no stale
	// view repaired.
	for _, w := range rep.Watches {
		if w.Agent != srv.HTTPAddr || w.Error != "" || w.ErrorSince != nil || w.ACLHidden || w.StaleViews != 0 || w.OffStream || w.PreparedQuery != "" || !w.Answered || w.Index == 0 {
			t.Errorf("row %s %v %q = %+v; want agent %s, answered at an index, no error, not hidden, no stale view", w.Service, w.Tags, w.Datacenter, w, srv.HTTPAddr)
		}
	}
	for _, tc := range []struct {
		name                string
		got                 status.Watch
		passing, instances  int
		readPath            discovery.ReadPath
		pinned              bool
		backend             beacon.QueryBackend
		failover            bool
		wantTags            []string
		wantDC, wantService string
	}{
		{"web by tag", w, 2, 2, discovery.ReadStreaming, false, beacon.QueryBackendStreaming, false, []string{"v1"}, "", "web"},
		{"web in dc1, blocking", must(find(rep, "web", nil, "dc1", true)), 2, 2, discovery.ReadBlocking, true, beacon.QueryBackendBlockingQuery, false, nil, "dc1", "web"},
		{"api, any health", must(find(rep, "api", nil, "", false)), 1, 3, discovery.ReadStreaming, false, "", false, nil, "", "api"},
		{"pay with failover", must(find(rep, "pay", nil, "", false)), 1, 1, discovery.ReadStreaming, false, "", true, nil, "", "pay"},
	} {
		g := tc.got
		if g.Service != tc.wantService || !slices.Equal(g.Tags, tc.wantTags) || g.Datacenter != tc.wantDC {
			t.Errorf("%s: service %q tags %v datacenter %q; want %q %v %q", tc.name, g.Service, g.Tags, g.Datacenter, tc.wantService, tc.wantTags, tc.wantDC)
		}
		if g.Passing != tc.passing || g.Instances != tc.instances {
			t.Errorf("%s: passing/total %d/%d, want %d/%d", tc.name, g.Passing, g.Instances, tc.passing, tc.instances)
		}
		if g.ReadPath != tc.readPath.String() || g.ReadPinned != tc.pinned {
			t.Errorf("%s: read path %q pinned %v, want %q %v", tc.name, g.ReadPath, g.ReadPinned, tc.readPath, tc.pinned)
		}
		if tc.backend != "" && g.Backend != string(tc.backend) {
			t.Errorf("%s: backend %q, want %q", tc.name, g.Backend, tc.backend)
		}
		if g.Backend != string(beacon.QueryBackendStreaming) && g.Backend != string(beacon.QueryBackendBlockingQuery) {
			t.Errorf("%s: backend %q, want the agent's X-Consul-Query-Backend", tc.name, g.Backend)
		}
		if g.Failover != tc.failover || g.Failovers != 0 || g.FailoverSince != nil || g.FailoverReason != "" {
			t.Errorf("%s: failover %v ×%d since %v (%q); want policy %v, never moved", tc.name, g.Failover, g.Failovers, g.FailoverSince, g.FailoverReason, tc.failover)
		}
		if p := g.FailoverPolicy; tc.failover != (p != nil) || p != nil && !reflect.DeepEqual(*p, payPolicy) {
			t.Errorf("%s: failover policy %+v, want %+v for a failover watch, none otherwise", tc.name, p, payPolicy)
		}
	}

	// The cache's own event of web-2 joining, with its ID.
	if !slices.ContainsFunc(rep.Events, func(e status.Event) bool {
		return e.Kind == status.InstanceAdded && e.Service == "web" && e.Instance == "web-2" && !e.Time.Before(start)
	}) {
		t.Errorf("no instance_added event of web-2 among %+v", rep.Events)
	}

	if len(rep.Agents) != 1 {
		t.Fatalf("agents = %+v, want the one agent", rep.Agents)
	}
	if a := rep.Agents[0]; a.Address != srv.HTTPAddr || a.State != "up" || a.Since != nil || !a.Current || a.LastError != "" || !within(a.LastAnswer, start, rep.Generated) {
		t.Errorf("agent = %+v; want %s up, never marked down (no since), asked now, no verdict, answered during the test", a, srv.HTTPAddr)
	}

	kr := rep.Keeper
	if kr == nil {
		t.Fatal("no keeper in the report")
	}
	if kr.InstanceID != "web-1" || kr.Agent != srv.HTTPAddr || kr.Status != "registered" || !kr.Registered || kr.Maintenance || kr.Failovers != 0 {
		t.Errorf("keeper = %+v; want web-1 registered on %s, not in maintenance, no failover", kr, srv.HTTPAddr)
	}
	if !within(kr.LastHeartbeat, start, rep.Generated) || kr.LastError != "" || kr.LastErrorAt != nil {
		t.Errorf("keeper heartbeat %v, last error %q at %v; want a heartbeat during the test and no error", kr.LastHeartbeat, kr.LastError, kr.LastErrorAt)
	}

	if rep.SampleSeconds != 0.02 {
		t.Errorf("sample_seconds %v, want 0.02", rep.SampleSeconds)
	}
	if len(rep.Services) != 3 {
		t.Errorf("services = %+v, want the pictures of api, pay and web", rep.Services)
	}

	// Maintenance through the keeper: the keeper section says so, web-1
	// leaves web's passing rows, and the timeline has the event.
	maintAt := time.Now()
	if err := k.Maintenance(ctx, true, "page test"); err != nil {
		t.Fatalf("Maintenance(on) = %v", err)
	}
	rep = until(t, jsonURL(url), "web-1 in maintenance on the page", func(r status.Report) bool {
		w, ok := find(r, "web", []string{"v1"}, "", false)
		d, okd := find(r, "web", nil, "dc1", true)
		return r.Keeper != nil && r.Keeper.Maintenance && ok && w.Passing == 1 && w.Instances == 1 && okd && d.Instances == 1 &&
			slices.ContainsFunc(r.Events, func(e status.Event) bool { return e.Kind == status.Maintenance })
	})
	for _, e := range rep.Events {
		if e.Kind == status.Maintenance && (e.Agent != srv.HTTPAddr || e.Time.Before(maintAt)) {
			t.Errorf("maintenance event %+v; want agent %s, after %v", e, srv.HTTPAddr, maintAt)
		}
	}
	if kr := rep.Keeper; kr.Status != "registered" || !kr.Registered {
		t.Errorf("keeper in maintenance = %+v; want still registered", kr)
	}

	// ?format=json alone, without an Accept header, is the same report.
	var byQuery status.Report
	if err := json.Unmarshal([]byte(fetch(t, jsonURL(url), false)), &byQuery); err != nil || byQuery.WatchCount != rep.WatchCount || byQuery.Keeper == nil || !byQuery.Keeper.Maintenance {
		t.Errorf("?format=json without Accept: %v; watch_count %d, keeper %+v; want %d watches, web-1 in maintenance", err, byQuery.WatchCount, byQuery.Keeper, rep.WatchCount)
	}

	html := fetch(t, url, false)
	for _, want := range []string{"<strong>web</strong> <span class=\"meta\">#v1</span>", "dc1", ">1 / 3<", `class="pill" title="">failover</span>`, payPolicy.String(),
		`<span class="pill warn">maintenance</span>`, "<code>" + srv.HTTPAddr + "</code>", "blocking-query", "pinned"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	// The agent killed: every row keeps its last good answer with the
	// error and since when, the agent is down with the transport error
	// that marked it, and the keeper's heartbeat fails.
	last := rep
	stopped := time.Now()
	srv.Stop()
	rep = until(t, jsonURL(url), "the agent down, every watch erring and the keeper failing", func(r status.Report) bool {
		for _, w := range r.Watches {
			if w.Error == "" {
				return false
			}
		}
		return len(r.Agents) == 1 && r.Agents[0].State == "down" && r.Keeper != nil && r.Keeper.LastErrorAt != nil
	})
	t.Logf("report after the agent stopped:\n%s", dump(rep))
	for i, w := range rep.Watches {
		was := last.Watches[i]
		if w.Service != was.Service || w.Instances != was.Instances || w.Passing != was.Passing || w.Index < was.Index || !w.Answered {
			t.Errorf("row %d after the outage = %+v; want the last good answer kept (%+v)", i, w, was)
		}
		if !within(w.ErrorSince, stopped, rep.Generated) || w.ACLHidden {
			t.Errorf("row %s %v %q: error %q since %v; want an error since the agent stopped (%v), not ACL-hidden", w.Service, w.Tags, w.Datacenter, w.Error, w.ErrorSince, stopped)
		}
		if age := rep.Generated.Sub(stopped).Seconds(); w.AgeSeconds < age {
			t.Errorf("row %s: age %.3fs, want at least the %.3fs since the agent's last answer could have come", w.Service, w.AgeSeconds, age)
		}
	}
	if a := rep.Agents[0]; !within(a.Since, stopped, rep.Generated) || a.LastError == "" || a.LastAnswer == nil || a.LastAnswer.After(*a.Since) {
		t.Errorf("stopped agent = %+v; want down since it stopped, the verdict, and its last answer before", a)
	}
	kr = rep.Keeper
	if kr.Status != "failing" || !within(kr.LastErrorAt, stopped, rep.Generated) || kr.LastError == "" || kr.LastHeartbeat == nil || kr.LastHeartbeat.After(stopped) {
		t.Errorf("keeper after the agent stopped = %+v; want failing, an error since it stopped, the last heartbeat before", kr)
	}
	html = fetch(t, url, false)
	for _, want := range []string{`<span class="pill bad">down</span>`, `<span class="pill warn">stale</span>`, `<span class="pill warn">failing</span>`, "since "} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML after the outage lacks %q", want)
		}
	}
}

// must returns the row, or the zero row when absent (the checks on it then
// fail with the values shown).
func must(w status.Watch, _ bool) status.Watch { return w }

// TestPageJSONAgentDown: a cache over two agents (a client agent first,
// then the server) reads from the client; paused (SIGSTOP), the client
// accepts connections and answers nothing, until the cache's watchdog
// marks it down. The page then shows it down, since when, with the
// watchdog's verdict (on the timeline too), and the watch reading fresh
// from the server; the HTML shows the same. Resumed, it is up again with
// a later since, and the timeline says so.
func TestPageJSONAgentDown(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	client, server := cl.Clients[0], cl.Servers[0]
	// Registered through the server, so api-1 stays passing while the
	// client agent's node fails its gossip.
	register(t, registry(t, cl.Config(server)), "api-1", "api", beacon.HealthPassing)
	cfg := cl.Config(client, server)
	// Non-blocking requests (the watch's plain reads) get more time than
	// the watchdog needs (a probe every 5 s, two misses of 2 s): else one
	// of them timing out may mark the agent down first, with its own error.
	cfg.Timeout = time.Minute
	c := newCache(t, cfg)
	watch(t, c, "api")
	url := serve(t, status.New(status.WithCache(c), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10)))

	agent := func(r status.Report, addr string) status.Agent {
		for _, a := range r.Agents {
			if a.Address == addr {
				return a
			}
		}
		return status.Agent{}
	}
	rep := until(t, jsonURL(url), "api read from the client agent", func(r status.Report) bool {
		w, ok := row(r, "api")
		return ok && w.Answered && w.Instances == 1 && w.Agent == client.HTTPAddr && agent(r, client.HTTPAddr).Current
	})
	if len(rep.Agents) != 2 || agent(rep, server.HTTPAddr).State != "up" || agent(rep, client.HTTPAddr).State != "up" {
		t.Errorf("agents before the pause = %+v; want %s and %s, both up", rep.Agents, client.HTTPAddr, server.HTTPAddr)
	}

	paused := time.Now()
	client.Pause()
	t.Cleanup(client.Resume) // before the cluster's own cleanup kills it
	rep = until(t, jsonURL(url), "the client agent down and api read from the server", func(r status.Report) bool {
		w, ok := row(r, "api")
		return agent(r, client.HTTPAddr).State == "down" && ok && w.Agent == server.HTTPAddr && w.Error == "" && w.Answered
	})
	t.Logf("agent paused → page shows it down and the watch fresh on the other agent in %v", time.Since(paused).Round(time.Millisecond))
	down := agent(rep, client.HTTPAddr)
	if !within(down.Since, paused, rep.Generated) || down.Current {
		t.Errorf("paused agent = %+v; want down since the pause (%v), not asked", down, paused)
	}
	if !strings.Contains(down.LastError, "the agent stopped answering") || !strings.Contains(down.LastError, "liveness probes") {
		t.Errorf("paused agent's verdict %q; want the watchdog's (the agent stopped answering: … liveness probes …)", down.LastError)
	}
	if up := agent(rep, server.HTTPAddr); up.State != "up" || !up.Current || up.Since != nil || up.LastError != "" || !within(up.LastAnswer, paused, rep.Generated) {
		t.Errorf("server agent = %+v; want up, asked now, never down, answered since the pause", up)
	}
	w, _ := row(rep, "api")
	if w.Instances != 1 || w.Passing != 1 || w.ErrorSince != nil || w.ACLHidden || w.Index == 0 {
		t.Errorf("api row after the move = %+v; want 1/1, fresh, at an index", w)
	}
	if !slices.ContainsFunc(rep.Events, func(e status.Event) bool {
		return e.Kind == status.AgentDown && e.Agent == client.HTTPAddr && strings.Contains(e.Detail, "the agent stopped answering") && !e.Time.Before(paused)
	}) {
		t.Errorf("no agent_down event of %s with the watchdog's verdict among %+v", client.HTTPAddr, rep.Events)
	}
	html := fetch(t, url, false)
	for _, want := range []string{`<span class="pill bad">down</span>`, "the agent stopped answering", "<code>" + server.HTTPAddr + "</code> <span class=\"meta\">asked now</span>"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	client.Resume()
	rep = until(t, jsonURL(url), "the client agent up again, on the timeline too", func(r status.Report) bool {
		return agent(r, client.HTTPAddr).State == "up" && slices.ContainsFunc(r.Events, func(e status.Event) bool {
			return e.Kind == status.AgentUp && e.Agent == client.HTTPAddr
		})
	})
	if a := agent(rep, client.HTTPAddr); a.Since == nil || !a.Since.After(*down.Since) || a.LastError != down.LastError {
		t.Errorf("resumed agent = %+v; want up since after %v, the last verdict kept", a, *down.Since)
	}
}

// TestPageJSONACLHidden: a watch reading web with a token file's token
// that may read it; the file then holds a token that may not. Consul
// answers an empty list, and the page marks the watch ACL-hidden with the
// error and since when, still serving the last good instances; the
// timeline has the event and the HTML the mark. A reading token back
// clears it.
func TestPageJSONACLHidden(t *testing.T) {
	const (
		readAll   = `service_prefix "" { policy = "read" } node_prefix "" { policy = "read" }`
		readOther = `service "other" { policy = "read" } node_prefix "" { policy = "read" }`
	)
	srv := consultest.NewServer(t, consultest.WithACL())
	admin := srv.Config()
	admin.Token = srv.ManagementToken()
	r := registry(t, admin)
	register(t, r, "web-1", "web", beacon.HealthPassing)
	register(t, r, "web-2", "web", beacon.HealthPassing)

	file := filepath.Join(t.TempDir(), "token")
	writeToken := func(tok string) {
		// Write then rename: a reader never sees half a token.
		if err := os.WriteFile(file+".tmp", []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	writeToken(srv.MintToken(t, readAll))
	cfg := srv.Config()
	cfg.TokenFile = file
	// A short wait, so every query soon carries the token in the file.
	c, err := discovery.New(cfg, discovery.WithWaitTime(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	watch(t, c, "web")
	url := serve(t, status.New(status.WithCache(c), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10)))
	before := until(t, jsonURL(url), "web read with 2 instances", func(r status.Report) bool {
		w, ok := row(r, "web")
		return ok && w.Instances == 2 && w.Error == ""
	})
	good, _ := row(before, "web")
	if good.ACLHidden || good.ErrorSince != nil {
		t.Errorf("web row with a reading token = %+v; want not hidden, no error", good)
	}

	hiddenAt := time.Now()
	writeToken(srv.MintToken(t, readOther))
	register(t, r, "web-3", "web", beacon.HealthPassing) // a change, to wake the watch
	rep := until(t, jsonURL(url), "web hidden by ACLs", func(r status.Report) bool {
		w, ok := row(r, "web")
		return ok && w.ACLHidden
	})
	w, _ := row(rep, "web")
	if !strings.Contains(w.Error, "ACLs hide the service") || !strings.Contains(w.Error, `"web"`) || !strings.Contains(w.Error, "service:read") {
		t.Errorf("hidden row's error %q; want ErrHiddenByACLs naming web and the permission", w.Error)
	}
	if !within(w.ErrorSince, hiddenAt, rep.Generated) {
		t.Errorf("hidden row's error since %v; want after the token changed (%v)", w.ErrorSince, hiddenAt)
	}
	// The last good answer: 2 instances, or 3 when the watch read web-3
	// before the new token took effect.
	if w.Instances < 2 || w.Passing != w.Instances || !w.Answered || w.Index < good.Index || w.Agent != srv.HTTPAddr {
		t.Errorf("hidden row = %+v; want the last good instances (2 or 3) still served, answered, at or past index %d, agent %s", w, good.Index, srv.HTTPAddr)
	}
	if a := rep.Agents; len(a) != 1 || a[0].State != "up" || a[0].LastError != "" {
		t.Errorf("agents while hidden = %+v; want the agent up: ACLs are not an outage", a)
	}
	rep = until(t, jsonURL(url), "the acl_hidden event", func(r status.Report) bool {
		return slices.ContainsFunc(r.Events, func(e status.Event) bool { return e.Kind == status.ACLHidden && e.Service == "web" })
	})
	html := fetch(t, url, false)
	for _, want := range []string{`<span class="pill bad">ACL-hidden</span>`, "ACLs hide the service from this client", "service:read", "acl_hidden"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}

	writeToken(srv.MintToken(t, readAll))
	until(t, jsonURL(url), "web visible again with 3 instances", func(r status.Report) bool {
		w, ok := row(r, "web")
		return ok && !w.ACLHidden && w.Error == "" && w.ErrorSince == nil && w.Instances == 3
	})
}

// TestPageJSONFailover: two federated datacenters, web passing in each;
// a cache on dc1 with a failover policy to dc2. While dc1 serves, web's
// failover row says so (local, never moved); once web-1 fails, the row
// serves dc2 with its one instance, counts the move and says when and
// why, read still through dc1's agent, and dc2's own watch has a row; the
// timeline has the failover, and the HTML the failover mark.
func TestPageJSONFailover(t *testing.T) {
	f := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: "dc1", Servers: 1}, {Name: "dc2", Servers: 1},
	}})
	dc1 := registry(t, f.DC("dc1").Config())
	register(t, dc1, "web-1", "web", beacon.HealthPassing)
	register(t, registry(t, f.DC("dc2").Config()), "web-2", "web", beacon.HealthPassing)
	cfg := f.DC("dc1").Config()
	c, err := discovery.New(cfg, discovery.WithFailover(discovery.Failover{Datacenters: []string{"dc2"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	watch(t, c, "web")
	url := serve(t, status.New(status.WithCache(c), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10)))
	local := f.DC("dc1").Servers[0].HTTPAddr

	rep := until(t, jsonURL(url), "web served by dc1", func(r status.Report) bool {
		w, ok := find(r, "web", nil, "", false)
		return ok && w.Failover && w.Instances == 1
	})
	if w, _ := find(rep, "web", nil, "", false); w.Failovers != 0 || w.FailoverSince != nil || w.FailoverReason != "" || w.Agent != local {
		t.Errorf("failover row while dc1 serves = %+v; want never moved, read through %s", w, local)
	}

	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	failed := time.Now()
	if err := dc1.UpdateTTL(ctx, "service:web-1", beacon.HealthCritical, ""); err != nil {
		t.Fatalf("UpdateTTL(web-1, critical) = %v", err)
	}
	rep = until(t, jsonURL(url), "web failed over to dc2", func(r status.Report) bool {
		if len(r.Watches) == 0 || !r.Watches[0].Failover || r.Watches[0].Datacenter != "dc2" || r.Watches[0].Instances != 1 {
			return false
		}
		return slices.ContainsFunc(r.Events, func(e status.Event) bool { return e.Kind == status.FailedOver && e.Service == "web" })
	})
	w := rep.Watches[0] // a failover watch comes before the watches it is made of
	if w.Service != "web" || w.Failovers != 1 || !within(w.FailoverSince, failed, rep.Generated) || w.FailoverReason == "" {
		t.Errorf("failover row after web-1 failed = %+v; want web, 1 move since web-1 failed (%v), a reason", w, failed)
	}
	if p := w.FailoverPolicy; p == nil || !slices.Equal(p.Datacenters, []string{"dc2"}) || p.MinPassing != 1 {
		t.Errorf("failover row's policy %+v, want to dc2 below 1 passing", p)
	}
	if w.Passing != 1 || w.Error != "" || !w.Answered || w.Agent != local || w.Index == 0 {
		t.Errorf("failover row = %+v; want dc2's 1/1, fresh, read through %s", w, local)
	}
	if i := slices.IndexFunc(rep.Watches, func(w status.Watch) bool { return w.Datacenter == "dc2" && !w.Failover }); i < 0 {
		t.Errorf("no row of dc2's own watch of web in %+v", rep.Watches)
	} else if d := rep.Watches[i]; d.Service != "web" || d.Instances != 1 || d.Agent != local {
		t.Errorf("dc2's row = %+v; want web, 1 instance, through %s", d, local)
	}
	for _, e := range rep.Events {
		if e.Kind == status.FailedOver && (!strings.Contains(e.Detail, "dc2") || e.Time.Before(failed)) {
			t.Errorf("failover event %+v; want it naming dc2, after %v", e, failed)
		}
	}
	html := fetch(t, url, false)
	for _, want := range []string{`<span class="pill warn" title="` + w.FailoverReason, `failover ×1</span>`} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}
