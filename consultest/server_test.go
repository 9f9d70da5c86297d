package consultest

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Each agent is reaped by a goroutine; none may outlive its test.
	goleak.VerifyTestMain(m)
}

// deadline bounds every wait for something that must happen: generous, as
// the package's tests run on a shared, loaded 2-core machine.
const deadline = 30 * time.Second

// client has no keep-alives so that no connection goroutine outlives a test.
var client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// do is request through client, failing the test on any error or a
// status other than 200, and decodes the answer into out (when not nil).
func do(t *testing.T, method, url string, body any, out any) {
	t.Helper()
	code, b, err := request(client, method, url, "", body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d: %s", method, url, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
}

func leader(t *testing.T, s *Server) string {
	t.Helper()
	var l string
	do(t, http.MethodGet, s.URL()+"/v1/status/leader", nil, &l)
	return l
}

func TestParallelServers(t *testing.T) {
	var mu sync.Mutex
	addrs := map[string]string{} // subtest name -> HTTP address
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := NewServer(t)
				l := leader(t, s)
				// Each agent is its own single-server cluster on its own IP.
				if host, _, err := net.SplitHostPort(l); err != nil || host != s.IP {
					t.Errorf("leader = %q, want an address on %s", l, s.IP)
				}
				if got := s.Config().Addresses; len(got) != 1 || got[0] != s.HTTPAddr {
					t.Errorf("Config().Addresses = %q, want [%q]", got, s.HTTPAddr)
				}
				if err := s.Config().Validate(); err != nil {
					t.Errorf("Config().Validate() = %v", err)
				}
				mu.Lock()
				addrs[name] = s.HTTPAddr
				mu.Unlock()
			})
		}
	})
	if len(addrs) == 2 && addrs["a"] == addrs["b"] {
		t.Errorf("both agents on %s", addrs["a"])
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	addr, dns := s.HTTPAddr, s.DNSAddr

	reg := map[string]any{"ID": "web-1", "Name": "web", "Port": 8080}
	do(t, http.MethodPut, s.URL()+"/v1/agent/service/register", reg, nil)
	var services map[string]json.RawMessage
	do(t, http.MethodGet, s.URL()+"/v1/agent/services", nil, &services)
	if _, ok := services["web-1"]; !ok {
		t.Fatalf("web-1 not registered: %v", services)
	}

	s.Restart(t)
	if s.HTTPAddr != addr || s.DNSAddr != dns {
		t.Errorf("after Restart: HTTP %s DNS %s, want %s %s", s.HTTPAddr, s.DNSAddr, addr, dns)
	}
	if l := leader(t, s); l == "" {
		t.Errorf("no leader after Restart")
	}
	services = nil
	do(t, http.MethodGet, s.URL()+"/v1/agent/services", nil, &services)
	if _, ok := services["web-1"]; ok {
		t.Errorf("web-1 survived a dev-mode restart: %v", services)
	}

	s.Stop()
	s.Stop() // idempotent
	if _, err := client.Get(s.URL() + "/v1/status/leader"); err == nil {
		t.Errorf("agent still answers after Stop")
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	s := NewServer(t,
		WithNodeName("custom-node"),
		WithConfigJSON(`{"node_meta": {"team": "beacon"}}`),
		WithArgs("-datacenter", "dc7"),
	)
	if s.Name != "custom-node" {
		t.Errorf("Name = %q", s.Name)
	}
	var node struct {
		Node struct {
			Node       string
			Datacenter string
			Meta       map[string]string
		}
	}
	do(t, http.MethodGet, s.URL()+"/v1/catalog/node/custom-node", nil, &node)
	if node.Node.Meta["team"] != "beacon" {
		t.Errorf("node meta = %v, want team=beacon from WithConfigJSON", node.Node.Meta)
	}
	if node.Node.Datacenter != "dc7" {
		t.Errorf("datacenter = %q, want dc7 from WithArgs", node.Node.Datacenter)
	}
	if fi, err := os.Stat(s.DataDir); err != nil || !fi.IsDir() {
		t.Errorf("DataDir %s: %v", s.DataDir, err)
	}
}

func TestBinaryPathEnv(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "my-consul")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_BIN", fake)
	if got, err := BinaryPath(); err != nil || got != fake {
		t.Errorf("BinaryPath() = %q, %v; want %q", got, err, fake)
	}

	// An explicit CONSUL_BIN that is unusable is an error, not a fallback.
	t.Setenv("CONSUL_BIN", filepath.Join(dir, "missing"))
	if got, err := BinaryPath(); err == nil || !strings.Contains(err.Error(), "CONSUL_BIN") {
		t.Errorf("BinaryPath() with missing CONSUL_BIN = %q, %v; want an error", got, err)
	}
	notExec := filepath.Join(dir, "not-exec")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONSUL_BIN", notExec)
	if _, err := BinaryPath(); err == nil {
		t.Errorf("BinaryPath() with non-executable CONSUL_BIN: no error")
	}
}

func TestRestartPortTaken(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	s.Stop()
	// Take the agent's HTTP port so that every restart attempt exits early.
	l, err := net.Listen("tcp", s.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	err = s.restart(true, waitFull)
	if err == nil {
		t.Fatal("restart with its port taken = nil error, want an early exit")
	}
	msg := err.Error()
	if !strings.Contains(msg, "exited while starting") || !strings.Contains(msg, "address already in use") {
		t.Fatalf("restart with its port taken = %q, want an early exit with the agent's log", msg)
	}
	if n := strings.Count(msg, "=== consultest: start "); n < maxRetries+1 {
		t.Errorf("log shows %d starts, want %d (first try plus retries)", n, maxRetries+1)
	}
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		t.Errorf("an agent is still running after a failed restart")
	}
}

// noBinary makes BinaryPath find nothing for the rest of the test.
func noBinary(t *testing.T) {
	t.Setenv("CONSUL_BIN", "")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir()) // no bin/consul above it
	if p, err := BinaryPath(); err == nil {
		t.Skipf("a consul binary is still found at %s", p)
	}
}

func TestWithoutBinary(t *testing.T) {
	noBinary(t)
	_, err := newServer(nil)
	if !errors.Is(err, ErrNoBinary) {
		t.Fatalf("newServer() without a binary = %v, want ErrNoBinary", err)
	}
	if _, err := newCluster(nil, 1, 0); !errors.Is(err, ErrNoBinary) {
		t.Errorf("newCluster(1, 0) without a binary = %v, want ErrNoBinary", err)
	}
	for _, tc := range []struct {
		env      map[string]string
		skip     bool
		mentions string
	}{
		{map[string]string{}, true, "skipped; CI=true or BEACON_REQUIRE_CONSUL=1 fails instead"},
		{map[string]string{"CI": "false"}, true, "skipped"},
		{map[string]string{"CI": "0"}, true, "skipped"},
		{map[string]string{"CI": "true"}, false, "because CI=true requires one"},
		{map[string]string{"CI": "1"}, false, "because CI=1"},
		{map[string]string{"BEACON_REQUIRE_CONSUL": "1"}, false, "because BEACON_REQUIRE_CONSUL=1"},
	} {
		t.Setenv("CI", "")
		t.Setenv("BEACON_REQUIRE_CONSUL", "")
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		skip, msg := verdict(err)
		if skip != tc.skip || strings.Contains(msg, "\n") || !strings.Contains(msg, tc.mentions) ||
			!strings.Contains(msg, "no consul binary") || !strings.Contains(msg, "CONSUL_BIN") || !strings.Contains(msg, "PATH") {
			t.Errorf("verdict(no binary) with %v = %v, %q; want skip %v, one line naming the binary, CONSUL_BIN, PATH and %q", tc.env, skip, msg, tc.skip, tc.mentions)
		}
	}

	// A CONSUL_BIN that names nothing is a mistake to report, not an absence.
	t.Setenv("CONSUL_BIN", "/nonexistent/consul")
	t.Setenv("CI", "")
	if _, err := newServer(nil); err == nil || errors.Is(err, ErrNoBinary) {
		t.Errorf("newServer() with a broken CONSUL_BIN = %v, want an error other than ErrNoBinary", err)
	} else if skip, _ := verdict(err); skip {
		t.Errorf("verdict(%v) = skip, want a failure", err)
	}
}
