package discovery

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/backoff"
)

// DefaultQueryPoll is how often a prepared-query watch executes its query
// when nothing wakes it (WithQueryPoll).
const DefaultQueryPoll = 10 * time.Second

// WithQueryPoll sets how often a prepared-query watch executes its query
// when nothing wakes it (default 10 s, jittered to between half and all
// of it).
func WithQueryPoll(d time.Duration) Option { return func(o *options) { o.queryPoll = d } }

// querySettle is when a prepared query is executed again after a change
// woke it: Consul before 1.16 can publish a change to streaming watchers
// before the servers have committed it (hashicorp/consul#16871), so the
// first execution often still sees the old state (on this project's
// 1.14.8, the commit came within a second).
var querySettle = [...]time.Duration{200 * time.Millisecond, time.Second}

// WatchPrepared follows the prepared query named (or with the ID) ref,
// shared as Watch shares watches: the snapshot holds the instances its
// execution returned, Snapshot.Datacenter the datacenter that answered
// when Consul failed over ("" when the local one did) and FailedOver says
// so.
//
// Consul cannot block on a prepared query, so the watch executes it once
// per WithQueryPoll (jittered), and at once (within the cache's rate limit)
// whenever the local instances of the query's service change, which a
// blocking watch of that service tells it: a failover is seen within a
// round trip of the local instances going critical, not at the next poll.
// A change in another datacenter is seen at the next poll. The backend
// must implement beacon.PreparedQueries (both of Beacon's do). Metrics
// name the watch NAME.query.consul, so a query named like its service is
// not counted as that service.
func (c *Cache) WatchPrepared(ref string) (*Watcher, error) {
	if err := beacon.ValidateQueryRef(ref); err != nil {
		return nil, fmt.Errorf("discovery: watch prepared query %q: %w", ref, err)
	}
	key := "\x00pq:" + ref
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	w := c.watches[key]
	created := w == nil
	if created {
		w = c.startPrepared(key, ref)
		c.watches[key] = w
	}
	w.refs++
	return c.newWatcher(w, created), nil
}

// QuerySuffix marks a host name that names a prepared query rather than a
// service, as in Consul's DNS interface: NAME.query.consul.
const QuerySuffix = ".query.consul"

// PreparedQueryName returns NAME when host is NAME.query.consul (any case
// in the suffix), for integrations that take a host name: httpclient
// (http://web-q.query.consul/...) and grpcresolver
// (consul:///web-q.query.consul).
func PreparedQueryName(host string) (string, bool) {
	if len(host) <= len(QuerySuffix) || !strings.EqualFold(host[len(host)-len(QuerySuffix):], QuerySuffix) {
		return "", false
	}
	return host[:len(host)-len(QuerySuffix)], true
}

// startPrepared starts a prepared-query watch. Caller holds c.mu.
func (c *Cache) startPrepared(key, ref string) *watch {
	w := c.newWatch(key, beacon.Query{Service: ref})
	w.prepared = ref
	c.spawn(func() {
		p := &preparedRun{c: c, w: w, ref: ref, wake: make(chan struct{}, 1)}
		p.run(w.ctx)
		w.once.Do(func() { close(w.ready) }) // stopped before any answer
	})
	return w
}

// preparedRun is one prepared-query watch's loop; only its goroutine
// touches it.
type preparedRun struct {
	c    *Cache
	w    *watch
	ref  string
	wake chan struct{} // subscribed to the local watch of the query's service

	local     *Watcher // of service, in the local datacenter
	service   string
	seenLocal bool // the local watch has answered since it was opened
}

func (p *preparedRun) run(ctx context.Context) {
	defer p.follow("")
	lim := rate.NewLimiter(rate.Every(p.c.o.every), p.c.o.burst)
	var bo backoff.Backoff
	timer := time.NewTimer(0)
	defer timer.Stop()
	settle := len(querySettle) // executions after a wake-up still to come
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
			if !p.seenLocal {
				// The local watch's first answer: the execution that
				// opened it has most likely seen the same state, but a
				// change between that execution and this answer would
				// wake nobody. One execution a settle period later
				// covers it (the timer was at the poll period).
				p.seenLocal = true
				timer.Reset(querySettle[len(querySettle)-1])
				continue
			}
			settle = 0
			timer.Stop()
		}
		if err := lim.Wait(ctx); err != nil {
			return
		}
		p.c.o.metrics.Request(p.ref + QuerySuffix)
		rctx, cancel := context.WithTimeout(ctx, p.c.timeout)
		res, err := p.c.agents.executeQuery(rctx, p.ref)
		cancel()
		if ctx.Err() != nil {
			return
		}
		p.publish(res, err)
		var next time.Duration
		switch {
		case err != nil:
			next = bo.Next()
		case settle < len(querySettle):
			// Again soon after a wake-up, in case this execution saw the
			// state from before the change.
			bo.Reset()
			next = querySettle[settle]
			settle++
		default:
			bo.Reset()
			next = backoff.Jitter(p.c.o.queryPoll)
		}
		if err == nil {
			p.follow(res.Service)
		}
		timer.Reset(next)
	}
}

// follow makes the local watch the one of service ("" for none): the
// query's service can change when the query is updated.
func (p *preparedRun) follow(service string) {
	if service == p.service {
		return
	}
	if p.local != nil {
		p.local.w.unsubscribe(p.wake)
		p.local.Close()
		p.local = nil
	}
	p.service = service
	if service == "" {
		return
	}
	// Every instance, whatever its health: any health change may change
	// what the query returns.
	l, err := p.c.Watch(beacon.Query{Service: service, IncludeUnhealthy: true}, NoFailover())
	if err != nil {
		p.service = ""
		return // the cache is closing, or the name is not one Watch accepts
	}
	p.local = l
	l.w.addSub(p.wake)
	// A watch shared with another caller may have answered already: then
	// its next wake-up is a change, not its first answer.
	p.seenLocal = l.Snapshot() != nil
}

// publish turns an execution into the watch's snapshot, as publish does
// for a service: an error keeps the last good instances.
func (p *preparedRun) publish(res beacon.PreparedQueryResult, err error) {
	w := p.w
	prev := w.snap.Load()
	var next *Snapshot
	if err != nil {
		p.c.o.metrics.WatchError(p.ref + QuerySuffix)
		p.c.o.logger.Warn("discovery: prepared query failed; serving the last good snapshot", "query", p.ref, "err", err)
		if prev != nil {
			next = prev.failed(err)
		} else {
			next = newSnapshot(p.ref, SourceNone, nil, nil, 0, time.Time{})
			next.Err = err
		}
	} else {
		dc := ""
		if res.Failovers > 0 {
			dc = res.Datacenter
		}
		insts := dedupe(p.c.translate(sortedByKey(res.Instances), dc != "")) // Consul shuffles them
		if prev != nil && prev.Err == nil && prev.Datacenter == dc && sameInstances(prev.Instances, insts) {
			w.snap.Store(prev.refreshed(prev.Index, time.Now()))
			w.once.Do(func() { close(w.ready) })
			return
		}
		p.c.shared.instances(insts) // share.go
		if prev != nil && prev.Datacenter != dc {
			p.c.o.logger.Info("discovery: prepared query answered from another datacenter", "query", p.ref, "from", dcName(prev.Datacenter), "to", dcName(dc))
			p.c.events.Emit(Event{Time: time.Now(), Kind: EventFailedOver, Service: p.ref + QuerySuffix, Datacenter: dc, Detail: dcName(prev.Datacenter) + " → " + dcName(dc)})
		}
		var was []beacon.Instance
		if prev != nil {
			was = prev.Instances
		}
		p.c.instanceEvents(p.ref+QuerySuffix, dc, was, insts) // after the move that explains them
		next = newSnapshot(res.Service, SourceConsul, insts, prev, res.Index, time.Now())
		next.Datacenter, next.FailedOver = dc, dc != ""
		p.c.o.metrics.Published(p.ref+QuerySuffix, len(insts))
	}
	w.snap.Store(next)
	w.once.Do(func() { close(w.ready) })
	w.notify()
}

var errNoPrepared = errors.New("the backend cannot execute prepared queries")
