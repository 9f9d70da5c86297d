package consul

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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
	if c.SourceAddr != "" && ep.Scheme != "unix" {
		// Validate parsed it; port 0 lets the kernel pick the source port.
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.SourceAddr)}
	}
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
		// per connection is mostly idle memory with many long polls. So is
		// the read buffer: an answer's headers fit in 1 KiB, and a body
		// read into a larger buffer bypasses it.
		WriteBufferSize: 1024,
		ReadBufferSize:  1024,
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

// maxTokenFile caps how much of a token file is read: a token is a few
// dozen bytes, and a path set by mistake to a large file (or /dev/zero)
// must not be read whole.
const maxTokenFile = 4 << 10

func readTokenFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxTokenFile {
		return nil, fmt.Errorf("%s: larger than %d bytes, not a token", path, maxTokenFile)
	}
	return data, nil
}

// parseTokenFile reads a token file's contents: the token with the space
// around it trimmed, "" for an empty file. The error never quotes it.
func parseTokenFile(data []byte) (string, error) {
	tok := strings.TrimSpace(string(data))
	if p := tokenProblem(tok); p != "" {
		return "", errors.New(p)
	}
	return tok, nil
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
		data, err := readTokenFile(s.file)
		if err != nil {
			return "", configErrorf("token file: %v", err)
		}
		s.modTime, s.size = fi.ModTime(), fi.Size()
		s.cached, s.err = parseTokenFile(data)
		if s.err != nil {
			s.err = configErrorf("token file %s %v", s.file, s.err)
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
