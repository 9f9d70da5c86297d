package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
)

// maxQueryFile caps a -file definition: one is a few hundred bytes.
const maxQueryFile = 1 << 20

const queryUsage = `Usage: beacon query SUBCOMMAND [flags] [args]

Subcommands:
  list                         every prepared query the token may read
  show ID|NAME                 one query's definition
  execute ID|NAME              run a query: its instances and the datacenter that answered
  create -name N -service S    create a query [-tag t]... [-passing] [-near NODE] [-failover dc2,dc3] [-nearest N]
  create -file F               create a query from a JSON definition (Consul's or beacon query show -json's)
  delete ID|NAME               delete a query (one that does not exist is nothing to do)

Each takes -json (output for scripts) and -consul; "beacon query SUBCOMMAND -h" describes its flags.
`

func (c *command) query(args []string) error {
	if len(args) == 0 {
		return usageError{err: errors.New("query: no subcommand given"), hint: strings.TrimSuffix(queryUsage, "\n")}
	}
	subs := map[string]func([]string) error{
		"list":    c.queryList,
		"show":    c.queryShow,
		"execute": c.queryExecute,
		"create":  c.queryCreate,
		"delete":  c.queryDelete,
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, queryUsage)
		return nil
	}
	f := subs[args[0]]
	if f == nil {
		return usageError{err: fmt.Errorf("query: unknown subcommand %q", args[0]), hint: "beacon query -h lists them"}
	}
	err := f(args[1:])
	// The hint names the subcommand (run's would name only "query").
	var ue usageError
	if errors.As(err, &ue) && ue.hint == "" && c.synopsis != "" {
		ue.hint = "usage: beacon query " + args[0] + " " + c.synopsis
		if len(ue.hint) > 80 {
			ue.hint = "beacon query " + args[0] + " -h describes the flags"
		}
		return ue
	}
	return err
}

func (c *command) queryList(args []string) error {
	fs := c.flagSet("query list", "[-json]")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var qs []beacon.PreparedQuery
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		qs, err = cl.ListQueries(c.ctx)
		return err
	})
	if err != nil {
		return err
	}
	slices.SortFunc(qs, func(a, b beacon.PreparedQuery) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID))
	})
	if *asJSON {
		if qs == nil {
			qs = []beacon.PreparedQuery{}
		}
		return c.printJSON(qs)
	}
	if len(qs) == 0 {
		fmt.Fprintln(c.stdout, "no prepared queries")
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSERVICE\tTAGS\tONLY PASSING\tFAILOVER")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", orDash(q.Name), q.ID, q.Service, orDash(strings.Join(q.Tags, ",")), q.OnlyPassing, failoverString(q.Failover))
	}
	return tw.Flush()
}

// failoverString describes a failover policy in one line.
func failoverString(f beacon.QueryFailover) string {
	var parts []string
	if f.NearestN > 0 {
		parts = append(parts, "nearest "+strconv.Itoa(f.NearestN))
	}
	if len(f.Datacenters) > 0 {
		parts = append(parts, strings.Join(f.Datacenters, ","))
	}
	return orDash(strings.Join(parts, ", then "))
}

// errNoSuchQuery: no query has this name (or ID).
type errNoSuchQuery struct{ ref string }

func (e errNoSuchQuery) Error() string { return fmt.Sprintf("no prepared query %q", e.ref) }

// Is makes the error match beacon.ErrNotFound, as Consul's own 404 does.
func (e errNoSuchQuery) Is(target error) bool { return target == beacon.ErrNotFound }

// findQuery reads a query by ID, or finds it by name among those listed
// (Consul reads definitions by ID only).
func (c *command) findQuery(cl *consulhttp.Client, ref string) (beacon.PreparedQuery, error) {
	if beacon.IsQueryID(ref) {
		q, err := cl.GetQuery(c.ctx, ref)
		if errors.Is(err, beacon.ErrNotFound) {
			// A name may have the shape of an ID (Consul allows one).
			if q, lerr := c.findByName(cl, ref); lerr == nil {
				return q, nil
			}
			return beacon.PreparedQuery{}, errNoSuchQuery{ref}
		}
		return q, err
	}
	return c.findByName(cl, ref)
}

func (c *command) findByName(cl *consulhttp.Client, name string) (beacon.PreparedQuery, error) {
	qs, err := cl.ListQueries(c.ctx)
	if err != nil {
		return beacon.PreparedQuery{}, err
	}
	for _, q := range qs {
		if q.Name == name {
			return q, nil
		}
	}
	return beacon.PreparedQuery{}, errNoSuchQuery{name}
}

// queryRef checks the one ID|NAME argument of show, execute and delete.
func queryRef(pos []string) (string, error) {
	if err := beacon.ValidateQueryRef(pos[0]); err != nil {
		return "", usageError{err: err}
	}
	return pos[0], nil
}

func (c *command) queryShow(args []string) error {
	fs := c.flagSet("query show", "ID|NAME [-json]")
	asJSON := fs.Bool("json", false, "print JSON for scripts (beacon query create -file reads it back)")
	pos, err := c.parseArgs(fs, args, 1, "one query ID or NAME")
	if err != nil {
		return err
	}
	ref, err := queryRef(pos)
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var q beacon.PreparedQuery
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		q, err = c.findQuery(cl, ref)
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return c.printJSON(q)
	}
	passing := "passing and warning instances"
	if q.OnlyPassing {
		passing = "passing instances only"
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"ID", q.ID}, {"Name", orDash(q.Name)}, {"Service", q.Service}, {"Tags", orDash(strings.Join(q.Tags, ","))},
		{"Returns", passing}, {"Near", orDash(q.Near)}, {"Failover", failoverString(q.Failover)},
	} {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
	}
	return tw.Flush()
}

func (c *command) queryExecute(args []string) error {
	fs := c.flagSet("query execute", "ID|NAME [-dc DC] [-near NODE] [-limit N] [-json]")
	var opts beacon.ExecuteOptions
	fs.StringVar(&opts.Datacenter, "dc", "", "execute the query defined in this `datacenter` (default: the agent's)")
	fs.StringVar(&opts.Near, "near", "", "sort instances by round-trip time from this `node` (_agent: the agent's)")
	fs.IntVar(&opts.Limit, "limit", 0, "return at most `N` instances (0: all)")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	pos, err := c.parseArgs(fs, args, 1, "one query ID or NAME")
	if err != nil {
		return err
	}
	ref, err := queryRef(pos)
	if err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return usageError{err: err}
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	var res beacon.PreparedQueryResult
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		res, err = cl.ExecuteQuery(c.ctx, ref, opts)
		return err
	})
	if err != nil {
		return err
	}
	if opts.Near == "" {
		// Consul shuffles; a stable order reads better and diffs cleanly.
		sortInstances(res.Instances)
	}
	if *asJSON {
		if res.Instances == nil {
			res.Instances = []beacon.Instance{}
		}
		return c.printJSON(res)
	}
	from := "datacenter " + res.Datacenter
	if res.Failovers > 0 {
		from += fmt.Sprintf(" (after %d failover%s)", res.Failovers, map[bool]string{true: "s"}[res.Failovers > 1])
	}
	if len(res.Instances) == 0 {
		fmt.Fprintf(c.stdout, "no instances of %q from query %q (%s)\n", res.Service, ref, from)
		return nil
	}
	fmt.Fprintf(c.stdout, "%s from %s\n", res.Service, from)
	return writeInstanceTable(c.stdout, res.Instances)
}

func (c *command) queryCreate(args []string) error {
	fs := c.flagSet("query create", "-name N -service S [flags] | -file F")
	var (
		def       beacon.PreparedQuery
		tags      listFlag
		failover  listFlag
		file      string
		flagsUsed []string
	)
	fs.StringVar(&def.Name, "name", "", "the query's `name` (executes it; NAME.query.consul in DNS)")
	fs.StringVar(&def.Service, "service", "", "the `service` the query looks up")
	fs.Var(&tags, "tag", "`tag` an instance must carry, !tag one it must not (repeated or comma-separated)")
	fs.BoolVar(&def.OnlyPassing, "passing", false, "leave out instances with a warning check (default: passing and warning)")
	fs.StringVar(&def.Near, "near", "", "sort instances by round-trip time from this `node` (_agent: the executing agent)")
	fs.Var(&failover, "failover", "`datacenters` to try in order when this one has no instance (comma-separated)")
	fs.IntVar(&def.Failover.NearestN, "nearest", 0, "first try up to `N` other datacenters, nearest by WAN round-trip time")
	fs.StringVar(&file, "file", "", "read the definition from this JSON `file` instead of flags")
	asJSON := fs.Bool("json", false, "print the created definition as JSON")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "file" && f.Name != "json" && f.Name != "consul" {
			flagsUsed = append(flagsUsed, "-"+f.Name)
		}
	})
	def.Tags, def.Failover.Datacenters = tags, failover
	if file != "" {
		if len(flagsUsed) > 0 {
			return usagef("query create: -file and %s: give the definition in the file or in flags, not both", strings.Join(flagsUsed, ", "))
		}
		var err error
		if def, err = readQueryFile(file); err != nil {
			return usageError{err: err}
		}
	}
	if def.ID != "" {
		return usageError{err: &beacon.ValidationError{Field: "ID", Reason: "set; Consul chooses a new query's ID (remove it from the file)"}}
	}
	if err := def.Validate(); err != nil {
		return usageError{err: err}
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		def.ID, err = cl.CreateQuery(c.ctx, def)
		return err
	})
	if err != nil {
		return err
	}
	if *asJSON {
		return c.printJSON(def)
	}
	fmt.Fprintf(c.stdout, "created prepared query %s: %s\n", def.Name, def.ID)
	return nil
}

// deleted is `beacon query delete -json`'s answer.
type deleted struct {
	ID, Name string
	Deleted  bool // false: there was no such query
}

func (c *command) queryDelete(args []string) error {
	fs := c.flagSet("query delete", "ID|NAME [-json]")
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	pos, err := c.parseArgs(fs, args, 1, "one query ID or NAME")
	if err != nil {
		return err
	}
	ref, err := queryRef(pos)
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	out := deleted{ID: ref}
	err = c.eachAgent(cfg, func(cl *consulhttp.Client) error {
		q, err := c.findQuery(cl, ref)
		if errors.Is(err, beacon.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = deleted{ID: q.ID, Name: q.Name, Deleted: true}
		return cl.DeleteQuery(c.ctx, q.ID)
	})
	if err != nil {
		return err
	}
	switch {
	case *asJSON:
		return c.printJSON(out)
	case out.Deleted:
		fmt.Fprintf(c.stdout, "deleted prepared query %s (%s)\n", orDash(out.Name), out.ID)
	default:
		fmt.Fprintf(c.stdout, "no prepared query %q: nothing to do\n", ref)
	}
	return nil
}

// readQueryFile reads a -file definition, capped at maxQueryFile.
func readQueryFile(path string) (beacon.PreparedQuery, error) {
	f, err := os.Open(path)
	if err != nil {
		return beacon.PreparedQuery{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxQueryFile+1))
	if err != nil {
		return beacon.PreparedQuery{}, err
	}
	if len(data) > maxQueryFile {
		return beacon.PreparedQuery{}, fmt.Errorf("%s: larger than %d bytes", path, maxQueryFile)
	}
	q, err := parseQueryFile(data)
	if err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("%s: %w", path, err)
	}
	return q, nil
}

// consulQueryFile is Consul's definition (the body of POST /v1/query)
// restricted to the fields beacon.PreparedQuery holds.
type consulQueryFile struct {
	ID      string
	Name    string
	Service struct {
		Service     string
		Tags        []string
		OnlyPassing bool
		Near        string
		Failover    struct {
			NearestN    int
			Datacenters []string
		}
	}
}

// parseQueryFile reads one JSON definition in either shape: Consul's
// ({"Name": …, "Service": {"Service": "web", "Failover": {…}}}) or
// beacon.PreparedQuery's, as beacon query show -json prints it ("Service"
// is then a string). A field neither holds is refused, not dropped, so a
// template, session or token in a Consul definition is never silently
// lost; so is anything after the one value. It does not validate.
func parseQueryFile(data []byte) (beacon.PreparedQuery, error) {
	var probe struct{ Service json.RawMessage }
	if err := json.Unmarshal(data, &probe); err != nil {
		return beacon.PreparedQuery{}, fmt.Errorf("not a JSON definition: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var q beacon.PreparedQuery
	switch s := bytes.TrimSpace(probe.Service); {
	case len(s) > 0 && s[0] == '{':
		var cf consulQueryFile
		if err := dec.Decode(&cf); err != nil {
			return beacon.PreparedQuery{}, fmt.Errorf("reading a Consul definition: %w", err)
		}
		sv := cf.Service
		q = beacon.PreparedQuery{ID: cf.ID, Name: cf.Name, Service: sv.Service, Tags: sv.Tags, OnlyPassing: sv.OnlyPassing, Near: sv.Near,
			Failover: beacon.QueryFailover{NearestN: sv.Failover.NearestN, Datacenters: sv.Failover.Datacenters}}
	case len(s) > 0 && s[0] == '"':
		if err := dec.Decode(&q); err != nil {
			return beacon.PreparedQuery{}, fmt.Errorf("reading a definition: %w", err)
		}
	default:
		return beacon.PreparedQuery{}, errors.New(`no "Service": a definition names the service it looks up`)
	}
	if _, err := dec.Token(); err != io.EOF {
		return beacon.PreparedQuery{}, errors.New("more than one JSON value")
	}
	return q, nil
}
