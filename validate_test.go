package beacon_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconsd/beacon"
)

func validRegistration() beacon.Registration {
	return beacon.Registration{
		ID:      "web-1",
		Service: "web",
		Address: "127.0.0.1",
		Port:    8080,
		Tags:    []string{"v1"},
		Meta:    map[string]string{"version": "1"},
		Checks:  []beacon.Check{{HTTP: "http://127.0.0.1:8080/health", Interval: 5 * time.Second}},
	}
}

// oneCheck replaces a registration's checks with c.
func oneCheck(c beacon.Check) func(*beacon.Registration) {
	return func(r *beacon.Registration) { r.Checks = []beacon.Check{c} }
}

func manyMeta(n int) map[string]string {
	m := map[string]string{}
	for i := range n {
		m["k"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	return m
}

func TestRegistrationValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*beacon.Registration)
		field  string // "" means valid
	}{
		{"valid", func(*beacon.Registration) {}, ""},
		{"id with reserved URL characters", func(r *beacon.Registration) { r.ID = "a/b#c?d%e f" }, ""},
		{"empty id", func(r *beacon.Registration) { r.ID = "" }, "ID"},
		{"id dot", func(r *beacon.Registration) { r.ID = "." }, "ID"},
		{"id dot dot", func(r *beacon.Registration) { r.ID = ".." }, "ID"},
		{"id with newline", func(r *beacon.Registration) { r.ID = "a\nb" }, "ID"},
		{"id too long", func(r *beacon.Registration) { r.ID = strings.Repeat("a", beacon.MaxIDLen+1) }, "ID"},
		{"id not utf8", func(r *beacon.Registration) { r.ID = "\xff" }, "ID"},
		{"empty service", func(r *beacon.Registration) { r.Service = "" }, "Service"},
		// Consul registers names DNS cannot serve, with a warning: so do we.
		{"service with dot", func(r *beacon.Registration) { r.Service = "web.v1" }, ""},
		{"service with underscore", func(r *beacon.Registration) { r.Service = "web_v1" }, ""},
		{"service leading hyphen", func(r *beacon.Registration) { r.Service = "-web" }, ""},
		{"service with control character", func(r *beacon.Registration) { r.Service = "web\n" }, "Service"},
		{"service not UTF-8", func(r *beacon.Registration) { r.Service = "web\xff" }, "Service"},
		{"service dot-dot", func(r *beacon.Registration) { r.Service = ".." }, "Service"},
		{"service with slash", func(r *beacon.Registration) { r.Service = "web/../v1/acl" }, "Service"},
		{"service 63 chars", func(r *beacon.Registration) { r.Service = strings.Repeat("a", 63) }, ""},
		{"service 64 chars", func(r *beacon.Registration) { r.Service = strings.Repeat("a", 64) }, ""},
		{"service too long", func(r *beacon.Registration) { r.Service = strings.Repeat("a", beacon.MaxServiceNameLen+1) }, "Service"},
		{"service mixed case", func(r *beacon.Registration) { r.Service = "SayHello" }, ""},
		{"host name address", func(r *beacon.Registration) { r.Address = "web-1.example.com" }, ""},
		{"ipv6 address", func(r *beacon.Registration) { r.Address = "::1" }, ""},
		{"bad address", func(r *beacon.Registration) { r.Address = "http://x" }, "Address"},
		{"port negative", func(r *beacon.Registration) { r.Port = -1 }, "Port"},
		{"port too big", func(r *beacon.Registration) { r.Port = 65536 }, "Port"},
		{"empty tag", func(r *beacon.Registration) { r.Tags = []string{"a", ""} }, "Tags[1]"},
		{"64 meta pairs", func(r *beacon.Registration) { r.Meta = manyMeta(64) }, ""},
		{"65 meta pairs", func(r *beacon.Registration) { r.Meta = manyMeta(65) }, "Meta"},
		{"meta key 128", func(r *beacon.Registration) { r.Meta = map[string]string{strings.Repeat("k", 128): "v"} }, ""},
		{"meta key 129", func(r *beacon.Registration) { r.Meta = map[string]string{strings.Repeat("k", 129): "v"} }, `Meta["` + strings.Repeat("k", 129) + `"]`},
		{"meta key bad char", func(r *beacon.Registration) { r.Meta = map[string]string{"a.b": "v"} }, `Meta["a.b"]`},
		{"meta key empty", func(r *beacon.Registration) { r.Meta = map[string]string{"": "v"} }, "Meta"},
		{"meta key reserved prefix", func(r *beacon.Registration) { r.Meta = map[string]string{"consul-version": "v"} }, `Meta["consul-version"]`},
		{"meta value 512", func(r *beacon.Registration) { r.Meta = map[string]string{"k": strings.Repeat("v", 512)} }, ""},
		{"meta value 513", func(r *beacon.Registration) { r.Meta = map[string]string{"k": strings.Repeat("v", 513)} }, `Meta["k"]`},
		{"weights", func(r *beacon.Registration) { r.Weights = beacon.Weights{Passing: 10, Warning: 1} }, ""},
		{"weights passing zero", func(r *beacon.Registration) { r.Weights = beacon.Weights{Warning: 1} }, "Weights.Passing"},
		{"weights warning negative", func(r *beacon.Registration) { r.Weights = beacon.Weights{Passing: 1, Warning: -1} }, "Weights.Warning"},
		{"check with no kind", func(r *beacon.Registration) { r.Checks = []beacon.Check{{Interval: time.Second}} }, "Checks[0]"},
		{"check with two kinds", func(r *beacon.Registration) { r.Checks[0].TTL = time.Second }, "Checks[0]"},
		{"http check relative url", func(r *beacon.Registration) { r.Checks[0].HTTP = "/health" }, "Checks[0].HTTP"},
		{"http check no interval", func(r *beacon.Registration) { r.Checks[0].Interval = 0 }, "Checks[0].Interval"},
		{"http check interval below a second", func(r *beacon.Registration) { r.Checks[0].Interval = 500 * time.Millisecond }, "Checks[0].Interval"},
		{"tcp check", func(r *beacon.Registration) { r.Checks = []beacon.Check{{TCP: "127.0.0.1:80", Interval: time.Second}} }, ""},
		{"tcp check no port", func(r *beacon.Registration) { r.Checks = []beacon.Check{{TCP: "127.0.0.1", Interval: time.Second}} }, "Checks[0].TCP"},
		// Found by FuzzValidateRegistration: JSON would send U+FFFD instead.
		{"http check not utf8", func(r *beacon.Registration) { r.Checks = []beacon.Check{{HTTP: "http://\x8c", Interval: time.Second}} }, "Checks[0].HTTP"},
		{"tcp check not utf8", func(r *beacon.Registration) { r.Checks = []beacon.Check{{TCP: "\xff:80", Interval: time.Second}} }, "Checks[0].TCP"},
		{"tcp check control character", func(r *beacon.Registration) { r.Checks = []beacon.Check{{TCP: "a\x00:80", Interval: time.Second}} }, "Checks[0].TCP"},
		{"ttl check", func(r *beacon.Registration) { r.Checks = []beacon.Check{{TTL: 10 * time.Second}} }, ""},
		{"ttl check with interval", func(r *beacon.Registration) {
			r.Checks = []beacon.Check{{TTL: 10 * time.Second, Interval: time.Second}}
		}, "Checks[0].Interval"},
		{"ttl negative", func(r *beacon.Registration) { r.Checks = []beacon.Check{{TTL: -time.Second}} }, "Checks[0].TTL"},
		{"deregister after 30s", func(r *beacon.Registration) { r.Checks[0].DeregisterCriticalAfter = 30 * time.Second }, "Checks[0].DeregisterCriticalAfter"},
		{"deregister after 1m", func(r *beacon.Registration) { r.Checks[0].DeregisterCriticalAfter = time.Minute }, ""},
		{"initial status bogus", func(r *beacon.Registration) { r.Checks[0].InitialStatus = "ok" }, "Checks[0].InitialStatus"},
		{"duplicate check ids", func(r *beacon.Registration) {
			r.Checks = []beacon.Check{{ID: "c", TTL: time.Second}, {ID: "c", TTL: time.Second}}
		}, "Checks[1].ID"},
		// gRPC, H2PING and alias checks.
		{"grpc check", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090", Interval: time.Second}), ""},
		{"grpc check with service", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090/pkg.Greeter", Interval: time.Second, Timeout: time.Second}), ""},
		{"grpc check host name and tls", oneCheck(beacon.Check{GRPC: "api.internal:443", GRPCUseTLS: true, TLSServerName: "api.example", TLSSkipVerify: true, Interval: time.Second}), ""},
		{"grpc check ipv6", oneCheck(beacon.Check{GRPC: "[::1]:9090/svc", Interval: time.Second}), ""},
		{"grpc check no port", oneCheck(beacon.Check{GRPC: "127.0.0.1/svc", Interval: time.Second}), "Checks[0].GRPC"},
		{"grpc check port 0", oneCheck(beacon.Check{GRPC: "127.0.0.1:0", Interval: time.Second}), "Checks[0].GRPC"},
		{"grpc check empty service", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090/", Interval: time.Second}), "Checks[0].GRPC"},
		{"grpc check no interval", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090"}), "Checks[0].Interval"},
		{"grpc check negative timeout", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090", Interval: time.Second, Timeout: -1}), "Checks[0].Timeout"},
		{"grpc check not utf8", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090/\xff", Interval: time.Second}), "Checks[0].GRPC"},
		{"grpc tls without grpc", func(r *beacon.Registration) { r.Checks[0].GRPCUseTLS = true }, "Checks[0].GRPCUseTLS"},
		{"grpc and http", func(r *beacon.Registration) { r.Checks[0].GRPC = "127.0.0.1:9090" }, "Checks[0]"},
		{"skip verify on plain grpc", oneCheck(beacon.Check{GRPC: "127.0.0.1:9090", TLSSkipVerify: true, Interval: time.Second}), "Checks[0].TLSSkipVerify"},
		{"server name on plain http", func(r *beacon.Registration) { r.Checks[0].TLSServerName = "web" }, "Checks[0].TLSServerName"},
		{"server name on https", func(r *beacon.Registration) {
			r.Checks[0].HTTP, r.Checks[0].TLSServerName = "https://127.0.0.1:8443/health", "web.internal"
		}, ""},
		{"server name not a host name", func(r *beacon.Registration) {
			r.Checks[0].HTTP, r.Checks[0].TLSServerName = "https://127.0.0.1:8443/health", "web internal"
		}, "Checks[0].TLSServerName"},
		{"skip verify on ttl", oneCheck(beacon.Check{TTL: time.Second, TLSSkipVerify: true}), "Checks[0].TLSSkipVerify"},
		{"h2ping check", oneCheck(beacon.Check{H2PING: "127.0.0.1:8443", Interval: time.Second}), ""},
		{"h2ping check tls", oneCheck(beacon.Check{H2PING: "localhost:8443", H2PingUseTLS: true, TLSSkipVerify: true, Interval: 2 * time.Second}), ""},
		{"h2ping check url", oneCheck(beacon.Check{H2PING: "https://127.0.0.1:8443", Interval: time.Second}), "Checks[0].H2PING"},
		{"h2ping check no interval", oneCheck(beacon.Check{H2PING: "127.0.0.1:8443"}), "Checks[0].Interval"},
		{"h2ping tls without h2ping", oneCheck(beacon.Check{TTL: time.Second, H2PingUseTLS: true}), "Checks[0].H2PingUseTLS"},
		{"skip verify on cleartext h2ping", oneCheck(beacon.Check{H2PING: "127.0.0.1:8443", TLSSkipVerify: true, Interval: time.Second}), "Checks[0].TLSSkipVerify"},
		{"h2ping and tcp", oneCheck(beacon.Check{H2PING: "127.0.0.1:8443", TCP: "127.0.0.1:8443", Interval: time.Second}), "Checks[0]"},
		{"alias service", oneCheck(beacon.Check{AliasService: "db-1"}), ""},
		{"alias service on node", oneCheck(beacon.Check{AliasService: "db-1", AliasNode: "node-2"}), ""},
		{"alias node", oneCheck(beacon.Check{AliasNode: "node-2", InitialStatus: beacon.HealthPassing}), ""},
		{"alias of itself on another node", oneCheck(beacon.Check{AliasService: "web-1", AliasNode: "node-2"}), ""},
		{"alias of itself", oneCheck(beacon.Check{AliasService: "web-1"}), "Checks[0].AliasService"},
		{"alias with interval", oneCheck(beacon.Check{AliasService: "db-1", Interval: time.Second}), "Checks[0].Interval"},
		{"alias with timeout", oneCheck(beacon.Check{AliasService: "db-1", Timeout: time.Second}), "Checks[0].Interval"},
		{"alias with ttl", oneCheck(beacon.Check{AliasService: "db-1", TTL: time.Second}), "Checks[0]"},
		{"alias with http", func(r *beacon.Registration) { r.Checks[0].AliasService = "db-1" }, "Checks[0]"},
		{"alias service dot dot", oneCheck(beacon.Check{AliasService: ".."}), "Checks[0].AliasService"},
		{"alias node control character", oneCheck(beacon.Check{AliasNode: "n\x00"}), "Checks[0].AliasNode"},
		{"alias node too long", oneCheck(beacon.Check{AliasNode: strings.Repeat("n", beacon.MaxIDLen+1)}), "Checks[0].AliasNode"},
		{"alias with skip verify", oneCheck(beacon.Check{AliasService: "db-1", TLSSkipVerify: true}), "Checks[0].TLSSkipVerify"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRegistration()
			tt.mutate(&r)
			err := r.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *beacon.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %v, want *ValidationError for %s", err, tt.field)
			}
			if ve.Field != tt.field {
				t.Errorf("Validate().Field = %q, want %q (%v)", ve.Field, tt.field, err)
			}
			if !errors.Is(err, beacon.ErrInvalid) {
				t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
			}
		})
	}
}

func TestQueryValidate(t *testing.T) {
	tests := []struct {
		name  string
		q     beacon.Query
		field string
	}{
		{"valid", beacon.Query{Service: "web", Tags: []string{"a"}, WaitIndex: 5, WaitTime: time.Minute}, ""},
		{"no service", beacon.Query{}, "Service"},
		{"service DNS cannot serve", beacon.Query{Service: "legacy_svc"}, ""},
		{"service with a space", beacon.Query{Service: "a b"}, ""},
		{"service with control character", beacon.Query{Service: "a\tb"}, "Service"},
		{"empty tag", beacon.Query{Service: "web", Tags: []string{""}}, "Tags[0]"},
		{"wait too long", beacon.Query{Service: "web", WaitTime: 11 * time.Minute}, "WaitTime"},
		{"wait negative", beacon.Query{Service: "web", WaitTime: -1}, "WaitTime"},
		{"bad consistency", beacon.Query{Service: "web", Consistency: 7}, "Consistency"},
		{"bad datacenter", beacon.Query{Service: "web", Datacenter: "dc/1"}, "Datacenter"},
		{"datacenter with underscore", beacon.Query{Service: "web", Datacenter: "eu_west"}, ""},
		{"cached", beacon.Query{Service: "web", Cached: true}, ""},
		{"cached and consistent", beacon.Query{Service: "web", Cached: true, Consistency: beacon.ConsistencyConsistent}, "Cached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			var ve *beacon.ValidationError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.field != "" && !errors.As(err, &ve):
				t.Fatalf("Validate() = %v, want *ValidationError for %s", err, tt.field)
			case tt.field != "" && ve.Field != tt.field:
				t.Errorf("Validate().Field = %q, want %q", ve.Field, tt.field)
			}
		})
	}
}

func TestValidateTTLUpdate(t *testing.T) {
	if err := beacon.ValidateTTLUpdate("service:x", beacon.HealthWarning, "ok"); err != nil {
		t.Errorf("ValidateTTLUpdate(valid) = %v", err)
	}
	for _, tc := range []struct {
		id     string
		status beacon.Health
		output string
	}{
		{"", beacon.HealthPassing, ""},
		{"c", "ok", ""},
		{"c", beacon.HealthPassing, strings.Repeat("x", beacon.MaxCheckOutput+1)},
	} {
		if err := beacon.ValidateTTLUpdate(tc.id, tc.status, tc.output); !errors.Is(err, beacon.ErrInvalid) {
			t.Errorf("ValidateTTLUpdate(%q, %q, %d bytes) = %v, want ErrInvalid", tc.id, tc.status, len(tc.output), err)
		}
	}
}

func TestCheckIDs(t *testing.T) {
	one := beacon.Registration{ID: "x", Checks: []beacon.Check{{TTL: time.Second}}}
	if got := one.CheckIDs(); len(got) != 1 || got[0] != "service:x" {
		t.Errorf("CheckIDs() = %q, want [service:x]", got)
	}
	two := beacon.Registration{ID: "x", Checks: []beacon.Check{{TTL: time.Second}, {ID: "mine", TTL: time.Second}, {TTL: time.Second}}}
	want := []string{"service:x:1", "mine", "service:x:3"}
	got := two.CheckIDs()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("CheckIDs()[%d] = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestHealthWorse(t *testing.T) {
	tests := []struct{ a, b, want beacon.Health }{
		{beacon.HealthPassing, beacon.HealthPassing, beacon.HealthPassing},
		{beacon.HealthPassing, beacon.HealthWarning, beacon.HealthWarning},
		{beacon.HealthCritical, beacon.HealthWarning, beacon.HealthCritical},
		{beacon.HealthPassing, "maintenance", "maintenance"},
	}
	for _, tt := range tests {
		if got := tt.a.Worse(tt.b); got != tt.want {
			t.Errorf("%q.Worse(%q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

func FuzzValidateRegistration(f *testing.F) {
	f.Add("web-1", "web", "127.0.0.1", 80, "v1", "k", "v", "http://x/h", int64(time.Second))
	f.Add("", "", "", -1, "", "", "", "", int64(0))
	f.Add("db 1/é", "db", "db.internal.", 5432, "primary", "consul-x", "v", "https://[::1]:1/h", int64(time.Minute))
	f.Add("..", "a-b", "256.1.1.1", 65536, "\x00", "k_1", strings.Repeat("v", 513), "ftp://x", int64(999*time.Millisecond))
	f.Fuzz(func(t *testing.T, id, svc, addr string, port int, tag, mk, mv, httpURL string, interval int64) {
		r := beacon.Registration{
			ID: id, Service: svc, Address: addr, Port: port, Tags: []string{tag},
			Meta:   map[string]string{mk: mv},
			Checks: []beacon.Check{{HTTP: httpURL, Interval: time.Duration(interval)}},
		}
		err := r.Validate()
		if err != nil {
			var ve *beacon.ValidationError
			if !errors.Is(err, beacon.ErrInvalid) || !errors.As(err, &ve) || ve.Field == "" {
				t.Fatalf("Validate() = %v, want a *ValidationError naming a field", err)
			}
			return
		}
		// What passes must pass each part's own validator, and survive
		// the JSON trip to Consul unchanged.
		if beacon.ValidateID("ID", id) != nil || beacon.ValidateServiceName(svc) != nil || beacon.ValidateMeta(r.Meta) != nil ||
			port < 0 || port > 65535 || tag == "" || time.Duration(interval) < beacon.MinCheckInterval {
			t.Fatalf("Validate(%+v) = nil, but a part of it is invalid", r)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) = %v", r, err)
		}
		var back beacon.Registration
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("Registration %+v came back from JSON as %+v (%v)", r, back, err)
		}
	})
}

// FuzzValidateQuery covers the other validators: Query, ChecksQuery, TTL
// updates, IDs, service and datacenter names. Errors are ValidationErrors;
// what passes is what Consul and a URL path take as is.
func FuzzValidateQuery(f *testing.F) {
	f.Add("web", "v1", "dc1", `Service.Meta.version == "1"`, 0, int64(time.Minute), false, "service:web-1", "passing", "ok")
	f.Add("", "", "", "", -1, int64(-1), true, "", "", "")
	f.Add("a.b", "\xff", "dc 1", "\x00", 3, int64(11*time.Minute), true, ".", "maintenance", strings.Repeat("x", 4097))
	f.Add(strings.Repeat("a", 64), "t", "eu_west-1", "", 2, int64(0), true, "a/b?c#d", "critical", "")
	f.Fuzz(func(t *testing.T, svc, tag, dc, filter string, consistency int, wait int64, cached bool, checkID, status, output string) {
		typed := func(what string, err error) {
			t.Helper()
			var ve *beacon.ValidationError
			if err != nil && (!errors.Is(err, beacon.ErrInvalid) || !errors.As(err, &ve) || ve.Field == "") {
				t.Fatalf("%s = %v, want a *ValidationError naming a field", what, err)
			}
		}
		q := beacon.Query{Service: svc, Tags: []string{tag}, Datacenter: dc, Filter: filter,
			Consistency: beacon.Consistency(consistency), WaitTime: time.Duration(wait), Cached: cached}
		qErr := q.Validate()
		typed("Query.Validate", qErr)
		cq := beacon.ChecksQuery{Datacenter: dc, Consistency: q.Consistency, WaitTime: q.WaitTime}
		cqErr := cq.Validate()
		typed("ChecksQuery.Validate", cqErr)
		if qErr == nil {
			if cqErr != nil {
				t.Fatalf("%+v.Validate() = nil but %+v.Validate() = %v", q, cq, cqErr)
			}
			if p, err := url.PathUnescape(url.PathEscape(svc)); err != nil || p != svc || tag == "" || q.WaitTime > beacon.MaxWaitTime || q.WaitTime < 0 {
				t.Fatalf("%+v.Validate() = nil, want a service name that survives a URL path, a tag, a wait within 0–10 min", q)
			}
		}
		nameErr := beacon.ValidateServiceName(svc)
		typed("ValidateServiceName", nameErr)
		if nameErr == nil && (svc == "" || len(svc) > beacon.MaxServiceNameLen || !utf8.ValidString(svc) || strings.ContainsFunc(svc, unicode.IsControl) || svc == "." || svc == ".." || strings.Contains(svc, "/")) {
			t.Fatalf("ValidateServiceName(%q) = nil, want a non-empty name of valid UTF-8 without control characters", svc)
		}
		dnsErr := beacon.ValidateDNSName(svc)
		typed("ValidateDNSName", dnsErr)
		if dnsErr == nil && (nameErr != nil || len(svc) > beacon.MaxDNSLabelLen || strings.Trim(svc, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "") {
			t.Fatalf("ValidateDNSName(%q) = nil, want a DNS label", svc)
		}
		if dcErr := beacon.ValidateDatacenter(dc); dcErr != nil {
			typed("ValidateDatacenter", dcErr)
		} else if url.QueryEscape(dc) != dc {
			t.Fatalf("ValidateDatacenter(%q) = nil, want a name a query string takes as is", dc)
		}
		ttlErr := beacon.ValidateTTLUpdate(checkID, beacon.Health(status), output)
		typed("ValidateTTLUpdate", ttlErr)
		if ttlErr == nil && (!beacon.Health(status).Valid() || len(output) > beacon.MaxCheckOutput || beacon.ValidateID("CheckID", checkID) != nil) {
			t.Fatalf("ValidateTTLUpdate(%q, %q, %d bytes) = nil", checkID, status, len(output))
		}
		if idErr := beacon.ValidateID("ID", checkID); idErr != nil {
			typed("ValidateID", idErr)
		} else if p, err := url.PathUnescape(url.PathEscape(checkID)); err != nil || p != checkID || checkID == "." || checkID == ".." || !utf8.ValidString(checkID) {
			t.Fatalf("ValidateID(%q) = nil, but it does not survive an agent URL path", checkID)
		}
	})
}

func TestValidateDNSName(t *testing.T) {
	tests := []struct {
		name, want string // want: a part of the error, "" for nil
	}{
		{"web", ""},
		{"web-2", ""},
		{strings.Repeat("a", 63), ""},
		{strings.Repeat("a", 64), "64 characters, more than 63"},
		{"legacy_svc", `character '_' is not a letter, digit or hyphen`},
		{"api.v2", `character '.' is not a letter, digit or hyphen`},
		{"café", `character 'é' (U+00E9) is not`},
		{"你好", `character '你' (U+4F60) is not`},
		{"-web", "starts or ends with a hyphen"},
		{"", "empty"},
	}
	for _, tt := range tests {
		err := beacon.ValidateDNSName(tt.name)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateDNSName(%q) = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidateDNSName(%q) = %v, want an error containing %q", tt.name, err, tt.want)
		}
		// Every name DNS can serve is a name Consul accepts.
		if err == nil && beacon.ValidateServiceName(tt.name) != nil {
			t.Errorf("ValidateServiceName(%q) = %v, want nil for a DNS label", tt.name, beacon.ValidateServiceName(tt.name))
		}
	}
}

// Errors name the character, not one of its bytes.
func TestValidationNamesRunes(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{beacon.ValidateMeta(map[string]string{"clé": "v"}), `key character 'é' (U+00E9)`},
		{beacon.ValidateDatacenter("dc-ü"), `character 'ü' (U+00FC)`},
		{beacon.ValidateServiceName("a\x01b"), `control character U+0001`},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("error = %v, want it to contain %q", tt.err, tt.want)
		}
		if strings.Count(fmt.Sprint(tt.err), "beacon:") > 1 {
			t.Errorf("error = %v, want one beacon: prefix", tt.err)
		}
	}
}

// FuzzValidateCheck covers the check kinds: kinds' bits choose which of
// HTTP, TCP, TTL, GRPC, H2PING, AliasService and AliasNode are set. An
// error is a ValidationError on the check; a check that passes has exactly
// one kind, the timing that kind needs, TLS options only where TLS is
// spoken, addresses the agent can dial, and survives JSON.
func FuzzValidateCheck(f *testing.F) {
	f.Add(uint8(1<<3), "127.0.0.1:9090/pkg.Svc", "db-1", "node-2", true, true, "api.internal", int64(time.Second), int64(0), int64(0))
	f.Add(uint8(1<<4), "localhost:8443", "", "", false, false, "", int64(10*time.Second), int64(time.Second), int64(0))
	f.Add(uint8(1<<5), "", "db-1", "", false, false, "", int64(0), int64(0), int64(0))
	f.Add(uint8(1<<5|1<<6), "", "web-1", "node-2", false, false, "", int64(0), int64(0), int64(0))
	f.Add(uint8(1<<3|1<<4), "[::1]:1/", "..", "\x00", true, true, "a b", int64(-1), int64(-1), int64(time.Second))
	f.Add(uint8(1<<0), "https://127.0.0.1:1/h", "", "", false, true, "x.example", int64(time.Second), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, kinds uint8, addr, aliasService, aliasNode string, useTLS, skipVerify bool, serverName string, interval, timeout, ttl int64) {
		c := beacon.Check{TLSSkipVerify: skipVerify, TLSServerName: serverName, Interval: time.Duration(interval), Timeout: time.Duration(timeout)}
		set := func(bit uint, f func()) {
			if kinds&(1<<bit) != 0 {
				f()
			}
		}
		set(0, func() { c.HTTP = addr })
		set(1, func() { c.TCP = addr })
		set(2, func() { c.TTL = time.Duration(ttl) })
		set(3, func() { c.GRPC, c.GRPCUseTLS = addr, useTLS })
		set(4, func() { c.H2PING, c.H2PingUseTLS = addr, useTLS })
		set(5, func() { c.AliasService = aliasService })
		set(6, func() { c.AliasNode = aliasNode })
		r := beacon.Registration{ID: "web-1", Service: "web", Checks: []beacon.Check{c}}
		err := r.Validate()
		if err != nil {
			var ve *beacon.ValidationError
			if !errors.Is(err, beacon.ErrInvalid) || !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "Checks[0]") {
				t.Fatalf("Validate(%+v) = %v, want a *ValidationError on Checks[0]", c, err)
			}
			return
		}
		n := 0
		for _, set := range []bool{c.HTTP != "", c.TCP != "", c.TTL != 0, c.GRPC != "", c.H2PING != "", c.AliasService != "" || c.AliasNode != ""} {
			if set {
				n++
			}
		}
		alias := c.AliasService != "" || c.AliasNode != ""
		// URL schemes are case-insensitive: HTTPS:// speaks TLS too.
		tls := strings.HasPrefix(strings.ToLower(c.HTTP), "https:") || c.GRPCUseTLS || c.H2PingUseTLS
		switch {
		case n != 1:
			t.Fatalf("Validate(%+v) = nil with %d kinds, want exactly one", c, n)
		case c.TTL < 0:
			t.Fatalf("Validate(%+v) = nil with a negative TTL", c)
		case (c.TTL != 0 || alias) && (c.Interval != 0 || c.Timeout != 0):
			t.Fatalf("Validate(%+v) = nil: a TTL or alias check with an interval or timeout", c)
		case c.TTL == 0 && !alias && (c.Interval < beacon.MinCheckInterval || c.Timeout < 0):
			t.Fatalf("Validate(%+v) = nil: interval %v, timeout %v", c, c.Interval, c.Timeout)
		case !tls && (c.TLSSkipVerify || c.TLSServerName != ""):
			t.Fatalf("Validate(%+v) = nil: TLS options on a check without TLS", c)
		case c.AliasService == r.ID && c.AliasNode == "":
			t.Fatalf("Validate(%+v) = nil: an alias of itself", c)
		}
		for _, hp := range []string{c.TCP, c.H2PING, strings.SplitN(c.GRPC, "/", 2)[0]} {
			if hp == "" {
				continue
			}
			host, port, err := net.SplitHostPort(hp)
			if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
				t.Fatalf("Validate(%+v) = nil, but %q is not a host:port the agent can dial", c, hp)
			}
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("json.Marshal(%+v) = %v", r, err)
		}
		var back beacon.Registration
		if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("Registration %+v came back from JSON as %+v (%v)", r, back, err)
		}
	})
}
