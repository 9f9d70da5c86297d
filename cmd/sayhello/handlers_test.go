package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/beaconsd/beacon"
)

// TestHandlersRefuseBadQueries: every refusal is a 400 with a JSON error,
// decided before the cache (nil here) is touched.
func TestHandlersRefuseBadQueries(t *testing.T) {
	h := newHandler("SayHello-1", nil, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	for _, target := range []string{
		"/discovery",
		"/discovery?serviceName=",
		"/discovery?serviceName=a%01b",
		"/discovery?serviceName=%C2%85",
		"/discovery?serviceName=%FF",
		"/discovery?serviceName=web&serviceName=db",
		"/discovery?serviceName=web&servicename=db",
		"/discovery?serviceName=web&x",
		"/discovery?serviceName=web&dc=",
		"/discovery?serviceName=web&dc=dc%2F2",
		"/discovery?serviceName=web&dc=dc.2",
		"/discovery?serviceName=web&dc=dc2&dc=dc3",
		"/discovery?serviceName=web&dc=dc2&x=1",
		"/discovery?dc=dc2",
		"/discovery?serviceName=%zz",
		"/discovery?serviceName=web;x=1",
		"/discovery?serviceName=" + strings.Repeat("a", 2000),
		"/discovery?" + strings.Repeat("a=1&", 300),
		"/sayHello?x=%",
		"/sayHello?x=1&x=2",
		"/sayHello?" + strings.Repeat("x", 2000),
		"/health?" + strings.Repeat("a=1;", 10),
		"/health/" + strings.Repeat("x", 5000),
		"/metrics?a=%",
	} {
		name := target
		if len(name) > 80 {
			name = name[:80] + "..."
		}
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
			var e struct{ Error string }
			if rec.Code != http.StatusBadRequest || rec.Header().Get("Content-Type") != "application/json" ||
				json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Errorf("GET %s = %d %q, want 400 with a JSON error", name, rec.Code, rec.Body)
			}
			if len(e.Error) > 300 {
				t.Errorf("GET %s: error of %d bytes, want the input not echoed whole: %.100q", name, len(e.Error), e.Error)
			}
		})
	}
	// What is well formed still reaches the handlers.
	for target, want := range map[string]string{
		"/health":            "Server is OK!\n",
		"/health?probe=1":    "Server is OK!\n",
		"/sayHello":          "Hello from SayHello-1!\n",
		"/sayHello?name=bob": "Hello from SayHello-1!\n",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("GET %s = %d %q, want 200 %q", target, rec.Code, rec.Body, want)
		}
	}
}

// TestDiscoveryErrorNamesCharacter: a refused service name is reported by
// the character at fault, never by a byte of its UTF-8 encoding: 你 is
// E4 BD A0 (read as bytes, 'ä'), U+0085 is C2 85 ('Â').
func TestDiscoveryErrorNamesCharacter(t *testing.T) {
	h := newHandler("SayHello-1", nil, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/discovery?serviceName="+url.QueryEscape("你好\u0085"), nil))
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusBadRequest {
		t.Fatalf("GET /discovery?serviceName=你好<U+0085> = %d %q, want 400 with a JSON error", rec.Code, rec.Body)
	}
	if !(strings.Contains(e.Error, "U+0085") || strings.Contains(e.Error, `'\u0085'`)) || strings.ContainsAny(e.Error, "äÂ") ||
		strings.Contains(e.Error, "beacon: beacon: ") {
		t.Errorf("GET /discovery?serviceName=你好<U+0085>: error %q, want U+0085 named, no 'ä' or 'Â', no doubled prefix", e.Error)
	}
}

// FuzzServiceNameParam: /discovery's query either yields a valid service
// name it holds once, and a valid datacenter it holds once or none, or a
// typed error.
func FuzzServiceNameParam(f *testing.F) {
	for _, seed := range []string{
		"serviceName=SayHello", "", "serviceName=", "serviceName=a%2Fb", "serviceName=web&serviceName=db",
		"serviceName=%zz", "serviceName=web;x", "serviceName=web&x=1", "serviceName=" + strings.Repeat("a", 64),
		"serviceName=web&", "&&serviceName=web", "serviceName=w%65b", "serviceName=web+",
		"serviceName=web&dc=dc2", "dc=dc2", "serviceName=web&dc=", "serviceName=web&dc=dc.2", "serviceName=web&dc=dc2&dc=dc3",
		"dc=a_b-C9&serviceName=web", "serviceName=web&dc=%E4%BD%A0", "serviceName=web&dc=" + strings.Repeat("d", 64),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		name, dc, err := discoveryParams(raw)
		if err != nil {
			if !errors.Is(err, errQuery) && !errors.Is(err, beacon.ErrInvalid) {
				t.Fatalf("discoveryParams(%q) = %v, want an error matching errQuery or beacon.ErrInvalid", raw, err)
			}
			if name != "" || dc != "" {
				t.Fatalf("discoveryParams(%q) = %q, %q with error %v, want neither", raw, name, dc, err)
			}
			return
		}
		if err := beacon.ValidateServiceName(name); err != nil || len(raw) > maxQueryBytes {
			t.Fatalf("discoveryParams(%q) = %q, accepted; ValidateServiceName: %v", raw, name, err)
		}
		v, perr := url.ParseQuery(raw)
		if perr != nil || len(v["serviceName"]) != 1 || v["serviceName"][0] != name {
			t.Fatalf("discoveryParams(%q) = %q; url.ParseQuery: %v, %v", raw, name, v, perr)
		}
		switch {
		case len(v) == 1 && dc == "":
		case len(v) == 2 && len(v["dc"]) == 1 && v["dc"][0] == dc && dc != "":
			if err := beacon.ValidateDatacenter(dc); err != nil {
				t.Fatalf("discoveryParams(%q) = dc %q, accepted; ValidateDatacenter: %v", raw, dc, err)
			}
		default:
			t.Fatalf("discoveryParams(%q) = %q, %q; url.ParseQuery: %v", raw, name, dc, v)
		}
	})
}
