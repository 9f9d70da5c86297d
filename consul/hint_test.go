package consul_test

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/beaconsd/beacon/consul"
)

func TestTLSHint(t *testing.T) {
	tests := []struct {
		err  error
		want string // a fragment of the hint; "" for none
	}{
		{nil, ""},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), ""},
		{fmt.Errorf("tls: failed to verify certificate: %w", x509.UnknownAuthorityError{}), "CONSUL_CACERT"},
		{fmt.Errorf("wrapped: %w", x509.HostnameError{Host: "10.0.0.1", Certificate: &x509.Certificate{}}), "CONSUL_TLS_SERVER_NAME"},
		{x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}, "not valid"},
		{errors.New("remote error: tls: certificate required"), "CONSUL_CLIENT_CERT"},
		{errors.New("remote error: tls: bad certificate"), "CONSUL_CLIENT_CERT"},
		{fmt.Errorf("Get: %w", http.ErrSchemeMismatch), "http://"},
	}
	for _, tt := range tests {
		got := consul.TLSHint(tt.err)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("TLSHint(%v) = %q, want a hint containing %q", tt.err, got, tt.want)
		}
	}
}
