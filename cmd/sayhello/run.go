package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/balancer"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/httpclient"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/prommetrics"
	"github.com/beaconsd/beacon/status"
)

// usageError marks a bad command line; main exits 2 for it, printing the
// error and then a one-line hint.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageHint follows a usage error on stderr.
const usageHint = "sayhello -h lists the flags"

type options struct {
	name, listen, advertise, consulAddr, backend, id string
	port                                             int
	tags                                             []string
	meta                                             map[string]string
	startTimeout, shutdownTimeout                    time.Duration
	ttl, drain                                       time.Duration
	call, snapshotFile                               string
	// zone is this instance's zone (-zone, default $BEACON_ZONE): meta
	// zone=<zone> on the registration, zone-aware picks with -call.
	zone, zoneCallers string
	n                 int
	interval          time.Duration
	slowStart         time.Duration // -call's balancer: P2C with this slow start; 0: round robin
	// failover is the discovery cache's policy (-failover,
	// -failover-nearest, -failover-hold-down); zero without one.
	failover discovery.Failover
	// panicThreshold is the discovery cache's (-panic-threshold); 0 off.
	panicThreshold float64
	// readPath and pathFile are the discovery cache's read path
	// (-read-path, $BEACON_READ_PATH, $BEACON_READ_PATH_FILE).
	readPath discovery.ReadPath
	pathFile string
}

// parseFlags reads the command line. -h prints the usage on stdout and
// returns flag.ErrHelp; other mistakes are usage errors, and the flag
// package prints nothing (main prints the error, then usageHint).
func parseFlags(args []string, stdout io.Writer) (options, error) {
	o := options{meta: map[string]string{}}
	fs := flag.NewFlagSet("sayhello", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.name, "name", "SayHello", "service `name` to register (one that is not a DNS label is registered with a warning: Consul DNS cannot serve it)")
	fs.IntVar(&o.port, "port", 10086, "`port` to serve and register")
	fs.StringVar(&o.listen, "listen", "", "`host:port` to listen on (default -advertise's address on -port when -advertise is given, else every interface)")
	fs.StringVar(&o.advertise, "advertise", "", "`address` to register (default the outbound non-loopback IP, else 127.0.0.1)")
	fs.StringVar(&o.consulAddr, "consul", "", "Consul agent `addresses`, comma-separated host:port (default $CONSUL_HTTP_ADDR, else "+consul.DefaultAddress+
		"); a host without a port means port 8500 (8501 with https), a URL without one 80 or 443")
	fs.StringVar(&o.backend, "backend", defaultBackend(), "Consul client: http (net/http only) or kit (go-kit sd/consul)")
	fs.StringVar(&o.id, "id", "", "instance ID (default <name>-<uuid>)")
	fs.Func("tags", "comma-separated tags", func(s string) error {
		o.tags = append(o.tags, splitTags(s)...)
		return nil
	})
	fs.Func("meta", "metadata `key=value` (repeatable)", func(s string) error {
		k, v, err := parseMetaPair(s)
		if err != nil {
			return err
		}
		o.meta[k] = v
		return nil
	})
	fs.DurationVar(&o.startTimeout, "start-timeout", 20*time.Second, "give up registering after this long")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may take at shutdown")
	fs.DurationVar(&o.ttl, "ttl", keeper.DefaultTTL, "heartbeat TTL: a stopped process is excluded after this long")
	fs.DurationVar(&o.drain, "drain", keeper.DefaultDrainGrace, "at shutdown, how long to keep serving after leaving the passing list")
	fs.StringVar(&o.call, "call", "", "instead of serving, call `service`'s /sayHello through Beacon's RoundTripper and print who answered")
	fs.IntVar(&o.n, "n", 10, "with -call: how many calls")
	fs.DurationVar(&o.interval, "interval", 0, "with -call: pause between calls (Ctrl-C stops the calls early)")
	fs.DurationVar(&o.slowStart, "slow-start", 0, "with -call: pick with P2C instead of round robin, ramping up a newly started instance's share over this `duration` (0: off)")
	fs.StringVar(&o.zone, "zone", beacon.ZoneFromEnv(), "this instance's `zone` (default $"+beacon.ZoneEnv+"): registered as meta "+beacon.DefaultZoneKey+"=<zone> unless -meta sets it; with -call, calls prefer instances in this zone (zone-aware picking)")
	fs.StringVar(&o.zoneCallers, "zone-callers", "", "with -call and -zone: learn how callers spread over zones from the passing instances of `service` (the callers' own), and spill calls to other zones as Envoy's zone-aware routing does")
	fs.StringVar(&o.snapshotFile, "snapshot-file", "", "keep discovery's last good answers in this file and use them at start if Consul is unreachable")
	// Read after Parse: the flag package would flatten the typed error.
	var failover []string
	fs.Func("failover", "`datacenters`, comma-separated, in order: /discovery and -call turn to the first with passing instances when this agent's datacenter has none", func(s string) error {
		failover = append(failover, s)
		return nil
	})
	fs.IntVar(&o.failover.NearestN, "failover-nearest", 0, "fail over also to the `N` datacenters nearest by WAN round-trip time, after -failover's")
	fs.DurationVar(&o.failover.HoldDown, "failover-hold-down", 0, "how long this datacenter must have passing instances again before calls come back (default "+discovery.DefaultHoldDown.String()+")")
	readPath := fs.String("read-path", "", "how discovery reads Consul: streaming (the agent's streaming backend, when it has it), blocking (plain blocking queries) or cached (the agent's cache); default $"+discovery.ReadPathEnv+", else the first line of the file $"+discovery.ReadPathFileEnv+" names (followed while running), else streaming")
	fs.Float64Var(&o.panicThreshold, "panic-threshold", 0, "`share` in (0, 1]: when fewer of a service's instances pass, /discovery and -call use every one not in maintenance, whatever its health (0: off)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, "Usage: sayhello [flags]\n\nServes /health, /sayHello, /discovery?serviceName=[&dc=], /metrics and /debug/beacon\n(the status page), registered in Consul while it runs; with -call, calls a service\ninstead.\n\nFlags:\n")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return o, err
		}
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	if o.port < 1 || o.port > 65535 {
		return o, usageError{fmt.Errorf("-port %d is outside 1–65535", o.port)}
	}
	for _, s := range failover {
		dcs, err := parseDatacenters(s)
		if err != nil {
			return o, usageError{fmt.Errorf("-failover %.80q: %w", s, err)}
		}
		o.failover.Datacenters = append(o.failover.Datacenters, dcs...)
	}
	if err := checkFailover(o.failover); err != nil {
		return o, usageError{err}
	}
	if !(o.panicThreshold >= 0 && o.panicThreshold <= 1) {
		return o, usageError{fmt.Errorf("-panic-threshold %v: %w", o.panicThreshold, &beacon.ValidationError{Field: "PanicThreshold", Reason: "want a share in [0, 1]"})}
	}
	if o.interval < 0 {
		return o, usageError{fmt.Errorf("-interval %v: want 0 or more", o.interval)}
	}
	if o.slowStart < 0 {
		return o, usageError{fmt.Errorf("-slow-start %v: want 0 or more", o.slowStart)}
	}
	var err error
	if o.readPath, o.pathFile, err = discovery.ChooseReadPath(*readPath); err != nil {
		return o, usageError{fmt.Errorf("-read-path: %w", err)}
	}
	if backends[o.backend] == nil {
		return o, usageError{fmt.Errorf("-backend %q: this build has %s", o.backend, backendNames())}
	}
	if o.listen == "" {
		// Listen where the instance is advertised: an instance advertised
		// on loopback is not served to the network.
		o.listen = net.JoinHostPort(o.advertise, strconv.Itoa(o.port))
	}
	if o.advertise == "" {
		o.advertise = outboundIP()
	}
	if o.id == "" {
		o.id = o.name + "-" + uuid.NewString()
	}
	if _, set := o.meta[beacon.DefaultZoneKey]; o.zone != "" && !set {
		o.meta[beacon.DefaultZoneKey] = o.zone
	}
	if o.zoneCallers != "" && o.zone == "" {
		return o, usageError{errors.New("-zone-callers needs -zone (or $" + beacon.ZoneEnv + ")")}
	}
	return o, nil
}

// splitTags reads a -tags value: comma-separated, spaces around each tag
// trimmed, empty pieces dropped. Validation is the registration's.
func splitTags(s string) []string {
	var tags []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			tags = append(tags, t)
		}
	}
	return tags
}

// parseMetaPair reads a -meta value: key=value, the key non-empty; the
// value may hold '=' and ','. Validation is the registration's.
func parseMetaPair(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("%.80q is not key=value", s)
	}
	return k, v, nil
}

// parseDatacenters reads a -failover value: datacenter names separated by
// commas, spaces around each trimmed. An empty name or one Consul would
// refuse is a *beacon.ValidationError.
func parseDatacenters(s string) ([]string, error) {
	var dcs []string
	for _, dc := range strings.Split(s, ",") {
		dc = strings.TrimSpace(dc)
		if dc == "" {
			return nil, &beacon.ValidationError{Field: "Datacenter", Reason: "empty name in the list"}
		}
		if err := beacon.ValidateDatacenter(dc); err != nil {
			return nil, err
		}
		dcs = append(dcs, dc)
	}
	return dcs, nil
}

// checkFailover refuses what the failover flags cannot mean: a datacenter
// listed twice, a negative count or hold-down, a hold-down or nearest
// count with nowhere to fail over to. Errors match beacon.ErrInvalid.
func checkFailover(p discovery.Failover) error {
	if p.NearestN < 0 {
		return fmt.Errorf("-failover-nearest %d: %w", p.NearestN, &beacon.ValidationError{Field: "Failover", Reason: "want 0 or more"})
	}
	if p.HoldDown < 0 {
		return fmt.Errorf("-failover-hold-down %v: %w", p.HoldDown, &beacon.ValidationError{Field: "Failover", Reason: "want 0 or more"})
	}
	if p.HoldDown > 0 && len(p.Datacenters) == 0 && p.NearestN == 0 {
		return fmt.Errorf("-failover-hold-down: %w", &beacon.ValidationError{Field: "Failover", Reason: "needs -failover or -failover-nearest"})
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("-failover: %w", err)
	}
	return nil
}

// cacheOptions are the discovery options both modes share.
func cacheOptions(o options, log *slog.Logger) []discovery.Option {
	opts := []discovery.Option{discovery.WithBackend(backends[o.backend]), discovery.WithLogger(log)}
	if len(o.failover.Datacenters) > 0 || o.failover.NearestN > 0 {
		opts = append(opts, discovery.WithFailover(o.failover))
	}
	if o.panicThreshold > 0 {
		opts = append(opts, discovery.WithPanicThreshold(o.panicThreshold))
	}
	opts = append(opts, discovery.WithReadPath(o.readPath))
	if o.pathFile != "" {
		opts = append(opts, discovery.WithReadPathFile(o.pathFile, 0))
	}
	return opts
}

// outboundIP is the address other hosts reach this one on, as the tutorial's
// GetLocalIpAddress: the source address of a route to a public IP. A UDP
// "connection" sends nothing. Without such a route, loopback.
func outboundIP() string {
	c, err := net.Dial("udp", "192.0.2.1:9") // TEST-NET-1: never answered
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && !a.IP.IsLoopback() && !a.IP.IsUnspecified() {
		return a.IP.String()
	}
	return "127.0.0.1"
}

func consulConfig(o options) (consul.Config, error) {
	cfg, err := consul.FromEnv()
	if err != nil {
		return cfg, err
	}
	if o.consulAddr != "" {
		cfg.Addresses = nil
		for _, a := range strings.Split(o.consulAddr, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Addresses = append(cfg.Addresses, a)
			}
		}
	}
	return cfg, cfg.Validate()
}

// callService is the example client: it calls http://<service>/sayHello
// through the discovery cache and the RoundTripper, round robin (P2C with
// slow start under -slow-start), and
// prints which instance answered each call; with a failover policy, also
// which datacenter the service's watch was serving just after the call.
// Interrupted (ctx ends), it stops calling and returns nil.
func callService(ctx context.Context, cfg consul.Config, o options, stdout io.Writer, log *slog.Logger) error {
	if err := beacon.ValidateServiceName(o.call); err != nil {
		return usageError{fmt.Errorf("-call: %w", err)}
	}
	if o.n < 1 {
		return usageError{fmt.Errorf("-n %d: want at least 1", o.n)}
	}
	cache, err := discovery.New(cfg, cacheOptions(o, log)...)
	if err != nil {
		return err
	}
	defer cache.Close()
	topts := []httpclient.Option{httpclient.WithLogger(log)}
	if o.slowStart > 0 {
		topts = append(topts, httpclient.WithBalancer(balancer.NewP2C(balancer.WithSlowStart(o.slowStart))))
	}
	if o.zone != "" {
		topts = append(topts, httpclient.WithZone(o.zone))
		if o.zoneCallers != "" {
			topts = append(topts, httpclient.WithZoneCallers(o.zoneCallers))
		}
	}
	tr := httpclient.New(cache, topts...)
	defer tr.Close()
	// The RoundTripper's own watch of the service, shared: it says which
	// datacenter the calls go to, and whether in panic.
	var served *discovery.Watcher
	if len(o.failover.Datacenters) > 0 || o.failover.NearestN > 0 || o.panicThreshold > 0 {
		if served, err = cache.Watch(beacon.Query{Service: o.call}); err != nil {
			return err
		}
		defer served.Close()
	}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	failed, made := 0, 0
	var pause *time.Timer
	for i := 1; i <= o.n; i++ {
		if i > 1 && o.interval > 0 {
			if pause == nil {
				pause = time.NewTimer(o.interval)
				defer pause.Stop()
			} else {
				pause.Reset(o.interval)
			}
			select {
			case <-ctx.Done():
			case <-pause.C:
			}
		}
		if ctx.Err() != nil {
			break
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.call+"/sayHello", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if ctx.Err() != nil {
			if err == nil {
				resp.Body.Close()
			}
			break // interrupted mid-call: not a failure of the service
		}
		made++
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%d: error: %v%s\n", i, err, servedBy(served))
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		fmt.Fprintf(stdout, "%d: %s %d %s%s\n", i, resp.Request.URL.Host, resp.StatusCode, strings.TrimSpace(string(body)), servedBy(served))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed", failed, made)
	}
	return nil
}

// servedBy describes the datacenter w's snapshot comes from, " [local]"
// or " [dc2, failed over]", with ", panic" when it is in panic; "" without
// a watch.
func servedBy(w *discovery.Watcher) string {
	if w == nil {
		return ""
	}
	s := w.Snapshot()
	inPanic := ""
	if s != nil && s.Panic {
		inPanic = ", panic"
	}
	switch {
	case s == nil || s.Datacenter == "":
		return " [local" + inPanic + "]"
	case s.FailedOver:
		return " [" + s.Datacenter + ", failed over" + inPanic + "]"
	default:
		return " [" + s.Datacenter + inPanic + "]"
	}
}

// selfProbe is the keeper's health function: a GET of this process's own
// /health, so a heartbeat says the HTTP server answers, not merely that the
// process runs. Outputs are constant, so heartbeats write nothing to Raft.
func selfProbe(listen string) keeper.HealthFunc {
	host, port, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/health"
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	return func(ctx context.Context) (beacon.Health, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return beacon.HealthCritical, "GET /health: bad URL"
		}
		resp, err := client.Do(req)
		if err != nil {
			return beacon.HealthCritical, "GET /health failed"
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return beacon.HealthCritical, "GET /health: " + strconv.Itoa(resp.StatusCode)
		}
		return beacon.HealthPassing, "GET /health: 200"
	}
}

// backends holds the Consul clients compiled in: build tags nohttp and
// nokit leave one out (docs/comparison.md compares the binaries).
var backends = map[string]consul.Backend{}

func defaultBackend() string {
	if backends["http"] != nil {
		return "http"
	}
	return "kit"
}

func backendNames() string {
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := consulConfig(o)
	if err != nil {
		return usageError{err}
	}
	if o.call != "" {
		return callService(ctx, cfg, o, stdout, log)
	}
	registration := beacon.Registration{
		ID:      o.id,
		Service: o.name,
		Address: o.advertise,
		Port:    o.port,
		Tags:    o.tags,
		Meta:    o.meta,
	}
	k, err := keeper.New(cfg, registration,
		keeper.WithBackend(backends[o.backend]),
		keeper.WithTTL(o.ttl),
		keeper.WithDrainGrace(o.drain),
		keeper.WithLogger(log),
		keeper.WithHealth(selfProbe(o.listen)),
		// Callers with slow start ramp this instance from its start, even
		// callers that restart after it.
		keeper.WithStartedMeta())
	if err != nil {
		return usageError{err}
	}

	metrics := prommetrics.New()
	dopts := append(cacheOptions(o, log), discovery.WithMetrics(metrics))
	if o.snapshotFile != "" {
		dopts = append(dopts, discovery.WithSnapshotFile(o.snapshotFile))
	}
	cache, err := discovery.New(cfg, dopts...)
	if err != nil {
		_ = k.Stop(ctx)
		return err
	}
	defer cache.Close()
	metrics.Observe(cache)
	promReg := prometheus.NewRegistry()
	promReg.MustRegister(metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Listen before registering, so Consul never sees an instance that
	// refuses connections.
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		_ = k.Stop(ctx)
		return err
	}
	// The status page (package status) beside /metrics; a service with an
	// admin listener would mount both there instead.
	page := status.New(status.WithCache(cache), status.WithKeeper(k, o.id), status.WithAgents(cfg.Addresses...))
	defer page.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/beacon", page)
	mux.Handle("/", newHandler(o.id, cache, promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}), log))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		err := srv.Shutdown(sctx)
		<-serveErr
		return err
	}

	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, o.startTimeout)
	err = k.Start(sctx)
	cancel()
	if err != nil {
		_ = shutdown()
		if ctx.Err() != nil {
			// Interrupted while starting: the keeper removed whatever an
			// attempt may have registered; that is a clean stop.
			log.Info("stopped while registering", "id", o.id)
			return nil
		}
		return fmt.Errorf("could not register with Consul within %v: %w", o.startTimeout, err)
	}
	log.Info("registered", "id", o.id, "service", o.name, "address", o.advertise, "port", o.port, "agent", k.Status().Agent, "took", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(stdout, "sayhello %s serving on %s, registered as %s\n", o.id, ln.Addr(), beacon.JoinHostPort(o.advertise, o.port))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		serveErr <- err // let shutdown's receive return
		log.Error("server stopped", "err", err)
	}
	// Drain and deregister first, so callers stop being sent here, then
	// let in-flight requests finish.
	dctx, cancel := context.WithTimeout(context.Background(), o.drain+5*time.Second)
	derr := k.Stop(dctx)
	cancel()
	if err := shutdown(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return derr
}
