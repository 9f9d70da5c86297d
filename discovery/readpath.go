package discovery

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/beaconsd/beacon"
)

// ReadPath is how a watch's queries are answered by the agent (Consul
// 1.14; see docs/operations.md, "If streaming misbehaves").
type ReadPath uint8

const (
	// ReadStreaming (the default) leaves the choice to the agent: with
	// use_streaming_backend on (Consul's default) its blocking health
	// queries are served from a streaming view (X-Consul-Query-Backend:
	// streaming), else as plain blocking queries.
	ReadStreaming ReadPath = iota
	// ReadBlocking keeps the agent off its streaming backend: every query
	// is a plain blocking query forwarded to the servers
	// (X-Consul-Query-Backend: blocking-query), whatever the agent's
	// configuration and whatever WithAgentCache says.
	ReadBlocking
	// ReadCached answers from the agent's own cache (?cached without
	// streaming): the agent keeps one background blocking query per
	// distinct query and answers every client from it (X-Cache HIT or
	// MISS, Age), so a host's watchers cost the servers one query. A
	// blocking query blocks on the cache's next refresh. A watch with
	// Consistency ConsistencyConsistent, which no cache can serve, reads
	// as ReadBlocking instead.
	ReadCached
)

// ReadPathEnv is the environment variable ReadPathFromEnv reads:
// streaming, blocking or cached. ReadPathFileEnv names a file holding
// one of those words instead, for operators who change it in place.
const (
	ReadPathEnv     = "BEACON_READ_PATH"
	ReadPathFileEnv = "BEACON_READ_PATH_FILE"
)

// String returns the name ParseReadPath reads.
func (p ReadPath) String() string {
	switch p {
	case ReadStreaming:
		return "streaming"
	case ReadBlocking:
		return "blocking"
	case ReadCached:
		return "cached"
	}
	return fmt.Sprintf("ReadPath(%d)", uint8(p))
}

// Validate reports an unknown read path as a *beacon.ValidationError.
func (p ReadPath) Validate() error {
	if p > ReadCached {
		return &beacon.ValidationError{Field: "ReadPath", Reason: fmt.Sprintf("unknown read path %d", uint8(p))}
	}
	return nil
}

// ParseReadPath reads "streaming", "blocking" or "cached" (any case,
// surrounding space ignored); anything else is a *beacon.ValidationError.
func ParseReadPath(s string) (ReadPath, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "streaming":
		return ReadStreaming, nil
	case "blocking", "blocking-query":
		return ReadBlocking, nil
	case "cached":
		return ReadCached, nil
	}
	return 0, &beacon.ValidationError{Field: ReadPathEnv, Reason: fmt.Sprintf("%.40q is not streaming, blocking or cached", s)}
}

// ReadPathFromEnv returns the read path the environment chooses:
// BEACON_READ_PATH, else the first line of the file BEACON_READ_PATH_FILE
// names; ok is false when neither is set. A value that does not parse, or
// a file that cannot be read, is an error: a program should refuse to
// start rather than silently use a path the operator turned off.
func ReadPathFromEnv() (p ReadPath, ok bool, err error) {
	if v := os.Getenv(ReadPathEnv); v != "" {
		p, err = ParseReadPath(v)
		return p, err == nil, err
	}
	name := os.Getenv(ReadPathFileEnv)
	if name == "" {
		return ReadStreaming, false, nil
	}
	return ReadPathFromFile(name)
}

// ReadPathFromFile reads a read path from the first line of a file (at
// most 256 bytes are read); ok is false for an empty file.
func ReadPathFromFile(name string) (p ReadPath, ok bool, err error) {
	f, err := os.Open(name)
	if err != nil {
		return ReadStreaming, false, fmt.Errorf("discovery: read path: %w", err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return ReadStreaming, false, fmt.Errorf("discovery: read path: %w", err)
	}
	line, _, _ := strings.Cut(string(buf), "\n")
	if strings.TrimSpace(line) == "" {
		return ReadStreaming, false, nil
	}
	p, err = ParseReadPath(line)
	if err != nil {
		return ReadStreaming, false, fmt.Errorf("discovery: read path in %s: %w", name, err)
	}
	return p, true, nil
}

// WithReadPath sets the read path of every watch that does not choose its
// own (UseReadPath); default ReadStreaming. SetReadPath changes it later.
func WithReadPath(p ReadPath) Option { return func(o *options) { o.readPath = p } }

// WithReadPathFile has the cache follow a file holding a read path
// (streaming, blocking or cached, on its first line): it is read at New,
// which fails if it cannot be read or parsed, then again every every
// (default 10 s when zero), and each new value is applied with
// SetReadPath. An operator switches a running fleet off streaming by
// writing one word, without restarting anything. Later failures to read
// it are logged and leave the path as it was; an empty file means
// ReadStreaming at New and, later, leaves the path as it was (a file read
// between its truncation and its write must not flip a fleet to streaming
// and back): write "streaming" to go back. It overrides WithReadPath.
func WithReadPathFile(name string, every time.Duration) Option {
	return func(o *options) { o.pathFile, o.pathEvery = name, every }
}

// ChooseReadPath is the read path a program's -read-path flag resolves
// to: the flag when set, else ReadPathFromEnv, else ReadStreaming. A file
// named by BEACON_READ_PATH_FILE is also returned, for WithReadPathFile
// (the flag and BEACON_READ_PATH win over it).
func ChooseReadPath(flag string) (p ReadPath, file string, err error) {
	if flag != "" {
		p, err = ParseReadPath(flag)
		return p, "", err
	}
	if os.Getenv(ReadPathEnv) == "" {
		file = os.Getenv(ReadPathFileEnv)
	}
	p, _, err = ReadPathFromEnv()
	return p, file, err
}

// followPathFile re-reads the read-path file every period until the cache
// closes.
func (c *Cache) followPathFile(every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		p, ok, err := ReadPathFromFile(c.o.pathFile)
		if err != nil {
			c.o.logger.Warn("discovery: read path file; keeping the path in use", "path", c.ReadPath().String(), "err", err)
			continue
		}
		if !ok {
			continue // empty: perhaps read between a truncation and its write
		}
		_ = c.SetReadPath(p) // valid: parsed
	}
}

// UseReadPath pins this watch to a read path whatever the cache's
// (WithReadPath, SetReadPath). Watches of the same query with different
// pins are separate watches.
func UseReadPath(p ReadPath) WatchOption {
	return func(o *watchOptions) { o.readPath, o.pinPath = p, true }
}

// ReadPath returns the cache's read path now.
func (c *Cache) ReadPath() ReadPath { return ReadPath(c.readPath.Load()) }

// SetReadPath switches the read path of every watch not pinned by
// UseReadPath, without restarting anything: each such watch's request in
// flight is ended and asked again at once on the new path (from index 0,
// since an index means nothing on another backend), and every later
// request uses it. Safe for concurrent use; a no-op when p is the path
// already in use.
func (c *Cache) SetReadPath(p ReadPath) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if ReadPath(c.readPath.Swap(uint32(p))) == p {
		return nil
	}
	c.mu.Lock()
	ws := make([]*watch, 0, len(c.watches))
	for _, w := range c.watches {
		if !w.pinPath && w.fo == nil && w.prepared == "" {
			ws = append(ws, w)
		}
	}
	c.mu.Unlock()
	c.o.logger.Info("discovery: read path switched", "path", p.String(), "watches", len(ws))
	for _, w := range ws {
		w.switchPath()
	}
	return nil
}

// pathOf returns the read path w's next query takes.
func (c *Cache) pathOf(w *watch) ReadPath {
	p := c.ReadPath()
	if w.pinPath {
		p = w.readPath
	}
	if p == ReadCached && w.q.Consistency == beacon.ConsistencyConsistent {
		p = ReadBlocking // no cache serves a consistent read
	}
	return p
}

// streams reports whether w's last query could be served by a streaming
// view: one on the streaming path, or one whose last answer did not say
// blocking-query (an agent that streams even the reads asked not to, or
// an agent cache's answer). The stale guard has nothing to look for on a
// path the agent answered with a plain blocking query.
func (w *watch) streams() bool {
	if ReadPath(w.path.Load()) == ReadStreaming {
		return true
	}
	b, _ := w.backend.Load().(beacon.QueryBackend)
	return b != beacon.QueryBackendBlockingQuery
}

// onPath returns q as path p asks it.
func onPath(q beacon.Query, p ReadPath) beacon.Query {
	switch p {
	case ReadBlocking:
		q.Cached, q.NoStreaming = false, true
	case ReadCached:
		q.Cached, q.NoStreaming = true, true
	}
	return q
}

// switchPath ends w's request in flight, and refuses any answer from it
// still on its way, so that w asks again on its new path now: the stale
// guard's move off, without a time off.
func (w *watch) switchPath() {
	w.gen.Add(1)
	w.abortMu.Lock()
	if w.abort != nil {
		w.abort(errMovedOff)
	}
	w.abortMu.Unlock()
}

// cacheStatus is the agent cache's word on an answer (X-Cache, Age).
type cacheStatus struct {
	status string
	age    time.Duration
}

// setCacheStatus records meta's X-Cache and Age for Stats.
func (w *watch) setCacheStatus(meta beacon.QueryMeta) {
	if meta.AgentCache == "" {
		if w.agentCache.Load() != nil {
			w.agentCache.Store(nil)
		}
		return
	}
	w.agentCache.Store(&cacheStatus{status: meta.AgentCache, age: meta.CacheAge})
}
