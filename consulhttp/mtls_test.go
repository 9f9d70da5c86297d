package consulhttp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
)

// TestMTLSFromEnvironment: an agent that requires client certificates
// (verify_incoming) is reached with the settings users give the consul CLI
// (CONSUL_HTTP_ADDR, CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY),
// and refuses clearly without the client certificate or the CA.
func TestMTLSFromEnvironment(t *testing.T) {
	srv := consultest.NewServer(t, consultest.WithTLS())
	ca, cert, key := srv.TLSFiles()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := beacon.Registration{ID: "mtls-1", Service: "mtls", Address: "127.0.0.1", Port: 9000}

	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // "" when Register must succeed
	}{
		{"all set", map[string]string{"CONSUL_CACERT": ca, "CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key}, ""},
		{"no client certificate", map[string]string{"CONSUL_CACERT": ca}, "CONSUL_CLIENT_CERT"},
		{"no CA", map[string]string{"CONSUL_CLIENT_CERT": cert, "CONSUL_CLIENT_KEY": key}, "CONSUL_CACERT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_TLS_SERVER_NAME"} {
				t.Setenv(k, "")
			}
			t.Setenv("CONSUL_HTTP_ADDR", "https://"+srv.HTTPAddr)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := consul.FromEnv()
			if err != nil {
				t.Fatalf("FromEnv() = %v", err)
			}
			c, err := consulhttp.New(cfg)
			if err != nil {
				t.Fatalf("New() = %v", err)
			}
			defer c.Close()
			err = c.Register(ctx, reg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Register() = %v, want nil", err)
			case tt.wantErr == "":
				if err := c.Deregister(ctx, reg.ID); err != nil {
					t.Errorf("Deregister() = %v", err)
				}
			case err == nil:
				t.Fatalf("Register() = nil, want an error naming %q", tt.wantErr)
			case !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Register() = %q, want it to name %q", err, tt.wantErr)
			default:
				t.Logf("Register() = %v", err)
			}
		})
	}
}
