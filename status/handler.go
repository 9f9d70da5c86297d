package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/beaconsd/beacon/discovery"
	"github.com/beaconsd/beacon/keeper"
)

// StatsSource is what the page reads of a discovery cache;
// *discovery.Cache is one.
type StatsSource interface {
	Stats() []discovery.WatchStats
}

// AgentsSource is what the page reads of a cache's agents, when its
// StatsSource has them; *discovery.Cache does.
type AgentsSource interface {
	Agents() []discovery.AgentStatus
}

// StatusSource is what the page reads of a keeper; *keeper.Keeper is one.
type StatusSource interface {
	Status() keeper.Status
}

var (
	_ StatsSource  = (*discovery.Cache)(nil)
	_ AgentsSource = (*discovery.Cache)(nil)
	_ StatusSource = (*keeper.Keeper)(nil)
)

// DefaultMaxWatches is how many watches the page lists by default.
const DefaultMaxWatches = 10_000

type options struct {
	cache      StatsSource
	keeper     StatusSource
	instanceID string
	agents     []string
	events     *Events
	every      time.Duration
	samples    int
	maxWatches int
}

// Option adjusts a Handler.
type Option func(*options)

// WithCache shows the watches of c (a *discovery.Cache) and samples them.
func WithCache(c StatsSource) Option { return func(o *options) { o.cache = c } }

// WithKeeper shows k's registration, of the instance with ID id (the
// keeper does not report its instance's ID).
func WithKeeper(k StatusSource, id string) Option {
	return func(o *options) { o.keeper, o.instanceID = k, id }
}

// WithAgents lists the configured agents' addresses (consul.Config's
// Addresses). Only addresses are shown: user info, a query or a fragment
// in a URL is dropped.
func WithAgents(addrs ...string) Option {
	return func(o *options) { o.agents = append([]string(nil), addrs...) }
}

// WithEvents makes the timeline show ev, which hooks elsewhere in the
// program record into (default: a ring of DefaultEvents of the Handler's
// own, see Handler.Events).
func WithEvents(ev *Events) Option { return func(o *options) { o.events = ev } }

// WithSampling sets the sampler's period and how many samples each
// service keeps (default DefaultSampleEvery, DefaultSamples; samples is
// capped at MaxSamples). every <= 0 turns the sampler off: no pictures
// and no derived events.
func WithSampling(every time.Duration, samples int) Option {
	return func(o *options) { o.every, o.samples = every, samples }
}

// WithMaxWatches bounds the watches listed (default DefaultMaxWatches);
// the report says how many there are in all.
func WithMaxWatches(n int) Option { return func(o *options) { o.maxWatches = n } }

// Handler serves the status page; see the package doc. It is safe for
// concurrent use. Create it with New; Close stops its sampler.
type Handler struct {
	o       options
	started time.Time
	events  *Events
	hist    *history

	stop context.CancelFunc
	wg   sync.WaitGroup
	// cacheLive: the cache reports its events as they happen
	// (cacheevents.go), so the sampler infers none of those kinds;
	// unlisten ends each subscription, at Close.
	cacheLive  bool
	unlistenMu sync.Mutex
	unlisten   []func()
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler. With a cache (WithCache) and sampling on, it
// starts a sampler goroutine at once, which takes a first sample
// immediately; and it subscribes the timeline to the cache's and the
// keeper's events when they have them (EventSource, KeeperEventsSource).
// Close stops the sampler and ends the subscriptions: a Handler that is
// dropped without Close keeps recording, referenced by the cache.
func New(opts ...Option) *Handler {
	o := options{every: DefaultSampleEvery, samples: DefaultSamples, maxWatches: DefaultMaxWatches}
	for _, f := range opts {
		f(&o)
	}
	o.samples = min(max(o.samples, 2), MaxSamples)
	if o.maxWatches < 1 {
		o.maxWatches = DefaultMaxWatches
	}
	h := &Handler{o: o, started: time.Now(), events: o.events}
	if h.events == nil {
		h.events = NewEvents(DefaultEvents)
	}
	h.listenCache()
	h.unlisten = append(h.unlisten, h.subscribeKeeper())
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	if o.cache != nil && o.every > 0 {
		h.hist = newHistory(o.samples)
		h.hist.live = h.cacheLive
		h.wg.Add(1)
		go h.sampler(ctx)
	}
	return h
}

// Events returns the ring the timeline shows, for hooks to Record into.
func (h *Handler) Events() *Events { return h.events }

// Close stops the sampler, waits for it, and stops listening to the
// cache's and the keeper's events. It is safe to call more than once; the Handler keeps
// serving, with the samples and events it has.
func (h *Handler) Close() error {
	h.stop()
	h.wg.Wait()
	h.unlistenMu.Lock()
	defer h.unlistenMu.Unlock()
	for _, f := range h.unlisten {
		f()
	}
	h.unlisten = nil
	return nil
}

func (h *Handler) sampler(ctx context.Context) {
	defer h.wg.Done()
	t := time.NewTicker(h.o.every)
	defer t.Stop()
	for {
		h.sampleOnce()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *Handler) sampleOnce() {
	var ks *keeper.Status
	if h.o.keeper != nil && !h.keeperNotifies() { // else the keeper reports them itself
		s := h.o.keeper.Status()
		ks = &s
	}
	h.hist.sample(time.Now(), h.o.cache.Stats(), ks, h.events)
}

// Report gathers what the page shows, now.
func (h *Handler) Report() Report {
	r := Report{Generated: time.Now(), Started: h.started, Watches: []Watch{}, Agents: []Agent{}, Services: []History{}, Events: h.events.Last()}
	if h.o.cache != nil {
		stats := h.o.cache.Stats()
		r.WatchCount = len(stats)
		if len(stats) > h.o.maxWatches {
			stats, r.Truncated = stats[:h.o.maxWatches], true
		}
		r.Watches = make([]Watch, len(stats))
		for i, st := range stats {
			r.Watches[i] = watchOf(st)
		}
	}
	if as, ok := h.o.cache.(AgentsSource); ok {
		for _, a := range as.Agents() {
			r.Agents = append(r.Agents, agentOf(a))
		}
	}
	for _, a := range h.o.agents {
		if !slices.ContainsFunc(r.Agents, func(x Agent) bool { return x.Address == address(a) }) {
			r.Agents = append(r.Agents, Agent{Address: address(a), State: "unknown"})
		}
	}
	if h.o.keeper != nil {
		r.Keeper = keeperOf(h.o.instanceID, h.o.keeper.Status())
	}
	if h.hist != nil {
		r.Services = h.hist.histories()
		r.SampleSeconds = h.o.every.Seconds()
	}
	return r
}

// csp is the Content-Security-Policy every answer carries: no script, no
// fetch, no image, no frame, no form, no base; styles only the page's own
// style element, by its hash (tighter than 'unsafe-inline', which would
// also allow style attributes and injected style elements).
var csp = "default-src 'none'; style-src '" + styleHash() + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func styleHash() string {
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// securityHeaders go on every answer, refusals included.
var securityHeaders = map[string]string{
	"Content-Security-Policy": csp,
	"X-Content-Type-Options":  "nosniff",
	"Referrer-Policy":         "no-referrer",
	"Cache-Control":           "no-store",
	"X-Frame-Options":         "DENY",
}

// ServeHTTP answers GET and HEAD with the page, as HTML or, for Accept:
// application/json or ?format=json, as JSON; ?format=html forces HTML.
// Other methods get 405 with Allow: GET, HEAD; another format, 400.
func (h *Handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "status: only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	asJSON, ok := wantsJSON(req)
	if !ok {
		http.Error(w, "status: format must be html or json", http.StatusBadRequest)
		return
	}
	w.Header().Set("Vary", "Accept")
	var buf bytes.Buffer
	rep := h.Report()
	var err error
	if asJSON {
		w.Header().Set("Content-Type", "application/json")
		err = json.NewEncoder(&buf).Encode(rep)
	} else {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		err = RenderHTML(&buf, rep)
	}
	if err != nil {
		// Rendered into a buffer first, so a failure is a clean 500.
		http.Error(w, "status: rendering failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if req.Method == http.MethodGet {
		_, _ = w.Write(buf.Bytes())
	}
}

// maxAccept bounds the Accept header parsed; a longer one is read as
// asking for HTML.
const maxAccept = 1 << 10

// wantsJSON reports whether req asks for JSON, and false for ok when it
// names a format the page does not have. ?format wins over Accept; with
// Accept, JSON is chosen when application/json is acceptable (q > 0) and
// text/html is not listed before it.
func wantsJSON(req *http.Request) (asJSON, ok bool) {
	switch f := req.URL.Query().Get("format"); f {
	case "json":
		return true, true
	case "html":
		return false, true
	case "":
	default:
		return false, false
	}
	accept := strings.Join(req.Header.Values("Accept"), ",")
	if len(accept) > maxAccept {
		return false, true
	}
	for part := range strings.SplitSeq(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err != nil || !(f > 0) {
				continue
			}
		}
		switch mt {
		case "text/html":
			return false, true
		case "application/json":
			return true, true
		}
	}
	return false, true
}
