package consul_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consul"
)

// newMTLSServer starts an HTTPS server presenting serverCert and requiring a
// client certificate signed by clientCA. Its handler answers the client
// certificate's common name.
func newMTLSServer(t *testing.T, serverCert tls.Certificate, clientCA *x509.CertPool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA,
		MinVersion:   tls.VersionTLS12,
	}
	// Failed handshakes are the point of several tests; keep them quiet.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// get sends GET path to the endpoint c resolves to and returns the body.
func get(t *testing.T, c consul.Config, path string) (string, error) {
	t.Helper()
	client, ep, err := c.NewHTTPClient()
	if err != nil {
		return "", err
	}
	t.Cleanup(client.CloseIdleConnections)
	u := ep.URL()
	u.Path = path
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %s", resp.Status, body)
	}
	return string(body), nil
}

func TestNewHTTPClientTLS(t *testing.T) {
	ca := newTestCA(t, "good")
	otherCA := newTestCA(t, "other")
	serverIP := ca.server("server", "127.0.0.1", "localhost")
	serverName := ca.server("server-localhost", "localhost")
	client := ca.client("client")

	srv := newMTLSServer(t, serverIP.TLS, ca.Pool())
	srvName := newMTLSServer(t, serverName.TLS, ca.Pool())
	addr := srv.Listener.Addr().String()
	addrName := srvName.Listener.Addr().String()

	caDir := t.TempDir()
	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caDir, "ca.pem"), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// A file that is not PEM is skipped, as Consul skips it.
	if err := os.WriteFile(filepath.Join(caDir, "README"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var (
		unknownAuthority = func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }
		wrongHost        = func(err error) bool { var e x509.HostnameError; return errors.As(err, &e) }
		anyError         = func(err error) bool { return err != nil }
	)
	tests := []struct {
		name    string
		cfg     consul.Config
		wantErr func(error) bool // nil: the request must succeed
	}{
		{
			name: "ca file and client cert",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile,
			}},
		},
		{
			name: "https from Scheme",
			cfg: consul.Config{Addresses: []string{addr}, Scheme: "https", TLS: consul.TLSConfig{
				CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile,
			}},
		},
		{
			name: "no client cert",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				CAFile: ca.File,
			}},
			wantErr: anyError,
		},
		{
			name: "ca path and client cert",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				CAPath: caDir, CertFile: client.CertFile, KeyFile: client.KeyFile,
			}},
		},
		{
			name: "wrong ca",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				CAFile: otherCA.File, CertFile: client.CertFile, KeyFile: client.KeyFile,
			}},
			wantErr: unknownAuthority,
		},
		{
			name:    "no tls settings trusts only system roots",
			cfg:     consul.Config{Addresses: []string{"https://" + addr}},
			wantErr: unknownAuthority,
		},
		{
			name: "insecure skip verify with client cert",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				InsecureSkipVerify: true, CertFile: client.CertFile, KeyFile: client.KeyFile,
			}},
		},
		{
			name: "insecure skip verify without client cert",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				InsecureSkipVerify: true,
			}},
			wantErr: anyError,
		},
		{
			name: "server name override",
			cfg: consul.Config{Addresses: []string{"https://" + addrName}, TLS: consul.TLSConfig{
				CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "localhost",
			}},
		},
		{
			name: "ip not in a localhost-only cert",
			cfg: consul.Config{Addresses: []string{"https://" + addrName}, TLS: consul.TLSConfig{
				CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile,
			}},
			wantErr: wrongHost,
		},
		{
			name: "wrong server name override",
			cfg: consul.Config{Addresses: []string{"https://" + addr}, TLS: consul.TLSConfig{
				CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile, ServerName: "server.dc1.consul",
			}},
			wantErr: wrongHost,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := get(t, tt.cfg, "/v1/agent/self")
			switch {
			case tt.wantErr == nil && err != nil:
				t.Errorf("GET with %+v: error = %v, want nil", tt.cfg.TLS, err)
			case tt.wantErr == nil && got != "client":
				t.Errorf("GET with %+v = %q, want %q (the client certificate's name)", tt.cfg.TLS, got, "client")
			case tt.wantErr != nil && !tt.wantErr(err):
				t.Errorf("GET with %+v = %q, %v; want the other error", tt.cfg.TLS, got, err)
			}
		})
	}
}

func TestTLSClientConfig(t *testing.T) {
	ca := newTestCA(t, "ca")
	client := ca.client("client")
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	t.Run("zero", func(t *testing.T) {
		cfg, err := consul.Config{}.TLSClientConfig()
		if cfg != nil || err != nil {
			t.Errorf("Config{}.TLSClientConfig() = %v, %v; want nil, nil", cfg, err)
		}
	})
	t.Run("fields", func(t *testing.T) {
		c := consul.Config{TLS: consul.TLSConfig{
			CAFile: ca.File, CertFile: client.CertFile, KeyFile: client.KeyFile,
			ServerName: "server.dc1.consul", InsecureSkipVerify: true,
		}}
		cfg, err := c.TLSClientConfig()
		if err != nil {
			t.Fatalf("TLSClientConfig() error = %v", err)
		}
		if cfg.ServerName != "server.dc1.consul" {
			t.Errorf("TLSClientConfig().ServerName = %q, want %q", cfg.ServerName, "server.dc1.consul")
		}
		if !cfg.InsecureSkipVerify {
			t.Errorf("TLSClientConfig().InsecureSkipVerify = false, want true")
		}
		if len(cfg.Certificates) != 1 {
			t.Errorf("len(TLSClientConfig().Certificates) = %d, want 1", len(cfg.Certificates))
		}
		if cfg.RootCAs == nil {
			t.Errorf("TLSClientConfig().RootCAs = nil, want the CA file's pool")
		}
		if cfg.MinVersion < tls.VersionTLS12 {
			t.Errorf("TLSClientConfig().MinVersion = %#x, want ≥ TLS 1.2 (%#x)", cfg.MinVersion, tls.VersionTLS12)
		}
	})

	errs := []struct {
		name string
		tls  consul.TLSConfig
	}{
		{"missing ca file", consul.TLSConfig{CAFile: missing}},
		{"ca file without pem", consul.TLSConfig{CAFile: notPEM}},
		{"missing ca path", consul.TLSConfig{CAPath: filepath.Join(dir, "nope")}},
		{"missing client cert", consul.TLSConfig{CertFile: missing, KeyFile: client.KeyFile}},
		{"client key not pem", consul.TLSConfig{CertFile: client.CertFile, KeyFile: notPEM}},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			c := consul.Config{Addresses: []string{"https://h:8501"}, TLS: tt.tls}
			if cfg, err := c.TLSClientConfig(); !errors.Is(err, consul.ErrConfig) {
				t.Errorf("TLSClientConfig() with %+v = %v, %v; want error matching ErrConfig", tt.tls, cfg, err)
			}
			if _, _, err := c.NewHTTPClient(); !errors.Is(err, consul.ErrConfig) {
				t.Errorf("NewHTTPClient() with %+v error = %v, want error matching ErrConfig", tt.tls, err)
			}
		})
	}
}

func TestNewHTTPClientInvalid(t *testing.T) {
	for _, c := range []consul.Config{
		{Addresses: []string{"ftp://x"}},
		{Timeout: -1},
		{MaxConns: -1},
		{SourceAddr: "not-an-ip"},
		{SourceAddr: "127.0.0.2:80"},
		{SourceAddr: "fe80::1%eth0"},
		{TLS: consul.TLSConfig{CertFile: "c.pem"}},
	} {
		if _, _, err := c.NewHTTPClient(); !errors.Is(err, consul.ErrConfig) {
			t.Errorf("%+v.NewHTTPClient() error = %v, want error matching ErrConfig", c, err)
		}
	}
}

// shortTempDir is t.TempDir, or a shorter directory when the test's would
// make a unix socket path longer than the kernel allows.
func shortTempDir(t *testing.T) string {
	dir := t.TempDir()
	if len(dir) < 80 {
		return dir
	}
	dir, err := os.MkdirTemp("", "consul")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestNewHTTPClientUnixSocket(t *testing.T) {
	sock := filepath.Join(shortTempDir(t), "consul.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on %s: %v", sock, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Host, r.URL.Path)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	c := consul.Config{Addresses: []string{"unix://" + sock}}
	got, err := get(t, c, "/v1/x")
	if want := "consul.sock /v1/x"; err != nil || got != want {
		t.Errorf("GET unix://%s/v1/x = %q, %v; want %q, nil", sock, got, err, want)
	}

	_, ep, err := c.NewHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	if want := (consul.Endpoint{Scheme: "unix", Host: "consul.sock", Socket: sock}); ep != want {
		t.Errorf("NewHTTPClient() endpoint = %+v, want %+v", ep, want)
	}
}

func TestNewHTTPClientUsesFirstAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "first")
	}))
	t.Cleanup(srv.Close)
	c := consul.Config{Addresses: []string{srv.URL, "127.0.0.1:1"}}
	if got, err := get(t, c, "/"); err != nil || got != "first" {
		t.Errorf("GET via %q = %q, %v; want %q, nil", c.Addresses, got, err, "first")
	}
	if got, err := get(t, c.Agent(2), "/"); err != nil || got != "first" {
		t.Errorf("GET via Agent(2) of %q = %q, %v; want %q, nil", c.Addresses, got, err, "first")
	}
}

// TestNewHTTPClientMaxConns holds every request at the server and checks
// that the client never opens more connections than MaxConns, while all
// requests still complete once the server lets them go.
func TestNewHTTPClientMaxConns(t *testing.T) {
	const maxConns, requests = 2, 6
	release := make(chan struct{})
	arrived := make(chan struct{}, requests)
	var mu sync.Mutex
	opened := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		fmt.Fprint(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			opened++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	hc, _, err := consul.Config{Addresses: []string{srv.URL}, MaxConns: maxConns}.NewHTTPClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hc.CloseIdleConnections)
	errs := make(chan error, requests)
	for range requests {
		go func() {
			resp, err := hc.Get(srv.URL)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	deadline := time.After(10 * time.Second)
	for range maxConns {
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("fewer than %d requests reached the server", maxConns)
		}
	}
	// The others wait in the client for a connection: none may arrive.
	select {
	case <-arrived:
		t.Fatalf("a request beyond MaxConns %d reached the server", maxConns)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	for range requests {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("request: %v", err)
			}
		case <-deadline:
			t.Fatal("requests did not complete after release")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if opened > maxConns {
		t.Errorf("client opened %d connections, want at most MaxConns %d", opened, maxConns)
	}
}

// writeToken replaces the token file's content, and moves its modification
// time forward so a same-size rewrite within one clock tick is still seen.
func writeToken(t *testing.T, path, content string) {
	t.Helper()
	var next time.Time
	if fi, err := os.Stat(path); err == nil {
		next = fi.ModTime().Add(time.Second)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if !next.IsZero() {
		if err := os.Chtimes(path, next, next); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTokenSource(t *testing.T) {
	t.Run("nil", func(t *testing.T) {
		var s *consul.TokenSource
		if got, err := s.Token(); got != "" || err != nil {
			t.Errorf("(*TokenSource)(nil).Token() = %q, %v; want \"\", nil", got, err)
		}
	})

	tests := []struct {
		name    string
		static  string
		content string // token file content; no file when "-"
		want    string
	}{
		{"static only", "static", "-", "static"},
		{"none", "", "-", ""},
		{"file wins", "static", "from-file", "from-file"},
		{"file trimmed", "static", "  from-file\r\n", "from-file"},
		{"empty file falls back", "static", "", "static"},
		{"blank file falls back", "static", " \n", "static"},
		{"file without static", "", "from-file\n", "from-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := consul.Config{Token: tt.static}
			if tt.content != "-" {
				c.TokenFile = filepath.Join(t.TempDir(), "token")
				writeToken(t, c.TokenFile, tt.content)
			}
			got, err := c.NewTokenSource().Token()
			if err != nil || got != tt.want {
				t.Errorf("Token() with static %q and file %q = %q, %v; want %q, nil", tt.static, tt.content, got, err, tt.want)
			}
		})
	}
}

func TestTokenSourceFileChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	s := consul.Config{Token: "static", TokenFile: path}.NewTokenSource()

	steps := []struct {
		name    string
		content string // "-" removes the file
		want    string
		wantErr bool
	}{
		{"missing", "-", "", true},
		{"created", "first", "first", false},
		{"rewritten longer", "second-token", "second-token", false},
		{"rewritten same size", "third-token!", "third-token!", false},
		{"emptied", "", "static", false},
		{"two lines", "a\nb\n", "", true},
		{"one line again", "fourth", "fourth", false},
		{"removed", "-", "", true},
		{"restored", "fifth-token", "fifth-token", false},
	}
	for _, st := range steps {
		if st.content == "-" {
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
		} else {
			writeToken(t, path, st.content)
		}
		got, err := s.Token()
		// Asking twice must not change the answer (the cache is consistent).
		got2, err2 := s.Token()
		if got != got2 || (err == nil) != (err2 == nil) {
			t.Errorf("%s: Token() = %q, %v, then %q, %v; want the same twice", st.name, got, err, got2, err2)
		}
		switch {
		case st.wantErr && !errors.Is(err, consul.ErrConfig):
			t.Errorf("%s: Token() = %q, %v; want error matching ErrConfig", st.name, got, err)
		case st.wantErr && got != "":
			t.Errorf("%s: Token() = %q, %v; want no token with the error", st.name, got, err)
		case !st.wantErr && (err != nil || got != st.want):
			t.Errorf("%s: Token() = %q, %v; want %q, nil", st.name, got, err, st.want)
		}
	}
}

func TestTokenSourceConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	tokens := []string{"token-a", "token-bb"}
	writeToken(t, path, tokens[0])
	s := consul.Config{Token: "static", TokenFile: path}.NewTokenSource()

	// A writer rotates the token with atomic renames while readers ask.
	done := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		defer close(writerErr)
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			tmp := filepath.Join(dir, "token.tmp")
			if err := os.WriteFile(tmp, []byte(tokens[i%2]), 0o600); err != nil {
				writerErr <- err
				return
			}
			if err := os.Rename(tmp, path); err != nil {
				writerErr <- err
				return
			}
		}
	}()

	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			for range 20 {
				got, err := s.Token()
				if err != nil || (got != tokens[0] && got != tokens[1]) {
					errs <- fmt.Errorf("Token() = %q, %v; want one of %q", got, err, tokens)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	if err := <-writerErr; err != nil {
		t.Fatalf("rotating the token file: %v", err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTokenSourceHugeFile: a token file set by mistake to something huge
// is refused after reading a few KiB, not read whole.
func TestTokenSourceHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil { // sparse: nothing on disk
		t.Skipf("cannot make a sparse file here: %v", err)
	}
	f.Close()
	if tok, err := (consul.Config{TokenFile: path}).NewTokenSource().Token(); !errors.Is(err, consul.ErrConfig) || tok != "" {
		t.Errorf("Token() with a 1 TiB token file = %q, %v; want an ErrConfig error", tok, err)
	}
	writeToken(t, path, "a\x00b")
	if tok, err := (consul.Config{TokenFile: path}).NewTokenSource().Token(); !errors.Is(err, consul.ErrConfig) || tok != "" {
		t.Errorf("Token() with a NUL in the token file = %q, %v; want an ErrConfig error", tok, err)
	}
}

func TestTokenSourceErrorMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, "x\ny")
	_, err := consul.Config{TokenFile: path}.NewTokenSource().Token()
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Token() with a two-line file error = %v, want it to name %s", err, path)
	}
}
