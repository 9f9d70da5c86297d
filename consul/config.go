package consul

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultAddress is the agent address used when none is configured.
const DefaultAddress = "127.0.0.1:8500"

// DefaultTimeout bounds a non-blocking request when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config describes how to reach Consul. The zero value talks plain HTTP to
// DefaultAddress. A backend client talks to one agent (Addresses[0], or the
// one chosen with Agent); the keeper and discovery choose among the others.
type Config struct {
	// Addresses are agent addresses: "host:port", "http://host:port",
	// "https://host:port" or "unix:///path/to/socket".
	Addresses []string
	// Token is the ACL token. It travels only in the X-Consul-Token header.
	Token string
	// TokenFile holds the token. When set and non-empty it wins over Token,
	// and it is read again whenever the file changes.
	TokenFile string
	// HTTPAuth is HTTP basic auth ("user:password" in CONSUL_HTTP_AUTH).
	HTTPAuth *BasicAuth
	// Scheme is "http" or "https" for addresses given without one.
	Scheme string
	TLS    TLSConfig

	Datacenter string
	// Namespace and Partition are Consul Enterprise features; they are sent
	// only when set (the open-source agent refuses them).
	Namespace string
	Partition string

	// Timeout bounds each non-blocking request; blocking queries get their
	// wait plus Consul's jitter plus this. Zero means DefaultTimeout.
	Timeout time.Duration

	// MaxConns caps the connections one client holds to its agent, busy
	// and idle together; requests beyond it wait for a free connection.
	// Zero means no cap. Consul refuses more than 200 connections from one
	// client IP (limits.http_max_conns_per_client), so a process with many
	// long polls needs a cap below that.
	MaxConns int

	// SourceAddr is the local IP address connections to the agent are
	// dialled from ("" lets the kernel choose). A multi-homed host uses it
	// to reach its agent from a chosen interface; a fleet test gives each
	// client a loopback address of its own (127.0.0.2, 127.0.0.3, ...) so
	// that each is a host to the agent, whose connection limit
	// (limits.http_max_conns_per_client) counts per source IP. It must
	// parse as an IPv4 or IPv6 address (no port, no zone); it does not
	// apply to unix sockets.
	SourceAddr string
}

// BasicAuth is a user name and password for HTTP basic auth.
type BasicAuth struct {
	Username string
	Password string
}

// TLSConfig configures TLS and mutual TLS towards the agent.
type TLSConfig struct {
	CAFile   string // PEM bundle of trusted CAs
	CAPath   string // directory of PEM CA files
	CertFile string // client certificate, for mTLS
	KeyFile  string // client key, for mTLS
	// ServerName overrides the name checked in the agent's certificate.
	ServerName         string
	InsecureSkipVerify bool
}

// ErrConfig is matched by every configuration error.
var ErrConfig = errors.New("consul: invalid configuration")

type configError struct{ msg string }

func (e *configError) Error() string        { return "consul: " + e.msg }
func (e *configError) Is(target error) bool { return target == ErrConfig }

func configErrorf(format string, args ...any) error {
	return &configError{msg: fmt.Sprintf(format, args...)}
}

// Environment variables read by FromEnv; the names and meanings are those of
// hashicorp/consul/api.
const (
	EnvHTTPAddr      = "CONSUL_HTTP_ADDR"
	EnvHTTPToken     = "CONSUL_HTTP_TOKEN"
	EnvHTTPTokenFile = "CONSUL_HTTP_TOKEN_FILE"
	EnvHTTPAuth      = "CONSUL_HTTP_AUTH"
	EnvHTTPSSL       = "CONSUL_HTTP_SSL"
	EnvHTTPSSLVerify = "CONSUL_HTTP_SSL_VERIFY"
	EnvCACert        = "CONSUL_CACERT"
	EnvCAPath        = "CONSUL_CAPATH"
	EnvClientCert    = "CONSUL_CLIENT_CERT"
	EnvClientKey     = "CONSUL_CLIENT_KEY"
	EnvTLSServerName = "CONSUL_TLS_SERVER_NAME"
	EnvNamespace     = "CONSUL_NAMESPACE"
	EnvPartition     = "CONSUL_PARTITION"
)

// FromEnv returns a Config built from the CONSUL_* environment variables.
func FromEnv() (Config, error) { return fromLookup(os.LookupEnv) }

func fromLookup(lookup func(string) (string, bool)) (Config, error) {
	get := func(k string) string { v, _ := lookup(k); return v }
	var c Config
	if v := get(EnvHTTPAddr); v != "" {
		c.Addresses = []string{v}
	}
	c.Token = get(EnvHTTPToken)
	c.TokenFile = get(EnvHTTPTokenFile)
	if v, ok := lookup(EnvHTTPAuth); ok && v != "" {
		user, pass, _ := strings.Cut(v, ":")
		c.HTTPAuth = &BasicAuth{Username: user, Password: pass}
	}
	if v := get(EnvHTTPSSL); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, configErrorf("%s=%q is not a boolean", EnvHTTPSSL, v)
		}
		if on {
			c.Scheme = "https"
		}
	}
	if v := get(EnvHTTPSSLVerify); v != "" {
		verify, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, configErrorf("%s=%q is not a boolean", EnvHTTPSSLVerify, v)
		}
		c.TLS.InsecureSkipVerify = !verify
	}
	c.TLS.CAFile = get(EnvCACert)
	c.TLS.CAPath = get(EnvCAPath)
	c.TLS.CertFile = get(EnvClientCert)
	c.TLS.KeyFile = get(EnvClientKey)
	c.TLS.ServerName = get(EnvTLSServerName)
	c.Namespace = get(EnvNamespace)
	c.Partition = get(EnvPartition)
	return c, c.Validate()
}

// Endpoint is one parsed agent address.
type Endpoint struct {
	Scheme string // "http", "https" or "unix"
	Host   string // host:port; for unix sockets, a placeholder host name
	Socket string // the socket path when Scheme is "unix"
}

// URL returns the base URL requests to this endpoint use.
func (e Endpoint) URL() *url.URL {
	s := e.Scheme
	if s == "unix" {
		s = "http"
	}
	return &url.URL{Scheme: s, Host: e.Host}
}

func (e Endpoint) String() string {
	if e.Scheme == "unix" {
		return "unix://" + e.Socket
	}
	return e.Scheme + "://" + e.Host
}

// Endpoints parses every configured address, or DefaultAddress when none is.
func (c Config) Endpoints() ([]Endpoint, error) {
	addrs := c.Addresses
	if len(addrs) == 0 {
		addrs = []string{DefaultAddress}
	}
	out := make([]Endpoint, 0, len(addrs))
	for _, a := range addrs {
		e, err := ParseAddress(a, c.Scheme)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ParseAddress parses one agent address: "host:port" takes defaultScheme
// (http when empty); "http://", "https://" and "unix://" prefixes choose
// the scheme. A host without a port takes the agent's own default port,
// 8500 for http and 8501 for https, unless a scheme prefix makes it a URL,
// which takes its scheme's port (80 or 443), as every URL does.
//
// That differs from consul/api and the consul CLI on purpose: they send
// CONSUL_HTTP_ADDR=127.0.0.1 to port 80, where no agent listens by
// default, and the error that follows does not say why.
func ParseAddress(addr, defaultScheme string) (Endpoint, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return Endpoint{}, configErrorf("empty agent address")
	}
	if defaultScheme == "" {
		defaultScheme = "http"
	}
	if defaultScheme != "http" && defaultScheme != "https" {
		return Endpoint{}, configErrorf("scheme %q is neither http nor https", defaultScheme)
	}
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		if p == "" {
			return Endpoint{}, configErrorf("agent address %q has no socket path", addr)
		}
		return Endpoint{Scheme: "unix", Host: "consul.sock", Socket: p}, nil
	}
	orig := addr
	scheme := defaultScheme
	s, rest, isURL := strings.Cut(addr, "://")
	if isURL {
		if s != "http" && s != "https" {
			return Endpoint{}, configErrorf("agent address %q: scheme %q is not http, https or unix", orig, s)
		}
		// As consul/api: an explicit https request (CONSUL_HTTP_SSL) is
		// never downgraded by an http:// prefix.
		if s == "https" || defaultScheme != "https" {
			scheme = s
		}
		addr = strings.TrimSuffix(rest, "/")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		// A host alone (name, IPv4, IPv6 with or without brackets): a URL
		// takes its scheme's port; a bare host means an agent, on the
		// agent's default port.
		host = addr
		if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
			host = host[1 : len(host)-1]
		}
		if !validHost(host) {
			return Endpoint{}, configErrorf("agent address %q is not host:port", orig)
		}
		return Endpoint{Scheme: scheme, Host: net.JoinHostPort(host, defaultPort(scheme, isURL))}, nil
	}
	// Digits only: Atoi takes "+80", which no URL does.
	if p, err := strconv.Atoi(port); err != nil || port[0] == '+' || p < 1 || p > 65535 || !validHost(host) {
		return Endpoint{}, configErrorf("agent address %q is not host:port", orig)
	}
	return Endpoint{Scheme: scheme, Host: net.JoinHostPort(host, port)}, nil
}

// defaultPort is the port of an address that names none: its scheme's
// for a URL, the agent's default for a bare host.
func defaultPort(scheme string, isURL bool) string {
	switch {
	case isURL && scheme == "https":
		return "443"
	case isURL:
		return "80"
	case scheme == "https":
		return "8501"
	default:
		return "8500"
	}
}

// validHost reports whether host (without brackets or port) can stand in a
// URL's host: non-empty, no URL delimiters, and an IPv6 address if it holds
// a colon.
func validHost(host string) bool {
	if host == "" || strings.ContainsAny(host, "/?#@[] \t") {
		return false
	}
	if strings.Contains(host, ":") {
		if _, err := netip.ParseAddr(host); err != nil {
			return false
		}
	}
	// Requests are built from Endpoint.URL: the host must come back the
	// same through url.URL.String and url.Parse ("|" or a control
	// character would be escaped into a URL that does not parse).
	hp := net.JoinHostPort(host, "1")
	u, err := url.Parse((&url.URL{Scheme: "http", Host: hp}).String())
	return err == nil && u.Host == hp
}

// Validate checks the configuration without touching the network or files.
func (c Config) Validate() error {
	if _, err := c.Endpoints(); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return configErrorf("TLS client certificate and key must be given together")
	}
	if c.Timeout < 0 {
		return configErrorf("negative timeout %v", c.Timeout)
	}
	if c.MaxConns < 0 {
		return configErrorf("negative connection cap %d", c.MaxConns)
	}
	if c.SourceAddr != "" {
		if ip, err := netip.ParseAddr(c.SourceAddr); err != nil || ip.Zone() != "" {
			return configErrorf("source address %q is not an IP address", c.SourceAddr)
		}
	}
	if p := tokenProblem(c.Token); p != "" {
		return configErrorf("token %s", p)
	}
	return nil
}

// tokenProblem says why tok cannot be sent in the X-Consul-Token header
// (net/http refuses control characters there), or "". It never quotes the
// token.
func tokenProblem(tok string) string {
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case c == '\r' || c == '\n':
			return "holds more than one line"
		case c < ' ' || c == 0x7f:
			return "holds a control character"
		}
	}
	return ""
}

// Agent returns a copy of c bound to the i-th configured address only.
func (c Config) Agent(i int) Config {
	eps := c.Addresses
	if len(eps) == 0 {
		eps = []string{DefaultAddress}
	}
	i %= len(eps)
	if i < 0 {
		i += len(eps)
	}
	c.Addresses = []string{eps[i]}
	return c
}

// RequestTimeout is c.Timeout or DefaultTimeout.
func (c Config) RequestTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// BlockingTimeout is the client deadline for a blocking query of the given
// wait: Consul adds up to wait/16 of jitter, so the deadline is
// wait × 17/16 plus the request timeout as slack.
func (c Config) BlockingTimeout(wait time.Duration) time.Duration {
	if wait <= 0 {
		wait = 5 * time.Minute // Consul's default wait
	}
	return wait + wait/16 + c.RequestTimeout()
}
