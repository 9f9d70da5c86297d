package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
)

// usageError marks a bad command line; main exits 2 for it, printing the
// error first and then hint (one line, or the usage when no command was
// given).
type usageError struct {
	err  error
	hint string
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{err: fmt.Errorf(format, args...)} }

// signalCause is the cancellation cause main gives run's context, so a
// command can tell which signal stopped it (register forwards it).
type signalCause struct{ sig os.Signal }

func (s signalCause) Error() string { return "received " + s.sig.String() }

const usage = `Usage: beacon [-consul ADDRS] COMMAND [flags] [args]

Commands:
  services                  every service with its passing/warning/critical counts and tags
  instances NAME            a service's instances (passing only unless -all; -near: by RTT)
  watch NAME                print each change to a service as it happens, until interrupted
  datacenters               the federated datacenters, nearest first, with their WAN RTT
  register -name N -port P  keep an instance registered until interrupted [-- command args...]
                            [-status ADDR: serve its status page there, for beacon status]
  deregister ID             remove an instance from the agent (nothing to do is success)
  maint ID on|off           put an instance in maintenance (out of passing lists) or take
                            it out, through the agent holding it [-reason TEXT]
  doctor                    check the agent, leader, token, ACLs, TLS and streaming backend
  query list|show|execute|create|delete
                            prepared queries: Consul runs them, failing over to other datacenters
  status URL                what a running process sees (its /debug/beacon page): watches,
                            agents, keeper, recent events [-json] [-events N]

-consul takes comma-separated agent addresses, before or after the command
(default $CONSUL_HTTP_ADDR, else 127.0.0.1:8500). A host without a port
means the agent's port, 8500 (8501 with https); a URL without one
(http://host) means its scheme's, 80 or 443. The CONSUL_* variables the
consul CLI reads (CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT,
CONSUL_CLIENT_CERT, CONSUL_HTTP_SSL, ...) mean the same here.
instances and watch take -dc NAME to read another datacenter through the
agent. "beacon COMMAND -h" describes a command's flags.
Exit status: 0 success, 1 failure, 2 bad command line.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c := &command{ctx: ctx, stdout: stdout, stderr: stderr}
	g := flag.NewFlagSet("beacon", flag.ContinueOnError)
	quiet(g)
	g.Var(&c.addrs, "consul", "comma-separated agent addresses")
	if err := g.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return usageError{err: err, hint: "beacon help lists the commands and global flags"}
	}
	if g.NArg() == 0 {
		return usageError{err: errors.New("no command given"), hint: strings.TrimSuffix(usage, "\n")}
	}
	name, rest := g.Arg(0), g.Args()[1:]
	cmds := map[string]func([]string) error{
		"services":    c.services,
		"instances":   c.instances,
		"watch":       c.watch,
		"register":    c.register,
		"deregister":  c.deregister,
		"maint":       c.maint,
		"doctor":      c.doctor,
		"datacenters": c.datacenters,
		"query":       c.query,
		"status":      c.status,
	}
	if name == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	f := cmds[name]
	if f == nil {
		return usagef("unknown command %q (beacon help lists them)", name)
	}
	err := f(rest)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the usage is printed
	}
	var ue usageError
	if errors.As(err, &ue) && ue.hint == "" && c.synopsis != "" {
		ue.hint = "usage: beacon " + name + " " + c.synopsis
		if len(ue.hint) > 80 {
			ue.hint = "beacon " + name + " -h describes the flags"
		}
		return ue
	}
	return err
}

// quiet keeps the flag package from printing: errors are returned to main,
// which prints them first and a one-line hint after, and -h prints the
// usage on stdout (asked for, it is output, not an error).
func quiet(fs *flag.FlagSet) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
}

// command is one invocation: where it writes and how it reaches Consul.
type command struct {
	ctx            context.Context
	stdout, stderr io.Writer
	addrs          listFlag // -consul, before or after the command name
	synopsis       string   // the subcommand's arguments, for usage hints
}

// consulFlagHelp describes -consul, saying which port a bare host means.
const consulFlagHelp = "comma-separated agent `addresses`, host:port (default $CONSUL_HTTP_ADDR, else " + consul.DefaultAddress +
	"); a host without a port means port 8500 (8501 with https), a URL without one 80 or 443"

// flagSet returns a subcommand's flags; every one accepts -consul too.
func (c *command) flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("beacon "+name, flag.ContinueOnError)
	quiet(fs)
	c.synopsis = synopsis
	fs.Var(&c.addrs, "consul", consulFlagHelp)
	return fs
}

// printUsage writes a subcommand's usage, for -h.
func (c *command) printUsage(fs *flag.FlagSet) {
	fmt.Fprintf(c.stdout, "Usage: %s %s\n\nFlags:\n", fs.Name(), c.synopsis)
	fs.SetOutput(c.stdout)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses flags wherever they stand among the positional arguments
// (flag stops at the first non-flag). A "--" ends the flags; what follows
// it is returned as tail, untouched.
func (c *command) parse(fs *flag.FlagSet, args []string) (pos, tail []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage(fs)
				return nil, nil, err
			}
			return nil, nil, usageError{err: err}
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return pos, rest, nil
		}
		if len(rest) == 0 {
			return pos, nil, nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// parseArgs is parse for commands that take exactly n positional
// arguments and no "--".
func (c *command) parseArgs(fs *flag.FlagSet, args []string, n int, what string) ([]string, error) {
	pos, tail, err := c.parse(fs, args)
	if err != nil {
		return nil, err
	}
	pos = append(pos, tail...)
	if len(pos) != n {
		if n == 0 {
			return nil, usagef("%s: unexpected arguments %q", strings.TrimPrefix(fs.Name(), "beacon "), pos)
		}
		if len(pos) == 0 {
			return nil, usagef("%s: want %s", strings.TrimPrefix(fs.Name(), "beacon "), what)
		}
		return nil, usagef("%s: want %s, got %d arguments %q", strings.TrimPrefix(fs.Name(), "beacon "), what, len(pos), pos)
	}
	return pos, nil
}

// config is the CONSUL_* environment with -consul over it.
func (c *command) config() (consul.Config, error) {
	cfg, err := consul.FromEnv()
	if err != nil {
		return cfg, usageError{err: err}
	}
	if len(c.addrs) > 0 {
		cfg.Addresses = c.addrs
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err: err}
	}
	return cfg, nil
}

// agentList names the configured agents for messages.
func agentList(cfg consul.Config) string {
	eps, err := cfg.Endpoints()
	if err != nil {
		return strings.Join(cfg.Addresses, ", ")
	}
	names := make([]string, len(eps))
	for i, e := range eps {
		names[i] = e.String()
	}
	return strings.Join(names, ", ")
}

// errTryNext, matched by an error of fn, has eachAgent ask the next agent.
var errTryNext = errors.New("try the next agent")

// eachAgent runs fn with a client for the first configured agent, moving
// on to the next while the one asked is unavailable (or fn's error matches
// errTryNext). Errors name the agent.
func (c *command) eachAgent(cfg consul.Config, fn func(cl *consulhttp.Client) error) error {
	n := max(len(cfg.Addresses), 1)
	var errs []error
	for i := range n {
		cl, err := consulhttp.New(cfg.Agent(i))
		if err != nil {
			return err
		}
		err = fn(cl)
		cl.Close()
		if err == nil {
			return nil
		}
		err = fmt.Errorf("agent %s: %w", cl.Agent(), err)
		if !(errors.Is(err, beacon.ErrUnavailable) || errors.Is(err, errTryNext)) || c.ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *command) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// listFlag is a flag taking comma-separated values; repeating it adds more.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// metaFlag takes key=value pairs, comma-separated or repeated. A piece
// without "=" belongs to the previous value, so "desc=a,b" keeps its comma.
type metaFlag map[string]string

func (m metaFlag) String() string {
	var b strings.Builder
	for k, v := range m {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + v)
	}
	return b.String()
}

func (m metaFlag) Set(s string) error {
	last := ""
	for _, p := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case ok && k != "":
			m[k], last = v, k
		case last != "":
			m[last] += "," + p
		default:
			return fmt.Errorf("%q is not key=value", p)
		}
	}
	return nil
}
