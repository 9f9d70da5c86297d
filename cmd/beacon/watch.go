package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/discovery"
)

// tsFormat stamps every line of `beacon watch`: sortable, with milliseconds
// so the delay of a change can be read off.
const tsFormat = "2006-01-02T15:04:05.000Z07:00"

// stillStaleEvery is how often plain output repeats that Consul is still
// unreachable, with the data's age.
const stillStaleEvery = 10 * time.Second

func (c *command) watch(args []string) error {
	fs := c.flagSet("watch", "NAME [-tag t,...] [-dc NAME] [-plain]")
	var tags listFlag
	fs.Var(&tags, "tag", "only instances with all these `tags` (comma-separated or repeated)")
	dc := fs.String("dc", "", dcFlagHelp)
	plain := fs.Bool("plain", false, "print changes line by line even on a terminal")
	readPath := fs.String("read-path", "", "how to read Consul: streaming (the agent's streaming backend, when it has it), blocking (plain blocking queries) or cached (the agent's cache); default $"+discovery.ReadPathEnv+", else the file $"+discovery.ReadPathFileEnv+" names (followed while running), else streaming")
	pos, err := c.parseArgs(fs, args, 1, "one service NAME")
	if err != nil {
		return err
	}
	// Every instance, so that health changes are changes, not arrivals.
	q := beacon.Query{Service: pos[0], Tags: tags, IncludeUnhealthy: true, Datacenter: *dc}
	if err := q.Validate(); err != nil {
		return usageError{err: err}
	}
	path, pathFile, err := discovery.ChooseReadPath(*readPath)
	if err != nil {
		return usageError{err: fmt.Errorf("-read-path: %w", err)}
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if q.Datacenter != "" {
		// A watch retries forever: a misspelt datacenter would read as an
		// outage. Ask once first.
		err := c.eachAgent(cfg, func(cl *consulhttp.Client) error { return c.checkDatacenter(cl, q.Datacenter) })
		if err != nil {
			return err
		}
	}
	// One watcher, one person: a tighter rate limit than a service's
	// cache, so a burst of changes is shown as it happens.
	opts := []discovery.Option{discovery.WithRateLimit(100*time.Millisecond, 5), discovery.WithReadPath(path)}
	if pathFile != "" {
		opts = append(opts, discovery.WithReadPathFile(pathFile, 0))
	}
	cache, err := discovery.New(cfg, opts...)
	if err != nil {
		return err
	}
	defer cache.Close()
	w, err := cache.Watch(q)
	if err != nil {
		return err
	}
	defer w.Close()

	v := &watchView{out: c.stdout, service: q.Service, dc: q.Datacenter, agents: agentList(cfg), live: !*plain && isTerminal(c.stdout)}
	v.start(time.Now())
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// The first answer may be published before the subscription, so look
	// at the snapshot now and at every tick as well as on every change.
	v.update(w.Snapshot(), time.Now())
	for {
		select {
		case <-c.ctx.Done():
			v.stop(time.Now())
			return nil
		case <-w.Changed():
			v.update(w.Snapshot(), time.Now())
			v.served(cache, time.Now())
		case now := <-tick.C:
			v.update(w.Snapshot(), now)
			v.served(cache, now)
			v.tick(now)
		}
	}
}

// watchView turns snapshots into output: change lines, or on a terminal a
// table redrawn in place.
type watchView struct {
	out     io.Writer
	service string
	dc      string // "" for the agent's own
	agents  string
	live    bool

	backend   string              // the read path and backend last shown (served)
	last      *discovery.Snapshot // last snapshot shown
	shown     bool                // a successful answer has been shown
	staleNote time.Time           // when plain output last said Consul is unreachable
	events    []string            // recent change lines, for the live view
}

func (v *watchView) start(now time.Time) {
	where := ""
	if v.dc != "" {
		where = " in " + v.dc
	}
	v.emit(now, fmt.Sprintf("watching %q%s through %s; Ctrl-C to stop", v.service, where, v.agents))
}

// served says which read path and agent backend answer the watch, each
// time that changes (X-Consul-Query-Backend; X-Cache on the agent cache).
func (v *watchView) served(cache *discovery.Cache, now time.Time) {
	for _, st := range cache.Stats() {
		if st.Service != v.service || st.Backend == "" {
			continue
		}
		b := fmt.Sprintf("read path %s, answered by %s", st.ReadPath, st.Backend)
		if st.AgentCache != "" {
			b += " (agent cache)"
		}
		if b != v.backend {
			v.backend = b
			v.emit(now, b)
		}
		return
	}
}

func (v *watchView) stop(now time.Time) {
	if !v.live {
		v.emit(now, "stopped")
	}
}

func (v *watchView) emit(now time.Time, msg string) {
	line := now.Format(tsFormat) + " " + msg
	if v.live {
		v.events = append(v.events, line)
		if len(v.events) > 10 {
			v.events = v.events[len(v.events)-10:]
		}
		return
	}
	fmt.Fprintln(v.out, line)
}

func (v *watchView) update(s *discovery.Snapshot, now time.Time) {
	if s == nil || s == v.last {
		return
	}
	prev := v.last
	v.last = s
	wasErr := prev != nil && prev.Err != nil
	if s.Err != nil && !wasErr {
		v.emit(now, problem(s.Err)+" ("+s.Err.Error()+"); "+dataAge(s, now))
		v.staleNote = now
	}
	if s.Err == nil && wasErr {
		v.emit(now, "consul answers again")
	}
	if s.Source != discovery.SourceNone {
		if !v.shown {
			v.shown = true
			v.emit(now, fmt.Sprintf("%s of %s (%d passing)", plural(len(s.Instances), "instance"), v.service, countPassing(s.Instances)))
			for _, in := range sorted(s.Instances) {
				v.emit(now, "present "+describe(in))
			}
		} else if prev != nil {
			for _, e := range diffInstances(prev.Instances, s.Instances) {
				v.emit(now, e)
			}
		}
	}
	v.redraw(now)
}

func (v *watchView) tick(now time.Time) {
	if v.live {
		v.redraw(now)
		return
	}
	if s := v.last; s != nil && s.Err != nil && now.Sub(v.staleNote) >= stillStaleEvery {
		v.emit(now, "consul still unreachable; "+dataAge(s, now))
		v.staleNote = now
	}
}

// redraw repaints the terminal: a header saying how fresh the data is, the
// instances, and the latest changes.
func (v *watchView) redraw(now time.Time) {
	if !v.live {
		return
	}
	var b strings.Builder
	b.WriteString("\x1b[H\x1b[2J")
	s := v.last
	switch {
	case s == nil:
		fmt.Fprintf(&b, "%s: waiting for Consul (%s)\n", v.service, v.agents)
	case s.Err != nil:
		fmt.Fprintf(&b, "%s: %s (%v); %s\n", v.service, strings.ToUpper(problem(s.Err)), s.Err, dataAge(s, now))
	default:
		fmt.Fprintf(&b, "%s: %s, %d passing; updated %s (%s ago)\n", v.service, plural(len(s.Instances), "instance"), countPassing(s.Instances),
			s.Updated.Format("15:04:05"), now.Sub(s.Updated).Truncate(time.Second))
	}
	b.WriteByte('\n')
	if s != nil && len(s.Instances) > 0 {
		_ = writeInstanceTable(&b, sorted(s.Instances))
	}
	if len(v.events) > 0 {
		b.WriteString("\nrecent changes:\n")
		for _, e := range v.events {
			b.WriteString(e + "\n")
		}
	}
	io.WriteString(v.out, b.String())
}

func dataAge(s *discovery.Snapshot, now time.Time) string {
	if s.Source == discovery.SourceNone {
		return "no data yet"
	}
	return fmt.Sprintf("showing data from %s ago", now.Sub(s.Updated).Round(100*time.Millisecond))
}

func countPassing(insts []beacon.Instance) int {
	n := 0
	for _, in := range insts {
		if in.Health == beacon.HealthPassing {
			n++
		}
	}
	return n
}

func sorted(insts []beacon.Instance) []beacon.Instance {
	out := slices.Clone(insts) // snapshots are shared and immutable
	sortInstances(out)
	return out
}

func describe(in beacon.Instance) string {
	s := fmt.Sprintf("%s %s %s node=%s", in.ID, in.HostPort(), in.Health, in.Node)
	if len(in.Tags) > 0 {
		s += " tags=" + strings.Join(in.Tags, ",")
	}
	if len(in.Meta) > 0 {
		s += " meta=" + metaString(in.Meta)
	}
	return s
}

// diffInstances describes what changed between two answers, one line per
// added, removed or changed instance, ordered by ID.
func diffInstances(prev, next []beacon.Instance) []string {
	old := make(map[beacon.InstanceKey]beacon.Instance, len(prev))
	for _, in := range prev {
		old[in.Key()] = in
	}
	var out []string
	for _, in := range sorted(next) {
		p, ok := old[in.Key()]
		delete(old, in.Key())
		if !ok {
			out = append(out, "added "+describe(in))
			continue
		}
		var changes []string
		if p.Health != in.Health {
			changes = append(changes, fmt.Sprintf("health %s -> %s", p.Health, in.Health))
		}
		if p.HostPort() != in.HostPort() {
			changes = append(changes, fmt.Sprintf("address %s -> %s", p.HostPort(), in.HostPort()))
		}
		if !slices.Equal(p.Tags, in.Tags) {
			changes = append(changes, fmt.Sprintf("tags %s -> %s", orDash(strings.Join(p.Tags, ",")), orDash(strings.Join(in.Tags, ","))))
		}
		if a, b := metaString(p.Meta), metaString(in.Meta); a != b {
			changes = append(changes, fmt.Sprintf("meta %s -> %s", orDash(a), orDash(b)))
		}
		if p.Weights != in.Weights {
			changes = append(changes, fmt.Sprintf("weights %d/%d -> %d/%d", p.Weights.Passing, p.Weights.Warning, in.Weights.Passing, in.Weights.Warning))
		}
		if len(changes) > 0 {
			out = append(out, "changed "+in.ID+" "+strings.Join(changes, "; "))
		}
	}
	gone := make([]beacon.Instance, 0, len(old))
	for _, in := range old {
		gone = append(gone, in)
	}
	for _, in := range sorted(gone) {
		out = append(out, "removed "+in.ID+" node="+in.Node)
	}
	return out
}

// isTerminal reports whether w is a character device, where a live table
// can be redrawn; pipes and files get plain lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// problem names what an error of the cache means for the person watching:
// an ACL refusal is not an outage, and fixing it is different.
func problem(err error) string {
	switch {
	case errors.Is(err, discovery.ErrHiddenByACLs):
		return "ACLs hide the service from this token"
	case errors.Is(err, beacon.ErrPermissionDenied):
		return "consul refused the token"
	default:
		return "consul unreachable"
	}
}
