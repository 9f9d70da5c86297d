package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/beaconsd/beacon"
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

// maxRemembered bounds the last-good answers kept, whatever callers ask for.
const maxRemembered = 1024

type handler struct {
	id  string
	reg func() beacon.Registry // the client of the agent in use
	log *slog.Logger

	// lastGood answers /discovery while Consul is unreachable.
	mu       sync.Mutex
	lastGood map[string][]instanceJSON
}

func newHandler(id string, reg func() beacon.Registry, log *slog.Logger) http.Handler {
	h := &handler{id: id, reg: reg, log: log, lastGood: map[string][]instanceJSON{}}
	mux := http.NewServeMux()
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

func (h *handler) discovery(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("serviceName")
	if err := beacon.ValidateServiceName(name); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "serviceName: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	insts, _, err := h.reg().Instances(ctx, beacon.Query{Service: name})
	if err != nil {
		h.mu.Lock()
		cached, ok := h.lastGood[name]
		h.mu.Unlock()
		if ok && !errors.Is(err, beacon.ErrPermissionDenied) {
			h.log.Warn("discovery served from last good answer", "service", name, "err", err)
			w.Header().Set("X-Beacon-Stale", "true")
			writeJSON(w, http.StatusOK, cached)
			return
		}
		h.log.Error("discovery failed", "service", name, "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	out := make([]instanceJSON, 0, len(insts))
	for _, in := range insts {
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
	h.mu.Lock()
	if _, ok := h.lastGood[name]; ok || len(h.lastGood) < maxRemembered {
		h.lastGood[name] = out
	}
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
