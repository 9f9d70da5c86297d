package consul_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consul"
)

// lookupMap turns a map into the lookup function FromLookup takes, so a
// test never sees the CONSUL_* variables of the machine running it.
func lookupMap(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want consul.Config
		eps  []string // Endpoint.String() of every parsed address
	}{
		{
			name: "empty",
			env:  nil,
			want: consul.Config{},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "host:port",
			env:  map[string]string{consul.EnvHTTPAddr: "127.0.0.1:8500"},
			want: consul.Config{Addresses: []string{"127.0.0.1:8500"}},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "http prefix",
			env:  map[string]string{consul.EnvHTTPAddr: "http://h:1"},
			want: consul.Config{Addresses: []string{"http://h:1"}},
			eps:  []string{"http://h:1"},
		},
		{
			name: "https prefix",
			env:  map[string]string{consul.EnvHTTPAddr: "https://h:8501"},
			want: consul.Config{Addresses: []string{"https://h:8501"}},
			eps:  []string{"https://h:8501"},
		},
		{
			name: "unix socket",
			env:  map[string]string{consul.EnvHTTPAddr: "unix:///tmp/consul.sock"},
			want: consul.Config{Addresses: []string{"unix:///tmp/consul.sock"}},
			eps:  []string{"unix:///tmp/consul.sock"},
		},
		{
			name: "bare host",
			env:  map[string]string{consul.EnvHTTPAddr: "consul.local"},
			want: consul.Config{Addresses: []string{"consul.local"}},
			eps:  []string{"http://consul.local:8500"},
		},
		{
			name: "bare host https prefix",
			env:  map[string]string{consul.EnvHTTPAddr: "https://consul.local"},
			want: consul.Config{Addresses: []string{"https://consul.local"}},
			eps:  []string{"https://consul.local:443"},
		},
		{
			name: "bare host with ssl",
			env:  map[string]string{consul.EnvHTTPAddr: "consul.local", consul.EnvHTTPSSL: "true"},
			want: consul.Config{Addresses: []string{"consul.local"}, Scheme: "https"},
			eps:  []string{"https://consul.local:8501"},
		},
		{
			name: "ssl makes host:port https",
			env:  map[string]string{consul.EnvHTTPAddr: "10.0.0.1:8501", consul.EnvHTTPSSL: "true"},
			want: consul.Config{Addresses: []string{"10.0.0.1:8501"}, Scheme: "https"},
			eps:  []string{"https://10.0.0.1:8501"},
		},
		{
			name: "ssl 1",
			env:  map[string]string{consul.EnvHTTPSSL: "1"},
			want: consul.Config{Scheme: "https"},
			eps:  []string{"https://127.0.0.1:8500"},
		},
		{
			name: "ssl false",
			env:  map[string]string{consul.EnvHTTPAddr: "h:1", consul.EnvHTTPSSL: "false"},
			want: consul.Config{Addresses: []string{"h:1"}},
			eps:  []string{"http://h:1"},
		},
		{
			name: "ssl verify false",
			env:  map[string]string{consul.EnvHTTPSSLVerify: "false"},
			want: consul.Config{TLS: consul.TLSConfig{InsecureSkipVerify: true}},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "ssl verify true",
			env:  map[string]string{consul.EnvHTTPSSLVerify: "true"},
			want: consul.Config{},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "auth user and password",
			env:  map[string]string{consul.EnvHTTPAuth: "user:pass"},
			want: consul.Config{HTTPAuth: &consul.BasicAuth{Username: "user", Password: "pass"}},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "auth password with colon",
			env:  map[string]string{consul.EnvHTTPAuth: "user:pa:ss"},
			want: consul.Config{HTTPAuth: &consul.BasicAuth{Username: "user", Password: "pa:ss"}},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "auth user only",
			env:  map[string]string{consul.EnvHTTPAuth: "user"},
			want: consul.Config{HTTPAuth: &consul.BasicAuth{Username: "user"}},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "auth empty",
			env:  map[string]string{consul.EnvHTTPAuth: ""},
			want: consul.Config{},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "token and token file",
			env: map[string]string{
				consul.EnvHTTPToken:     "secret-token",
				consul.EnvHTTPTokenFile: "/run/consul/token",
			},
			want: consul.Config{Token: "secret-token", TokenFile: "/run/consul/token"},
			eps:  []string{"http://127.0.0.1:8500"},
		},
		{
			name: "tls files",
			env: map[string]string{
				consul.EnvHTTPAddr:      "https://h:8501",
				consul.EnvCACert:        "/etc/consul/ca.pem",
				consul.EnvCAPath:        "/etc/consul/ca.d",
				consul.EnvClientCert:    "/etc/consul/client.pem",
				consul.EnvClientKey:     "/etc/consul/client-key.pem",
				consul.EnvTLSServerName: "server.dc1.consul",
			},
			want: consul.Config{
				Addresses: []string{"https://h:8501"},
				TLS: consul.TLSConfig{
					CAFile:     "/etc/consul/ca.pem",
					CAPath:     "/etc/consul/ca.d",
					CertFile:   "/etc/consul/client.pem",
					KeyFile:    "/etc/consul/client-key.pem",
					ServerName: "server.dc1.consul",
				},
			},
			eps: []string{"https://h:8501"},
		},
		{
			name: "namespace and partition",
			env:  map[string]string{consul.EnvNamespace: "team-a", consul.EnvPartition: "part-1"},
			want: consul.Config{Namespace: "team-a", Partition: "part-1"},
			eps:  []string{"http://127.0.0.1:8500"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := consul.FromLookup(lookupMap(tt.env))
			if err != nil {
				t.Fatalf("FromLookup(%v) error = %v, want nil", tt.env, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FromLookup(%v) = %+v, want %+v", tt.env, got, tt.want)
			}
			eps, err := got.Endpoints()
			if err != nil {
				t.Fatalf("Endpoints() of %+v error = %v, want nil", got, err)
			}
			var gotEps []string
			for _, e := range eps {
				gotEps = append(gotEps, e.String())
			}
			if !reflect.DeepEqual(gotEps, tt.eps) {
				t.Errorf("FromLookup(%v).Endpoints() = %q, want %q", tt.env, gotEps, tt.eps)
			}
		})
	}
}

func TestFromEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"ssl not bool", map[string]string{consul.EnvHTTPSSL: "yes"}},
		{"ssl verify not bool", map[string]string{consul.EnvHTTPSSLVerify: "nope"}},
		{"ftp scheme", map[string]string{consul.EnvHTTPAddr: "ftp://x"}},
		{"port out of range", map[string]string{consul.EnvHTTPAddr: "h:99999"}},
		{"port zero", map[string]string{consul.EnvHTTPAddr: "h:0"}},
		{"port not a number", map[string]string{consul.EnvHTTPAddr: "h:http"}},
		{"unix without path", map[string]string{consul.EnvHTTPAddr: "unix://"}},
		{"https without host", map[string]string{consul.EnvHTTPAddr: "https://"}},
		{"no host", map[string]string{consul.EnvHTTPAddr: ":8500"}},
		{"path prefix", map[string]string{consul.EnvHTTPAddr: "http://h:1/consul"}},
		{"too many colons", map[string]string{consul.EnvHTTPAddr: "h:1:2"}},
		{"unclosed bracket", map[string]string{consul.EnvHTTPAddr: "[::1"}},
		{"token with newline", map[string]string{consul.EnvHTTPToken: "a\nb"}},
		{"cert without key", map[string]string{consul.EnvClientCert: "/c.pem"}},
		{"key without cert", map[string]string{consul.EnvClientKey: "/k.pem"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := consul.FromLookup(lookupMap(tt.env))
			if !errors.Is(err, consul.ErrConfig) {
				t.Errorf("FromLookup(%v) = %+v, %v; want error matching ErrConfig", tt.env, got, err)
			}
		})
	}
}

// TestFromEnvProcess checks that FromEnv reads the real process environment.
func TestFromEnvProcess(t *testing.T) {
	for _, k := range []string{
		consul.EnvHTTPAddr, consul.EnvHTTPToken, consul.EnvHTTPTokenFile, consul.EnvHTTPAuth,
		consul.EnvHTTPSSL, consul.EnvHTTPSSLVerify, consul.EnvCACert, consul.EnvCAPath,
		consul.EnvClientCert, consul.EnvClientKey, consul.EnvTLSServerName,
		consul.EnvNamespace, consul.EnvPartition,
	} {
		t.Setenv(k, "")
	}
	t.Setenv(consul.EnvHTTPAddr, "consul.local")
	t.Setenv(consul.EnvHTTPSSL, "true")
	t.Setenv(consul.EnvHTTPToken, "tok")
	got, err := consul.FromEnv()
	want := consul.Config{Addresses: []string{"consul.local"}, Scheme: "https", Token: "tok"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("FromEnv() = %+v, %v; want %+v, nil", got, err, want)
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		addr, scheme string
		want         consul.Endpoint
	}{
		{"127.0.0.1:8500", "", consul.Endpoint{Scheme: "http", Host: "127.0.0.1:8500"}},
		{"127.0.0.1:8501", "https", consul.Endpoint{Scheme: "https", Host: "127.0.0.1:8501"}},
		{"http://h:1", "https", consul.Endpoint{Scheme: "https", Host: "h:1"}}, // TLS requested is never downgraded
		{"https://h:8501/", "", consul.Endpoint{Scheme: "https", Host: "h:8501"}},
		{" h:1 ", "", consul.Endpoint{Scheme: "http", Host: "h:1"}},
		// A bare host is an agent on its default port, not port 80.
		{"127.0.0.1", "", consul.Endpoint{Scheme: "http", Host: "127.0.0.1:8500"}},
		{"consul.local", "", consul.Endpoint{Scheme: "http", Host: "consul.local:8500"}},
		{"consul.local", "https", consul.Endpoint{Scheme: "https", Host: "consul.local:8501"}},
		{"::1", "", consul.Endpoint{Scheme: "http", Host: "[::1]:8500"}},
		{"[::1]", "", consul.Endpoint{Scheme: "http", Host: "[::1]:8500"}},
		// A URL without a port takes its scheme's.
		{"http://consul.local", "", consul.Endpoint{Scheme: "http", Host: "consul.local:80"}},
		{"[::1]:8600", "", consul.Endpoint{Scheme: "http", Host: "[::1]:8600"}},
		{"[fe80::1%eth0]:8500", "", consul.Endpoint{Scheme: "http", Host: "[fe80::1%eth0]:8500"}},
		{"https://[fe80::1]", "", consul.Endpoint{Scheme: "https", Host: "[fe80::1]:443"}},
		{"unix:///tmp/consul.sock", "https", consul.Endpoint{Scheme: "unix", Host: "consul.sock", Socket: "/tmp/consul.sock"}},
	}
	for _, tt := range tests {
		got, err := consul.ParseAddress(tt.addr, tt.scheme)
		if err != nil || got != tt.want {
			t.Errorf("ParseAddress(%q, %q) = %+v, %v; want %+v, nil", tt.addr, tt.scheme, got, err, tt.want)
		}
	}
}

func TestParseAddressErrors(t *testing.T) {
	tests := []struct{ addr, scheme string }{
		{"", ""},
		{"   ", ""},
		{"h:1", "ftp"},
		{"ftp://x", ""},
		{"h:99999", ""},
		{"h:-1", ""},
		{"unix://", ""},
		{"http://", ""},
		{"https://", ""},
		{"http://:8500", ""},
		{"h:1:2", ""},
		{"[::1", ""},
		{"[]", ""},
		{"user@h:1", ""},
		{"a/b:1", ""},
		{"[x:y]:1", ""},
		{"h:+1", ""},   // found by FuzzParseAddress: no URL takes port "+1"
		{"\x00:1", ""}, // found by FuzzParseAddress: a control character
		{"|", ""},      // found by FuzzParseAddress: escaped into a URL that does not parse
		{"h h", ""},
		{"h h:1", ""},
	}
	for _, tt := range tests {
		got, err := consul.ParseAddress(tt.addr, tt.scheme)
		if !errors.Is(err, consul.ErrConfig) {
			t.Errorf("ParseAddress(%q, %q) = %+v, %v; want error matching ErrConfig", tt.addr, tt.scheme, got, err)
		}
	}
}

func TestEndpointURL(t *testing.T) {
	tests := []struct {
		ep   consul.Endpoint
		want string
	}{
		{consul.Endpoint{Scheme: "http", Host: "h:1"}, "http://h:1"},
		{consul.Endpoint{Scheme: "https", Host: "h:8501"}, "https://h:8501"},
		{consul.Endpoint{Scheme: "unix", Host: "consul.sock", Socket: "/s"}, "http://consul.sock"},
	}
	for _, tt := range tests {
		if got := tt.ep.URL().String(); got != tt.want {
			t.Errorf("%+v.URL() = %q, want %q", tt.ep, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    consul.Config
		ok   bool
	}{
		{"zero value", consul.Config{}, true},
		{"full", consul.Config{
			Addresses: []string{"https://a:8501", "b:8501"},
			Scheme:    "https",
			Token:     "tok",
			TLS:       consul.TLSConfig{CertFile: "c.pem", KeyFile: "k.pem"},
			Timeout:   time.Second,
		}, true},
		{"cert without key", consul.Config{TLS: consul.TLSConfig{CertFile: "c.pem"}}, false},
		{"key without cert", consul.Config{TLS: consul.TLSConfig{KeyFile: "k.pem"}}, false},
		{"negative timeout", consul.Config{Timeout: -time.Second}, false},
		{"token with newline", consul.Config{Token: "abc\n"}, false},
		{"token with carriage return", consul.Config{Token: "a\rb"}, false},
		{"token with NUL", consul.Config{Token: "a\x00b"}, false}, // net/http would refuse to send it
		{"token with tab", consul.Config{Token: "a\tb"}, false},
		{"bad scheme", consul.Config{Scheme: "ftp"}, false},
		{"second address bad", consul.Config{Addresses: []string{"a:1", "ftp://b"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.ok && err != nil {
				t.Errorf("%+v.Validate() = %v, want nil", tt.c, err)
			}
			if !tt.ok && !errors.Is(err, consul.ErrConfig) {
				t.Errorf("%+v.Validate() = %v, want error matching ErrConfig", tt.c, err)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "consul: ") {
				t.Errorf("%+v.Validate() = %q, want a %q prefix", tt.c, err, "consul: ")
			}
		})
	}
}

func TestBlockingTimeout(t *testing.T) {
	tests := []struct {
		wait, effective time.Duration
	}{
		{time.Second, time.Second},
		{5 * time.Minute, 5 * time.Minute},
		{10 * time.Minute, 10 * time.Minute},
		{0, 5 * time.Minute}, // Consul's default wait
		{-time.Second, 5 * time.Minute},
	}
	for _, c := range []consul.Config{{}, {Timeout: time.Millisecond}} {
		for _, tt := range tests {
			got := c.BlockingTimeout(tt.wait)
			if min := tt.effective * 17 / 16; got <= min {
				t.Errorf("Config{Timeout: %v}.BlockingTimeout(%v) = %v, want > %v", c.Timeout, tt.wait, got, min)
			}
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	tests := []struct{ timeout, want time.Duration }{
		{0, consul.DefaultTimeout},
		{time.Second, time.Second},
	}
	for _, tt := range tests {
		c := consul.Config{Timeout: tt.timeout}
		if got := c.RequestTimeout(); got != tt.want {
			t.Errorf("Config{Timeout: %v}.RequestTimeout() = %v, want %v", tt.timeout, got, tt.want)
		}
	}
}

func TestAgent(t *testing.T) {
	c := consul.Config{
		Addresses: []string{"a:1", "https://b:2", "unix:///c.sock"},
		Token:     "tok",
		Namespace: "ns",
	}
	tests := []struct {
		i    int
		want string
	}{
		{0, "a:1"},
		{1, "https://b:2"},
		{2, "unix:///c.sock"},
		{3, "a:1"}, // wraps around
	}
	for _, tt := range tests {
		got := c.Agent(tt.i)
		if !reflect.DeepEqual(got.Addresses, []string{tt.want}) {
			t.Errorf("Agent(%d).Addresses = %q, want [%q]", tt.i, got.Addresses, tt.want)
		}
		if got.Token != c.Token || got.Namespace != c.Namespace {
			t.Errorf("Agent(%d) = %+v, want the other fields of %+v kept", tt.i, got, c)
		}
	}
	if len(c.Addresses) != 3 || c.Addresses[0] != "a:1" {
		t.Errorf("Agent changed the receiver's Addresses to %q", c.Addresses)
	}
	if got := (consul.Config{}).Agent(0).Addresses; !reflect.DeepEqual(got, []string{consul.DefaultAddress}) {
		t.Errorf("Config{}.Agent(0).Addresses = %q, want [%q]", got, consul.DefaultAddress)
	}
}
