package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/keeper"
	"github.com/beaconsd/beacon/status"
)

type registerOptions struct {
	name, address, id, httpURL, tcpAddr string
	grpcTarget, h2pingAddr              string
	aliasService, aliasNode             string
	grpcTLS, h2pingTLS, tlsSkipVerify   bool
	zone                                string
	statusAddr                          string
	port                                int
	tags                                listFlag
	meta                                metaFlag
	ttl, interval, drain                time.Duration
	startTimeout, stopTimeout           time.Duration
	ttlSet                              bool
}

func (c *command) register(args []string) error {
	fs := c.flagSet("register", "-name N -port P [-address A] [-id ID] [-tags t,...] [-meta k=v,...] [-zone Z] [-ttl D | -http URL | -tcp HOST:PORT | -grpc HOST:PORT[/SVC] | -h2ping HOST:PORT | -alias ID] [-status ADDR] [-- command args...]")
	o := registerOptions{meta: metaFlag{}}
	fs.StringVar(&o.name, "name", "", "service `name` (required; one that is not a DNS label is registered with a warning: Consul DNS cannot serve it)")
	fs.IntVar(&o.port, "port", 0, "service `port` (required)")
	fs.StringVar(&o.address, "address", "", "service `address` (default: the agent's node address)")
	fs.StringVar(&o.id, "id", "", "instance `ID` (default NAME-PORT, or NAME-ADDRESS-PORT with -address)")
	fs.Var(&o.tags, "tags", "`tags`, comma-separated or repeated")
	fs.Var(o.meta, "meta", "metadata `key=value`, comma-separated or repeated")
	fs.StringVar(&o.zone, "zone", beacon.ZoneFromEnv(), "the instance's `zone` (default $"+beacon.ZoneEnv+"), registered as meta "+beacon.DefaultZoneKey+"=ZONE unless -meta sets it")
	fs.DurationVar(&o.ttl, "ttl", keeper.DefaultTTL, "heartbeat `TTL`: the instance turns critical this long after beacon stops heartbeating")
	fs.StringVar(&o.httpURL, "http", "", "also have the agent GET this `URL` as a health check")
	fs.StringVar(&o.tcpAddr, "tcp", "", "also have the agent dial this `host:port` as a health check")
	fs.StringVar(&o.grpcTarget, "grpc", "", "also have the agent ask the gRPC health service at `host:port[/service]` (SERVING is passing)")
	fs.BoolVar(&o.grpcTLS, "grpc-tls", false, "the -grpc check connects with TLS")
	fs.StringVar(&o.h2pingAddr, "h2ping", "", "also have the agent send HTTP/2 pings to this `host:port` (cleartext h2c unless -h2ping-tls)")
	fs.BoolVar(&o.h2pingTLS, "h2ping-tls", false, "the -h2ping check speaks HTTP/2 over TLS")
	fs.BoolVar(&o.tlsSkipVerify, "tls-skip-verify", false, "an https -http, -grpc-tls or -h2ping-tls check accepts any certificate")
	fs.StringVar(&o.aliasService, "alias", "", "also mirror the health of the instance with this `ID` on the same agent (or on -alias-node)")
	fs.StringVar(&o.aliasNode, "alias-node", "", "also mirror the health of this `node` (with -alias: of that instance on it)")
	fs.DurationVar(&o.interval, "interval", 10*time.Second, "how often the agent runs an -http, -tcp, -grpc or -h2ping check")
	fs.DurationVar(&o.drain, "drain", keeper.DefaultDrainGrace, "at stop, how long the instance stays registered as critical before it is removed")
	fs.DurationVar(&o.startTimeout, "start-timeout", 30*time.Second, "give up when the command's port or the agent does not answer within this")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 10*time.Second, "after forwarding a signal, kill the command if it has not exited within this")
	fs.StringVar(&o.statusAddr, "status", "", "serve the status page (the keeper's registration, heartbeats and events; beacon status reads it) at http://`host:port`/debug/beacon while registered; it names the agents and the instance, so give an admin address (e.g. 127.0.0.1:PORT), as for pprof")
	pos, command, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("register: unexpected arguments %q (a command goes after --)", pos)
	}
	fs.Visit(func(f *flag.Flag) { o.ttlSet = o.ttlSet || f.Name == "ttl" })
	reg, err := o.registration()
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	// The keeper's warnings, one line each, without a timestamp (beacon's
	// own lines have none): among them the one for a service name Consul
	// DNS cannot serve (legacy_svc, api.v2), which is registered anyway.
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: dropTime}))
	kopts := []keeper.Option{keeper.WithTTL(o.ttl), keeper.WithDrainGrace(o.drain), keeper.WithLogger(log)}

	var child *child
	if len(command) > 0 {
		target := net.JoinHostPort(cmp.Or(o.address, "127.0.0.1"), strconv.Itoa(o.port))
		if child, err = startChild(command, c.stdout, c.stderr); err != nil {
			return err
		}
		// Whatever happens from here, the command does not outlive beacon.
		defer func() { child.stop(stopSignal(c.ctx), o.stopTimeout) }()
		fmt.Fprintf(c.stderr, "beacon: started %s (pid %d); waiting for %s to answer\n", command[0], child.cmd.Process.Pid, target)
		if err := waitForPort(c.ctx, target, child.done, o.startTimeout); err != nil {
			if c.ctx.Err() != nil {
				return nil // interrupted before registering: nothing to undo
			}
			return err
		}
		// The heartbeat says the command's port answers, not merely that
		// beacon runs.
		kopts = append(kopts, keeper.WithHealth(portProbe(target)))
	}
	// Consul runs a check the first time only after a random part of its
	// interval: start it passing when it passes now, so the instance is
	// visible at once.
	if len(reg.Checks) > 0 && probeCheck(c.ctx, reg.Checks[0]) {
		reg.Checks[0].InitialStatus = beacon.HealthPassing
	}
	k, err := keeper.New(cfg, reg, kopts...)
	if err != nil {
		return err
	}
	if o.statusAddr != "" {
		// Before Start, so the page shows Start's attempts and first event.
		stopStatus, err := c.serveStatus(o.statusAddr, k, reg.ID, cfg.Addresses)
		if err != nil {
			return err
		}
		defer stopStatus() // after the keeper's Stop below: the page lasts as long as the registration
	}
	sctx, cancel := context.WithTimeout(c.ctx, o.startTimeout)
	err = k.Start(sctx)
	cancel()
	if err != nil {
		if c.ctx.Err() != nil {
			return nil // interrupted while registering; the keeper removed any attempt
		}
		return fmt.Errorf("registering %s through %s: %w", reg.ID, agentList(cfg), err)
	}
	fmt.Fprintf(c.stderr, "beacon: registered %s (service %s, port %d) through agent %s; Ctrl-C to deregister\n", reg.ID, reg.Service, reg.Port, k.Status().Agent)

	var childErr error
	stopped := "interrupted"
	if child != nil {
		select {
		case <-c.ctx.Done():
		case childErr = <-child.done:
			child.done <- childErr // for child.stop
			stopped = "command exited (" + exitStatus(childErr) + ")"
		}
	} else {
		<-c.ctx.Done()
	}
	// Drain and deregister before the command is told to stop, so callers
	// are steered away while it still answers.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(c.ctx), o.drain+10*time.Second)
	err = k.Stop(dctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%s; deregistering %s: %w", stopped, reg.ID, err)
	}
	fmt.Fprintf(c.stderr, "beacon: %s; deregistered %s\n", stopped, reg.ID)
	if childErr != nil {
		return fmt.Errorf("command %s: %w", command[0], childErr)
	}
	return nil
}

// registration validates the flags and builds what is sent; every mistake
// is a usage error, found before anything starts.
func (o *registerOptions) registration() (beacon.Registration, error) {
	if o.name == "" {
		return beacon.Registration{}, usagef("register: -name is required")
	}
	if o.port < 1 || o.port > 65535 {
		return beacon.Registration{}, usagef("register: -port %d: want 1-65535 (-port is required)", o.port)
	}
	n := 0
	for _, set := range []bool{o.ttlSet, o.httpURL != "", o.tcpAddr != "", o.grpcTarget != "", o.h2pingAddr != "", o.aliasService != "" || o.aliasNode != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return beacon.Registration{}, usagef("register: give one of -ttl, -http, -tcp, -grpc, -h2ping and -alias/-alias-node")
	}
	if o.grpcTLS && o.grpcTarget == "" || o.h2pingTLS && o.h2pingAddr == "" {
		return beacon.Registration{}, usagef("register: -grpc-tls goes with -grpc, -h2ping-tls with -h2ping")
	}
	if o.id == "" {
		o.id = o.name + "-" + strconv.Itoa(o.port)
		if o.address != "" {
			o.id = o.name + "-" + o.address + "-" + strconv.Itoa(o.port)
		}
	}
	r := beacon.Registration{ID: o.id, Service: o.name, Address: o.address, Port: o.port, Tags: o.tags}
	if _, set := o.meta[beacon.DefaultZoneKey]; o.zone != "" && !set {
		o.meta[beacon.DefaultZoneKey] = o.zone
	}
	if len(o.meta) > 0 {
		r.Meta = o.meta
	}
	switch {
	case o.httpURL != "":
		u, err := url.Parse(o.httpURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return r, usagef("register: -http %q: want an http:// or https:// URL", o.httpURL)
		}
		r.Checks = []beacon.Check{{HTTP: o.httpURL, Interval: o.interval}}
	case o.tcpAddr != "":
		if _, _, err := net.SplitHostPort(o.tcpAddr); err != nil {
			return r, usagef("register: -tcp %q: want host:port", o.tcpAddr)
		}
		r.Checks = []beacon.Check{{TCP: o.tcpAddr, Interval: o.interval}}
	case o.grpcTarget != "":
		r.Checks = []beacon.Check{{GRPC: o.grpcTarget, GRPCUseTLS: o.grpcTLS, Interval: o.interval}}
	case o.h2pingAddr != "":
		r.Checks = []beacon.Check{{H2PING: o.h2pingAddr, H2PingUseTLS: o.h2pingTLS, Interval: o.interval}}
	case o.aliasService != "" || o.aliasNode != "":
		// Consul follows the aliased health as it changes: no interval.
		r.Checks = []beacon.Check{{AliasService: o.aliasService, AliasNode: o.aliasNode}}
	}
	if o.tlsSkipVerify {
		if len(r.Checks) == 0 {
			return r, usagef("register: -tls-skip-verify goes with an https -http, -grpc-tls or -h2ping-tls check")
		}
		r.Checks[0].TLSSkipVerify = true // Validate refuses it on a check without TLS
	}
	if err := r.Validate(); err != nil {
		return r, usageError{err: err}
	}
	if o.statusAddr != "" {
		if _, _, err := net.SplitHostPort(o.statusAddr); err != nil {
			return r, usagef("register: -status %q: want host:port", o.statusAddr)
		}
	}
	if o.ttl < 3*time.Millisecond || o.drain < 0 || o.startTimeout <= 0 || o.stopTimeout <= 0 {
		return r, usagef("register: -ttl, -drain, -start-timeout and -stop-timeout must be positive")
	}
	return r, nil
}

// dropTime removes the time attribute from log lines.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// stopSignal is the signal that stopped beacon, to forward it; SIGTERM when
// beacon stops for another reason.
func stopSignal(ctx context.Context) os.Signal {
	var sc signalCause
	if errors.As(context.Cause(ctx), &sc) {
		return sc.sig
	}
	return syscall.SIGTERM
}

// child is the command run by register.
type child struct {
	cmd  *exec.Cmd
	done chan error // receives cmd.Wait's result once; put it back after reading
}

func startChild(argv []string, stdout, stderr interface{ Write([]byte) (int, error) }) (*child, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// A grandchild holding the output pipes must not keep Wait blocked.
	cmd.WaitDelay = 2 * time.Second
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	ch := &child{cmd: cmd, done: make(chan error, 1)}
	go func() { ch.done <- cmd.Wait() }()
	return ch, nil
}

// stop forwards sig to the command and waits for it, killing it after
// timeout. It returns at once when the command has already exited.
func (ch *child) stop(sig os.Signal, timeout time.Duration) {
	select {
	case err := <-ch.done:
		ch.done <- err
		return
	default:
	}
	_ = signalChild(ch.cmd, sig)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-ch.done:
		ch.done <- err
	case <-t.C:
		_ = signalChild(ch.cmd, os.Kill) // the whole group, as the signal was
		ch.done <- <-ch.done
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// waitForPort returns once addr accepts TCP connections. A port has no way
// to announce itself, so it is polled.
func waitForPort(ctx context.Context, addr string, done chan error, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	d := net.Dialer{Timeout: time.Second}
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			done <- err
			return fmt.Errorf("the command exited (%s) before %s answered", exitStatus(err), addr)
		case <-deadline.C:
			return fmt.Errorf("%s did not answer within %v", addr, timeout)
		case <-tick.C:
		}
	}
}

// portProbe is the keeper's health function for a command: its port answers.
func portProbe(addr string) keeper.HealthFunc {
	return func(ctx context.Context) (beacon.Health, string) {
		d := net.Dialer{Timeout: time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return beacon.HealthCritical, "port " + addr + " does not answer"
		}
		conn.Close()
		return beacon.HealthPassing, "port " + addr + " answers"
	}
}

// probeCheck runs ck once from here, as the agent would.
func probeCheck(ctx context.Context, ck beacon.Check) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	switch {
	case ck.HTTP != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ck.HTTP, nil)
		if err != nil {
			return false
		}
		client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode/100 == 2
	case ck.TCP != "":
		d := net.Dialer{}
		conn, err := d.DialContext(ctx, "tcp", ck.TCP)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	return false
}

// serveStatus serves the status page of k (instance id) on addr, at
// /debug/beacon, until the returned stop is called; it listens before it
// returns, so a port in use is an error at once. Any address is allowed:
// the page shows no token, but it names the agents and the instance, so
// it belongs on an admin address, as pprof does.
func (c *command) serveStatus(addr string, k *keeper.Keeper, id string, agents []string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serving the status page: %w", err)
	}
	if len(agents) == 0 {
		agents = []string{consul.DefaultAddress} // the keeper's default too
	}
	h := status.New(status.WithKeeper(k, id), status.WithAgents(agents...))
	mux := http.NewServeMux()
	mux.Handle("/debug/beacon", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(c.stderr, "beacon: the status page stopped serving: %v\n", err)
		}
	}()
	fmt.Fprintf(c.stderr, "beacon: status page at http://%s/debug/beacon\n", ln.Addr())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			_ = srv.Close() // a client still reading: cut it off
		}
		<-done
		_ = h.Close()
	}, nil
}
