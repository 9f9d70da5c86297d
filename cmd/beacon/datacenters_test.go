package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// TestDatacenters runs beacon datacenters, instances -dc and watch -dc as
// processes against one two-datacenter federation, shared by the subtests.
func TestDatacenters(t *testing.T) {
	fed := consultest.NewFederation(t, consultest.FederationSpec{Datacenters: []consultest.DatacenterSpec{
		{Name: "dc1", Servers: 1}, {Name: "dc2", Servers: 1},
	}})
	dc1, dc2 := fed.DC("dc1").Servers[0], fed.DC("dc2").Servers[0]
	register(t, client(t, dc2.Config()), beacon.Registration{ID: "far-1", Service: "far", Address: "127.0.0.1", Port: 9001, Checks: ttlCheck(beacon.HealthPassing)})

	t.Run("datacenters", func(t *testing.T) {
		for _, tc := range []struct{ addr, local, remote string }{{dc1.HTTPAddr, "dc1", "dc2"}, {dc2.HTTPAddr, "dc2", "dc1"}} {
			// Consul learns the remote server's coordinate a moment after the
			// federation forms; until then its RTT is unknown.
			var got []datacenterLine
			testutil.Eventually(t, deadline, "both RTTs known from "+tc.local, func() error {
				r := beaconRun(t, nil, "datacenters", "-json", "-consul", tc.addr)
				got = nil
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
					t.Fatalf("beacon datacenters -json: exit %d, %v:\n%s", r.code, err, r.stdout)
				}
				return testutil.Want(len(got) == 2 && got[1].RTTMillis != nil, "datacenters %s", r.stdout)
			})
			if l := got[0]; l.Name != tc.local || !l.Local || l.RTTMillis == nil || *l.RTTMillis != 0 {
				t.Errorf("beacon datacenters -json via %s: first %+v, want %s, local, RTT 0", tc.local, l, tc.local)
			}
			if r := got[1]; r.Name != tc.remote || r.Local || *r.RTTMillis <= 0 || *r.RTTMillis > 10_000 {
				t.Errorf("beacon datacenters -json via %s: second %+v, want %s with a sane RTT", tc.local, r, tc.remote)
			}
			r := beaconRun(t, nil, "-consul", tc.addr, "datacenters")
			if r.code != 0 || !hasLine(r.stdout, "DATACENTER", "RTT") || !hasLine(r.stdout, tc.local, "0", "(local)") ||
				!regexp.MustCompile(`(?m)^`+tc.remote+` +\d+\.\d{3} ms$`).MatchString(r.stdout) {
				t.Errorf("beacon datacenters via %s: exit %d, stdout:\n%s\nwant the table, local first, %s with its RTT", tc.local, r.code, r.stdout, tc.remote)
			}
			if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[1], tc.local+" ") {
				t.Errorf("beacon datacenters via %s: lines %q, want a header and %s first", tc.local, lines, tc.local)
			}
		}
	})

	t.Run("instances", func(t *testing.T) {
		ids := func(args ...string) []string {
			t.Helper()
			r := beaconRun(t, nil, args...)
			var got []beacon.Instance
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
				t.Fatalf("beacon %q: exit %d, %v:\n%s", args, r.code, err, r.stdout)
			}
			var out []string
			for _, in := range got {
				out = append(out, in.ID)
			}
			return out
		}
		if got := ids("instances", "far", "-dc", "dc2", "-json", "-consul", dc1.HTTPAddr); strings.Join(got, " ") != "far-1" {
			t.Errorf("beacon instances far -dc dc2 via dc1 = %q, want [far-1]", got)
		}
		if got := ids("instances", "far", "-json", "-consul", dc1.HTTPAddr); len(got) != 0 {
			t.Errorf("beacon instances far via dc1 = %q, want none: far is in dc2", got)
		}
		r := beaconRun(t, nil, "instances", "far", "-dc", "dc2", "-consul", dc1.HTTPAddr)
		if r.code != 0 || !hasLine(r.stdout, "far-1", "127.0.0.1:9001", "passing", dc2.Name, "-", "-", "1/1") {
			t.Errorf("beacon instances far -dc dc2 via dc1: exit %d, stdout:\n%s\nwant far-1 on node %s", r.code, r.stdout, dc2.Name)
		}
		r = beaconRun(t, nil, "instances", "far", "-dc", "dc1", "-consul", dc2.HTTPAddr)
		if r.code != 0 || strings.TrimSpace(r.stdout) != `no passing instances of "far" in dc1` {
			t.Errorf("beacon instances far -dc dc1 via dc2: exit %d, stdout %q; want 0 and none in dc1", r.code, r.stdout)
		}
		r = beaconRun(t, nil, "instances", "far", "-dc", "dc9", "-consul", dc1.HTTPAddr)
		if r.code != 1 || !strings.Contains(r.stderr, `datacenter "dc9" is not known to the agent (it knows dc1, dc2)`) {
			t.Errorf("beacon instances far -dc dc9: exit %d, stderr %q; want 1, and the known datacenters", r.code, r.stderr)
		}
		r = beaconRun(t, nil, "instances", "far", "-dc", "dc 2", "-consul", dc1.HTTPAddr)
		if r.code != 2 || !strings.Contains(r.stderr, "invalid Datacenter") {
			t.Errorf("beacon instances far -dc 'dc 2': exit %d, stderr %q; want 2 and invalid Datacenter", r.code, r.stderr)
		}
	})

	t.Run("watch", func(t *testing.T) {
		p := beaconStart(t, nil, "watch", "far", "-dc", "dc2", "-consul", dc1.HTTPAddr)
		testutil.Eventually(t, deadline, "the first answer", func() error {
			out := p.stdout.String()
			return testutil.Want(strings.Contains(out, `watching "far" in dc2 through`) && strings.Contains(out, "present far-1 127.0.0.1:9001 passing"), "output %q", out)
		})
		register(t, client(t, dc2.Config()), beacon.Registration{ID: "far-2", Service: "far", Address: "127.0.0.1", Port: 9002, Checks: ttlCheck(beacon.HealthPassing)})
		testutil.Eventually(t, deadline, "far-2 added", func() error {
			return testutil.Want(strings.Contains(p.stdout.String(), "added far-2 127.0.0.1:9002 passing"), "output %q", p.stdout.String())
		})
		if code := p.signal(t, syscall.SIGINT); code != 0 {
			t.Errorf("beacon watch -dc dc2 after SIGINT: exit %d, want 0", code)
		}
		r := beaconRun(t, nil, "watch", "far", "-dc", "nowhere", "-consul", dc1.HTTPAddr)
		if r.code != 1 || !strings.Contains(r.stderr, `datacenter "nowhere" is not known`) {
			t.Errorf("beacon watch far -dc nowhere: exit %d, stderr %q; want 1 at once, naming the datacenter", r.code, r.stderr)
		}
	})
}
