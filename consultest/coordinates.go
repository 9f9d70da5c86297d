package consultest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// ExternalInstance is a service instance on a node no agent runs, for
// RegisterExternal. It is registered with one check that passes.
type ExternalInstance struct {
	ID, Service string
	Port        int
}

// RegisterExternal registers node at address, and insts on it, straight
// into the catalog (PUT /v1/catalog/register), as a fleet's nodes look to
// a client without an agent on each: no anti-entropy ever touches them.
// It fails t if Consul refuses.
func (s *Server) RegisterExternal(t testing.TB, node, address string, insts ...ExternalInstance) {
	t.Helper()
	if len(insts) == 0 {
		s.must(t, "/v1/catalog/register", map[string]any{"Node": node, "Address": address})
	}
	for _, in := range insts {
		s.must(t, "/v1/catalog/register", map[string]any{
			"Node": node, "Address": address,
			"Service": map[string]any{"ID": in.ID, "Service": in.Service, "Address": address, "Port": in.Port},
			"Check":   map[string]any{"CheckID": "service:" + in.ID, "Name": "external", "Status": "passing", "ServiceID": in.ID},
		})
	}
}

// SetCoordinate sets node's LAN network coordinate (PUT
// /v1/coordinate/update) to vec, which must have Consul's 8 dimensions,
// with a height of 10 µs (serf's minimum), no adjustment and serf's
// initial error. Vec is in seconds: a node at (0.005, 0, ...) is 5 ms from
// one at the origin. The servers apply updates in batches (every 100 ms
// in a dev agent, 5 s otherwise); a node's own agent overwrites its
// coordinate with what it measures, every 15 s or so, so set those of
// external nodes (RegisterExternal), or the agent's own to where it
// measures itself: alone, a dev agent stays at the origin.
func (s *Server) SetCoordinate(t testing.TB, node string, vec ...float64) {
	t.Helper()
	s.must(t, "/v1/coordinate/update", map[string]any{
		"Node":  node,
		"Coord": map[string]any{"Vec": vec, "Error": 1.5, "Adjustment": 0, "Height": 10e-6},
	})
}

// must sends PUT path with body as JSON and the management token, if any,
// and fails t unless Consul answers 200.
func (s *Server) must(t testing.TB, path string, body any) {
	t.Helper()
	if err := s.put(path, body); err != nil {
		t.Fatalf("consultest: %v", err)
	}
}

func (s *Server) put(path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.URL()+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.mgmtToken != "" {
		req.Header.Set("X-Consul-Token", s.mgmtToken)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
