package consultest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// WithTLS serves the agent's HTTP API over HTTPS only, and requires client
// certificates. consultest creates a throwaway CA, a server certificate for
// the agent's IP, "localhost" and "server.dc1.consul", and a client
// certificate, all in the server's directory (see TLSFiles). HTTPAddr is
// then the HTTPS address, URL starts with "https://", and Config carries the
// CA and client certificate, so a client built from it works as is.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithACL enables ACLs with default policy "deny". The initial management
// token (ManagementToken), also used as the agent's own token, is a random
// UUID chosen by consultest. Config carries no token: tests add one, for
// instance from MintToken. Dev agents keep ACL state in memory, so after
// Restart only the management token is valid again; minted tokens are gone.
func WithACL() Option { return func(o *options) { o.acl = true } }

// TLSFiles returns the PEM files of WithTLS: the CA certificate, and the
// client certificate and key the agent accepts. They are empty without
// WithTLS.
func (s *Server) TLSFiles() (caFile, certFile, keyFile string) {
	if s.pki == nil {
		return "", "", ""
	}
	return s.pki.caFile, s.pki.clientCert, s.pki.clientKey
}

// ManagementToken returns the initial management token of WithACL, or ""
// without it.
func (s *Server) ManagementToken() string { return s.mgmtToken }

// MintToken creates an ACL policy with the given rules (HCL, as in
// `service_prefix "" { policy = "write" }`) and a token linked to it, and
// returns the token's secret ID. It needs WithACL and fails the test on any
// error. Tokens do not survive Restart.
func (s *Server) MintToken(t testing.TB, rules string) string {
	t.Helper()
	secret, err := s.mintToken(rules)
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

func (s *Server) mintToken(rules string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	policyID, err := s.createPolicy(ctx, "MintToken", rules)
	if err != nil {
		return "", err
	}
	var token struct{ SecretID string }
	err = s.putJSON(ctx, "/v1/acl/token", map[string]any{
		"Description": "created by consultest.MintToken",
		"Policies":    []map[string]string{{"ID": policyID}},
	}, &token)
	if err == nil && token.SecretID == "" {
		err = fmt.Errorf("PUT /v1/acl/token: no SecretID in the answer")
	}
	if err != nil {
		return "", fmt.Errorf("consultest: MintToken: creating token: %w", err)
	}
	return token.SecretID, nil
}

// SetAnonymousPolicy gives the anonymous token a policy with the given
// rules, as operators do to let DNS or untokened clients read the catalog.
// It needs WithACL and fails the test on any error.
func (s *Server) SetAnonymousPolicy(t testing.TB, rules string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	policyID, err := s.createPolicy(ctx, "SetAnonymousPolicy", rules)
	if err != nil {
		t.Fatal(err)
	}
	err = s.putJSON(ctx, "/v1/acl/token/"+anonymousTokenID, map[string]any{
		"Description": "anonymous token, policy set by consultest.SetAnonymousPolicy",
		"Policies":    []map[string]string{{"ID": policyID}},
	}, &struct{}{})
	if err != nil {
		t.Fatalf("consultest: SetAnonymousPolicy: updating the anonymous token: %v", err)
	}
}

// RevokeToken deletes the token whose secret is given, as an operator
// revoking a rotated-out token does. It needs WithACL and fails the test on
// any error.
func (s *Server) RevokeToken(t testing.TB, secret string) {
	t.Helper()
	if s.mgmtToken == "" {
		t.Fatalf("consultest: RevokeToken on agent %s without WithACL", s.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The accessor ID names the token in the API; the secret finds it.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v1/acl/token/self", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Consul-Token", secret)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("consultest: RevokeToken: %v", err)
	}
	var self struct{ AccessorID string }
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&self)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || self.AccessorID == "" {
		t.Fatalf("consultest: RevokeToken: reading the token: status %d, %v", resp.StatusCode, err)
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodDelete, s.URL()+"/v1/acl/token/"+self.AccessorID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ok bool
	if err := s.do(req, &ok); err != nil || !ok {
		t.Fatalf("consultest: RevokeToken: deleting the token: %v (answer %v)", err, ok)
	}
}

// createPolicy creates an ACL policy with rules and returns its ID.
func (s *Server) createPolicy(ctx context.Context, caller, rules string) (string, error) {
	if s.mgmtToken == "" {
		return "", fmt.Errorf("consultest: %s on agent %s without WithACL", caller, s.Name)
	}
	var policy struct{ ID string }
	err := s.putJSON(ctx, "/v1/acl/policy", map[string]any{
		"Name":        "consultest-" + randomHex(8),
		"Description": "created by consultest." + caller,
		"Rules":       rules,
	}, &policy)
	if err == nil && policy.ID == "" {
		err = fmt.Errorf("PUT /v1/acl/policy: no policy ID in the answer")
	}
	if err != nil {
		return "", fmt.Errorf("consultest: %s: creating policy: %w", caller, err)
	}
	return policy.ID, nil
}

// putJSON sends PUT path with body as JSON and the management token, if
// any, and decodes the answer into out.
func (s *Server) putJSON(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.URL()+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return s.do(req, out)
}

// do sends req with the management token, if any, in its header (never in
// the URL), and decodes a 200 answer into out.
func (s *Server) do(req *http.Request, out any) error {
	if s.mgmtToken != "" {
		req.Header.Set("X-Consul-Token", s.mgmtToken)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	return json.Unmarshal(body, out)
}

// aclConfig is the "acl" stanza of WithACL, in Consul 1.14 syntax.
type aclConfig struct {
	Enabled                bool   `json:"enabled"`
	DefaultPolicy          string `json:"default_policy"`
	EnableTokenPersistence bool   `json:"enable_token_persistence"`
	Tokens                 struct {
		InitialManagement string `json:"initial_management"`
		Agent             string `json:"agent"`
	} `json:"tokens"`
}

func (s *Server) aclConfig() *aclConfig {
	if s.mgmtToken == "" {
		return nil
	}
	c := &aclConfig{Enabled: true, DefaultPolicy: "deny"}
	// The agent registers its node with this token: it must be allowed to.
	c.Tokens.InitialManagement, c.Tokens.Agent = s.mgmtToken, s.mgmtToken
	return c
}

// tlsConfig is the "tls" stanza of WithTLS, in Consul 1.14 syntax.
type tlsConfig struct {
	Defaults struct {
		CAFile         string `json:"ca_file"`
		CertFile       string `json:"cert_file"`
		KeyFile        string `json:"key_file"`
		VerifyIncoming bool   `json:"verify_incoming"`
		VerifyOutgoing bool   `json:"verify_outgoing"`
	} `json:"defaults"`
}

func (s *Server) tlsConfig() *tlsConfig {
	if s.pki == nil {
		return nil
	}
	c := &tlsConfig{}
	d := &c.Defaults
	d.CAFile, d.CertFile, d.KeyFile = s.pki.caFile, s.cert.cert, s.cert.key
	d.VerifyIncoming, d.VerifyOutgoing = true, true
	return c
}

// pki is the throwaway certificate authority of WithTLS and what it issued.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey

	caFile, clientCert, clientKey string

	// servers are the agent certificates issued so far, by IP: the agents
	// of a Cluster share the CA, each with a certificate of its own.
	mu      sync.Mutex
	servers map[string]certFiles
}

type certFiles struct{ cert, key string }

// newPKI creates a CA and a client certificate in dir.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(),
		Subject:               pkix.Name{CommonName: "consultest CA " + randomHex(4)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caCert: cert, caKey: key, caFile: filepath.Join(dir, "ca.pem"),
		servers: map[string]certFiles{}}
	if err := writePEM(p.caFile, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	p.clientCert, p.clientKey, err = p.issue("client", "consultest client",
		[]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// issueServer returns the certificate of the agent on ip, issued on first
// use. Restart keeps the IP, and so the very same files.
func (p *pki) issueServer(ip string) (certFiles, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.servers[ip]; ok {
		return c, nil
	}
	// Consul servers present the same certificate as TLS clients for
	// internal RPC, hence both usages.
	cert, key, err := p.issue("server-"+ip, "server.dc1.consul",
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		[]string{ip, "localhost", "server.dc1.consul"})
	if err != nil {
		return certFiles{}, err
	}
	p.servers[ip] = certFiles{cert, key}
	return p.servers[ip], nil
}

// issue signs a certificate for hosts (DNS names or IPs) and writes
// <name>.pem and <name>-key.pem.
func (p *pki) issue(name, cn string, usage []x509.ExtKeyUsage, hosts []string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile = filepath.Join(p.dir, name+".pem")
	keyFile = filepath.Join(p.dir, name+"-key.pem")
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// clientTLS is the TLS configuration consultest's own requests use: trust
// the CA only, present the client certificate.
func (p *pki) clientTLS() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		RootCAs:      pool,
		Certificates: []tls.Certificate{cert},
	}, nil
}

func serialNumber() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	b[0] &= 0x7f        // positive
	return new(big.Int).SetBytes(b)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// randomUUID returns a random (version 4) UUID, the form Consul expects of
// token secrets.
func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
