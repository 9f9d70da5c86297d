package consultest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consul"
)

const (
	// startTimeout bounds NewServer and Restart, all attempts included. A dev
	// agent is normally ready in one to three seconds; a loaded CI box running
	// many test binaries at once needs the slack.
	startTimeout = 30 * time.Second
	// maxRetries is how many times an agent that exits while starting (most
	// likely a port taken between choosing and binding it) is started again.
	maxRetries = 3
	// pollInterval paces the readiness polls of the agent's HTTP API.
	pollInterval = 50 * time.Millisecond
	// logTailLines is how much of the agent's log a failing test shows.
	logTailLines = 200
)

// Server is a running Consul agent started for a test.
type Server struct {
	Name     string // node name
	IP       string // loopback IP it binds, e.g. "127.0.0.1" or "127.x.y.z"
	HTTPAddr string // "ip:port" of the HTTP API (HTTPS with WithTLS)
	DNSAddr  string // "ip:port"
	// DataDir is a directory reserved for the agent's data. Dev agents keep
	// their state in memory, so it stays empty; a Cluster's agents use it.
	DataDir string

	bin   string
	opts  options
	dir   string // per-server temp dir: config files, log, DataDir
	log   string // agent stdout+stderr, appended to across (re)starts
	ports ports
	// client reaches the HTTP API: with WithTLS it trusts the CA and
	// presents the client certificate.
	client    *http.Client
	pki       *pki      // WithTLS; nil without
	cert      certFiles // WithTLS: the agent's own certificate
	mgmtToken string    // WithACL; "" without

	// role is roleDev for NewServer; a Cluster's agents are servers and
	// clients with a data dir, a pinned node ID and the cluster to join.
	role    role
	nodeID  string
	cluster *Cluster

	mu       sync.Mutex
	proc     *process // nil when no agent is running
	paused   bool     // proc is stopped by SIGSTOP
	starts   int      // agent processes started so far, for log headers
	logShown bool     // the log was already shown by a failure message
}

type ports struct {
	HTTP    int `json:"http"`
	DNS     int `json:"dns"`
	SerfLAN int `json:"serf_lan"`
	SerfWAN int `json:"serf_wan"`
	Server  int `json:"server"`
}

// process is one agent process; done is closed once it has been reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result, valid after done is closed
}

type options struct {
	name      string
	extraJSON string
	args      []string
	env       []string
	tls       bool
	acl       bool
	// clientMeta[i] is the node_meta of a Cluster's client i (WithClientNodeMeta).
	clientMeta []map[string]string
}

// Option configures NewServer.
type Option func(*options)

// WithNodeName sets the agent's node name. The default is "consultest-"
// followed by random hex digits.
func WithNodeName(name string) Option { return func(o *options) { o.name = name } }

// WithConfigJSON adds a JSON configuration file, which the agent merges over
// the one consultest writes (objects merge, later scalar values win).
func WithConfigJSON(extra string) Option { return func(o *options) { o.extraJSON = extra } }

// WithArgs appends command-line arguments to "consul agent -dev ...". Flags
// override configuration files.
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithEnv adds environment variables ("KEY=value") to the agent's, which
// is otherwise the test process's: GOMAXPROCS=32, say, to widen a race.
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// ErrNoBinary is matched by the error of BinaryPath (and so of Start) when
// no consul binary is found at all. A CONSUL_BIN that names no executable
// file is another error: a choice made and broken is not an absence.
var ErrNoBinary = errors.New("consultest: no consul binary")

// BinaryPath returns the consul binary to run: $CONSUL_BIN when set, else
// consul on PATH, else bin/consul in the working directory or the nearest
// parent that has one. It fails when none is found (an error matching
// ErrNoBinary) or $CONSUL_BIN is not an executable file.
func BinaryPath() (string, error) {
	if p := os.Getenv("CONSUL_BIN"); p != "" {
		// An explicit choice is not silently replaced by another binary.
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("consultest: CONSUL_BIN: %w", err)
		}
		return filepath.Abs(p)
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return filepath.Abs(p)
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("consultest: %w", err)
	}
	name := "consul"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	// go test runs in the package directory; bin/ sits at the module root.
	for dir := wd; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, "bin", name)
		if checkExecutable(p) == nil {
			return p, nil
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	return "", fmt.Errorf("%w: set CONSUL_BIN or put consul on PATH", ErrNoBinary)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", p)
	}
	return nil
}

// requiredBy names the environment variable that makes a missing binary
// a failure instead of a skip, or returns "" when none is set.
func requiredBy() string {
	if v := os.Getenv("BEACON_REQUIRE_CONSUL"); v == "1" {
		return "BEACON_REQUIRE_CONSUL=1"
	}
	if v := os.Getenv("CI"); v != "" && v != "false" && v != "0" {
		return "CI=" + v
	}
	return ""
}

// abort ends a test whose agents could not start: see verdict.
func abort(t testing.TB, err error) {
	t.Helper()
	if skip, msg := verdict(err); skip {
		t.Skip(msg)
	} else {
		t.Fatal(msg)
	}
}

// verdict decides how a test whose agents could not start ends: with a
// one-line skip when there is no consul binary, unless the environment
// requires one (see requiredBy); with a failure otherwise.
func verdict(err error) (skip bool, msg string) {
	if !errors.Is(err, ErrNoBinary) {
		return false, err.Error()
	}
	if why := requiredBy(); why != "" {
		return false, fmt.Sprintf("%v; failing, not skipping, because %s requires one", err, why)
	}
	return true, fmt.Sprintf("%v (skipped; CI=true or BEACON_REQUIRE_CONSUL=1 fails instead)", err)
}

// Binary returns the consul binary (see BinaryPath) for a test that runs
// it some other way than NewServer; without one it ends the test as
// NewServer does: a one-line skip, or a failure when the environment
// requires Consul.
func Binary(t testing.TB) string {
	t.Helper()
	p, err := BinaryPath()
	if err != nil {
		abort(t, err)
	}
	return p
}

// NewServer starts a dev-mode Consul agent and waits until it is leader and
// has registered its own node. The agent is stopped and its directory
// removed when the test ends. Without a consul binary (see BinaryPath) the
// test is skipped with one line, or fails when $CI or
// BEACON_REQUIRE_CONSUL=1 is set; it fails when the agent does not become
// ready within 30 seconds.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := newServer(t.Logf, opts...)
	if err != nil {
		abort(t, err)
	}
	t.Cleanup(func() { s.release(t) })
	return s
}

// newServer starts a dev agent as NewServer describes. logf (nil: none)
// hears of retries. On error nothing is left running or on disk; else the
// caller stops the agent with close or release.
func newServer(logf func(format string, args ...any), opts ...Option) (*Server, error) {
	bin, o, err := prepare(opts)
	if err != nil {
		return nil, err
	}
	s, err := newAgent(bin, o, roleDev, o.name)
	if err != nil {
		return nil, err
	}
	if o.tls {
		if s.pki, err = newPKI(filepath.Join(s.dir, "tls")); err == nil {
			s.client, err = clientFor(s.pki)
		}
		if err != nil {
			s.close()
			return nil, fmt.Errorf("consultest: creating certificates: %w", err)
		}
	}
	if o.acl {
		s.mgmtToken = randomUUID()
	}
	s.mu.Lock()
	err = startAll([]*Server{s}, startTimeout, logf, nil)
	s.mu.Unlock()
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// prepare is where NewServer and NewCluster begin: the binary and the
// options, checked.
func prepare(opts []Option) (string, options, error) {
	bin, err := BinaryPath()
	if err != nil {
		return "", options{}, err
	}
	o := options{name: "consultest-" + randomHex(4)}
	for _, opt := range opts {
		opt(&o)
	}
	if o.name == "" {
		return "", options{}, errors.New("consultest: empty node name")
	}
	if o.extraJSON != "" && !json.Valid([]byte(o.extraJSON)) {
		// Caught here: the agent would exit and be retried in vain.
		return "", options{}, fmt.Errorf("consultest: WithConfigJSON: invalid JSON: %s", o.extraJSON)
	}
	return bin, o, nil
}

// newAgent makes the Server for one agent, with a directory of its own;
// nothing runs yet.
func newAgent(bin string, o options, r role, name string) (*Server, error) {
	// Not t.TempDir: its path embeds the test name, which can be long, and
	// removing the directory is ours to order after the agent is dead.
	dir, err := os.MkdirTemp("", "consultest-")
	if err != nil {
		return nil, fmt.Errorf("consultest: %w", err)
	}
	s := &Server{
		Name:    name,
		DataDir: filepath.Join(dir, "data"),
		bin:     bin,
		opts:    o,
		dir:     dir,
		log:     filepath.Join(dir, "agent.log"),
		client:  httpClient,
		role:    r,
	}
	if err := os.Mkdir(s.DataDir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("consultest: %w", err)
	}
	return s, nil
}

// clientFor returns the client that polls agents: with a CA (WithTLS) it
// trusts the CA and presents the client certificate.
func clientFor(p *pki) (*http.Client, error) {
	if p == nil {
		return httpClient, nil
	}
	tc, err := p.clientTLS()
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout:   httpClient.Timeout,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tc},
	}, nil
}

// startAll launches nodes, all at once (a cluster's servers wait for each
// other anyway), on fresh addresses, and waits until every one is ready.
// An agent that exits while starting, most likely because another process
// took a port between choosing and binding it, makes every node move to
// new addresses (the others' retry_join lists name the servers') and start
// again, up to maxRetries times. hook (may be nil) runs after the
// addresses are chosen, before the agents start. The caller holds the
// nodes' locks. On error no agent runs, and the error carries the log of
// the agents that failed.
func startAll(nodes []*Server, timeout time.Duration, logf func(format string, args ...any), hook func(attempt int)) error {
	deadline := time.Now().Add(timeout)
	stopAll := func() {
		for _, n := range nodes {
			n.stopLocked()
		}
	}
	for attempt := 0; ; attempt++ {
		used := map[string]bool{} // "ip" and "ip:port" taken by earlier nodes
		for _, n := range nodes {
			if err := n.pickAddr(used); err != nil {
				return fmt.Errorf("consultest: choosing an address for %s: %w", n.Name, err)
			}
		}
		if hook != nil {
			hook(attempt)
		}
		for _, n := range nodes {
			if _, err := n.launchLocked(); err != nil {
				stopAll()
				return fmt.Errorf("consultest: starting agent %s: %w", n.Name, err)
			}
		}
		exited, pending, err := waitAll(nodes, deadline, waitFull)
		if err == nil {
			return nil
		}
		stopAll()
		if exited == nil {
			return withLogs(fmt.Errorf("consultest: not ready after %v: %w", timeout, err), pending)
		}
		if !exited.retryable(err, attempt, deadline) {
			return withLogs(fmt.Errorf("consultest: starting agent %s on %s: %w", exited.Name, exited.HTTPAddr, err), []*Server{exited})
		}
		if logf != nil {
			logf("consultest: agent %s on %s: %v; starting again on new ports", exited.Name, exited.HTTPAddr, err)
		}
		for _, n := range nodes {
			if err := n.wipeData(); err != nil {
				return err
			}
		}
	}
}

// withLogs adds the tail of each node's log to err; the nodes are marked so
// that their cleanup does not show it again.
func withLogs(err error, nodes []*Server) error {
	var b strings.Builder
	for _, n := range nodes {
		n.logShown = true
		fmt.Fprintf(&b, "\nagent %s log (last %d lines):\n%s", n.Name, logTailLines, n.logTail())
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// wipeData empties the node's data dir.
func (s *Server) wipeData() error {
	if err := os.RemoveAll(s.DataDir); err != nil {
		return fmt.Errorf("consultest: wiping %s: %w", s.DataDir, err)
	}
	if err := os.Mkdir(s.DataDir, 0o700); err != nil {
		return fmt.Errorf("consultest: %w", err)
	}
	return nil
}

// Config returns a client configuration for the agent's HTTP API. With
// WithTLS the address is "https://" + HTTPAddr and TLS names the CA and the
// client certificate (see TLSFiles). It never carries an ACL token.
func (s *Server) Config() consul.Config {
	if s.pki == nil {
		return consul.Config{Addresses: []string{s.HTTPAddr}}
	}
	ca, cert, key := s.TLSFiles()
	return consul.Config{
		Addresses: []string{"https://" + s.HTTPAddr},
		TLS:       consul.TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key},
	}
}

// URL returns the base URL of the agent's HTTP API: "http://" + HTTPAddr, or
// "https://" + HTTPAddr with WithTLS.
func (s *Server) URL() string {
	if s.pki != nil {
		return "https://" + s.HTTPAddr
	}
	return "http://" + s.HTTPAddr
}

// Stop kills the agent and waits for it to exit. It may be called more than
// once, and before the test's cleanup (which calls it too).
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Pause stops the agent process with SIGSTOP and returns once it is
// stopped: it holds its ports (connections are still accepted by the
// kernel) but answers nothing, neither HTTP nor gossip, until Resume. It
// does nothing when no agent runs. Stop and Restart work on a paused agent.
// Pause needs Linux; elsewhere it panics.
func (s *Server) Pause() {
	if err := s.pause(); err != nil {
		panic(err.Error())
	}
}

func (s *Server) pause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return nil
	}
	// Marked paused even on error: the signal may have been sent, and
	// continuing a running process does nothing.
	s.paused = true
	if err := signalProcess(s.proc.cmd, true); err != nil {
		return fmt.Errorf("consultest: pausing agent %s: %w", s.Name, err)
	}
	return nil
}

// Resume continues a paused agent (SIGCONT). It does nothing when the agent
// is not paused.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || !s.paused {
		return
	}
	if err := signalProcess(s.proc.cmd, false); err != nil && !s.proc.exited() {
		panic(fmt.Sprintf("consultest: resuming agent %s: %v", s.Name, err))
	}
	s.paused = false
}

// Running reports whether the agent process is running: started and neither
// stopped nor exited. A paused agent is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Restart stops the agent, if it runs, and starts a fresh dev agent on the
// same IP and ports. Dev agents keep state in memory, so everything
// registered before is gone. It fails the test if the new agent does not
// become ready. (On a Cluster's node it is Node.Restart keeping the data.)
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.restart(true, waitFull); err != nil {
		t.Fatal(err)
	}
}

// restart stops the agent, if it runs, wipes its data dir unless keepData,
// and starts it again on the same IP and ports, waiting as wait says. On
// error no agent runs, and the error carries the agent's log.
func (s *Server) restart(keepData bool, wait waitMode) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if !keepData {
		if err := s.wipeData(); err != nil {
			return err
		}
	}
	if wait == waitFull && s.role == roleServer {
		// See Node.Restart.
		wait = waitAlive
	}
	deadline := time.Now().Add(startTimeout)
	for attempt := 0; ; attempt++ {
		err := s.startLocked(deadline, wait)
		if err == nil {
			return nil
		}
		// The address must not change, so a retry can only hope that
		// whatever held a port has let go of it.
		if !s.retryable(err, attempt, deadline) {
			return withLogs(fmt.Errorf("consultest: restarting agent %s on %s: %w", s.Name, s.HTTPAddr, err), []*Server{s})
		}
	}
}

// exitError reports an agent that exited before becoming ready.
type exitError struct{ err error }

func (e *exitError) Error() string { return fmt.Sprintf("agent exited while starting: %v", e.err) }

func (s *Server) retryable(err error, attempt int, deadline time.Time) bool {
	var ee *exitError
	return errors.As(err, &ee) && attempt < maxRetries && time.Now().Before(deadline)
}

// agentConfig is the JSON configuration file given to every agent.
type agentConfig struct {
	NodeName           string      `json:"node_name"`
	BindAddr           string      `json:"bind_addr"`
	ClientAddr         string      `json:"client_addr"`
	AdvertiseAddr      string      `json:"advertise_addr"`
	Ports              portsConfig `json:"ports"`
	DisableUpdateCheck bool        `json:"disable_update_check"`
	DisableHostNodeID  bool        `json:"disable_host_node_id"`
	LogLevel           string      `json:"log_level"`
	TLS                *tlsConfig  `json:"tls,omitempty"`
	ACL                *aclConfig  `json:"acl,omitempty"`
	// The rest is for the agents of a Cluster (see clusterConfig).
	NodeID               string             `json:"node_id,omitempty"`
	DataDir              string             `json:"data_dir,omitempty"`
	Server               bool               `json:"server,omitempty"`
	BootstrapExpect      int                `json:"bootstrap_expect,omitempty"`
	RetryJoin            []string           `json:"retry_join,omitempty"`
	RetryInterval        string             `json:"retry_interval,omitempty"`
	LeaveOnTerminate     *bool              `json:"leave_on_terminate,omitempty"`
	SkipLeaveOnInterrupt *bool              `json:"skip_leave_on_interrupt,omitempty"`
	Performance          *performanceConfig `json:"performance,omitempty"`
	GossipLAN            *gossipConfig      `json:"gossip_lan,omitempty"`
	Autopilot            *autopilotConfig   `json:"autopilot,omitempty"`
	NodeMeta             map[string]string  `json:"node_meta,omitempty"`
}

// portsConfig is the "ports" stanza; -1 disables a listener.
type portsConfig struct {
	HTTP    int `json:"http"`
	HTTPS   int `json:"https"`
	DNS     int `json:"dns"`
	SerfLAN int `json:"serf_lan"`
	SerfWAN int `json:"serf_wan"`
	Server  int `json:"server"`
	// Dev agents of 1.14 bind gRPC on 8502 and gRPC-TLS on 8503, which
	// would make every second agent on the host fail. The config file
	// overrides the dev defaults (checked with ss), and unlike -grpc-port
	// flags leaves WithConfigJSON able to turn gRPC back on.
	GRPC    int `json:"grpc"`
	GRPCTLS int `json:"grpc_tls"`
}

func (s *Server) writeConfig() ([]string, error) {
	p := portsConfig{
		HTTP: s.ports.HTTP, HTTPS: -1,
		DNS: s.ports.DNS, SerfLAN: s.ports.SerfLAN, SerfWAN: s.ports.SerfWAN, Server: s.ports.Server,
		GRPC: -1, GRPCTLS: -1,
	}
	if s.pki != nil {
		// HTTPS only, on the port chosen for the HTTP API.
		var err error
		if s.cert, err = s.pki.issueServer(s.IP); err != nil {
			return nil, fmt.Errorf("issuing the server certificate: %w", err)
		}
		p.HTTP, p.HTTPS = -1, s.ports.HTTP
	}
	cfg := agentConfig{
		NodeName:           s.Name,
		BindAddr:           s.IP,
		ClientAddr:         s.IP,
		AdvertiseAddr:      s.IP, // the WAN address follows it
		Ports:              p,
		DisableUpdateCheck: true,
		// Random node IDs: agents on one host must not share a host-derived
		// one. This is the default, made explicit.
		DisableHostNodeID: true,
		LogLevel:          "debug",
		TLS:               s.tlsConfig(),
		ACL:               s.aclConfig(),
	}
	if s.role != roleDev {
		s.clusterConfig(&cfg)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	files := []string{filepath.Join(s.dir, "consultest.json")}
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		return nil, err
	}
	if s.opts.extraJSON != "" {
		files = append(files, filepath.Join(s.dir, "extra.json"))
		if err := os.WriteFile(files[1], []byte(s.opts.extraJSON), 0o600); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// waitMode says what startLocked waits for.
type waitMode int

const (
	// waitFull waits until the agent is ready (see ready).
	waitFull waitMode = iota
	// waitAlive is waitFull without waiting for the agent's own sync of
	// its node info and services (see Node.Restart).
	waitAlive
	// waitHTTP waits until the agent's HTTP API answers /v1/agent/self.
	waitHTTP
)

// startLocked starts an agent on s's current address and waits until it is
// ready, exits (*exitError) or the deadline passes. On error no agent runs.
func (s *Server) startLocked(deadline time.Time, wait waitMode) error {
	if _, err := s.launchLocked(); err != nil {
		return err
	}
	if _, _, err := waitAll([]*Server{s}, deadline, wait); err != nil {
		s.stopLocked()
		return err
	}
	return nil
}

// launchLocked writes the configuration and starts an agent on s's current
// address, without waiting for anything.
func (s *Server) launchLocked() (*process, error) {
	files, err := s.writeConfig()
	if err != nil {
		return nil, err
	}
	args := []string{"agent"}
	if s.role == roleDev {
		args = append(args, "-dev")
	}
	for _, f := range files {
		args = append(args, "-config-file", f)
	}
	args = append(args, s.opts.args...)

	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	s.starts++
	fmt.Fprintf(logf, "=== consultest: start %d at %s: %s %s\n",
		s.starts, time.Now().Format(time.RFC3339Nano), s.bin, strings.Join(args, " "))

	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	if len(s.opts.env) > 0 {
		cmd.Env = append(os.Environ(), s.opts.env...) // later entries win
	}
	// An *os.File is handed to the child as is: no copying goroutines.
	cmd.Stdout, cmd.Stderr = logf, logf
	setProcAttr(cmd)
	err = cmd.Start()
	logf.Close() // the child holds its own copy
	if err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	return p, nil
}

// exited reports whether p has exited (and been reaped).
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// httpClient polls the agents. Without keep-alives no idle connection (and
// its goroutines) outlives a poll, which keeps leak checkers quiet.
var httpClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
}

// waitAll polls nodes, all launched, until every one is ready as wait
// says (waitFull: it has a leader and its own node is in the catalog,
// before which health and catalog queries fail or come back empty), one
// exits (returned, with an *exitError) or the deadline passes (the error
// then says why each node in pending is not ready).
func waitAll(nodes []*Server, deadline time.Time, wait waitMode) (exited *Server, pending []*Server, err error) {
	pending = nodes
	lastErr := map[*Server]error{}
	for {
		// Any node exiting, ready or not, fails the start: a server gone
		// means the others may never elect a leader.
		for _, n := range nodes {
			if n.proc.exited() {
				return n, nil, &exitError{err: n.proc.err}
			}
		}
		var still []*Server
		for _, n := range pending {
			if err := n.poll(deadline, wait); err != nil {
				lastErr[n] = err
				still = append(still, n)
			}
		}
		pending = still
		if len(pending) == 0 {
			return nil, nil, nil
		}
		if time.Now().After(deadline) {
			for _, n := range nodes {
				if n.proc.exited() {
					// The better answer.
					return n, nil, &exitError{err: n.proc.err}
				}
			}
			var msgs []string
			for _, n := range pending {
				msgs = append(msgs, fmt.Sprintf("%s on %s: %v", n.Name, n.HTTPAddr, lastErr[n]))
			}
			return nil, pending, errors.New(strings.Join(msgs, "\n"))
		}
		time.Sleep(pollInterval)
	}
}

// poll asks the agent once whether it is ready as wait says. The request
// is cut short when the agent exits, so an early exit is seen at once even
// if something else accepts on the port and hangs.
func (s *Server) poll(deadline time.Time, wait waitMode) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	p := s.proc
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	switch wait {
	case waitHTTP:
		var self json.RawMessage
		return s.getJSON(ctx, "/v1/agent/self", &self)
	case waitAlive:
		return s.readyCheck(ctx, false)
	default:
		return s.ready(ctx)
	}
}

func (s *Server) ready(ctx context.Context) error { return s.readyCheck(ctx, true) }

// readyCheck is ready; without synced it does not wait for the agent's own
// sync of its node info and services to the catalog (see Node.Restart).
func (s *Server) readyCheck(ctx context.Context, synced bool) error {
	var leader string
	if err := s.getJSON(ctx, "/v1/status/leader", &leader); err != nil {
		return err
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	var node struct {
		Node *struct {
			ID              string
			TaggedAddresses map[string]string
			Meta            map[string]string
		}
		Services map[string]struct{ ID string }
	}
	if err := s.getJSON(ctx, "/v1/catalog/node/"+url.PathEscape(s.Name), &node); err != nil {
		return err
	}
	if node.Node == nil {
		return fmt.Errorf("node %s not in the catalog yet", s.Name)
	}
	// The leader first registers the node bare, from gossip; the agent's
	// own sync adds its tagged addresses and node meta a moment later.
	// Wait for that too, so a test sees the node as configured.
	var self struct{ Meta map[string]string }
	if err := s.getJSON(ctx, "/v1/agent/self", &self); err != nil {
		return err
	}
	if synced {
		if len(node.Node.TaggedAddresses) == 0 {
			return fmt.Errorf("node %s not synced by its agent yet", s.Name)
		}
		for k, v := range self.Meta {
			if got, ok := node.Node.Meta[k]; !ok || got != v {
				return fmt.Errorf("node %s not synced by its agent yet (meta %q)", s.Name, k)
			}
		}
	}
	if s.role != roleDev {
		if err := s.clusterReady(ctx, node.Node.ID, node.Services, synced); err != nil {
			return err
		}
	}
	if s.mgmtToken != "" {
		// The leader creates the anonymous token after the management
		// one; until then requests without a token fail instead of
		// seeing what the anonymous token may see.
		var anon struct{ AccessorID string }
		if err := s.getJSON(ctx, "/v1/acl/token/"+anonymousTokenID, &anon); err != nil {
			return err
		}
	}
	return nil
}

// anonymousTokenID is the accessor ID of the token requests without one use.
const anonymousTokenID = "00000000-0000-0000-0000-000000000002"

// getJSON sends GET path to the agent, with the management token if there
// is one, and decodes the answer into v.
func (s *Server) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+path, nil)
	if err != nil {
		return err
	}
	return s.do(req, v)
}

func (s *Server) stopLocked() {
	if s.proc == nil {
		return
	}
	if s.paused {
		// SIGKILL ends a stopped process too; continuing it first leaves
		// no stopped process behind should the kill fail for any reason.
		_ = signalProcess(s.proc.cmd, false)
	}
	killProcess(s.proc.cmd)
	<-s.proc.done
	s.proc = nil
	s.paused = false
}

// release stops the agent and removes its directory when a test ends,
// showing the agent's log first if the test failed and the log was not
// shown yet.
func (s *Server) release(t testing.TB) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	if t.Failed() && !s.logShown {
		t.Logf("consultest: agent %s on %s, log (last %d lines):\n%s", s.Name, s.HTTPAddr, logTailLines, s.logTail())
	}
	if err := os.RemoveAll(s.dir); err != nil {
		t.Errorf("consultest: removing %s: %v", s.dir, err)
	}
}

// close stops the agent and removes its directory, outside a test.
func (s *Server) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
	return os.RemoveAll(s.dir)
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.SplitAfter(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "")
}

// freePorts chooses a port for each listener of the agent. Each port is free
// on ip for both TCP and UDP (DNS and Serf use both), and all stay bound
// until every one is chosen, so they differ. Another process may still take
// one before the agent binds it; NewServer retries then.
func freePorts(ip string) (ports, error) {
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	var got [5]int
	for i := range got {
		for try := 0; ; try++ {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
			if err != nil {
				return ports{}, err
			}
			held = append(held, l)
			port := l.Addr().(*net.TCPAddr).Port
			u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err == nil {
				held = append(held, u)
				got[i] = port
				break
			}
			if try == 20 {
				return ports{}, err
			}
		}
	}
	return ports{HTTP: got[0], DNS: got[1], SerfLAN: got[2], SerfWAN: got[3], Server: got[4]}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.UintN(256))
	}
	return hex.EncodeToString(b)
}
