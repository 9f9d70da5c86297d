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
	"github.com/beaconsd/beacon/internal/lru"
)

// instanceJSON is what /discovery returns per instance: the tutorial's
// InstanceInfo keys, in Consul's casing.
// Datacenter and FailedOver say where the answer came from: Datacenter is
// omitted for the agent's own datacenter, FailedOver when the service's
// failover policy (-failover) did not move it to another one. Panic and
// Health: the service has too few passing instances (-panic-threshold), so
// every one not in maintenance is listed, each with its Health; both are
// omitted otherwise.
type instanceJSON struct {
	ID         string
	Service    string
	Address    string
	Port       int
	Tags       []string
	Meta       map[string]string
	Weights    struct{ Passing, Warning int }
	Datacenter string `json:",omitempty"`
	FailedOver bool   `json:",omitempty"`
	Panic      bool   `json:",omitempty"`
	Health     string `json:",omitempty"`
}

type handler struct {
	id    string
	cache *discovery.Cache
	log   *slog.Logger
	// remote holds the watches of /discovery?dc= reads, as the cache's
	// Snapshot holds those of its own datacenter: later reads touch no
	// network, and the least recently used is closed past maxRemote.
	remote *lru.Map[remoteKey, *discovery.Watcher]
}

// remoteKey is a service in a named datacenter.
type remoteKey struct{ service, dc string }

// maxRemote bounds the /discovery?dc= watches a sayhello keeps open.
const maxRemote = 32

// newHandler returns sayhello's HTTP handler. The watches it opens end
// with cache.
func newHandler(id string, cache *discovery.Cache, metrics http.Handler, log *slog.Logger) http.Handler {
	h := &handler{id: id, cache: cache, log: log,
		remote: lru.New(maxRemote, func(_ remoteKey, w *discovery.Watcher) { w.Close() })}
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

// discoveryParams reads /discovery's query: serviceName, a valid service
// name, and optionally dc, a datacenter name (letters, digits, '-', '_';
// see beacon.ValidateDatacenter), nothing else. Errors match errQuery or
// beacon.ErrInvalid.
func discoveryParams(raw string) (name, dc string, err error) {
	v, err := parseQuery(raw)
	if err != nil {
		return "", "", err
	}
	for k := range v {
		if k != "serviceName" && k != "dc" {
			return "", "", fmt.Errorf("%w: unknown parameter %.64q (only serviceName and dc are understood)", errQuery, k)
		}
	}
	name = v.Get("serviceName")
	if err := beacon.ValidateServiceName(name); err != nil {
		return "", "", fmt.Errorf("serviceName: %w", err)
	}
	if d, ok := v["dc"]; ok {
		if d[0] == "" {
			return "", "", fmt.Errorf("dc: %w", &beacon.ValidationError{Field: "Datacenter", Reason: "empty (leave dc out for the agent's own datacenter)"})
		}
		if err := beacon.ValidateDatacenter(d[0]); err != nil {
			return "", "", fmt.Errorf("dc: %w", err)
		}
		dc = d[0]
	}
	return name, dc, nil
}

func (h *handler) health(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "Server is OK!")
}

func (h *handler) sayHello(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintf(w, "Hello from %s!\n", h.id)
}

// discovery answers from the watching cache: the first request for a
// service (in a datacenter) waits for Consul's first answer; later ones
// touch no network. While Consul is unreachable the last good answer is
// served, marked stale. Without dc the cache's failover policy decides
// which datacenter serves; with dc that datacenter does, read through the
// local agent.
func (h *handler) discovery(w http.ResponseWriter, r *http.Request) {
	name, dc, err := discoveryParams(r.URL.RawQuery)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var snap *discovery.Snapshot
	if dc == "" {
		snap, err = h.cache.Snapshot(ctx, name)
	} else {
		snap, err = h.remoteSnapshot(ctx, name, dc)
	}
	if err != nil {
		h.log.Error("discovery failed", "service", name, "dc", dc, "err", err)
		code := http.StatusBadGateway
		if errors.Is(err, beacon.ErrInvalid) {
			code = http.StatusBadRequest
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	if snap.Err != nil {
		w.Header().Set("X-Beacon-Stale", "true")
		w.Header().Set("X-Beacon-Age", snap.Age().Round(time.Millisecond).String())
	}
	served := snap.Datacenter
	if served == "" {
		// The datacenter asked for (the cache serves the agent's own,
		// named, as the local one), or "" for the agent's own.
		served = dc
	}
	if served != "" {
		w.Header().Set("X-Beacon-Datacenter", served)
	}
	if snap.FailedOver {
		w.Header().Set("X-Beacon-Failed-Over", "true")
	}
	if snap.Panic {
		w.Header().Set("X-Beacon-Panic", "true")
	}
	out := make([]instanceJSON, 0, len(snap.Instances))
	for _, in := range snap.Instances {
		j := instanceJSON{ID: in.ID, Service: in.Service, Address: in.Address, Port: in.Port, Tags: in.Tags, Meta: in.Meta,
			Datacenter: served, FailedOver: snap.FailedOver}
		if snap.Panic {
			j.Panic, j.Health = true, string(in.Health)
		}
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

// remoteSnapshot is the cache's Snapshot for service in datacenter dc.
func (h *handler) remoteSnapshot(ctx context.Context, service, dc string) (*discovery.Snapshot, error) {
	k := remoteKey{service, dc}
	wt, ok := h.remote.Get(k)
	if !ok {
		nw, err := h.cache.Watch(beacon.Query{Service: service, Datacenter: dc})
		if err != nil {
			return nil, err
		}
		if wt, ok = h.remote.Add(k, nw); !ok {
			nw.Close() // another request added it meanwhile
		}
	}
	if s := wt.Snapshot(); s != nil && s.Source != discovery.SourceNone {
		return s, nil
	}
	return wt.Wait(ctx)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
