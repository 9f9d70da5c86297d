package discovery

// Metrics receives what the cache measures. Implementations must be safe
// for concurrent use and cheap: they are called on the watch loops.
// Snapshot age and instance counts are read on demand from Cache.Stats.
type Metrics interface {
	// Request counts a query sent to Consul for service.
	Request(service string)
	// WatchError counts a failed query; the last good snapshot is kept.
	WatchError(service string)
	// IndexReset counts an index that went backwards (an agent's state reset).
	IndexReset(service string)
	// Published reports a new snapshot and how many instances it holds.
	Published(service string, instances int)
	// ACLHidden counts an empty answer the cache did not believe because
	// ACLs hide the service from this client (see ErrHiddenByACLs).
	ACLHidden(service string)
}

type nopMetrics struct{}

func (nopMetrics) Request(string)        {}
func (nopMetrics) WatchError(string)     {}
func (nopMetrics) IndexReset(string)     {}
func (nopMetrics) Published(string, int) {}
func (nopMetrics) ACLHidden(string)      {}
