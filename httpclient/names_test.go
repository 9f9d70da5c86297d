package httpclient_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestNamesDNSCannotServe: a service Consul registers under a name that is
// not a DNS label (legacy_svc, api.v2; Consul only warns that DNS will not
// find it) is reached by name through a real agent, as any other (issue
// 11, B1). net/http takes such a host as it is; the request never goes to
// DNS, and reaches the registered server.
func TestNamesDNSCannotServe(t *testing.T) {
	e := newEnv(t)
	c := &http.Client{Transport: e.transport(t), Timeout: deadline}
	for _, name := range []string{"legacy_svc", "api.v2"} {
		t.Run(name, func(t *testing.T) {
			raw := "http://" + name + "/x"
			u, err := url.Parse(raw)
			if err != nil || u.Hostname() != name {
				t.Fatalf("url.Parse(%q) = %v, %v; want the host %q as it is", raw, u, err, name)
			}
			b := newBackend(t, name+"-1")
			e.register(t, name, b)
			e.waitInstances(t, name, 1)
			got, err := get(t.Context(), c, raw)
			if err != nil || got != b.name {
				t.Fatalf("GET %s = %q, %v; want an answer from %s", raw, got, err, b.name)
			}
			if n := b.hits.Load(); n != 1 {
				t.Errorf("%s served %d requests, want 1", b.name, n)
			}
		})
	}
}
