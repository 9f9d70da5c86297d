package faults

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consulhttp"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/internal/testutil"
)

// Duplicates: the same instance listed twice. Callers must never see one
// (discovery merges copies of an instance into one endpoint); the catalog
// may, briefly, when an agent that held a copy comes back, and how long is
// measured: the catalog's duplicate window, from the old agent answering
// again to one copy left. docs/reliability.md says where the copy comes
// from; watchDuplicates also records the timeline that shows it.

// dupEvery is how often watchDuplicates reads the catalog: often enough
// for a window in ms to mean something. One plain read of every check takes
// a few ms here; when a read takes longer (under a CPU hog), the ticker
// drops the ticks it missed, so reads never pile up.
const dupEvery = 20 * time.Millisecond

// dupWindowBound is the longest catalog duplicate window a scenario
// accepts: generous, to catch a stale copy that lingers, not to time the
// keeper. A copy nobody heartbeats goes critical within the TTL (5 s); one
// kept passing never closes, and fails whatever the bound. The package's
// deadline, not 10 s: the windows measured are milliseconds, and a loaded
// machine must not turn a slow heartbeat into a failure.
const dupWindowBound = deadline

// catalogRead is one read of the catalog's checks (GET /v1/health/state/any,
// a plain read: no index, so no streaming view): the status of each SayHello
// check and of each node's serfHealth, and the SayHello copies that were
// passing, decided as /v1/health/service?passing decides (every check of
// the copy and every check of its node passing).
type catalogRead struct {
	at      time.Time
	index   uint64                   // X-Consul-Index: orders reads from both loops
	checks  map[string]beacon.Health // "node check-id"
	passing map[string][]string      // ID → nodes with a passing copy, sorted
}

// readCatalog reads the checks; with waitIndex > 0 it blocks until the
// checks change past it (or a few seconds pass).
func readCatalog(ctx context.Context, c *consulhttp.Client, waitIndex uint64) (catalogRead, error) {
	q := beacon.ChecksQuery{}
	if waitIndex > 0 {
		q.WaitIndex, q.WaitTime = waitIndex, 5*time.Second
	}
	cs, meta, err := c.Checks(ctx, q)
	r := catalogRead{at: time.Now(), index: meta.LastIndex, checks: map[string]beacon.Health{}, passing: map[string][]string{}}
	if err != nil {
		return r, err
	}
	type copyKey struct{ node, id string }
	nodeBad := map[string]bool{}
	copyOK := map[copyKey]bool{}
	for _, ch := range cs {
		ok := ch.Status == beacon.HealthPassing
		if ch.ServiceID == "" {
			nodeBad[ch.Node] = nodeBad[ch.Node] || !ok
			if ch.CheckID == "serfHealth" {
				r.checks[ch.Node+" serfHealth"] = ch.Status
			}
			continue
		}
		if ch.ServiceName != service {
			continue
		}
		k := copyKey{ch.Node, ch.ServiceID}
		if prev, seen := copyOK[k]; seen {
			ok = ok && prev
		}
		copyOK[k] = ok
		r.checks[ch.Node+" "+ch.CheckID] = ch.Status
	}
	for k, ok := range copyOK {
		if ok && !nodeBad[k.node] {
			r.passing[k.id] = append(r.passing[k.id], k.node)
		}
	}
	for _, nodes := range r.passing {
		sort.Strings(nodes)
	}
	return r, nil
}

// dups returns the IDs passing on more than one node, sorted.
func (r catalogRead) dups() []string {
	var ids []string
	for id, nodes := range r.passing {
		if len(nodes) > 1 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// callerDups returns what makes a snapshot list an instance twice: an ID
// on two nodes, or two entries with one address and port.
func callerDups(insts []beacon.Instance) []string {
	var out []string
	ids, addrs := map[string]string{}, map[string]string{}
	for _, in := range insts {
		addr := fmt.Sprintf("%s:%d", in.Address, in.Port)
		if n, ok := ids[in.ID]; ok {
			out = append(out, fmt.Sprintf("%s on %s and %s", in.ID, n, in.Node))
		} else if other, ok := addrs[addr]; ok {
			out = append(out, fmt.Sprintf("%s and %s both at %s", other, in.Node+"/"+in.ID, addr))
		}
		ids[in.ID], addrs[addr] = in.Node, in.Node+"/"+in.ID
	}
	return out
}

// dupWatch reads the catalog every dupEvery with plain reads and, beside
// them, follows it with blocking queries (a plain read alone misses a state
// shorter than dupEvery, a blocking query alone one shorter than its round
// trip), and checks each snapshot the callers' caches publish, until
// stopped or its limit passes. Snapshots are latest-value: one replaced
// within microseconds may go unchecked.
type dupWatch struct {
	t0     time.Time // the timeline's zero
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once

	mu          sync.Mutex
	reads       []catalogRead
	failedReads int
	timeline    []event
	callerSnaps int
	callerSeen  []event // the first callers' duplicates, at most 10
	callerN     int
}

// event is a line of the timeline: a check changing status, a moment the
// scenario marks, a line of an agent's or Beacon's log.
type event struct {
	at   time.Time
	what string
}

// watchDuplicates starts watching through node (any agent that stays up)
// and the callers' caches, for at most limit.
func watchDuplicates(node *consultest.Node, limit time.Duration, callers ...*caller) *dupWatch {
	d := &dupWatch{t0: time.Now(), stopCh: make(chan struct{}), done: make(chan struct{})}
	// A context, not a timer: every goroutine of the watch must see the end.
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	end := ctx.Done()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.readLoop(node, end)
	}()
	go func() {
		defer wg.Done()
		d.blockLoop(node, end)
	}()
	for _, c := range callers {
		// A Watcher of its own on the caller's cache: it shares the cache's
		// watch of SayHello (what the RoundTripper picks from) and gets its
		// own notifications, so it sees every snapshot published.
		w, err := c.cache.Watch(beacon.Query{Service: service})
		if err != nil {
			d.mu.Lock()
			d.callerSeen = append(d.callerSeen, event{time.Now(), fmt.Sprintf("%s: watch: %v", c.name, err)})
			d.callerN++
			d.mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			d.followCaller(c.name, w, end)
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(d.done)
	}()
	return d
}

// followCaller checks every snapshot w publishes for duplicates and puts
// it in the timeline, until the watch is stopped or end.
func (d *dupWatch) followCaller(name string, w *discovery.Watcher, end <-chan struct{}) {
	for {
		if s := w.Snapshot(); s != nil {
			now := time.Now()
			found := callerDups(s.Instances)
			var copies []string
			for _, in := range s.Instances {
				copies = append(copies, in.ID+"@"+in.Node)
			}
			sort.Strings(copies)
			d.mu.Lock()
			d.callerSnaps++
			d.timeline = append(d.timeline, event{now, fmt.Sprintf("%s snapshot (index %d): %s", name, s.Index, strings.Join(copies, " "))})
			if len(found) > 0 {
				d.callerN++
				if len(d.callerSeen) < 10 {
					d.callerSeen = append(d.callerSeen, event{now, name + ": " + strings.Join(found, "; ")})
				}
			}
			d.mu.Unlock()
		}
		select {
		case <-d.stopCh:
			return
		case <-end:
			return
		case <-w.Changed():
		}
	}
}

// readLoop reads the catalog every dupEvery with plain reads.
func (d *dupWatch) readLoop(node *consultest.Node, end <-chan struct{}) {
	c, err := consulhttp.New(node.Config())
	if err != nil {
		return
	}
	defer c.Close()
	tick := time.NewTicker(dupEvery)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := readCatalog(ctx, c, 0)
		cancel()
		d.add(r, err)
		select {
		case <-d.stopCh:
			return
		case <-end:
			return
		case <-tick.C:
		}
	}
}

// blockLoop follows the catalog's checks with blocking queries, so that a
// state shorter than dupEvery is seen too: the leader marking a node alive
// and the agent syncing its checks can be 20-30 ms apart, and a caller's
// long poll woken in between keeps what it got for a second.
func (d *dupWatch) blockLoop(node *consultest.Node, end <-chan struct{}) {
	c, err := consulhttp.New(node.Config())
	if err != nil {
		return
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.stopCh:
		case <-end:
		}
		cancel()
	}()
	var index uint64
	for ctx.Err() == nil {
		r, err := readCatalog(ctx, c, max(index, 1))
		if ctx.Err() != nil {
			return
		}
		d.add(r, err)
		if err != nil || r.index < index {
			// Start again from index 1, which answers at once (so does
			// the first query); pace errors.
			index = 0
			select {
			case <-ctx.Done():
			case <-time.After(dupEvery):
			}
			continue
		}
		index = r.index
	}
}

func (d *dupWatch) add(r catalogRead, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.failedReads++
		return
	}
	d.reads = append(d.reads, r)
}

// transitions lists the checks whose status differs from prev (all of
// them on the first read), and the passing copies when one changed.
func transitions(r catalogRead, prev map[string]beacon.Health) []event {
	var out []string
	for k, st := range r.checks {
		if was, ok := prev[k]; !ok || was != st {
			if prev == nil || !ok {
				out = append(out, fmt.Sprintf("%s %s", k, st))
			} else {
				out = append(out, fmt.Sprintf("%s %s→%s", k, was, st))
			}
		}
	}
	for k := range prev {
		if _, ok := r.checks[k]; !ok {
			out = append(out, k+" gone")
		}
	}
	if len(out) == 0 {
		return nil
	}
	sort.Strings(out)
	var copies []string
	for id, nodes := range r.passing {
		copies = append(copies, fmt.Sprintf("%s@%s", id, strings.Join(nodes, ",")))
	}
	sort.Strings(copies)
	return []event{{r.at, "catalog: " + strings.Join(out, ", ") + " | passing: " + strings.Join(copies, " ")}}
}

// mark puts a moment of the scenario into the timeline.
func (d *dupWatch) mark(at time.Time, what string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.timeline = append(d.timeline, event{at, what})
}

// dupResult is what a dupWatch saw.
type dupResult struct {
	reads, failedReads int // reads of both loops; dupReads counts distinct states (indexes)
	dupReads           int
	ids                []string // IDs passing twice at some read
	// window runs from the moment given to stop (the old agent answering)
	// to the first read with one copy left after the last read with two;
	// zero when no read had two, or none after that moment. all runs from
	// the first read with two instead, when that came earlier: a dead
	// agent's copy stays passing until gossip declares the node failed,
	// and the leader revives it before the new agent's HTTP API answers.
	// open: the last read still had two.
	window, all time.Duration
	open        bool
	firstDup    time.Duration // of the first read with two, from the moment given to stop (negative: before it)
	span        time.Duration // first read to last
	callerN     int
	callerSn    int
	callerMsg   []string
	timeline    []event
}

// stop ends the watch; from is the moment the window is measured from.
func (d *dupWatch) stop(from time.Time) dupResult {
	d.once.Do(func() { close(d.stopCh) })
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	reads := ordered(d.reads)
	res := dupResult{reads: len(d.reads), failedReads: d.failedReads, callerN: d.callerN, callerSn: d.callerSnaps, timeline: slices.Clone(d.timeline)}
	if len(d.reads) > 0 {
		// Over every read, not over states: a quiet catalog is one state.
		first, last := d.reads[0].at, d.reads[0].at
		for _, r := range d.reads {
			if r.at.Before(first) {
				first = r.at
			}
			if r.at.After(last) {
				last = r.at
			}
		}
		res.span = last.Sub(first)
	}
	for _, ev := range d.callerSeen {
		res.callerMsg = append(res.callerMsg, fmt.Sprintf("%s at %+dms from the agent answering", ev.what, ev.at.Sub(from).Milliseconds()))
	}
	var prev map[string]beacon.Health
	for _, r := range reads {
		res.timeline = append(res.timeline, transitions(r, prev)...)
		prev = r.checks
	}
	last := -1
	for i, r := range reads {
		dups := r.dups()
		if len(dups) == 0 {
			continue
		}
		if last < 0 {
			res.firstDup = r.at.Sub(from)
		}
		last = i
		res.dupReads++
		for _, id := range dups {
			if !slices.Contains(res.ids, id) {
				res.ids = append(res.ids, id)
			}
		}
	}
	if last >= 0 {
		end := reads[last].at
		if last == len(reads)-1 {
			res.open = true
		} else {
			end = reads[last+1].at
		}
		res.window = max(0, end.Sub(from))
		res.all = max(res.window, end.Sub(from.Add(res.firstDup)))
	}
	sort.Strings(res.ids)
	return res
}

// ordered sorts reads of both loops by index (arrival order breaks ties)
// and keeps one read per index, the first to arrive: one state of the
// catalog, seen at the earliest moment it was.
func ordered(rs []catalogRead) []catalogRead {
	s := slices.Clone(rs)
	slices.SortStableFunc(s, func(a, b catalogRead) int {
		if a.index != b.index {
			return cmp.Compare(a.index, b.index)
		}
		return a.at.Compare(b.at)
	})
	out := s[:0]
	for _, r := range s {
		if n := len(out); n > 0 && out[n-1].index == r.index {
			if r.at.Before(out[n-1].at) {
				out[n-1].at = r.at
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// catalogSummary is the result for a table row.
func (r dupResult) catalogSummary() string {
	if r.dupReads == 0 {
		return fmt.Sprintf("catalog: no duplicate in %d reads over %s", r.reads, ms(r.span))
	}
	s := fmt.Sprintf("catalog duplicate window %s from the agent answering to one copy left (%s passing twice in %d states; the first %s the agent answered, %s in all)", msExact(r.window), strings.Join(r.ids, ", "), r.dupReads, relative(r.firstDup), msExact(r.all))
	if r.open {
		s += ", still two copies when sampling ended"
	}
	return s
}

func (r dupResult) callerSummary() string {
	return fmt.Sprintf("callers: %d of %d snapshots listed an instance twice", r.callerN, r.callerSn)
}

func relative(d time.Duration) string {
	if d < 0 {
		return msExact(-d) + " before"
	}
	return msExact(d) + " after"
}

// msExact is ms to the millisecond: duplicate windows are short.
func msExact(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// ---- the evidence: what the agent kept, what the logs say ----

// persistedChecks describes the TTL check states an agent keeps in its data
// dir (checks/state/*, Consul's persistedCheckState): which check, the
// status, and when the state expires relative to now. An agent restarted
// before Expires restores that status; after it, the status the check was
// registered with.
func persistedChecks(dataDir string) []string {
	files, _ := filepath.Glob(filepath.Join(dataDir, "checks", "state", "*"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st struct {
			CheckID, Status string
			Expires         int64
		}
		if err := json.Unmarshal(b, &st); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", filepath.Base(f), err))
			continue
		}
		in := time.Until(time.Unix(st.Expires, 0))
		out = append(out, fmt.Sprintf("%s %s, expires in %s", st.CheckID, st.Status, in.Round(100*time.Millisecond)))
	}
	sort.Strings(out)
	return out
}

// agentLogEvents returns the lines of an agent's log (consultest keeps it
// beside the data dir) between from and to that tell the story: the agent
// starting, syncing or deregistering services and checks, and the leader
// marking a member alive (serfHealth passing).
func agentLogEvents(n *consultest.Node, from, to time.Time) []event {
	f, err := os.Open(filepath.Join(filepath.Dir(n.DataDir), "agent.log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := agentLogLine.FindStringSubmatch(line)
		if m == nil || !agentLogWanted.MatchString(m[2]) {
			continue
		}
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", m[1])
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		out = append(out, event{at, n.Name + " log: " + strings.TrimSpace(m[2])})
	}
	return out
}

var (
	agentLogLine   = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\s+\[\w+\]\s+(.*)$`)
	agentLogWanted = regexp.MustCompile(`agent: (Synced|Deregistered|Consul agent running)|member joined, marking health alive|member failed, marking health critical|agent: \(LAN\) joined|Check is now critical|check=service:`)
)

// beaconLogEvents returns Beacon's log lines (keeper ones: where the
// keeper registered, moved, removed a copy) between from and to.
func beaconLogEvents(logs *logSink, from, to time.Time) []event {
	logs.mu.Lock()
	text := logs.buf.String()
	logs.mu.Unlock()
	var out []event
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, "c=keeper") {
			continue
		}
		ts, rest, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || at.Before(from) || at.After(to) {
			continue
		}
		out = append(out, event{at, "beacon: " + rest})
	}
	return out
}

// formatTimeline sorts events and prints them in ms from zero.
func formatTimeline(zero time.Time, evs []event) string {
	slices.SortStableFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %+7dms  %s\n", e.at.Sub(zero).Milliseconds(), e.what)
	}
	return b.String()
}

// ---- windows over a run ----

var (
	windowsMu                       sync.Mutex
	windows                         = map[string][2][]time.Duration{} // scenario → catalog windows: from the agent answering, in all
	callerDupTotal, callerSnapTotal int
)

// recordWindow keeps a catalog window and the callers' count for the
// run's summary (printed by TestMain), so -count=N gives min, median, max.
func recordWindow(label string, r dupResult) {
	windowsMu.Lock()
	defer windowsMu.Unlock()
	w := windows[label]
	w[0], w[1] = append(w[0], r.window), append(w[1], r.all)
	windows[label] = w
	callerDupTotal += r.callerN
	callerSnapTotal += r.callerSn
}

// windowSummary is the run's catalog windows by scenario, and the callers'
// duplicates; "" when no scenario measured any.
func windowSummary() string {
	windowsMu.Lock()
	defer windowsMu.Unlock()
	if len(windows) == 0 {
		return ""
	}
	var labels []string
	for l := range windows {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	var b strings.Builder
	fmt.Fprintf(&b, "duplicate windows: callers listed an instance twice in %d of %d snapshots (must be 0); the catalog's, from the old agent answering to one copy left, and from the first duplicate when earlier:\n", callerDupTotal, callerSnapTotal)
	for _, l := range labels {
		fmt.Fprintf(&b, "duplicate windows: %s: %s; in all %s\n", l, minMedMax(windows[l][0]), minMedMax(windows[l][1]))
	}
	return b.String()
}

// minMedMax is "n=N min A median B max C" (a lone one: just it).
func minMedMax(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 1 {
		return fmt.Sprintf("n=1 %s", msExact(s[0]))
	}
	var nonzero int
	for _, d := range s {
		if d > 0 {
			nonzero++
		}
	}
	return fmt.Sprintf("n=%d (%d with a duplicate) min %s median %s max %s", len(s), nonzero, msExact(s[0]), msExact(s[len(s)/2]), msExact(s[len(s)-1]))
}

// ---- helpers for the scenarios ----

// restartTraced restarts node (kept data or wiped) while w watches, and
// returns when its HTTP API answers again: the moment a duplicate window
// is measured from. It marks the timeline with the kill, the TTL states
// the agent kept in its data dir, and the answer.
func restartTraced(t *testing.T, w *dupWatch, node *consultest.Node, keep bool) (answered time.Time) {
	t.Helper()
	kept := persistedChecks(node.DataDir)
	what := node.Name + " restarting"
	if node.Running() {
		what = node.Name + " killed"
	}
	killed := time.Now()
	node.Kill()
	w.mark(killed, fmt.Sprintf("%s; TTL states in its data dir: %s", what, strings.Join(kept, "; ")))
	if !keep {
		w.mark(time.Now(), node.Name+" data dir wiped")
	}
	// RestartNoWait polls every 50 ms; a poll of our own every 5 ms says
	// to within a few ms when the new agent first answered. The old one is
	// dead, so any answer is the new agent's.
	stop := make(chan struct{})
	first := make(chan time.Time, 1)
	go func() {
		var at time.Time
		defer func() { first <- at }()
		for i := 0; i < 6000; i++ { // bounded: 30 s of refused polls; stop ends it once RestartNoWait returns
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			var self json.RawMessage
			err := getJSON(ctx, node, "/v1/agent/self", &self)
			cancel()
			if err == nil {
				at = time.Now()
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	node.RestartNoWait(t, keep)
	close(stop)
	answered = time.Now()
	if at := <-first; !at.IsZero() {
		answered = at
	}
	w.mark(answered, node.Name+" answering (HTTP API) after its restart")
	// What the agent restored from its data dir, before anyone changed it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var local map[string]struct{ Status string }
	if err := getJSON(ctx, node, "/v1/agent/checks", &local); err == nil {
		var sts []string
		for id, c := range local {
			sts = append(sts, id+" "+c.Status)
		}
		sort.Strings(sts)
		w.mark(time.Now(), fmt.Sprintf("%s's own checks after its restart: [%s]", node.Name, strings.Join(sts, ", ")))
	}
	return answered
}

// waitAgentSynced waits until node is alive in the catalog (serfHealth
// passing) and every check its agent has is in the catalog with the
// agent's status: the agent's anti-entropy has run since it came back. A
// window measured before that could end before the duplicate begins.
func waitAgentSynced(t *testing.T, node *consultest.Node, timeout time.Duration) time.Time {
	t.Helper()
	testutil.Eventually(t, timeout, node.Name+" alive and synced", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var local map[string]struct{ Status string }
		if err := getJSON(ctx, node, "/v1/agent/checks", &local); err != nil {
			return err
		}
		var catalog []struct{ CheckID, Status string }
		if err := getJSON(ctx, node, "/v1/health/node/"+url.PathEscape(node.Name), &catalog); err != nil {
			return err
		}
		in := map[string]string{}
		for _, ch := range catalog {
			in[ch.CheckID] = ch.Status
		}
		if in["serfHealth"] != "passing" {
			return fmt.Errorf("serfHealth %q", in["serfHealth"])
		}
		for id, ch := range local {
			if in[id] != ch.Status {
				return fmt.Errorf("check %s is %s on the agent, %q in the catalog", id, ch.Status, in[id])
			}
		}
		return nil
	})
	return time.Now()
}

// getJSON reads path from node's HTTP API, for what consulhttp has no call.
func getJSON(ctx context.Context, node *consultest.Node, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, node.URL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := evidenceClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// evidenceClient keeps no idle connections, so nothing outlives a read.
var evidenceClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}

// checkDups applies the duplicate criteria to what w saw, logs the
// timeline around the restart of node (catalog transitions, the agents'
// and the keepers' log lines), records the window for the run's summary
// and returns the result.
func (e *env) checkDups(w *dupWatch, label string, node *consultest.Node, from time.Time) dupResult {
	t := e.t
	t.Helper()
	res := w.stop(from)
	evs := res.timeline
	for _, n := range e.c.Nodes() {
		for _, ev := range agentLogEvents(n, w.t0.Add(-time.Second), time.Now()) {
			// The servers: only what they say about node.
			if n.IsServer() && !strings.Contains(ev.what, node.Name) {
				continue
			}
			evs = append(evs, ev)
		}
	}
	evs = append(evs, beaconLogEvents(e.logs, w.t0.Add(-time.Second), time.Now())...)
	if len(evs) > 300 {
		evs = evs[:300]
	}
	t.Logf("%s: timeline (ms from the agent answering):\n%s", label, formatTimeline(from, evs))
	t.Logf("%s: %s; %s", label, res.catalogSummary(), res.callerSummary())
	recordWindow(label, res)
	if res.reads == 0 {
		t.Errorf("%s: no read of the catalog succeeded (%d failed)", label, res.failedReads)
	}
	if res.callerN > 0 {
		t.Errorf("%s: a caller listed an instance twice in %d snapshots: %q", label, res.callerN, res.callerMsg)
	}
	if res.open || res.all > dupWindowBound {
		t.Errorf("%s: catalog duplicates for %v (%v after the agent answered; still open: %v), want ≤ %v", label, res.all, res.window, res.open, dupWindowBound)
	}
	return res
}

// waitChecks polls the catalog's checks through node until cond holds, and
// returns when it did.
func waitChecks(t *testing.T, node *consultest.Node, what string, timeout time.Duration, cond func(catalogRead) bool) time.Time {
	t.Helper()
	c, err := consulhttp.New(node.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, timeout, "catalog through "+node.Name+": "+what, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		r, err := readCatalog(ctx, c, 0)
		if err != nil {
			return err
		}
		return testutil.Want(cond(r), "checks %v", r.checks)
	})
	return time.Now()
}
