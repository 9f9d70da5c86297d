package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuchcommand"},
		{"-nosuchflag", "services"},
		{"services", "extra"},
		{"instances"},
		{"instances", "a", "b"},
		{"instances", "bad\x01name"},
		{"instances", ""},
		{"watch"},
		{"instances", "web", "-dc", "dc 1"},
		{"watch", "web", "-dc", "dc/1"},
		{"datacenters", "extra"},
		{"deregister"},
		{"register", "-port", "80"},
		{"register", "-name", "web"},
		{"register", "-name", "web", "-port", "70000"},
		{"register", "-name", "web", "-port", "80", "-ttl", "5s", "-http", "http://127.0.0.1:80/health"},
		{"register", "-name", "web", "-port", "80", "-http", "not a url"},
		{"register", "-name", "web", "-port", "80", "-tcp", "nohostport"},
		{"register", "-name", "web", "-port", "80", "-meta", "novalue"},
		{"register", "-name", "web", "-port", "80", "-meta", "consul-reserved=1"},
		{"register", "-name", "web", "-port", "80", "stray"},
		{"doctor", "extra"},
		{"-consul", "http://[bad", "services"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) || exitCode(err) != 2 {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
	// Asking for help is not an error.
	for _, args := range [][]string{{"help"}, {"-h"}, {"instances", "-h"}, {"datacenters", "-h"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Errorf("run(%q) = %v, want nil", args, err)
		}
	}
	// And as a process: exit status 2, the reason on stderr.
	r := beaconRun(t, nil, "instances")
	if r.code != 2 || !strings.Contains(r.stderr, "want one service NAME") {
		t.Errorf("beacon instances: exit %d, stderr %q; want 2 and the reason", r.code, r.stderr)
	}
}

func TestParseInterleaved(t *testing.T) {
	var c command
	fs := c.flagSet("x", "")
	j := fs.Bool("json", false, "")
	pos, tail, err := c.parse(fs, []string{"web", "-json", "-consul", "a,b", "more", "--", "cmd", "-json"})
	if err != nil || !*j || strings.Join(pos, " ") != "web more" || strings.Join(tail, " ") != "cmd -json" || c.addrs.String() != "a,b" {
		t.Errorf("parse = %q, %q, %v (json %v, consul %q); want [web more], [cmd -json], json, consul a,b", pos, tail, err, *j, c.addrs.String())
	}
	m := metaFlag{}
	if err := m.Set("a=1,desc=x,y,b="); err != nil || m["a"] != "1" || m["desc"] != "x,y" || m["b"] != "" || len(m) != 3 {
		t.Errorf("metaFlag.Set = %v, %v; want a=1 desc=\"x,y\" b=\"\"", m, err)
	}
}

func TestServicesAndInstances(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	register(t, c, beacon.Registration{ID: "web-1", Service: "web", Address: "127.0.0.1", Port: 8080, Tags: []string{"a", "b"},
		Meta: map[string]string{"version": "1"}, Weights: beacon.Weights{Passing: 3, Warning: 1}, Checks: ttlCheck(beacon.HealthPassing)})
	register(t, c, beacon.Registration{ID: "web-2", Service: "web", Address: "127.0.0.1", Port: 8081, Tags: []string{"a"}, Checks: ttlCheck(beacon.HealthCritical)})
	register(t, c, beacon.Registration{ID: "web-3", Service: "web", Address: "127.0.0.1", Port: 8082, Checks: ttlCheck(beacon.HealthWarning)})
	addr := srv.HTTPAddr

	t.Run("services", func(t *testing.T) {
		r := beaconRun(t, nil, "-consul", addr, "services")
		if r.code != 0 || !strings.Contains(r.stdout, "SERVICE") || !hasLine(r.stdout, "web", "1", "1", "1", "a,b") || !hasLine(r.stdout, "consul", "1", "0", "0", "-") {
			t.Errorf("beacon services: exit %d, stdout:\n%s\nwant a table with web 1 1 1 a,b and consul", r.code, r.stdout)
		}
		r = beaconRun(t, nil, "services", "-json", "-consul", addr) // flags after the command
		var got []serviceSummary
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
			t.Fatalf("beacon services -json: exit %d, %v:\n%s", r.code, err, r.stdout)
		}
		want := fmt.Sprint(serviceSummary{Name: "web", Tags: []string{"a", "b"}, Passing: 1, Warning: 1, Critical: 1})
		if !strings.Contains(fmt.Sprint(got), want) {
			t.Errorf("beacon services -json = %+v, want it to hold %s", got, want)
		}
	})

	t.Run("instances", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			env  []string
			want string
		}{
			{[]string{"-consul", addr, "instances", "web", "-json"}, nil, "web-1"},
			{[]string{"instances", "-all", "web", "-json", "-consul", addr}, nil, "web-1 web-2 web-3"},
			{[]string{"instances", "web", "-all", "-tag", "a", "-json"}, []string{"CONSUL_HTTP_ADDR=" + addr}, "web-1 web-2"},
			{[]string{"instances", "web", "-all", "-tag", "a,b", "-json"}, []string{"CONSUL_HTTP_ADDR=" + addr}, "web-1"},
			// The first agent is down: the next one answers.
			{[]string{"instances", "web", "-json", "-consul", "127.0.0.1:1," + addr}, nil, "web-1"},
			{[]string{"instances", "nobody", "-json", "-consul", addr}, nil, ""},
		} {
			r := beaconRun(t, tc.env, tc.args...)
			var got []beacon.Instance
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
				t.Errorf("beacon %q: exit %d, %v:\n%s", tc.args, r.code, err, r.stdout)
				continue
			}
			var ids []string
			for _, in := range got {
				ids = append(ids, in.ID)
			}
			if strings.Join(ids, " ") != tc.want {
				t.Errorf("beacon %q = %q, want %q", tc.args, ids, tc.want)
			}
		}
		r := beaconRun(t, nil, "instances", "web", "-consul", addr)
		if r.code != 0 || !hasLine(r.stdout, "ID", "ADDRESS", "HEALTH", "NODE", "TAGS", "META", "WEIGHTS") ||
			!hasLine(r.stdout, "web-1", "127.0.0.1:8080", "passing", srv.Name, "a,b", "version=1", "3/1") {
			t.Errorf("beacon instances web: exit %d, stdout:\n%s\nwant the table with web-1", r.code, r.stdout)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		r := beaconRun(t, nil, "services", "-consul", "127.0.0.1:1")
		if r.code != 1 || !strings.Contains(r.stderr, "agent http://127.0.0.1:1") || !strings.Contains(r.stderr, "connection refused") {
			t.Errorf("beacon services against a closed port: exit %d, stderr %q; want 1, the agent and the cause", r.code, r.stderr)
		}
	})
}

func TestDeregister(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	register(t, c, beacon.Registration{ID: "web/1", Service: "web", Port: 8080, Checks: ttlCheck(beacon.HealthPassing)})

	r := beaconRun(t, nil, "deregister", "web/1", "-consul", srv.HTTPAddr)
	if r.code != 0 || !strings.Contains(r.stdout, "deregistered web/1 from node "+srv.Name) {
		t.Errorf("beacon deregister web/1: exit %d, stdout %q; want 0 and the node", r.code, r.stdout)
	}
	if got := allInstances(t, c, "web"); len(got) != 0 {
		t.Errorf("after beacon deregister: instances %v, want none", got)
	}
	r = beaconRun(t, nil, "deregister", "web/1", "-consul", srv.HTTPAddr)
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
		t.Errorf("beacon deregister again: exit %d, stdout %q; want 0, nothing to do", r.code, r.stdout)
	}

	// An instance another node's agent registered: only that agent can
	// remove it. A catalog entry for an external node stands in for it.
	body := `{"Node":"elsewhere","Address":"127.0.0.2","Service":{"ID":"ext-1","Service":"ext","Port":9000}}`
	req, _ := http.NewRequestWithContext(ctxT(t), http.MethodPut, srv.URL()+"/v1/catalog/register", strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("catalog register: %v %v", resp, err)
	}
	resp.Body.Close()
	r = beaconRun(t, nil, "deregister", "-consul", srv.HTTPAddr, "ext-1")
	if r.code != 1 || !strings.Contains(r.stderr, "on node elsewhere") {
		t.Errorf("beacon deregister ext-1: exit %d, stderr %q; want 1 naming node elsewhere", r.code, r.stderr)
	}
}

// TestDeregisterAsksEveryAgent: with -consul a,b, an instance registered
// through b is deregistered through b, not refused by a.
func TestDeregisterAsksEveryAgent(t *testing.T) {
	cl := consultest.NewCluster(t, 1, 1)
	server, agent := cl.Servers[0], cl.Clients[0]
	register(t, client(t, cl.Config(agent)), beacon.Registration{ID: "two-1", Service: "two", Port: 8080, Checks: ttlCheck(beacon.HealthPassing)})
	r := beaconRun(t, nil, "deregister", "two-1", "-consul", server.HTTPAddr+","+agent.HTTPAddr)
	if r.code != 0 || !strings.Contains(r.stdout, "deregistered two-1 from node "+agent.Name) {
		t.Errorf("beacon deregister two-1 via the second agent: exit %d, stdout %q, stderr %q; want 0 and node %s", r.code, r.stdout, r.stderr, agent.Name)
	}
}

// hasLine reports whether some line of out holds exactly these fields.
func hasLine(out string, fields ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.Join(strings.Fields(l), " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

// TestServicesHiddenByACLs: a token that may read nothing sees an empty
// catalog, not an error; beacon says what that most likely means.
func TestServicesHiddenByACLs(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithACL())
	tok := srv.MintToken(t, `key_prefix "" { policy = "read" }`)
	r := beaconRun(t, []string{"CONSUL_HTTP_TOKEN=" + tok}, "services", "-consul", srv.HTTPAddr)
	if r.code != 0 || !strings.Contains(r.stderr, "no service visible") || strings.Contains(r.stdout+r.stderr, tok) {
		t.Errorf("beacon services with a blind token: exit %d, stderr %q; want 0 and the hint, never the token", r.code, r.stderr)
	}
	r = beaconRun(t, []string{"CONSUL_HTTP_TOKEN=" + srv.ManagementToken()}, "services", "-json", "-consul", srv.HTTPAddr)
	var got []serviceSummary
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 1 || got[0].Name != "consul" || got[0].Passing != 1 {
		t.Errorf("beacon services -json with the management token = %+v, %v; want consul, 1 passing", got, err)
	}
}
