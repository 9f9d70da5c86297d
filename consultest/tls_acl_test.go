package consultest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consul"
)

// tlsClient trusts the server's CA and presents the client certificate only
// when withCert is set.
func tlsClient(t *testing.T, s *Server, withCert bool) *http.Client {
	t.Helper()
	caFile, certFile, keyFile := s.TLSFiles()
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("no certificate in %s", caFile)
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tc},
	}
}

// request sends method url with an optional JSON body and token and returns
// the status code and body. Transport errors are returned, not fatal.
func request(c *http.Client, method, url, token string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestTLS(t *testing.T) {
	t.Parallel()
	s := NewServer(t, WithTLS())

	if !strings.HasPrefix(s.URL(), "https://") {
		t.Errorf("URL() = %q, want https://", s.URL())
	}
	caFile, certFile, keyFile := s.TLSFiles()
	for _, f := range []string{caFile, certFile, keyFile} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("TLSFiles: %q: %v", f, err)
		}
	}
	cfg := s.Config()
	want := consul.Config{
		Addresses: []string{"https://" + s.HTTPAddr},
		TLS:       consul.TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile},
	}
	if len(cfg.Addresses) != 1 || cfg.Addresses[0] != want.Addresses[0] || cfg.TLS != want.TLS || cfg.Token != "" {
		t.Errorf("Config() = %+v, want %+v", cfg, want)
	}

	// The client the consul package builds from Config works as is.
	hc, ep, err := cfg.NewHTTPClient()
	if err != nil {
		t.Fatalf("Config().NewHTTPClient: %v", err)
	}
	defer hc.CloseIdleConnections()
	code, body, err := request(hc, http.MethodGet, ep.URL().String()+"/v1/status/leader", "", nil)
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), s.IP) {
		t.Errorf("GET /v1/status/leader with the client certificate: %d %s %v", code, body, err)
	}

	// Without a client certificate the agent refuses the handshake.
	code, body, err = request(tlsClient(t, s, false), http.MethodGet, s.URL()+"/v1/status/leader", "", nil)
	if err == nil {
		t.Errorf("GET /v1/status/leader without a client certificate: %d %s, want a TLS error", code, body)
	} else {
		t.Logf("without a client certificate: %v", err)
	}

	// Plain HTTP to the port gets no API answer.
	code, body, err = request(client, http.MethodGet, "http://"+s.HTTPAddr+"/v1/status/leader", "", nil)
	if err == nil && code == http.StatusOK {
		t.Errorf("plain GET /v1/status/leader: %d %s, want a failure", code, body)
	} else {
		t.Logf("plain HTTP: %d %q %v", code, bytes.TrimSpace(body), err)
	}

	// Restart keeps the address and the certificates.
	if ca, cert, key := s.TLSFiles(); ca != caFile || cert != certFile || key != keyFile {
		t.Errorf("TLSFiles changed")
	}
	before := readFiles(t, caFile, certFile, keyFile)
	s.Restart(t)
	if s.Config().Addresses[0] != cfg.Addresses[0] {
		t.Errorf("after Restart: Config().Addresses = %q, want %q", s.Config().Addresses, cfg.Addresses)
	}
	if after := readFiles(t, caFile, certFile, keyFile); after != before {
		t.Errorf("Restart changed the TLS files")
	}
	code, body, err = request(tlsClient(t, s, true), http.MethodGet, s.URL()+"/v1/status/leader", "", nil)
	if err != nil || code != http.StatusOK {
		t.Errorf("after Restart: GET /v1/status/leader: %d %s %v", code, body, err)
	}
}

func readFiles(t *testing.T, files ...string) string {
	t.Helper()
	var all []byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return string(all)
}

const writeServicesRules = `service_prefix "" { policy = "write" } node_prefix "" { policy = "read" }`

func TestACL(t *testing.T) {
	t.Parallel()
	s := NewServer(t, WithACL())
	mgmt := s.ManagementToken()
	if len(mgmt) != 36 {
		t.Errorf("ManagementToken() = %q, want a UUID", mgmt)
	}
	if cfg := s.Config(); cfg.Token != "" || cfg.TokenFile != "" {
		t.Errorf("Config() carries a token: %+v", cfg)
	}
	reg := map[string]any{"ID": "x-1", "Name": "x", "Port": 8080}
	url := s.URL() + "/v1/agent/service/register"

	code, body, err := request(client, http.MethodPut, url, "", reg)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("register without a token: %d %s %v, want 403", code, body, err)
	}

	// Without a token the service looks like it has no instances.
	code, body, err = request(client, http.MethodGet, s.URL()+"/v1/health/service/x", "", nil)
	if err != nil || code != http.StatusOK || string(bytes.TrimSpace(body)) != "[]" {
		t.Errorf("GET /v1/health/service/x without a token: %d %s %v, want 200 []", code, body, err)
	}

	tok := s.MintToken(t, writeServicesRules)
	if tok == "" || tok == mgmt {
		t.Fatalf("MintToken = %q", tok)
	}
	code, body, err = request(client, http.MethodPut, url, tok, reg)
	if err != nil || code != http.StatusOK {
		t.Fatalf("register with a minted token: %d %s %v, want 200", code, body, err)
	}
	// A read-only token cannot register.
	ro := s.MintToken(t, `service_prefix "" { policy = "read" }`)
	code, body, err = request(client, http.MethodPut, url, ro, reg)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("register with a read-only token: %d %s %v, want 403", code, body, err)
	}

	// Restart: dev agents forget minted tokens, the management token is
	// bootstrapped again and minting works again.
	s.Restart(t)
	if s.ManagementToken() != mgmt {
		t.Errorf("Restart changed the management token")
	}
	code, body, err = request(client, http.MethodPut, url, tok, reg)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("register with a token minted before Restart: %d %s %v, want 403", code, body, err)
	}
	code, body, err = request(client, http.MethodPut, url, mgmt, reg)
	if err != nil || code != http.StatusOK {
		t.Errorf("register with the management token after Restart: %d %s %v", code, body, err)
	}
	code, body, err = request(client, http.MethodPut, url, s.MintToken(t, writeServicesRules), reg)
	if err != nil || code != http.StatusOK {
		t.Errorf("register with a token minted after Restart: %d %s %v", code, body, err)
	}
}

func TestMintTokenBadRules(t *testing.T) {
	t.Parallel()
	s := NewServer(t, WithACL())
	_, err := s.mintToken(`service_prefix "" { policy = `)
	if err == nil || !strings.Contains(err.Error(), "MintToken") || !strings.Contains(err.Error(), "/v1/acl/policy") {
		t.Errorf("mintToken(bad rules) = %v, want the policy error", err)
	}
	// And without WithACL there is nothing to mint with.
	plain := &Server{Name: "plain"}
	if _, err := plain.mintToken(""); err == nil || !strings.Contains(err.Error(), "without WithACL") {
		t.Errorf("mintToken without WithACL = %v", err)
	}
}

func TestTLSAndACL(t *testing.T) {
	t.Parallel()
	s := NewServer(t, WithTLS(), WithACL())
	hc := tlsClient(t, s, true)
	reg := map[string]any{"ID": "x-1", "Name": "x", "Port": 8080}
	url := s.URL() + "/v1/agent/service/register"
	code, body, err := request(hc, http.MethodPut, url, "", reg)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("register without a token: %d %s %v, want 403", code, body, err)
	}
	code, body, err = request(hc, http.MethodPut, url, s.MintToken(t, writeServicesRules), reg)
	if err != nil || code != http.StatusOK {
		t.Errorf("register with a minted token: %d %s %v, want 200", code, body, err)
	}

	// A consul.Config with the token added reaches the agent.
	cfg := s.Config()
	cfg.Token = s.ManagementToken()
	c, ep, err := cfg.NewHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.URL().String()+"/v1/agent/services", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Consul-Token", cfg.Token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var services map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&services); err != nil || services["x-1"] == nil {
		t.Errorf("GET /v1/agent/services: %s: %v %v", resp.Status, services, err)
	}

	s.Restart(t)
	code, body, err = request(hc, http.MethodGet, s.URL()+"/v1/catalog/node/"+s.Name, s.ManagementToken(), nil)
	if err != nil || code != http.StatusOK {
		t.Errorf("after Restart: GET /v1/catalog/node: %d %s %v", code, body, err)
	}
}
