package beacon

import (
	"strconv"
	"time"
)

// MetaStarted is the service meta key under which an instance may publish
// when it started, as decimal Unix seconds ("1767139200"). The keeper
// publishes it with keeper.WithStartedMeta; balancers with slow start
// (balancer.WithSlowStart) read it to ramp an instance from its own start
// rather than from the caller's first sight of it, so that a caller that
// restarts does not ramp every instance again, nor skip the ramp of one
// that has just started. It passes ValidateMeta: letters and '-', no
// "consul-" prefix.
const MetaStarted = "beacon-started"

// maxStartedDigits bounds the value StartedAt parses: Unix seconds fit in
// 11 digits until the year 5138; anything longer is not a start time.
const maxStartedDigits = 12

// StartedAt returns the start time i publishes under MetaStarted, and
// whether it publishes a valid one: 1 to 12 decimal digits, no sign, no
// spaces, a positive number of seconds. Anything else, as any meta value
// from the network may be, is reported as absent; StartedAt never panics.
func StartedAt(i Instance) (time.Time, bool) {
	v, ok := i.Meta[MetaStarted]
	if !ok || v == "" || len(v) > maxStartedDigits {
		return time.Time{}, false
	}
	for j := 0; j < len(v); j++ {
		if v[j] < '0' || v[j] > '9' {
			return time.Time{}, false
		}
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// StartedMeta returns the MetaStarted value for t: its Unix seconds in
// decimal, as StartedAt reads them.
func StartedMeta(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
