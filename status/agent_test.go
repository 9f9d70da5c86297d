package status_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/status"
)

// deadline is generous: a loaded 2-core machine.
const deadline = 60 * time.Second

// fetch GETs the page from srv, as JSON when asJSON.
func fetch(t *testing.T, url string, asJSON bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if asJSON {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// report decodes the page's JSON.
func report(t *testing.T, url string) status.Report {
	t.Helper()
	var r status.Report
	if err := json.Unmarshal([]byte(fetch(t, url, true)), &r); err != nil {
		t.Fatalf("decoding the JSON: %v", err)
	}
	return r
}

// until polls the report until ok holds, failing at the deadline.
func until(t *testing.T, url, what string, ok func(status.Report) bool) status.Report {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(deadline)
	for {
		r := report(t, url)
		if ok(r) {
			return r
		}
		select {
		case <-tick.C:
		case <-timeout:
			b, _ := json.MarshalIndent(r, "", "  ")
			t.Fatalf("no %s within %v; last report:\n%s", what, deadline, b)
		}
	}
}

func row(r status.Report, service string) (status.Watch, bool) {
	for _, w := range r.Watches {
		if w.Service == service {
			return w, true
		}
	}
	return status.Watch{}, false
}

// startKeeper registers id of service, with tags, through a keeper on
// cfg (127.0.0.1:9000); the keeper stops at cleanup.
func startKeeper(t *testing.T, cfg consul.Config, id, service string, tags ...string) *keeper.Keeper {
	t.Helper()
	k, err := keeper.New(cfg, beacon.Registration{ID: id, Service: service, Tags: tags, Address: "127.0.0.1", Port: 9000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := k.Start(ctx); err != nil {
		t.Fatalf("keeper Start = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = k.Stop(ctx)
	})
	return k
}

func newCache(t *testing.T, cfg consul.Config) *discovery.Cache {
	t.Helper()
	c, err := discovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func watch(t *testing.T, c *discovery.Cache, service string) {
	t.Helper()
	watchQ(t, c, beacon.Query{Service: service})
}

// serve mounts h at /debug/beacon of a test server, and returns its URL.
func serve(t *testing.T, h *status.Handler) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/debug/beacon", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		h.Close()
	})
	return srv.URL + "/debug/beacon"
}

// TestWatchRowOnRealAgent: the JSON of a handler over a real cache on a
// real agent shows the watch of a service a keeper registered, the
// keeper's registration and the agent; the HTML shows the row and its
// picture.
func TestWatchRowOnRealAgent(t *testing.T) {
	srv := consultest.NewServer(t)
	cfg := srv.Config()
	k := startKeeper(t, cfg, "web-1", "web")
	c := newCache(t, cfg)
	watch(t, c, "web")
	url := serve(t, status.New(status.WithCache(c), status.WithKeeper(k, "web-1"), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10)))

	r := until(t, url, "watch of web with one instance and a picture", func(r status.Report) bool {
		w, ok := row(r, "web")
		return ok && w.Instances == 1 && len(r.Services) == 1 && len(r.Services[0].Passing) >= 2
	})
	w, _ := row(r, "web")
	if !w.Answered || w.AgeSeconds < 0 || w.Error != "" || w.ACLHidden || w.Datacenter != "" || w.Failover || w.StaleViews != 0 {
		t.Errorf("web row = %+v, want answered, fresh, local, no failover, no stale view", w)
	}
	if w.ReadPath != discovery.ReadStreaming.String() {
		t.Errorf("web row read path %q, want %q (the default)", w.ReadPath, discovery.ReadStreaming)
	}
	if w.Backend != string(beacon.QueryBackendStreaming) && w.Backend != string(beacon.QueryBackendBlockingQuery) {
		t.Errorf("web row backend %q, want the agent's X-Consul-Query-Backend", w.Backend)
	}
	if r.WatchCount != 1 || r.Truncated {
		t.Errorf("WatchCount %d, Truncated %v; want 1, false", r.WatchCount, r.Truncated)
	}
	if p := r.Services[0]; p.Service != "web" || p.Passing[len(p.Passing)-1] != 1 {
		t.Errorf("history %+v, want web ending at 1", p)
	}
	kr := r.Keeper
	if kr == nil || kr.InstanceID != "web-1" || kr.Status != "registered" || !kr.Registered || kr.Agent == "" || kr.LastHeartbeat == nil {
		t.Errorf("keeper = %+v, want web-1 registered on the agent with a heartbeat", kr)
	}
	if len(r.Agents) != 1 || !strings.Contains(cfg.Addresses[0], r.Agents[0].Address) || r.Agents[0].State != "up" || !r.Agents[0].Current || r.Agents[0].LastAnswer == nil {
		t.Errorf("agents = %+v, want %q up, asked now, answered (the cache's own view)", r.Agents, cfg.Addresses)
	}
	if w.Index == 0 || w.Passing != 1 || w.Agent == "" || !strings.Contains(cfg.Addresses[0], w.Agent) {
		t.Errorf("web row = %+v, want an index, 1 passing, the agent asked", w)
	}
	html := fetch(t, url, false)
	for _, want := range []string{"<strong>web</strong>", `<svg class="spark"`, "web-1"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

// TestNoSecretsOnRealAgent: with a token in the config, another in a token
// file, a third in CONSUL_HTTP_TOKEN and a basic auth password, neither the HTML nor the JSON
// holds any of them (nor the management token), while the page shows a
// service that ACLs hide from the client's token.
func TestNoSecretsOnRealAgent(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithACL())
	admin := srv.Config()
	admin.Token = srv.ManagementToken()
	reg, err := consulhttp.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if err := reg.Register(ctx, beacon.Registration{ID: "db-1", Service: "db", Address: "127.0.0.1", Port: 9001,
		Checks: []beacon.Check{{TTL: time.Hour, InitialStatus: beacon.HealthPassing}}}); err != nil {
		t.Fatalf("Register(db-1) = %v", err)
	}

	// The client's token may write web and read every node, but not db.
	rules := `service "web" { policy = "write" } node_prefix "" { policy = "read" }`
	cfgToken, fileToken, envToken := srv.MintToken(t, rules), srv.MintToken(t, rules), srv.MintToken(t, rules)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(fileToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_HTTP_TOKEN", envToken)
	cfg := srv.Config()
	cfg.Token, cfg.TokenFile = cfgToken, file
	cfg.HTTPAuth = &consul.BasicAuth{Username: "operator", Password: "basic-auth-password-7f3a"}

	k := startKeeper(t, cfg, "web-1", "web")
	c := newCache(t, cfg)
	watch(t, c, "web")
	watch(t, c, "db")
	url := serve(t, status.New(status.WithCache(c), status.WithKeeper(k, "web-1"), status.WithAgents(cfg.Addresses...), status.WithSampling(20*time.Millisecond, 10)))

	until(t, url, "web with one instance and db hidden by ACLs", func(r status.Report) bool {
		w, okw := row(r, "web")
		d, okd := row(r, "db")
		return okw && okd && w.Instances == 1 && d.ACLHidden
	})
	pages := map[string]string{"JSON": fetch(t, url, true), "HTML": fetch(t, url, false)}
	for name, page := range pages {
		for what, tok := range map[string]string{"config token": cfgToken, "token file's": fileToken, "CONSUL_HTTP_TOKEN": envToken, "management token": srv.ManagementToken()} {
			if strings.Contains(page, tok) {
				t.Errorf("the %s page holds the %s", name, what)
			}
		}
		if strings.Contains(page, cfg.HTTPAuth.Password) {
			t.Errorf("the %s page holds the basic auth password", name)
		}
		if strings.Contains(page, file) {
			t.Errorf("the %s page names the token file", name)
		}
	}
	if !strings.Contains(pages["HTML"], "ACL-hidden") {
		t.Errorf("the HTML does not mark db ACL-hidden")
	}
}
