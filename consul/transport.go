package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TLSClientConfig builds the *tls.Config for c, reading CA and client
// certificate files. It returns nil when c uses no TLS setting at all.
func (c Config) TLSClientConfig() (*tls.Config, error) {
	t := c.TLS
	if t == (TLSConfig{}) {
		return nil, nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, // #nosec G402: the user asked for it (CONSUL_HTTP_SSL_VERIFY=false)
	}
	if t.CAFile != "" || t.CAPath != "" {
		pool := x509.NewCertPool()
		files := []string{}
		if t.CAFile != "" {
			files = append(files, t.CAFile)
		}
		if t.CAPath != "" {
			entries, err := os.ReadDir(t.CAPath)
			if err != nil {
				return nil, configErrorf("CA path: %v", err)
			}
			for _, e := range entries {
				if !e.IsDir() {
					files = append(files, filepath.Join(t.CAPath, e.Name()))
				}
			}
		}
		for _, f := range files {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, configErrorf("CA file: %v", err)
			}
			if !pool.AppendCertsFromPEM(pem) && t.CAFile == f {
				return nil, configErrorf("CA file %s holds no PEM certificate", f)
			}
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, configErrorf("client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// NewHTTPClient returns an *http.Client for the first endpoint of c, with
// TLS applied and unix sockets dialled. It sets no overall timeout: callers
// put a deadline on each request, because blocking queries legitimately last
// minutes.
func (c Config) NewHTTPClient() (*http.Client, Endpoint, error) {
	if err := c.Validate(); err != nil {
		return nil, Endpoint{}, err
	}
	eps, _ := c.Endpoints()
	ep := eps[0]
	tlsCfg, err := c.TLSClientConfig()
	if err != nil {
		return nil, Endpoint{}, err
	}
	if ep.Scheme == "https" && tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil, // an agent is local infrastructure; never route it through a proxy
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		MaxConnsPerHost:       c.MaxConns,
		// Requests to an agent are small; the default 4 KiB write buffer
		// per connection is mostly idle memory with many long polls.
		WriteBufferSize: 1024,
	}
	if c.MaxConns > 0 && c.MaxConns < tr.MaxIdleConnsPerHost {
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = c.MaxConns, c.MaxConns
	}
	if ep.Scheme == "unix" {
		sock := ep.Socket
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", sock)
		}
	}
	return &http.Client{Transport: tr}, ep, nil
}

// TokenSource yields the ACL token, re-reading TokenFile when it changes so a
// rotated token takes effect without a restart. It is safe for concurrent use.
type TokenSource struct {
	static string
	file   string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	cached  string
	err     error
}

// NewTokenSource returns the token source for c.
func (c Config) NewTokenSource() *TokenSource {
	return &TokenSource{static: c.Token, file: c.TokenFile}
}

// Token returns the current token: the token file's trimmed content when it
// is set and non-empty, else the static token. A file that cannot be read is
// an error, so a request is never sent silently without the intended token.
func (s *TokenSource) Token() (string, error) {
	if s == nil {
		return "", nil
	}
	if s.file == "" {
		return s.static, nil
	}
	fi, err := os.Stat(s.file)
	if err != nil {
		return "", configErrorf("token file: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modTime.IsZero() || !fi.ModTime().Equal(s.modTime) || fi.Size() != s.size {
		data, err := os.ReadFile(s.file)
		if err != nil {
			return "", configErrorf("token file: %v", err)
		}
		s.cached = strings.TrimSpace(string(data))
		s.modTime, s.size, s.err = fi.ModTime(), fi.Size(), nil
		if strings.ContainsAny(s.cached, "\r\n") {
			s.err = configErrorf("token file %s holds more than one line", s.file)
		}
	}
	if s.err != nil {
		return "", s.err
	}
	if s.cached == "" {
		return s.static, nil
	}
	return s.cached, nil
}
