package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/beaconsd/beacon/consultest"
)

// doctorLine finds the line of check in doctor's output.
func doctorLine(out, check string) string {
	re := regexp.MustCompile(`^\S+\s+` + check + `\s`)
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			return l
		}
	}
	return ""
}

func TestDoctor(t *testing.T) {
	plain := consultest.NewServer(t)
	acl := consultest.NewServer(t, consultest.WithACL())
	tlsSrv := consultest.NewServer(t, consultest.WithTLS())
	ca, cert, key := tlsSrv.TLSFiles()
	readToken := acl.MintToken(t, `service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }`)
	blindToken := acl.MintToken(t, `key_prefix "" { policy = "read" }`)
	const wrongToken = "00000000-0000-4000-8000-00000000beef"

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		// want: check name → regexp its line must match.
		want map[string]string
	}{
		{"healthy", nil, []string{"-consul", plain.HTTPAddr}, 0, map[string]string{
			"agent":  `^ok .* accepts connections`,
			"tls":    `^ok .* plain HTTP`,
			"leader": `^ok .* leader at \S+ \(agent node ` + plain.Name + `, datacenter dc1, Consul 1\.14\.8\)`,
			"token":  `^ok .* ACLs are disabled`,
			"acl":    `^ok .* ACLs off`,
			// 1.14.8 with streaming on: hashicorp/consul#16871 (TestDoctorStreamingRace).
			"streaming": `^warn .* Consul 1\.14\.8 with the streaming backend on.*or run Beacon programs with BEACON_READ_PATH=blocking`,
			// What each of discovery's read paths gets from this agent.
			"read-path": `^ok .*streaming -> streaming; blocking -> blocking-query; cached -> blocking-query, X-Cache (HIT|MISS); use_streaming_backend = true; http_config.use_cache = true; this environment reads streaming \(default\)$`,
		}},
		{"read path from the environment", []string{"BEACON_READ_PATH=blocking"}, []string{"-consul", plain.HTTPAddr}, 0, map[string]string{
			"read-path": `^ok .*this environment reads blocking \(BEACON_READ_PATH\)$`,
		}},
		{"wrong address", nil, []string{"-consul", "127.0.0.1:1"}, 1, map[string]string{
			"agent":  `^FAIL .*http://127\.0\.0\.1:1: .*connection refused; fix: start the Consul agent`,
			"leader": `^skip `,
		}},
		{"acl with a good token", []string{"CONSUL_HTTP_TOKEN=" + readToken}, []string{"-consul", acl.HTTPAddr}, 0, map[string]string{
			"token": `^ok .* accepted: accessor \S+; policies consultest-`,
			"acl":   `^ok .* ACLs on; the token can read the catalog`,
		}},
		{"wrong token", []string{"CONSUL_HTTP_TOKEN=" + wrongToken}, []string{"-consul", acl.HTTPAddr}, 1, map[string]string{
			"leader": `^ok `,
			"token":  `^FAIL .* the agent does not accept the token \(.*ACL not found\); fix: check CONSUL_HTTP_TOKEN`,
			"acl":    `^skip `,
		}},
		{"no token", nil, []string{"-consul", acl.HTTPAddr}, 1, map[string]string{
			"token": `^FAIL .* ACLs are on and no token is set`,
		}},
		{"token that cannot read", []string{"CONSUL_HTTP_TOKEN=" + blindToken}, []string{"-consul", acl.HTTPAddr}, 1, map[string]string{
			"token": `^ok `,
			"acl":   `^FAIL .* sees no service.*; fix: give the token service_prefix`,
		}},
		{"tls healthy", []string{"CONSUL_HTTP_ADDR=https://" + tlsSrv.HTTPAddr, "CONSUL_CACERT=" + ca, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + key}, nil, 0, map[string]string{
			"tls": `^ok .* HTTPS, the agent's certificate verified, client certificate sent`,
		}},
		{"missing CA", []string{"CONSUL_HTTP_ADDR=https://" + tlsSrv.HTTPAddr, "CONSUL_CLIENT_CERT=" + cert, "CONSUL_CLIENT_KEY=" + key}, nil, 1, map[string]string{
			"agent":  `^ok `,
			"tls":    `^FAIL .* not signed by a CA beacon trusts .*no CA is configured; fix: set CONSUL_CACERT`,
			"leader": `^skip `,
		}},
		{"missing client certificate", []string{"CONSUL_HTTP_ADDR=https://" + tlsSrv.HTTPAddr, "CONSUL_CACERT=" + ca}, nil, 1, map[string]string{
			"tls": `^FAIL .* refused the TLS connection.*; fix: .*CONSUL_CLIENT_CERT`,
		}},
		{"http to a TLS agent", []string{"CONSUL_HTTP_ADDR=" + tlsSrv.HTTPAddr}, nil, 1, map[string]string{
			"tls": `^FAIL .* the agent speaks HTTPS but the address is http://`,
		}},
		{"https to a plain agent", []string{"CONSUL_HTTP_SSL=true", "CONSUL_HTTP_ADDR=" + plain.HTTPAddr}, nil, 1, map[string]string{
			"tls": `^FAIL .* the agent speaks plain HTTP but the address is https://`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := beaconRun(t, tc.env, append([]string{"doctor"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("beacon doctor: exit %d, want %d", r.code, tc.code)
			}
			for check, pattern := range tc.want {
				if l := doctorLine(r.stdout, check); !regexp.MustCompile(pattern).MatchString(l) {
					t.Errorf("doctor line %q = %q, want it to match %q", check, l, pattern)
				}
			}
			for _, secret := range []string{readToken, blindToken, wrongToken} {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Errorf("beacon doctor printed a token")
				}
			}
			if n := strings.Count(r.stdout, "\n"); tc.code == 0 && n != 8 {
				t.Errorf("beacon doctor printed %d lines, want 7 checks and a summary", n)
			}
		})
	}
}

// TestDoctorSaysThePort: a host without a port means the agent's default
// port, 8500; a URL without one, its scheme's. Doctor's agent line says
// which port it used.
func TestDoctorSaysThePort(t *testing.T) {
	for addr, want := range map[string]string{"127.0.0.1": "http://127.0.0.1:8500 ", "http://127.0.0.1": "http://127.0.0.1:80 "} {
		r := beaconRun(t, nil, "doctor", "-consul", addr)
		if l := doctorLine(r.stdout, "agent"); !strings.Contains(l, want) && !strings.Contains(l, strings.TrimSpace(want)+":") || !strings.Contains(l, "no port: port") {
			t.Errorf("beacon doctor -consul %s: agent line %q, want it to name %s and say the address gave no port", addr, l, want)
		}
	}
	if !portOmitted("127.0.0.1") || !portOmitted("https://h/") || !portOmitted("[::1]") || portOmitted("127.0.0.1:8500") || portOmitted("http://[::1]:8500") || portOmitted("unix:///s") {
		t.Errorf("portOmitted is wrong for a bare host, an https host, [::1], host:port or a socket")
	}
}

// TestDoctorStreamingRace: on an agent older than 1.16 with the streaming
// backend on (the project's 1.14.8, by default), doctor warns of
// hashicorp/consul#16871, says how Beacon bounds it and how to turn
// streaming off; with use_streaming_backend = false it does not warn.
func TestDoctorStreamingRace(t *testing.T) {
	on := consultest.NewServer(t)
	off := consultest.NewServer(t, consultest.WithConfigJSON(`{"use_streaming_backend": false}`))
	for _, tc := range []struct {
		name, addr string
		want, not  []string
	}{
		{"streaming on", on.HTTPAddr, []string{
			`^warn\s+streaming\s+Consul 1\.14\.8 with the streaming backend on \(X-Consul-Query-Backend: streaming\)`,
			`first streaming subscriber can miss a change and keep serving a stale view`,
			`hashicorp/consul#16871`,
			`discovery verifies each new watch with a plain read and repairs stale views within WithStaleBound \(default 10 s\)`,
			`; fix: upgrade the agents to Consul 1\.16 or later, or set use_streaming_backend = false in the config of the agents you run`,
		}, nil},
		{"streaming off", off.HTTPAddr, []string{
			`^ok\s+streaming\s+health queries use the blocking-query backend, which Consul 1\.14\.8's streaming race \(hashicorp/consul#16871\) does not affect`,
		}, []string{`use_streaming_backend = (true|false)`, `^warn`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := beaconRun(t, nil, "doctor", "-consul", tc.addr)
			if r.code != 0 {
				t.Errorf("beacon doctor: exit %d, want 0 (a warning does not fail); stderr %q", r.code, r.stderr)
			}
			l := doctorLine(r.stdout, "streaming")
			for _, p := range tc.want {
				if !regexp.MustCompile(p).MatchString(l) {
					t.Errorf("doctor line streaming = %q, want it to match %q", l, p)
				}
			}
			for _, p := range tc.not {
				if regexp.MustCompile(p).MatchString(l) {
					t.Errorf("doctor line streaming = %q, want it not to match %q", l, p)
				}
			}
		})
	}
}

func TestStreamingRace(t *testing.T) {
	for _, tc := range []struct {
		v           string
		racy, known bool
	}{
		{"1.14.8", true, true},
		{"1.15.10", true, true},
		{"1.15.2+ent", true, true},
		{"1.16.0", false, true},
		{"1.16.0-rc1", false, true},
		{"1.21.4", false, true},
		{"2.0.0", false, true},
		{"0.9.3", true, true},
		{"", false, false},
		{"garbage", false, false},
		{"1.x", false, false},
	} {
		if racy, known := streamingRace(tc.v); racy != tc.racy || known != tc.known {
			t.Errorf("streamingRace(%q) = %v, %v, want %v, %v", tc.v, racy, known, tc.racy, tc.known)
		}
	}
}
