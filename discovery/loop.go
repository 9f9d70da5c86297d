package discovery

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/internal/blocking"
)

// lifetime is what the cache's parts share of its life: a context that
// ends at Close and the goroutines Close waits for. The agents and the
// feed get this, not the Cache, as grpc-go's resolvers get a ClientConn
// and not the channel.
type lifetime struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// begin starts the lifetime; spawn and end may be called after it.
func (l *lifetime) begin() { l.ctx, l.cancel = context.WithCancel(context.Background()) }

// spawn runs f on a goroutine that end waits for; f must return once
// l.ctx ends.
func (l *lifetime) spawn(f func()) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
}

// every calls f every d, on a goroutine of its own, until the lifetime
// ends or f returns false.
func (l *lifetime) every(d time.Duration, f func() (again bool)) {
	l.spawn(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-l.ctx.Done():
				return
			case <-t.C:
			}
			if !f() {
				return
			}
		}
	})
}

// child returns a lifetime that ends with l, or sooner by its own cancel;
// l's end waits for the child's goroutines too. Spawn on the child only
// before cancelling it.
func (l *lifetime) child() *lifetime {
	ch := &lifetime{}
	ch.ctx, ch.cancel = context.WithCancel(l.ctx)
	l.spawn(func() {
		<-ch.ctx.Done()
		ch.wg.Wait()
	})
	return ch
}

// end cancels the context and waits for every goroutine spawned.
func (l *lifetime) end() {
	l.cancel()
	l.wg.Wait()
}

// result is one answer for a watch, or the error that took its place.
type result struct {
	Instances []beacon.Instance
	Meta      beacon.QueryMeta
	Err       error
	// gen, when checkGen is set, is the watch's generation when the query
	// was sent: an answer from a view the watch has since left is refused.
	gen      uint64
	checkGen bool
}

// slots are the cache's long-poll budget (WithMaxLongPolls): a blocking
// query holds one while it waits, so the budget caps them together. Nil
// slots (another datacenter's feed, of which there are at most
// maxRemoteFeeds) take none.
type slots chan struct{}

// loops is what every blocking loop of a cache shares: the wait, the rate
// limit, the long-poll slots and where requests are counted.
type loops struct {
	wait  time.Duration
	every time.Duration
	burst int
	// hotEvery and hotBurst are the pace followed at once
	// (WithHotThreshold); hotEvery 0: every query waits on every/burst.
	hotEvery time.Duration
	hotBurst int
	slots    slots
	metrics  Metrics
}

// pacing is what a watch's loop reports of its rate limit, for Stats.
type pacing struct {
	hot      atomic.Bool  // polling at the ceiling now
	spells   atomic.Int64 // times it became hot
	limited  atomic.Int64 // queries that waited on the ceiling
	waitedNs atomic.Int64 // and how long, in all
}

// run runs fetch in the one blocking loop until ctx ends, counting its
// requests and index resets under service ("" for the change feed). Each
// blocking query holds a long-poll slot while it waits; a query from
// index 0 answers at once and holds none.
//
// skip, when not nil, is blocking.Options.Skip; p, when not nil, is
// where the loop reports its pacing.
func run[T any](ctx context.Context, l loops, service string, fetch blocking.Fetch[T], skip func() bool, p *pacing, emit func(T, beacon.QueryMeta, error) error) {
	held := func(ctx context.Context, index uint64) (T, beacon.QueryMeta, error) {
		if index > 0 && l.slots != nil {
			select {
			case l.slots <- struct{}{}:
				defer func() { <-l.slots }()
			case <-ctx.Done():
				var zero T
				return zero, beacon.QueryMeta{}, ctx.Err()
			}
		}
		return fetch(ctx, index)
	}
	o := blocking.Options{
		Limiter:      rate.NewLimiter(rate.Every(l.every), l.burst),
		OnRequest:    func() { l.metrics.Request(service) },
		OnIndexReset: func() { l.metrics.IndexReset(service) },
		Skip:         skip,
	}
	if l.hotEvery > 0 {
		o.Hot = rate.NewLimiter(rate.Every(l.hotEvery), l.hotBurst)
	}
	if p != nil {
		o.OnLimited = func(d time.Duration) {
			p.limited.Add(1)
			p.waitedNs.Add(int64(d))
		}
		o.OnHot = func(h bool) {
			p.hot.Store(h)
			if h {
				p.spells.Add(1)
			}
		}
	}
	blocking.Run(ctx, held, o, emit)
}
