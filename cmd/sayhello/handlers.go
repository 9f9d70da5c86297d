package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/discovery"
)

// instanceJSON is what /discovery returns per instance: the seed's
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
	return mux
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
	name := r.URL.Query().Get("serviceName")
	if err := beacon.ValidateServiceName(name); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "serviceName: " + err.Error()})
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
