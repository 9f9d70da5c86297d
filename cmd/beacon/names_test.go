package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// agentRegister registers a service with a plain PUT to the agent, as any
// other client of Consul would: the names Consul accepts are not Beacon's
// to decide.
func agentRegister(t *testing.T, srv *consultest.Server, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodPut, srv.URL()+"/v1/agent/service/register", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("PUT /v1/agent/service/register %s: %v", body, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/agent/service/register %s: %s", body, resp.Status)
	}
}

// TestNamesConsulAccepts: service names that are not DNS labels
// (legacy_svc, api.v2) are accepted by Consul, so instances and watch find
// them; register registers one with a one-line warning that DNS cannot
// serve it.
func TestNamesConsulAccepts(t *testing.T) {
	srv := consultest.NewServer(t)
	addr := srv.HTTPAddr
	agentRegister(t, srv, `{"ID":"legacy-1","Name":"legacy_svc","Address":"127.0.0.1","Port":9000,"Check":{"TTL":"1h","Status":"passing"}}`)
	agentRegister(t, srv, `{"ID":"v2-1","Name":"api.v2","Address":"127.0.0.1","Port":9001,"Check":{"TTL":"1h","Status":"passing"}}`)

	r := beaconRun(t, nil, "services", "-consul", addr)
	if r.code != 0 || !hasLine(r.stdout, "legacy_svc", "1", "0", "0", "-") || !hasLine(r.stdout, "api.v2", "1", "0", "0", "-") {
		t.Errorf("beacon services: exit %d, stdout:\n%s\nwant legacy_svc and api.v2 listed", r.code, r.stdout)
	}
	for name, id := range map[string]string{"legacy_svc": "legacy-1", "api.v2": "v2-1"} {
		r := beaconRun(t, nil, "instances", name, "-json", "-consul", addr)
		var got []beacon.Instance
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || len(got) != 1 || got[0].ID != id {
			t.Errorf("beacon instances %s -json: exit %d, %v, stderr %q:\n%s\nwant %s", name, r.code, err, r.stderr, r.stdout, id)
		}
	}

	p := beaconStart(t, nil, "watch", "legacy_svc", "-consul", addr)
	testutil.Eventually(t, deadline, "beacon watch legacy_svc shows legacy-1", func() error {
		return testutil.Want(strings.Contains(p.stdout.String(), "present legacy-1 127.0.0.1:9000 passing") || p.exited(), "output %q", p.stdout.String())
	})
	if p.exited() {
		t.Fatalf("beacon watch legacy_svc exited early; stdout:\n%s\nstderr:\n%s", p.stdout.String(), p.stderr.String())
	}
	if code := p.signal(t, syscall.SIGINT); code != 0 || !strings.Contains(p.stdout.String(), "present legacy-1") {
		t.Errorf("beacon watch legacy_svc: exit %d, stdout:\n%s\nstderr:\n%s\nwant legacy-1 shown, exit 0", code, p.stdout.String(), p.stderr.String())
	}

	// register: a warning, one line, and the instance registered all the same.
	port := strconv.Itoa(freePort(t))
	reg := beaconStart(t, nil, "register", "-name", "api.v2", "-port", port, "-address", "127.0.0.1", "-consul", addr)
	c := client(t, srv.Config())
	testutil.Eventually(t, deadline, "api.v2 registered by beacon register", func() error {
		insts := allInstances(t, c, "api.v2")
		_, ok := insts["api.v2-127.0.0.1-"+port]
		return testutil.Want(ok || reg.exited(), "instances %v", insts)
	})
	if reg.exited() {
		t.Fatalf("beacon register -name api.v2 exited early; stderr:\n%s", reg.stderr.String())
	}
	if code := reg.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("beacon register -name api.v2: exit %d, want 0", code)
	}
	var warnings []string
	for _, l := range strings.Split(reg.stderr.String(), "\n") {
		if strings.Contains(l, "DNS") {
			warnings = append(warnings, l)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "level=WARN") || !strings.Contains(warnings[0], "api.v2") {
		t.Errorf("beacon register -name api.v2: stderr\n%s\nwant one warning line naming api.v2 and DNS", reg.stderr.String())
	}
}

// TestErrorsNameCharacters: a refused name is reported by the character
// (rune) at fault, never by one byte of its UTF-8 encoding, and no message
// repeats its "beacon: " prefix.
func TestErrorsNameCharacters(t *testing.T) {
	// U+0085 (NEL) is a control character encoded as C2 85: read byte by
	// byte, its first byte would be named 'Â'.
	r := beaconRun(t, nil, "instances", "café\u0085", "-consul", "127.0.0.1:1")
	if r.code != 2 || !(strings.Contains(r.stderr, "U+0085") || strings.Contains(r.stderr, `'\u0085'`)) ||
		strings.ContainsAny(r.stderr, "ÂÃ") {
		t.Errorf("beacon instances café<U+0085>: exit %d, stderr %q; want 2 naming U+0085, no 'Â' or 'Ã'", r.code, r.stderr)
	}
	doubled := regexp.MustCompile(`beacon: (\S+: )?beacon: `)
	for _, args := range [][]string{
		{"instances", ""},
		{"instances", "a\x01"},
		{"watch", ""},
		{"deregister", ""},
		{"register", "-name", "", "-port", "80"},
		{"register", "-name", "web", "-port", "80", "-meta", "consul-reserved=1"},
		{"register", "-name", "web", "-port", "80", "-tags", "a\x01"},
	} {
		r := beaconRun(t, nil, append(args, "-consul", "127.0.0.1:1")...)
		if r.code != 2 || doubled.MatchString(r.stderr) || !strings.HasPrefix(r.stderr, "beacon: ") {
			t.Errorf("beacon %q: exit %d, stderr %q; want 2 and one \"beacon: \" prefix", args, r.code, r.stderr)
		}
	}
}

// TestHelpAndUsageErrors: -h prints the usage on stdout and exits 0; a
// mistake prints the error first, on one line, then a one-line hint.
func TestHelpAndUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"-help"}, {"help"}, {"instances", "-h"}, {"watch", "-h"}, {"register", "-h"}, {"doctor", "--help"}} {
		r := beaconRun(t, nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: beacon") || r.stderr != "" {
			t.Errorf("beacon %q: exit %d, stdout %.60q, stderr %q; want 0, the usage on stdout, nothing on stderr", args, r.code, r.stdout, r.stderr)
		}
	}
	// The flag help says which port an address without one means.
	if r := beaconRun(t, nil, "instances", "-h"); !strings.Contains(r.stdout, "a host without a port means port 8500") {
		t.Errorf("beacon instances -h:\n%s\nwant -consul's help to say which port a bare host means", r.stdout)
	}
	for _, tc := range []struct {
		args  []string
		first string // the error line's start
	}{
		{[]string{"register", "-name", "web", "-port", "80", "-meta", "novalue"}, `beacon: invalid value "novalue" for flag -meta: `},
		{[]string{"instances", "-nosuchflag", "web"}, "beacon: flag provided but not defined: -nosuchflag"},
		{[]string{"instances"}, "beacon: instances: want one service NAME"},
		{[]string{"-nosuchflag", "services"}, "beacon: flag provided but not defined: -nosuchflag"},
	} {
		r := beaconRun(t, nil, tc.args...)
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		if r.code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], tc.first) || r.stdout != "" {
			t.Errorf("beacon %q: exit %d, stderr:\n%s\nwant 2, two lines: %q..., then a hint", tc.args, r.code, r.stderr, tc.first)
		}
	}
}
