package beacon

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits Consul enforces (or that Consul DNS needs), checked before sending.
const (
	MaxMetaPairs    = 64
	MaxMetaKeyLen   = 128
	MaxMetaValueLen = 512
	// MaxServiceNameLen is Beacon's own bound on a service name (Consul
	// sets none): names travel in URL paths and log lines.
	MaxServiceNameLen = 512
	// MaxDNSLabelLen is the longest name Consul DNS can serve: one label.
	MaxDNSLabelLen = 63
	// MaxDatacenterLen is Beacon's bound on a datacenter name.
	MaxDatacenterLen      = 63
	MaxWaitTime           = 10 * time.Minute
	MinCheckInterval      = time.Second
	MinDeregisterCritical = time.Minute
	// MaxIDLen is Beacon's own bound: IDs travel in URL paths and log lines.
	MaxIDLen = 512
	// MaxCheckOutput is Consul's default check_output_max_size.
	MaxCheckOutput = 4096
	// reservedMetaPrefix is reserved by Consul for its own keys.
	reservedMetaPrefix = "consul-"
)

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidateServiceName accepts every service name Consul accepts that can
// travel safely: any non-empty name of valid UTF-8 without control
// characters or '/', up to MaxServiceNameLen bytes. Consul registers names
// that are not DNS labels (legacy_svc, api.v2) with only a warning, so
// lookups must find them; ValidateDNSName says whether Consul DNS can
// serve one. A '/' is refused because the name travels in URL paths and
// clients that splice it in raw (consul/api does) would send another path.
func ValidateServiceName(name string) error {
	if name == "" {
		return invalid("Service", "empty")
	}
	if len(name) > MaxServiceNameLen {
		return invalid("Service", "%d bytes, more than %d", len(name), MaxServiceNameLen)
	}
	if name == "." || name == ".." || strings.ContainsRune(name, '/') {
		// The agent cleans the request path: such a name cannot be looked up.
		return invalid("Service", "%q cannot be used in an agent URL path", name)
	}
	return validateText("Service", name)
}

// ValidateDNSName reports, as a *ValidationError, why Consul DNS cannot
// serve name: it must be one DNS label (1–63 letters, digits and hyphens,
// no hyphen at either end). Consul still registers such a name; callers
// use this to warn, not to refuse.
func ValidateDNSName(name string) error {
	return validateLabel("Service", name)
}

func validateLabel(field, name string) error {
	if name == "" {
		return invalid(field, "empty")
	}
	if n := utf8.RuneCountInString(name); n > MaxDNSLabelLen {
		return invalid(field, "%d characters, more than %d", n, MaxDNSLabelLen)
	}
	for _, r := range name {
		if r > unicode.MaxASCII || !isAlnum(byte(r)) && r != '-' {
			return invalid(field, "%q: character %s is not a letter, digit or hyphen", name, describeRune(r))
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return invalid(field, "%q starts or ends with a hyphen", name)
	}
	return nil
}

// describeRune names a character for an error message: the character
// itself, quoted, and its code point when it is not plain ASCII, so
// "café" reports 'é' (U+00E9), never one of its bytes.
func describeRune(r rune) string {
	if r == utf8.RuneError {
		return "(invalid UTF-8)"
	}
	if r > unicode.MaxASCII || !unicode.IsPrint(r) {
		return fmt.Sprintf("%q (%U)", r, r)
	}
	return fmt.Sprintf("%q", r)
}

// ValidateID checks an instance or check ID: non-empty, valid UTF-8, no
// control characters, at most MaxIDLen bytes. Reserved URL characters are
// allowed; backends escape them.
func ValidateID(field, id string) error {
	if id == "" {
		return invalid(field, "empty")
	}
	if len(id) > MaxIDLen {
		return invalid(field, "%d bytes, more than %d", len(id), MaxIDLen)
	}
	if id == "." || id == ".." {
		// The agent cleans the request path and redirects: such an ID can
		// be registered but never deregistered.
		return invalid(field, "%q cannot be used in an agent URL path", id)
	}
	return validateText(field, id)
}

func validateText(field, s string) error {
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, "%q contains control character %U", s, r)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// ValidateMeta checks Consul's metadata limits: at most 64 pairs, keys of
// 1–128 characters from [A-Za-z0-9_-] not starting with "consul-", values of
// at most 512 characters.
func ValidateMeta(meta map[string]string) error {
	if len(meta) > MaxMetaPairs {
		return invalid("Meta", "%d pairs, more than %d", len(meta), MaxMetaPairs)
	}
	for k, v := range meta {
		field := "Meta[" + strconv.Quote(k) + "]"
		switch {
		case k == "":
			return invalid("Meta", "empty key")
		case len(k) > MaxMetaKeyLen:
			return invalid(field, "key of %d characters, more than %d", len(k), MaxMetaKeyLen)
		case strings.HasPrefix(k, reservedMetaPrefix):
			return invalid(field, "the %q prefix is reserved by Consul", reservedMetaPrefix)
		case len(v) > MaxMetaValueLen:
			return invalid(field, "value of %d characters, more than %d", len(v), MaxMetaValueLen)
		}
		for _, r := range k {
			if r > unicode.MaxASCII || !isAlnum(byte(r)) && r != '-' && r != '_' {
				return invalid(field, "key character %s is not a letter, digit, '-' or '_'", describeRune(r))
			}
		}
		if err := validateText(field, v); err != nil {
			return err
		}
	}
	return nil
}

func validateTags(tags []string) error {
	for i, t := range tags {
		field := "Tags[" + strconv.Itoa(i) + "]"
		if t == "" {
			return invalid(field, "empty")
		}
		if err := validateText(field, t); err != nil {
			return err
		}
	}
	return nil
}

// validateAddress accepts an IP address or a host name; empty means the node's.
func validateAddress(field, addr string) error {
	if addr == "" || net.ParseIP(addr) != nil {
		return nil
	}
	if len(addr) > 253 {
		return invalid(field, "%d characters, longer than a host name can be", len(addr))
	}
	for _, label := range strings.Split(strings.TrimSuffix(addr, "."), ".") {
		if err := validateLabel(field, label); err != nil {
			return invalid(field, "%q is neither an IP address nor a host name", addr)
		}
	}
	return nil
}

// Validate checks r against Consul's limits. It returns a *ValidationError
// naming the first offending field.
func (r Registration) Validate() error {
	if err := ValidateID("ID", r.ID); err != nil {
		return err
	}
	if err := ValidateServiceName(r.Service); err != nil {
		return err
	}
	if err := validateAddress("Address", r.Address); err != nil {
		return err
	}
	if r.Port < 0 || r.Port > 65535 {
		return invalid("Port", "%d is outside 0–65535", r.Port)
	}
	if err := validateTaggedAddresses(r.TaggedAddresses); err != nil {
		return err
	}
	if err := validateTags(r.Tags); err != nil {
		return err
	}
	if err := ValidateMeta(r.Meta); err != nil {
		return err
	}
	if r.Weights != (Weights{}) {
		if r.Weights.Passing < 1 {
			return invalid("Weights.Passing", "%d, must be at least 1", r.Weights.Passing)
		}
		if r.Weights.Warning < 0 {
			return invalid("Weights.Warning", "%d, must not be negative", r.Weights.Warning)
		}
	}
	seen := make(map[string]bool, len(r.Checks))
	for i, c := range r.Checks {
		prefix := "Checks[" + strconv.Itoa(i) + "]."
		if err := c.validate(prefix); err != nil {
			return err
		}
		if c.AliasService == r.ID && c.AliasNode == "" {
			// It would count its own status among those it mirrors: once
			// critical, critical for good.
			return invalid(prefix+"AliasService", "%q is this instance: an alias check mirrors another one", c.AliasService)
		}
		id := r.checkID(i, c)
		if seen[id] {
			return invalid(prefix+"ID", "%q used twice", id)
		}
		seen[id] = true
	}
	return nil
}

func (c Check) validate(prefix string) error {
	if c.ID != "" {
		if err := ValidateID(prefix+"ID", c.ID); err != nil {
			return err
		}
	}
	// JSON would turn invalid UTF-8 into U+FFFD: Consul would probe
	// another address than the one validated here.
	for _, f := range []struct{ name, value string }{
		{"Name", c.Name}, {"HTTP", c.HTTP}, {"TCP", c.TCP}, {"GRPC", c.GRPC}, {"H2PING", c.H2PING},
		{"AliasService", c.AliasService}, {"AliasNode", c.AliasNode}, {"TLSServerName", c.TLSServerName},
	} {
		if err := validateText(prefix+f.name, f.value); err != nil {
			return err
		}
	}
	kinds := 0
	speaksTLS := false // for TLSSkipVerify and TLSServerName
	if c.HTTP != "" {
		kinds++
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid(prefix+"HTTP", "%q is not an absolute http(s) URL", c.HTTP)
		}
		speaksTLS = u.Scheme == "https"
	}
	if c.TCP != "" {
		kinds++
		if err := validateHostPort(prefix+"TCP", c.TCP); err != nil {
			return err
		}
	}
	if c.TTL != 0 {
		kinds++
		if c.TTL < 0 {
			return invalid(prefix+"TTL", "%v is negative", c.TTL)
		}
	}
	if c.GRPC != "" {
		kinds++
		// host:port, then an optional /service: Consul splits at the
		// first '/', so a service name may itself hold one.
		hostPort, service, hasService := strings.Cut(c.GRPC, "/")
		if err := validateHostPort(prefix+"GRPC", hostPort); err != nil {
			return invalid(prefix+"GRPC", "%q is not host:port[/service]", c.GRPC)
		}
		if hasService && service == "" {
			return invalid(prefix+"GRPC", "%q: empty service after '/' (leave out the '/' to ask about the whole server)", c.GRPC)
		}
		speaksTLS = c.GRPCUseTLS
	} else if c.GRPCUseTLS {
		return invalid(prefix+"GRPCUseTLS", "set without GRPC")
	}
	if c.H2PING != "" {
		kinds++
		if err := validateHostPort(prefix+"H2PING", c.H2PING); err != nil {
			return err
		}
		speaksTLS = c.H2PingUseTLS
	} else if c.H2PingUseTLS {
		return invalid(prefix+"H2PingUseTLS", "set without H2PING")
	}
	alias := c.AliasService != "" || c.AliasNode != ""
	if alias {
		kinds++
		for _, f := range []struct{ name, value string }{{"AliasService", c.AliasService}, {"AliasNode", c.AliasNode}} {
			if f.value == "" {
				continue
			}
			if err := ValidateID(prefix+f.name, f.value); err != nil {
				return err
			}
		}
	}
	if kinds != 1 {
		return invalid(prefix[:len(prefix)-1], "exactly one of HTTP, TCP, TTL, GRPC, H2PING and alias (AliasService/AliasNode) must be set, got %d", kinds)
	}
	switch {
	case c.TTL != 0:
		if c.Interval != 0 || c.Timeout != 0 {
			return invalid(prefix+"Interval", "a TTL check takes no interval or timeout")
		}
	case alias:
		// Consul follows the aliased health as it changes: there is
		// nothing to run on a schedule.
		if c.Interval != 0 || c.Timeout != 0 {
			return invalid(prefix+"Interval", "an alias check takes no interval or timeout")
		}
	default:
		if c.Interval < MinCheckInterval {
			return invalid(prefix+"Interval", "%v, must be at least %v", c.Interval, MinCheckInterval)
		}
		if c.Timeout < 0 {
			return invalid(prefix+"Timeout", "%v is negative", c.Timeout)
		}
	}
	if !speaksTLS {
		// Consul would ignore them: a check that looks verified, or
		// verified against a name, would not be.
		if c.TLSSkipVerify {
			return invalid(prefix+"TLSSkipVerify", "set on a check that does not use TLS (an https HTTP check, GRPC with GRPCUseTLS or H2PING with H2PingUseTLS)")
		}
		if c.TLSServerName != "" {
			return invalid(prefix+"TLSServerName", "set on a check that does not use TLS (an https HTTP check, GRPC with GRPCUseTLS or H2PING with H2PingUseTLS)")
		}
	} else if c.TLSServerName != "" {
		if err := validateAddress(prefix+"TLSServerName", c.TLSServerName); err != nil {
			return err
		}
	}
	if c.DeregisterCriticalAfter != 0 && c.DeregisterCriticalAfter < MinDeregisterCritical {
		return invalid(prefix+"DeregisterCriticalAfter", "%v, must be zero or at least %v (Consul's minimum)", c.DeregisterCriticalAfter, MinDeregisterCritical)
	}
	if c.InitialStatus != "" && !c.InitialStatus.Valid() {
		return invalid(prefix+"InitialStatus", "%q is not passing, warning or critical", c.InitialStatus)
	}
	return validateText(prefix+"Notes", c.Notes)
}

// validateHostPort accepts host:port with a non-empty host and a port of
// 1–65535, as the agent dials it.
func validateHostPort(field, s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return invalid(field, "%q is not host:port", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return invalid(field, "%q: port must be 1–65535", s)
	}
	return nil
}

// ValidateDatacenter accepts what Consul accepts as a datacenter name:
// letters, digits, '-' and '_'. Empty means the agent's own.
func ValidateDatacenter(dc string) error {
	if len(dc) > MaxDatacenterLen {
		return invalid("Datacenter", "%d characters, more than %d", len(dc), MaxDatacenterLen)
	}
	for _, r := range dc {
		if r > unicode.MaxASCII || !isAlnum(byte(r)) && r != '-' && r != '_' {
			return invalid("Datacenter", "%q: character %s is not a letter, digit, '-' or '_'", dc, describeRune(r))
		}
	}
	return nil
}

// Validate checks q before it is sent.
func (q Query) Validate() error {
	if err := ValidateServiceName(q.Service); err != nil {
		return err
	}
	if err := validateTags(q.Tags); err != nil {
		return err
	}
	if err := ValidateDatacenter(q.Datacenter); err != nil {
		return err
	}
	if q.Consistency < ConsistencyDefault || q.Consistency > ConsistencyConsistent {
		return invalid("Consistency", "unknown mode %d", q.Consistency)
	}
	if q.WaitTime < 0 || q.WaitTime > MaxWaitTime {
		return invalid("WaitTime", "%v is outside 0–%v", q.WaitTime, MaxWaitTime)
	}
	if q.Cached && q.Consistency == ConsistencyConsistent {
		return invalid("Cached", "an agent-cached read cannot be consistent")
	}
	if err := validateText("Near", q.Near); err != nil {
		return err
	}
	return validateText("Filter", q.Filter)
}

// ValidateTTLUpdate checks the arguments of Registry.UpdateTTL.
func ValidateTTLUpdate(checkID string, status Health, output string) error {
	if err := ValidateID("CheckID", checkID); err != nil {
		return err
	}
	if !status.Valid() {
		return invalid("Status", "%q is not passing, warning or critical", status)
	}
	if len(output) > MaxCheckOutput {
		return invalid("Output", "%d bytes, more than %d", len(output), MaxCheckOutput)
	}
	return nil
}
