package discovery

import (
	"crypto/sha256"
	"time"

	"github.com/beaconsd/beacon/consul"
)

// tokenPoll is how often the cache looks at its token file for
// EventTokenRotated. The backends re-read the file before each request,
// so a rotation takes effect at once; only the event waits for this.
const tokenPoll = 2 * time.Second

// followTokenFile reports each change of the token file's token as
// EventTokenRotated, until the cache closes. It keeps a digest, not the
// token, and an unreadable file is left to the requests to report.
func (c *Cache) followTokenFile(ts *consul.TokenSource) {
	digest := func() ([sha256.Size]byte, bool) {
		tok, err := ts.Token()
		return sha256.Sum256([]byte(tok)), err == nil
	}
	last, ok := digest()
	c.every(tokenPoll, func() bool {
		d, readable := digest()
		if !readable {
			return true
		}
		if ok && d != last {
			c.events.Emit(Event{Time: time.Now(), Kind: EventTokenRotated, Detail: "the token file holds a new token; requests use it"})
		}
		last, ok = d, true
		return true
	})
}
