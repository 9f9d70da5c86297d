package consul

import (
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
)

// TLSHint returns what to set when err is a TLS failure between a client
// and an agent, in the CONSUL_* terms users configure, or "" when err is
// not one. Go's own messages ("remote error: tls: certificate required")
// name the symptom, not the setting that fixes it.
func TLSHint(err error) string {
	if err == nil {
		return ""
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		return "the agent's certificate is not signed by a CA this client trusts: set CONSUL_CACERT or CONSUL_CAPATH"
	case errors.As(err, &hostname):
		return "the agent's certificate does not name the address dialled: set CONSUL_TLS_SERVER_NAME to a name it holds"
	case errors.As(err, &invalid):
		return "the agent's certificate is not valid (expired, or not for serving)"
	// The agent's alert arrives as text only (crypto/tls keeps the type
	// unexported): TLS 1.3 says "certificate required", TLS 1.2 "bad
	// certificate".
	case strings.Contains(msg, "tls: certificate required"), strings.Contains(msg, "tls: bad certificate"):
		return "the agent requires a client certificate (verify_incoming): set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"
	case errors.Is(err, http.ErrSchemeMismatch):
		return "the agent speaks plain HTTP: use an http:// address or unset CONSUL_HTTP_SSL"
	}
	return ""
}
