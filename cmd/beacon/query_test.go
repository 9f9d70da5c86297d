package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
)

// writeFile writes content to a file of the test's own and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestQueryUsageErrors(t *testing.T) {
	consulFile := writeFile(t, "consul.json", `{"Name":"q","Service":{"Service":"web"}}`)
	for _, args := range [][]string{
		{"query"},
		{"query", "nosuch"},
		{"query", "list", "extra"},
		{"query", "show"},
		{"query", "show", "a", "b"},
		{"query", "show", "a/b"},
		{"query", "execute", ""},
		{"query", "execute", "q", "-limit", "-1"},
		{"query", "execute", "q", "-dc", "dc 1"},
		{"query", "delete"},
		{"query", "delete", "q\n"},
		{"query", "create"},
		{"query", "create", "-name", "q"},
		{"query", "create", "-service", "web"},
		{"query", "create", "-name", "q/x", "-service", "web"},
		{"query", "create", "-name", "979d3c25-8087-69d3-7720-09ac6d3a2855", "-service", "web"},
		{"query", "create", "-name", "q", "-service", "web", "-nearest", "-1"},
		{"query", "create", "-name", "q", "-service", "web", "-failover", "dc2,dc2"},
		{"query", "create", "-name", "q", "-service", "web", "-failover", "dc 2"},
		{"query", "create", "-name", "q", "-service", "web", "-tag", "!"},
		{"query", "create", "-name", "q", "-service", "web", "stray"},
		{"query", "create", "-file", consulFile, "-name", "q"},
		{"query", "create", "-file", filepath.Join(t.TempDir(), "missing.json")},
		{"query", "create", "-file", writeFile(t, "bad.json", `{"Name":`)},
		{"query", "create", "-file", writeFile(t, "template.json", `{"Name":"q","Service":{"Service":"web"},"Template":{"Type":"name_prefix_match"}}`)},
		{"query", "create", "-file", writeFile(t, "id.json", `{"ID":"979d3c25-8087-69d3-7720-09ac6d3a2855","Name":"q","Service":"web"}`)},
		{"query", "create", "-file", writeFile(t, "invalid.json", `{"Name":"q","Service":{"Service":"web","Failover":{"NearestN":-2}}}`)},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) || exitCode(err) != 2 {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
	for _, args := range [][]string{{"query", "-h"}, {"query", "create", "-h"}, {"query", "execute", "-h"}} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), args, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "sage: beacon query") {
			t.Errorf("run(%q) = %v, stdout %q; want nil and the usage", args, err, stdout.String())
		}
	}
	// As a process: exit 2, the field and the subcommand's usage on stderr.
	r := beaconRun(t, nil, "query", "create", "-name", "q", "-service", "web", "-nearest", "-1")
	if r.code != 2 || !strings.Contains(r.stderr, "Failover.NearestN") || !strings.Contains(r.stderr, "usage: beacon query create") {
		t.Errorf("beacon query create -nearest -1: exit %d, stderr %q; want 2, the field and the usage", r.code, r.stderr)
	}
}

// TestQueryCommands runs every query subcommand as a process with -json
// against a real agent.
func TestQueryCommands(t *testing.T) {
	srv := consultest.NewServer(t)
	c := client(t, srv.Config())
	register(t, c, beacon.Registration{ID: "web-1", Service: "web", Address: "127.0.0.1", Port: 8080, Tags: []string{"v1"}, Checks: ttlCheck(beacon.HealthPassing)})
	register(t, c, beacon.Registration{ID: "web-2", Service: "web", Address: "127.0.0.1", Port: 8081, Tags: []string{"v1"}, Checks: ttlCheck(beacon.HealthWarning)})
	register(t, c, beacon.Registration{ID: "web-3", Service: "web", Address: "127.0.0.1", Port: 8082, Checks: ttlCheck(beacon.HealthPassing)})
	addr := srv.HTTPAddr

	// beaconJSON runs beacon and decodes its -json output into v.
	beaconJSON := func(t *testing.T, v any, args ...string) {
		t.Helper()
		r := beaconRun(t, nil, append([]string{"-consul", addr}, args...)...)
		if r.code != 0 {
			t.Fatalf("beacon %q: exit %d, stderr %q", args, r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Fatalf("beacon %q: %v in\n%s", args, err, r.stdout)
		}
	}

	var created beacon.PreparedQuery
	beaconJSON(t, &created, "query", "create", "-name", "web-q", "-service", "web", "-tag", "v1", "-passing",
		"-failover", "dc2,dc3", "-nearest", "2", "-json")
	want := beacon.PreparedQuery{ID: created.ID, Name: "web-q", Service: "web", Tags: []string{"v1"}, OnlyPassing: true,
		Failover: beacon.QueryFailover{NearestN: 2, Datacenters: []string{"dc2", "dc3"}}}
	if !beacon.IsQueryID(created.ID) || !reflect.DeepEqual(created, want) {
		t.Fatalf("beacon query create -json = %+v, want %+v with a query ID", created, want)
	}

	t.Run("list and show", func(t *testing.T) {
		var list []beacon.PreparedQuery
		beaconJSON(t, &list, "query", "list", "-json")
		if len(list) != 1 || !reflect.DeepEqual(list[0], want) {
			t.Errorf("beacon query list -json = %+v, want [%+v]", list, want)
		}
		for _, ref := range []string{"web-q", created.ID} {
			var got beacon.PreparedQuery
			beaconJSON(t, &got, "query", "show", ref, "-json")
			if !reflect.DeepEqual(got, want) {
				t.Errorf("beacon query show %s -json = %+v, want %+v", ref, got, want)
			}
		}
		r := beaconRun(t, nil, "query", "show", "web-q", "-consul", addr)
		if r.code != 0 || !hasLine(r.stdout, "Failover:", "nearest", "2,", "then", "dc2,dc3") || !hasLine(r.stdout, "Returns:", "passing", "instances", "only") {
			t.Errorf("beacon query show web-q: exit %d, stdout:\n%s\nwant the definition, failover and passing-only", r.code, r.stdout)
		}
		r = beaconRun(t, nil, "query", "show", "nobody", "-consul", addr)
		if r.code != 1 || !strings.Contains(r.stderr, `no prepared query "nobody"`) {
			t.Errorf("beacon query show nobody: exit %d, stderr %q; want 1 and the reason", r.code, r.stderr)
		}
	})

	t.Run("execute", func(t *testing.T) {
		var res beacon.PreparedQueryResult
		beaconJSON(t, &res, "query", "execute", "web-q", "-json")
		if res.Service != "web" || res.Datacenter != "dc1" || res.Failovers != 0 || len(res.Instances) != 1 || res.Instances[0].ID != "web-1" {
			t.Errorf("beacon query execute web-q -json = %+v, want web-1 from dc1 without failover", res)
		}
		r := beaconRun(t, nil, "query", "execute", created.ID, "-consul", addr)
		if r.code != 0 || !strings.Contains(r.stdout, "web from datacenter dc1") || !hasLine(r.stdout, "web-1", "127.0.0.1:8080", "passing", srv.Name, "v1", "-", "1/1") {
			t.Errorf("beacon query execute ID: exit %d, stdout:\n%s\nwant the datacenter and web-1", r.code, r.stdout)
		}
		r = beaconRun(t, nil, "query", "execute", "nobody", "-consul", addr)
		if r.code != 1 || !strings.Contains(r.stderr, "404") {
			t.Errorf("beacon query execute nobody: exit %d, stderr %q; want 1 and Consul's 404", r.code, r.stderr)
		}
	})

	t.Run("create from files", func(t *testing.T) {
		// Consul's own shape: warning instances qualify without OnlyPassing.
		consulDef := writeFile(t, "consul.json", `{"Name":"web-all","Service":{"Service":"web","Failover":{"Datacenters":["dc2"]}}}`+"\n")
		var got beacon.PreparedQuery
		beaconJSON(t, &got, "query", "create", "-file", consulDef, "-json")
		var res beacon.PreparedQueryResult
		beaconJSON(t, &res, "query", "execute", "web-all", "-json", "-limit", "5")
		if ids := instanceIDs(res.Instances); ids != "web-1 web-2 web-3" {
			t.Errorf("beacon query execute web-all -json = IDs %q, want web-1 web-2 web-3", ids)
		}
		// show -json's shape reads back, given a new name and no ID.
		var shown map[string]any
		beaconJSON(t, &shown, "query", "show", "web-q", "-json")
		delete(shown, "ID")
		shown["Name"] = "web-q2"
		b, _ := json.Marshal(shown)
		var copied beacon.PreparedQuery
		beaconJSON(t, &copied, "query", "create", "-file", writeFile(t, "shown.json", string(b)), "-json")
		want2 := want
		want2.ID, want2.Name = copied.ID, "web-q2"
		if !reflect.DeepEqual(copied, want2) || copied.ID == created.ID {
			t.Errorf("beacon query create -file (show -json's output renamed) = %+v, want %+v with a new ID", copied, want2)
		}
	})

	t.Run("delete", func(t *testing.T) {
		var d deleted
		beaconJSON(t, &d, "query", "delete", "web-q", "-json")
		if d != (deleted{ID: created.ID, Name: "web-q", Deleted: true}) {
			t.Errorf("beacon query delete web-q -json = %+v, want %s deleted", d, created.ID)
		}
		beaconJSON(t, &d, "query", "delete", created.ID, "-json")
		if d.Deleted {
			t.Errorf("beacon query delete %s again -json = %+v, want Deleted false", created.ID, d)
		}
		r := beaconRun(t, nil, "query", "delete", "web-q", "-consul", addr)
		if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") {
			t.Errorf("beacon query delete web-q again: exit %d, stdout %q; want 0, nothing to do", r.code, r.stdout)
		}
		var list []beacon.PreparedQuery
		beaconJSON(t, &list, "query", "list", "-json")
		for _, q := range list {
			if q.Name == "web-q" {
				t.Errorf("beacon query list -json after delete holds %+v", q)
			}
		}
	})
}

func instanceIDs(insts []beacon.Instance) string {
	ids := make([]string, len(insts))
	for i, in := range insts {
		ids[i] = in.ID
	}
	return strings.Join(ids, " ")
}

// TestQueryDeniedByACLs: a refused create exits 1 and says ACLs refused
// the token, never printing it.
func TestQueryDeniedByACLs(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithACL())
	tok := srv.MintToken(t, `service_prefix "" { policy = "read" }`)
	r := beaconRun(t, []string{"CONSUL_HTTP_TOKEN=" + tok}, "query", "create", "-name", "q", "-service", "web", "-consul", srv.HTTPAddr)
	if r.code != 1 || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "ACL") || strings.Contains(r.stdout+r.stderr, tok) {
		t.Errorf("beacon query create with a read-only token: exit %d, stderr %q; want 1, 403 and ACLs named, never the token", r.code, r.stderr)
	}
}

// FuzzQueryFile: parseQueryFile never panics; what it accepts is one JSON
// value, and reads back the same from the JSON beacon query show -json
// prints.
func FuzzQueryFile(f *testing.F) {
	for _, s := range []string{
		`{"Name":"q","Service":{"Service":"web","Tags":["v1"],"OnlyPassing":true,"Near":"_agent","Failover":{"NearestN":2,"Datacenters":["dc2"]}}}`,
		`{"ID":"","Name":"q","Service":"web","Tags":["!canary"],"OnlyPassing":false,"Near":"","Failover":{"NearestN":0,"Datacenters":null}}`,
		`{"Name":"q","Service":{"Service":"web"},"Template":{"Type":"name_prefix_match"}}`,
		`{"Name":"q","Service":{"Service":"web"}} {}`,
		`{"Name":"q"}`, `{"Service":null}`, `{"Service":7}`, `null`, `[]`, ``, `{"service":"web","name":"q"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := parseQueryFile(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("parseQueryFile(%q) accepted invalid JSON", data)
		}
		b, err := json.Marshal(q)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) = %v", q, err)
		}
		back, err := parseQueryFile(b)
		if err != nil || !reflect.DeepEqual(back, q) {
			t.Fatalf("parseQueryFile(%q) = %+v, which reads back from %s as %+v, %v", data, q, b, back, err)
		}
	})
}
