package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/discovery"
)

// Check outcomes. Only fail makes doctor exit non-zero: a warning works,
// but not as well as it could.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "FAIL"
	statusSkip = "skip"
)

// finding is one line of `beacon doctor`.
type finding struct {
	check, status, detail, fix string
}

func (f finding) String() string {
	s := fmt.Sprintf("%-5s %-10s %s", f.status, f.check, f.detail)
	if f.fix != "" {
		s += "; fix: " + f.fix
	}
	return s
}

func (c *command) doctor(args []string) error {
	fs := c.flagSet("doctor", "")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	eps, _ := cfg.Endpoints() // validated by config
	failed, total := 0, 0
	for i, ep := range eps {
		if len(eps) > 1 {
			fmt.Fprintf(c.stdout, "agent %s:\n", ep)
		}
		noPort := i < len(cfg.Addresses) && portOmitted(cfg.Addresses[i])
		for _, f := range diagnose(c.ctx, cfg.Agent(i), ep, noPort) {
			fmt.Fprintln(c.stdout, f)
			total++
			if f.status == statusFail {
				failed++
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", failed, total)
	}
	fmt.Fprintf(c.stdout, "all %d checks passed\n", total)
	return nil
}

// checkOrder names doctor's checks after "agent", in the order they run;
// a check that cannot run because an earlier one failed is skipped, with
// every check after it.
var checkOrder = []string{"tls", "leader", "token", "acl", "streaming", "read-path"}

// diagnose runs the checks against one agent, in order. noPort says the
// address gave no port, so the scheme's default port is dialled.
func diagnose(ctx context.Context, cfg consul.Config, ep consul.Endpoint, noPort bool) []finding {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := []finding{checkReachable(ctx, ep, noPort)}
	// skipFrom skips the named check and every later one.
	skipFrom := func(first, why string) []finding {
		for _, n := range checkOrder[slices.Index(checkOrder, first):] {
			out = append(out, finding{check: n, status: statusSkip, detail: why})
		}
		return out
	}
	if out[0].status == statusFail {
		return skipFrom("tls", "the agent is not reachable")
	}
	cl, err := consulhttp.New(cfg)
	if err != nil {
		out = append(out, finding{check: "tls", status: statusFail, detail: err.Error(),
			fix: "check the files named by CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY"})
		return skipFrom("leader", "the TLS settings cannot be used")
	}
	defer cl.Close()

	// The leader query needs no token, so it also tests the transport.
	leader, leaderErr := cl.Leader(ctx)
	tlsF := checkTLS(ctx, cfg, ep, leaderErr)
	out = append(out, tlsF)
	if tlsF.status == statusFail {
		return skipFrom("leader", "no HTTP conversation with the agent")
	}
	out = append(out, checkLeader(ctx, cl, leader, leaderErr))

	tokenF, aclsOn := checkToken(ctx, cl, cfg)
	out = append(out, tokenF)
	if tokenF.status == statusFail {
		return skipFrom("acl", "the token is not accepted")
	}
	out = append(out, checkCatalogRead(ctx, cl, aclsOn), checkStreaming(ctx, cl), checkReadPath(ctx, cl))
	return out
}

// portOmitted reports whether an agent address names no port, so that
// consul.ParseAddress chose one (8500 or 8501 for a bare host, 80 or 443
// for a URL): doctor says which.
func portOmitted(addr string) bool {
	addr = strings.TrimSpace(addr)
	if strings.HasPrefix(addr, "unix://") {
		return false
	}
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	_, _, err := net.SplitHostPort(strings.TrimSuffix(addr, "/"))
	return err != nil
}

func checkReachable(ctx context.Context, ep consul.Endpoint, noPort bool) finding {
	f := finding{check: "agent"}
	_, port, _ := net.SplitHostPort(ep.Host)
	network, addr := "tcp", ep.Host
	if ep.Scheme == "unix" {
		network, addr = "unix", ep.Socket
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		f.status, f.detail = statusFail, fmt.Sprintf("%s: %v", ep, err)
		f.fix = "start the Consul agent, or point -consul or CONSUL_HTTP_ADDR at a running one"
		if noPort {
			f.detail += " (the address gives no port: port " + port + ")"
		}
		return f
	}
	conn.Close()
	f.status, f.detail = statusOK, ep.String()+" accepts connections"
	if noPort {
		f.detail += " (the address gives no port: port " + port + ")"
	}
	return f
}

// checkTLS compares what the configuration says with what the agent
// speaks, and explains a failed first request.
func checkTLS(ctx context.Context, cfg consul.Config, ep consul.Endpoint, reqErr error) finding {
	f := finding{check: "tls", status: statusOK}
	if ep.Scheme == "unix" {
		f.detail = "unix socket: no TLS"
		return checkTransport(f, ep, reqErr)
	}
	speaksTLS := probeTLS(ctx, ep.Host)
	hasTLSFiles := cfg.TLS.CAFile != "" || cfg.TLS.CAPath != "" || cfg.TLS.CertFile != ""
	switch {
	case ep.Scheme == "http" && speaksTLS:
		f.status, f.detail = statusFail, "the agent speaks HTTPS but the address is "+ep.String()
		f.fix = "use an https:// address or CONSUL_HTTP_SSL=true, with CONSUL_CACERT naming the agent's CA"
		return f
	case ep.Scheme == "https" && !speaksTLS && reqErr != nil:
		f.status, f.detail = statusFail, "the agent speaks plain HTTP but the address is "+ep.String()
		f.fix = "use an http:// address and unset CONSUL_HTTP_SSL, or enable TLS on the agent"
		return f
	case ep.Scheme == "http":
		f.detail = "plain HTTP"
		if hasTLSFiles {
			f.status, f.detail = statusWarn, "plain HTTP, yet TLS files are set (CONSUL_CACERT, CONSUL_CLIENT_CERT...) and unused"
			f.fix = "use an https:// address or CONSUL_HTTP_SSL=true if the agent should be reached over TLS"
		}
		return checkTransport(f, ep, reqErr)
	}
	// HTTPS: did the handshake and the first request work?
	var unknownCA x509.UnknownAuthorityError
	var certErr *tls.CertificateVerificationError
	var hostErr x509.HostnameError
	var opErr *net.OpError
	switch {
	case reqErr == nil:
	case errors.As(reqErr, &hostErr):
		f.status, f.detail = statusFail, "the agent's certificate does not name "+ep.Host+": "+hostErr.Error()
		f.fix = "set CONSUL_TLS_SERVER_NAME to a name in the certificate, or connect by one of those names"
		return f
	case errors.As(reqErr, &unknownCA) || errors.As(reqErr, &certErr):
		f.status, f.detail = statusFail, "the agent's certificate is not signed by a CA beacon trusts ("+rootCause(reqErr)+")"
		f.fix = "set CONSUL_CACERT (or CONSUL_CAPATH) to the CA that signed the agent's certificate"
		if cfg.TLS.CAFile == "" && cfg.TLS.CAPath == "" {
			f.detail += "; no CA is configured"
		}
		return f
	case errors.As(reqErr, &opErr) && opErr.Op == "remote error":
		f.status, f.detail = statusFail, "the agent refused the TLS connection ("+rootCause(reqErr)+")"
		f.fix = "the agent verifies clients: set CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY to a certificate its CA signed"
		return f
	default:
		return checkTransport(f, ep, reqErr)
	}
	f.detail = "HTTPS, the agent's certificate verified"
	if cfg.TLS.CertFile != "" {
		f.detail += ", client certificate sent"
	}
	if cfg.TLS.InsecureSkipVerify {
		f.status, f.detail = statusWarn, "HTTPS, but the agent's certificate is not verified (CONSUL_HTTP_SSL_VERIFY=false)"
		f.fix = "set CONSUL_CACERT to the agent's CA and drop CONSUL_HTTP_SSL_VERIFY=false"
	}
	return f
}

// checkTransport fails f when the first request never got an HTTP answer.
func checkTransport(f finding, ep consul.Endpoint, reqErr error) finding {
	var se *beacon.StatusError
	if reqErr != nil && !errors.As(reqErr, &se) {
		f.status, f.detail = statusFail, fmt.Sprintf("%s: %v", ep, reqErr)
		f.fix = "check that " + ep.String() + " is a Consul agent's HTTP address"
	}
	return f
}

// probeTLS reports whether the agent at addr answers a TLS handshake,
// whatever it thinks of our certificates.
func probeTLS(ctx context.Context, addr string) bool {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{InsecureSkipVerify: true}} // #nosec G402: only asks whether TLS is spoken
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err == nil {
		conn.Close()
		return true
	}
	var opErr *net.OpError
	// An alert is TLS too (a server that demands a client certificate).
	return errors.As(err, &opErr) && opErr.Op == "remote error"
}

func rootCause(err error) string {
	// Consul's own words: the doctor gives its own fix, not the error's hint.
	var se *beacon.StatusError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s %s: %d %s: %s", se.Method, se.Path, se.StatusCode, http.StatusText(se.StatusCode), se.Message)
	}
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

func checkLeader(ctx context.Context, cl *consulhttp.Client, leader string, err error) finding {
	f := finding{check: "leader"}
	switch {
	case err != nil:
		f.status, f.detail, f.fix = statusFail, err.Error(), "check the agent's log"
	case leader == "":
		f.status, f.detail = statusFail, "the agent knows no leader: the servers have no quorum"
		f.fix = "check that a majority of servers run and can reach each other (consul members, the servers' logs)"
	default:
		f.status, f.detail = statusOK, "leader at "+leader
		if self, err := cl.Self(ctx); err == nil { // needs agent:read; a detail only
			f.detail += fmt.Sprintf(" (agent node %s, datacenter %s, Consul %s)", self.Node, self.Datacenter, self.Version)
		}
	}
	return f
}

func checkToken(ctx context.Context, cl *consulhttp.Client, cfg consul.Config) (f finding, aclsOn bool) {
	f = finding{check: "token"}
	hasToken := cfg.Token != "" || cfg.TokenFile != ""
	tok, err := cl.TokenSelf(ctx)
	switch {
	case errors.Is(err, consulhttp.ErrACLDisabled):
		f.status, f.detail = statusOK, "ACLs are disabled: no token needed"
		if hasToken {
			f.detail += " (the token set is not used)"
		}
		return f, false
	case errors.Is(err, consul.ErrConfig):
		f.status, f.detail, f.fix = statusFail, err.Error(), "check CONSUL_HTTP_TOKEN_FILE: it must name a readable file holding one token"
	case errors.Is(err, beacon.ErrPermissionDenied) && !hasToken:
		f.status, f.detail = statusFail, "ACLs are on and no token is set ("+rootCause(err)+")"
		f.fix = "set CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE"
	case errors.Is(err, beacon.ErrPermissionDenied):
		f.status, f.detail = statusFail, "the agent does not accept the token ("+rootCause(err)+")"
		f.fix = "check CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE: the token may be mistyped, deleted, expired or from another cluster"
	case err != nil:
		f.status, f.detail, f.fix = statusFail, err.Error(), "check the agent's log"
	default:
		f.status, f.detail = statusOK, "accepted: "+describeToken(tok)
	}
	return f, true
}

// describeToken says what a token may do, by what it is linked to; the
// accessor ID is public, the secret never shown.
func describeToken(t consulhttp.TokenInfo) string {
	acc := t.AccessorID
	if len(acc) > 8 {
		acc = acc[:8] + "…"
	}
	parts := []string{"accessor " + acc}
	if slices.Contains(t.Policies, "global-management") {
		parts = append(parts, "global-management (may do anything)")
	} else if len(t.Policies) > 0 {
		parts = append(parts, "policies "+strings.Join(t.Policies, ", "))
	}
	if len(t.Roles) > 0 {
		parts = append(parts, "roles "+strings.Join(t.Roles, ", "))
	}
	if len(t.ServiceIdentities) > 0 {
		parts = append(parts, "service identities "+strings.Join(t.ServiceIdentities, ", ")+" (register those, read the catalog)")
	}
	if len(t.NodeIdentities) > 0 {
		parts = append(parts, "node identities "+strings.Join(t.NodeIdentities, ", "))
	}
	if len(parts) == 1 {
		parts = append(parts, "no policy, role or identity: it may do what the anonymous token may")
	}
	return strings.Join(parts, "; ")
}

// checkCatalogRead: with ACLs on, a token without read rights gets empty
// answers, not errors, which looks exactly like a service with no
// instances.
func checkCatalogRead(ctx context.Context, cl *consulhttp.Client, aclsOn bool) finding {
	f := finding{check: "acl"}
	svcs, _, err := cl.Services(ctx)
	if err != nil {
		f.status, f.detail, f.fix = statusFail, err.Error(), "check the agent's log"
		return f
	}
	if !aclsOn {
		f.status, f.detail = statusOK, fmt.Sprintf("ACLs off: the catalog is open (%s)", plural(len(svcs), "service"))
		return f
	}
	if len(svcs) == 0 {
		f.status, f.detail = statusFail, "ACLs on, and the token sees no service: Consul hides what a token may not read, so every lookup would come back empty"
		f.fix = `give the token service_prefix "" { policy = "read" } and node_prefix "" { policy = "read" } (or narrower prefixes)`
		return f
	}
	// Health answers also need node:read, else instances vanish from them.
	if insts, _, err := cl.ServiceInstances(ctx, svcs[0].Name); err == nil && len(insts) == 0 {
		f.status, f.detail = statusFail, fmt.Sprintf("ACLs on; the token sees %s but no instance of %q: it may not read nodes", plural(len(svcs), "service"), svcs[0].Name)
		f.fix = `give the token node_prefix "" { policy = "read" }`
		return f
	}
	f.status, f.detail = statusOK, fmt.Sprintf("ACLs on; the token can read the catalog (%s visible)", plural(len(svcs), "service"))
	return f
}

func checkStreaming(ctx context.Context, cl *consulhttp.Client) finding {
	f := finding{check: "streaming"}
	backend, err := cl.HealthQueryBackend(ctx, "consul")
	if err != nil {
		f.status, f.detail, f.fix = statusFail, err.Error(), "check the agent's log"
		return f
	}
	// The version needs agent:read; without it the race below is not ruled
	// out, and doctor says so rather than guess.
	version, why := "", ""
	if self, err := cl.Self(ctx); err == nil {
		version = self.Version
	} else if errors.Is(err, beacon.ErrPermissionDenied) {
		why = "the token lacks agent:read"
	} else {
		why = "GET /v1/agent/self failed: " + err.Error()
	}
	racy, known := streamingRace(version)
	switch {
	case backend == "streaming" && (racy || !known):
		f.status = statusWarn
		if known {
			f.detail = "Consul " + version + " with the streaming backend on (X-Consul-Query-Backend: streaming)"
		} else {
			f.detail = "the streaming backend is on and the agent's version is unknown (" + cmp.Or(why, "the agent did not say") + "; streaming before Consul 1.16 has a race)"
		}
		f.detail += ": before 1.16 a service's first streaming subscriber can miss a change and keep serving a stale view until something about that instance changes again (hashicorp/consul#16871); " +
			"Beacon bounds it: discovery verifies each new watch with a plain read and repairs stale views within WithStaleBound (default 10 s)"
		f.fix = "upgrade the agents to Consul 1.16 or later, or set use_streaming_backend = false in the config of the agents you run (each watcher then costs the servers a blocking query), or run Beacon programs with " + discovery.ReadPathEnv + "=blocking (no agent change; see the read-path line)"
	case backend == "streaming":
		f.status, f.detail = statusOK, "health queries use the streaming backend (X-Consul-Query-Backend: streaming)"
	case backend == "":
		f.status, f.detail = statusWarn, "the agent sent no X-Consul-Query-Backend header (Consul before 1.10?)"
		f.fix = "upgrade the agent; streaming makes watches far cheaper for the servers"
	case racy:
		// Off on purpose, most likely: the advice for these versions.
		f.status, f.detail = statusOK, "health queries use the "+backend+" backend, which Consul "+version+"'s streaming race (hashicorp/consul#16871) does not affect; upgrade to 1.16 or later before turning streaming on"
	default:
		f.status, f.detail = statusWarn, "health queries use the "+backend+" backend: every watcher costs the servers a blocking query"
		f.fix = "set use_streaming_backend = true on the agent and rpc.enable_streaming = true on the servers"
	}
	return f
}

// checkReadPath reports what the agent serves on each of discovery's read
// paths (discovery.ReadPath), asked as a watch would with a one-shot
// blocking query on the consul service, its own configuration when
// readable, and the path this environment chooses.
func checkReadPath(ctx context.Context, cl *consulhttp.Client) finding {
	f := finding{check: "read-path", status: statusOK}
	probe := func(p discovery.ReadPath) (beacon.QueryMeta, error) {
		q := beacon.Query{Service: "consul", IncludeUnhealthy: true, WaitIndex: 1, WaitTime: 100 * time.Millisecond}
		switch p {
		case discovery.ReadBlocking:
			q.NoStreaming = true
		case discovery.ReadCached:
			q.NoStreaming, q.Cached = true, true
		}
		_, meta, err := cl.Instances(ctx, q)
		return meta, err
	}
	var parts []string
	for _, p := range []discovery.ReadPath{discovery.ReadStreaming, discovery.ReadBlocking, discovery.ReadCached} {
		meta, err := probe(p)
		if err != nil {
			f.status, f.fix = statusFail, "check the agent's log"
			parts = append(parts, p.String()+": "+err.Error())
			continue
		}
		got := cmp.Or(string(meta.Backend), "no X-Consul-Query-Backend")
		if meta.AgentCache != "" {
			got += ", X-Cache " + meta.AgentCache
		}
		parts = append(parts, p.String()+" -> "+got)
		switch {
		case p == discovery.ReadBlocking && meta.Backend == beacon.QueryBackendStreaming:
			f.status = cmp.Or(statusFailIf(f.status), statusWarn)
			f.fix = "this agent streams even merge-central-config reads: set use_streaming_backend = false on it to keep watches off streaming"
		case p == discovery.ReadCached && meta.AgentCache == "":
			f.status = cmp.Or(statusFailIf(f.status), statusWarn)
			f.fix = "the agent's HTTP cache is off (http_config.use_cache = false): the cached path reads the servers directly"
		}
	}
	if self, err := cl.Self(ctx); err == nil {
		if b := self.UseStreamingBackend; b != nil {
			parts = append(parts, "use_streaming_backend = "+strconv.FormatBool(*b))
		}
		if b := self.HTTPUseCache; b != nil {
			parts = append(parts, "http_config.use_cache = "+strconv.FormatBool(*b))
		}
	}
	chosen := "streaming (default)"
	if p, file, err := discovery.ChooseReadPath(""); err != nil {
		chosen = "invalid: " + err.Error()
		f.status = cmp.Or(statusFailIf(f.status), statusWarn)
		f.fix = "set " + discovery.ReadPathEnv + " to streaming, blocking or cached"
	} else if file != "" {
		chosen = p.String() + " (from " + file + ")"
	} else if os.Getenv(discovery.ReadPathEnv) != "" {
		chosen = p.String() + " (" + discovery.ReadPathEnv + ")"
	}
	parts = append(parts, "this environment reads "+chosen)
	f.detail = strings.Join(parts, "; ")
	return f
}

// statusFailIf keeps a failure a failure: "" unless status is statusFail.
func statusFailIf(status string) string {
	if status == statusFail {
		return status
	}
	return ""
}

// streamingRace reports whether Consul version v publishes a change event
// before committing it (hashicorp/consul#16871, fixed in 1.16.0, not
// backported), and whether v could be read at all ("1.14.8",
// "1.15.2+ent", "1.16.0-rc1").
func streamingRace(v string) (racy, known bool) {
	v = strings.TrimPrefix(v, "v")
	majS, rest, ok := strings.Cut(v, ".")
	if !ok {
		return false, false
	}
	minS := rest
	if i := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minS = rest[:i]
	}
	maj, err1 := strconv.Atoi(majS)
	mnr, err2 := strconv.Atoi(minS)
	if err1 != nil || err2 != nil {
		return false, false
	}
	return maj < 1 || maj == 1 && mnr < 16, true
}
