package status

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/beaconsd/beacon/discovery"
)

// FuzzRequest: whatever the method, query, Accept header or address, the
// handler answers 200, 400 or 405 with the CSP header, and no input shows
// a URL address's user info.
func FuzzRequest(f *testing.F) {
	f.Add("GET", "format=json", "application/json;q=0.5, text/html;q=0", "http://u:pw@127.0.0.1:8500?x=1")
	f.Add("HEAD", "", "*/*", "127.0.0.1:8500")
	f.Add("POST", "format=%zz", "application/json;q=NaN", "u:pw@[::1]:8500")
	fs := &fakeStats{}
	fs.set(discovery.WatchStats{Service: "web", Instances: 1})
	f.Fuzz(func(t *testing.T, method, query, accept, addr string) {
		if !validMethod(method) {
			return // net/http refuses such a request line before any handler
		}
		h := New(WithCache(fs), WithAgents(addr), WithSampling(0, 0))
		req := httptest.NewRequest(http.MethodGet, "/debug/beacon", nil)
		req.Method, req.URL.RawQuery = method, query
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusMethodNotAllowed:
		default:
			t.Fatalf("%s ?%q Accept %q: status %d", method, query, accept, rec.Code)
		}
		if rec.Header().Get("Content-Security-Policy") != csp {
			t.Fatalf("answer without the CSP")
		}
		if u, err := url.Parse(addr); err == nil && strings.Contains(addr, "://") && u.User != nil {
			if ui := u.User.String(); ui != "" && strings.Contains(h.Report().Agents[0].Address, ui+"@") {
				t.Fatalf("address %q is shown with its user info", addr)
			}
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range m {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}
