package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
)

// instanceJSON is what /discovery returns per instance: the tutorial's
// InstanceInfo keys, in Consul's casing.
type instanceJSON struct {
	ID      string
	Service string
	Address string
	Port    int
	Tags    []string
	Meta    map[string]string
	Weights struct{ Passing, Warning int }
}

type handler struct {
	id    string
	cache *discovery.Cache
	log   *slog.Logger
}

func newHandler(id string, cache *discovery.Cache, metrics http.Handler, log *slog.Logger) http.Handler {
	h := &handler{id: id, cache: cache, log: log}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /health", h.health)
	mux.HandleFunc("GET /sayHello", h.sayHello)
	mux.HandleFunc("GET /discovery", h.discovery)
	return checkQuery(mux)
}

// Bounds on what a request may carry. No handler needs more than a service
// name (63 bytes); anything far longer is a mistake or an attack, refused
// before it is parsed or logged.
const (
	maxQueryBytes = 1 << 10
	maxURLBytes   = 4 << 10
)

// errQuery is matched by every refused query string.
var errQuery = errors.New("malformed query")

// parseQuery parses a raw query string strictly: over maxQueryBytes, a
// pair url.ParseQuery cannot read (bad escape, ';'), or a parameter given
// twice is an error matching errQuery. r.URL.Query() would drop bad pairs
// silently and keep both values of a repeated one.
func parseQuery(raw string) (url.Values, error) {
	if len(raw) > maxQueryBytes {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errQuery, len(raw), maxQueryBytes)
	}
	v, err := url.ParseQuery(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errQuery, err)
	}
	for k, vs := range v {
		if len(vs) > 1 {
			return nil, fmt.Errorf("%w: parameter %.64q given %d times", errQuery, k, len(vs))
		}
	}
	return v, nil
}

// checkQuery answers 400 with a JSON error for an oversized URL or a
// malformed query string, whatever the path, so no handler sees them.
func checkQuery(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(r.URL.EscapedPath()) + len(r.URL.RawQuery); n > maxURLBytes {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("URL of %d bytes, more than %d", n, maxURLBytes)})
			return
		}
		if _, err := parseQuery(r.URL.RawQuery); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// serviceNameParam reads /discovery's query: exactly one parameter,
// serviceName, a valid service name. Errors match errQuery or
// beacon.ErrInvalid.
func serviceNameParam(raw string) (string, error) {
	v, err := parseQuery(raw)
	if err != nil {
		return "", err
	}
	for k := range v {
		if k != "serviceName" {
			return "", fmt.Errorf("%w: unknown parameter %.64q (only serviceName is understood)", errQuery, k)
		}
	}
	name := v.Get("serviceName")
	if err := beacon.ValidateServiceName(name); err != nil {
		return "", fmt.Errorf("serviceName: %w", err)
	}
	return name, nil
}

func (h *handler) health(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "Server is OK!")
}

func (h *handler) sayHello(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "Hello from %s!\n", h.id)
}

// discovery answers from the watching cache: the first request for a
// service waits for Consul's first answer; later ones touch no network.
// While Consul is unreachable the last good answer is served, marked stale.
func (h *handler) discovery(w http.ResponseWriter, r *http.Request) {
	name, err := serviceNameParam(r.URL.RawQuery)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	snap, err := h.cache.Snapshot(ctx, name)
	if err != nil {
		h.log.Error("discovery failed", "service", name, "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	if snap.Err != nil {
		w.Header().Set("X-Beacon-Stale", "true")
		w.Header().Set("X-Beacon-Age", snap.Age().Round(time.Millisecond).String())
	}
	out := make([]instanceJSON, 0, len(snap.Instances))
	for _, in := range snap.Instances {
		j := instanceJSON{ID: in.ID, Service: in.Service, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta}
		j.Weights.Passing, j.Weights.Warning = in.Weights.Passing, in.Weights.Warning
		if j.Tags == nil {
			j.Tags = []string{}
		}
		if j.Meta == nil {
			j.Meta = map[string]string{}
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
