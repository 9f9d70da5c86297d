package consul_test

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/beaconsd/beacon/consul"
)

// FuzzParseAddress: an agent address (CONSUL_HTTP_ADDR, -consul, Config
// Addresses) either parses to an endpoint requests can be built on, the
// same again when its String is parsed, or fails with ErrConfig.
func FuzzParseAddress(f *testing.F) {
	for _, seed := range [][2]string{
		{"127.0.0.1:8500", ""}, {"https://h:8501/", ""}, {"http://h:1", "https"}, {" h:1 ", ""},
		{"consul.local", "https"}, {"::1", ""}, {"[fe80::1%eth0]:8500", ""}, {"unix:///tmp/consul.sock", "https"},
		{"unix://", ""}, {"h:1:2", ""}, {"user@h:1", ""}, {"ftp://x", ""}, {"h:1", "ftp"}, {"[::1", ""},
		{"a%zz:80", ""}, {"h:0080", ""}, {"h:+1", ""}, {"\x00:1", ""}, {"é.example:1", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, addr, scheme string) {
		e, err := consul.ParseAddress(addr, scheme)
		if err != nil {
			if !errors.Is(err, consul.ErrConfig) || e != (consul.Endpoint{}) {
				t.Fatalf("ParseAddress(%q, %q) = %+v, %v; want nothing and an error matching ErrConfig", addr, scheme, e, err)
			}
			return
		}
		switch e.Scheme {
		case "unix":
			if e.Socket == "" {
				t.Fatalf("ParseAddress(%q, %q) = %+v, want a socket path", addr, scheme, e)
			}
		case "http", "https":
			host, port, err := net.SplitHostPort(e.Host)
			if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
				t.Fatalf("ParseAddress(%q, %q) = %+v, want host:port with a port in 1–65535", addr, scheme, e)
			}
		default:
			t.Fatalf("ParseAddress(%q, %q) = %+v, want scheme http, https or unix", addr, scheme, e)
		}
		// Every request is built on URL(): it must survive a round trip
		// through net/url and net/http.
		u := e.URL().String() + "/v1/status/leader"
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil || req.URL.Host != e.URL().Host {
			t.Fatalf("ParseAddress(%q, %q) = %+v; a request to %q fails (%v) or changes its host", addr, scheme, e, u, err)
		}
		def := e.Scheme
		if def == "unix" {
			def = ""
		}
		if again, err := consul.ParseAddress(e.String(), def); err != nil || again != e {
			t.Fatalf("ParseAddress(%q, %q) = %+v, but its String %q parses to %+v, %v", addr, scheme, e, e.String(), again, err)
		}
	})
}

// FuzzFromEnv: whatever the CONSUL_* variables hold, FromEnv returns a
// configuration that validates and can be sent, or an ErrConfig error that
// does not quote the token.
func FuzzFromEnv(f *testing.F) {
	f.Add("127.0.0.1:8500", "", "", "", "", "", "")
	f.Add("https://h:8501", "true", "false", "user:pass", "3f0c-token", "c.pem", "k.pem")
	f.Add("h:1", "yes", "", "", "", "", "")
	f.Add("", "0", "maybe", ":", "a\nb", "c.pem", "")
	f.Add("unix:///s", "1", "1", "u", "tok\x00en", "", "")
	f.Fuzz(func(t *testing.T, addr, ssl, verify, auth, token, cert, key string) {
		env := map[string]string{}
		for k, v := range map[string]string{
			consul.EnvHTTPAddr: addr, consul.EnvHTTPSSL: ssl, consul.EnvHTTPSSLVerify: verify, consul.EnvHTTPAuth: auth,
			consul.EnvHTTPToken: token, consul.EnvClientCert: cert, consul.EnvClientKey: key,
		} {
			if v != "" {
				env[k] = v
			}
		}
		cfg, err := consul.FromLookup(lookupMap(env))
		if err != nil {
			if !errors.Is(err, consul.ErrConfig) {
				t.Fatalf("FromEnv(%q) = %v, want an error matching ErrConfig", env, err)
			}
			// The same error with the token's letters masked: it quotes
			// nothing of the token.
			if token != "" {
				env[consul.EnvHTTPToken] = mask(token)
				if _, err2 := consul.FromLookup(lookupMap(env)); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("FromEnv with token %q = %v, with it masked %v: the error depends on the token's text", token, err, err2)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("FromEnv(%q) = %+v, which does not validate: %v", env, cfg, err)
		}
		eps, err := cfg.Endpoints()
		if err != nil || len(eps) != 1 {
			t.Fatalf("FromEnv(%q).Endpoints() = %v, %v; want one endpoint", env, eps, err)
		}
		if on, perr := strconv.ParseBool(ssl); perr == nil && on && eps[0].Scheme == "http" {
			t.Fatalf("FromEnv(%q) = %+v: CONSUL_HTTP_SSL=%s but plain http", env, eps[0], ssl)
		}
		// The token travels in a header: net/http must accept it as one.
		if !validHeaderValue(cfg.Token) {
			t.Fatalf("FromEnv(%q) accepted a token net/http would refuse to send in a header", env)
		}
		// The same for a token file holding the token.
		if tok, err := consul.ParseTokenFile([]byte(token)); err != nil {
			if _, err2 := consul.ParseTokenFile([]byte(mask(token))); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("ParseTokenFile(%q) = %v, masked %v: the error depends on the token's text", token, err, err2)
			}
		} else if !validHeaderValue(tok) || tok != strings.TrimSpace(tok) {
			t.Fatalf("ParseTokenFile(%q) = %q, want a trimmed token net/http can send", token, tok)
		}
	})
}

// validHeaderValue is net/http's rule for a header field value: no control
// characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// mask replaces every printable, non-space byte of s with 'x', keeping
// what decides whether s is a valid token (control characters, spaces).
func mask(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c > ' ' && c != 0x7f {
			b[i] = 'x'
		}
	}
	return string(b)
}
