package consulhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unique"

	"github.com/beaconsd/beacon"
)

// healthEntry is one element of GET /v1/health/service/:name.
type healthEntry struct {
	Node *struct {
		Node            string
		Address         string
		TaggedAddresses map[string]string
		// Meta is decoded once per distinct value in an answer (see
		// metaSharer): the nodes of a zone repeat the same bytes.
		Meta json.RawMessage
	}
	Service *struct {
		ID              string
		Service         string
		Tags            []string
		Address         string
		Port            int
		Meta            map[string]string
		Weights         weightsJSON
		TaggedAddresses map[string]beacon.ServiceAddress
	}
	Checks []struct {
		CheckID string
		Status  string
	}
}

// Instances looks up instances of q.Service (GET /v1/health/service/:name).
// Only passing instances are returned unless q.IncludeUnhealthy is set. With
// q.WaitIndex set it is a blocking query bounded by q.WaitTime.
func (c *Client) Instances(ctx context.Context, q beacon.Query) ([]beacon.Instance, beacon.QueryMeta, error) {
	if err := q.Validate(); err != nil {
		return nil, beacon.QueryMeta{}, fmt.Errorf("consulhttp: instances of %q: %w", q.Service, err)
	}
	req := c.newRequest(http.MethodGet, "/v1/health/service/"+url.PathEscape(q.Service))
	if !q.IncludeUnhealthy {
		req.query.Set("passing", "1")
	}
	for _, t := range q.Tags {
		req.query.Add("tag", t)
	}
	if q.Filter != "" {
		req.query.Set("filter", q.Filter)
	}
	if q.Cached {
		req.query.Set("cached", "")
	}
	if q.Near != "" {
		req.query.Set("near", q.Near)
	}
	if q.NoStreaming {
		// Consul 1.14 serves a merge-central-config read without streaming.
		req.query.Set("merge-central-config", "")
	}
	c.setRead(req, q.Datacenter, q.Consistency, q.WaitIndex, q.WaitTime)
	var nodeMeta metaSharer // per answer: getReusing decodes one at a time
	return getReusing(c, ctx, req, reuseKey("health", req), func() string { return fmt.Sprintf("instances of %q", q.Service) },
		func(e []byte, i int) (beacon.Instance, error) { return decodeHealthEntry(e, i, &nodeMeta) }, decodeHealth)
}

// decodeHealth turns a health answer into instances. It never panics on
// what the network sends: every malformed answer is an error wrapping
// beacon.ErrMalformedResponse.
func decodeHealth(h http.Header, body io.Reader) ([]beacon.Instance, beacon.QueryMeta, error) {
	meta, err := decodeMeta(h)
	if err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	var entries []healthEntry
	if err := decodeJSON(body, &entries); err != nil {
		return nil, beacon.QueryMeta{}, err
	}
	out := make([]beacon.Instance, 0, len(entries))
	var nodeMeta metaSharer
	for i := range entries {
		in, err := entries[i].instance(i, &nodeMeta)
		if err != nil {
			return nil, beacon.QueryMeta{}, err
		}
		out = append(out, in)
	}
	return out, meta, nil
}

// instance is entry i of an answer as an instance; nodeMeta shares node
// meta within the answer.
func (e *healthEntry) instance(i int, nodeMeta *metaSharer) (beacon.Instance, error) {
	if e.Node == nil || e.Service == nil || e.Service.ID == "" {
		return beacon.Instance{}, fmt.Errorf("%w: entry %d has no node or service", beacon.ErrMalformedResponse, i)
	}
	health, maint := beacon.HealthPassing, false
	for _, ch := range e.Checks {
		maint = maint || beacon.IsMaintenanceCheck(ch.CheckID, e.Service.ID)
		st := beacon.Health(ch.Status)
		if !st.Valid() {
			// Nothing unrecognised looks healthy, and Instance.Health
			// stays one of the three states.
			st = beacon.HealthCritical
		}
		health = health.Worse(st)
	}
	addr := e.Service.Address
	if addr == "" {
		addr = e.Node.Address
	}
	nm, err := nodeMeta.share(e.Node.Meta)
	if err != nil {
		return beacon.Instance{}, fmt.Errorf("%w: entry %d: node meta: %w", beacon.ErrMalformedResponse, i, err)
	}
	svcTagged, nodeTagged := beacon.CompactTaggedAddresses(addr, e.Service.Port, e.Service.Address != "", e.Service.TaggedAddresses, e.Node.TaggedAddresses)
	return beacon.Instance{
		ID:                  e.Service.ID,
		Service:             intern(e.Service.Service),
		Node:                intern(e.Node.Node),
		Address:             intern(addr),
		Port:                e.Service.Port,
		Tags:                internTags(e.Service.Tags),
		Meta:                internMeta(e.Service.Meta),
		Weights:             beacon.Weights{Passing: e.Service.Weights.Passing, Warning: e.Service.Weights.Warning},
		Health:              health,
		Maintenance:         maint,
		TaggedAddresses:     svcTagged,
		NodeTaggedAddresses: nodeTagged,
		NodeMeta:            nm,
	}, nil
}

// decodeMeta reads the X-Consul-* headers. X-Consul-Index is required: a
// blocking query cannot continue without it.
func decodeMeta(h http.Header) (beacon.QueryMeta, error) {
	var m beacon.QueryMeta
	raw := h.Get("X-Consul-Index")
	if raw == "" {
		return m, fmt.Errorf("%w: no X-Consul-Index header", beacon.ErrMalformedResponse)
	}
	idx, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return m, fmt.Errorf("%w: X-Consul-Index %.40q is not a number", beacon.ErrMalformedResponse, raw)
	}
	m.LastIndex = idx
	m.KnownLeader = h.Get("X-Consul-KnownLeader") == "true"
	m.FilteredByACLs = h.Get("X-Consul-Results-Filtered-By-ACLs") == "true"
	m.Backend = beacon.ParseQueryBackend(h.Get("X-Consul-Query-Backend"))
	if lc := h.Get("X-Consul-LastContact"); lc != "" {
		ms, err := strconv.ParseUint(lc, 10, 32)
		if err != nil {
			// Zero, like every other failure: no half-read meta.
			return beacon.QueryMeta{}, fmt.Errorf("%w: X-Consul-LastContact %.40q is not a number", beacon.ErrMalformedResponse, lc)
		}
		m.LastContact = time.Duration(ms) * time.Millisecond
	}
	switch xc := h.Get("X-Cache"); xc {
	case "HIT", "MISS":
		m.AgentCache = xc
		// Age is informative only: a malformed one is ignored, not fatal.
		if age, err := strconv.ParseUint(h.Get("Age"), 10, 32); err == nil {
			m.CacheAge = time.Duration(age) * time.Second
		}
	}
	return m, nil
}

var errTrailingData = errors.New("data after the JSON value")

// decodeJSON decodes body, which must hold exactly one JSON value, into v.
// A connection that fails mid-answer is beacon.ErrUnavailable (worth
// retrying elsewhere); anything else wrong, the size cap included, is
// beacon.ErrMalformedResponse. Data after the value is refused, as
// consulkit does: an answer with two values is not one Consul sent.
func decodeJSON(body io.Reader, v any) error {
	rec := &readRecorder{r: body}
	dec := json.NewDecoder(rec)
	if err := dec.Decode(v); err != nil {
		if rec.transportErr() != nil {
			return fmt.Errorf("%w: reading the answer: %w", beacon.ErrUnavailable, rec.err)
		}
		return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	if err := onlySpace(io.MultiReader(dec.Buffered(), rec)); err != nil {
		switch {
		case rec.transportErr() != nil:
			return fmt.Errorf("%w: reading the answer: %w", beacon.ErrUnavailable, rec.err)
		case errors.Is(err, beacon.ErrMalformedResponse): // the size cap
			return err
		}
		return fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	return nil
}

// onlySpace reads r to its end and reports an error unless all of it is
// JSON whitespace. It reads linearly: json.Decoder.Token rescans a run of
// whitespace from its start at every refill of its buffer, which takes
// seconds for the megabytes an answer may hold.
func onlySpace(r io.Reader) error {
	buf := make([]byte, 4<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				return errTrailingData
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readRecorder remembers the reader's error, so a connection that dies or
// stalls mid-answer reads as ErrUnavailable (worth retrying elsewhere), not
// as a malformed answer.
type readRecorder struct {
	r   io.Reader
	err error
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

// transportErr is the reader's error unless it is a clean end or the size cap.
func (r *readRecorder) transportErr() error {
	if r.err == nil || r.err == io.EOF || errors.Is(r.err, beacon.ErrMalformedResponse) {
		return nil
	}
	return r.err
}

// intern returns the canonical copy of s. Names, addresses, tags and meta
// repeat across instances and across answers; a watching cache that holds
// thousands of instances keeps one copy of each instead of one per decode.
func intern(s string) string { return unique.Make(s).Value() }

func internTags(tags []string) []string {
	for i, t := range tags {
		tags[i] = intern(t)
	}
	return tags
}

func internMeta(meta map[string]string) map[string]string {
	if len(meta) == 0 {
		return meta
	}
	m := make(map[string]string, len(meta))
	for k, v := range meta {
		m[intern(k)] = intern(v)
	}
	return m
}

// metaSharer hands out one interned map for equal node meta within an
// answer: every instance of a node carries its node's meta, and most nodes
// of a zone carry the same, so a cache holding thousands of instances keeps
// a few maps instead of one per instance. Consul writes a map's keys
// sorted, so equal meta is equal bytes: each distinct value is decoded once.
type metaSharer struct {
	raw  []json.RawMessage
	maps []map[string]string
}

// share returns the canonical map for raw, a node's Meta, less Consul's
// own keys (see beacon.CompactNodeMeta); nil for none.
func (s *metaSharer) share(raw json.RawMessage) (map[string]string, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	for i, r := range s.raw {
		if bytes.Equal(r, raw) {
			return s.maps[i], nil
		}
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m = beacon.CompactNodeMeta(m); len(m) == 0 {
		m = nil
	} else {
		m = internMeta(m)
	}
	if len(s.raw) < 16 { // bounded: an answer of distinct metas stays linear
		s.raw, s.maps = append(s.raw, raw), append(s.maps, m)
	}
	return m, nil
}
