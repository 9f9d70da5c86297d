package discovery

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/beaconsd/beacon"
)

// WithSnapshotFile keeps the last good snapshots in path (written at most
// once a second after a change, atomically) and, when Consul cannot be
// reached for a watch's first answer, serves the snapshot saved there
// instead, marked with its error and its age. A service can then start,
// and find its dependencies, during a registry outage.
func WithSnapshotFile(path string) Option { return func(o *options) { o.snapshotFile = path } }

type savedSnapshot struct {
	Service   string
	Instances []beacon.Instance
	Updated   time.Time
}

// loadSnapshots reads the file; a missing file is an empty one.
func loadSnapshots(path string) (map[string]savedSnapshot, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]savedSnapshot{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: snapshot file: %w", err)
	}
	var saved map[string]savedSnapshot
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("discovery: snapshot file %s: %w", path, err)
	}
	return saved, nil
}

// persist writes the good snapshots of every watch once a second while
// something changed, until the cache closes (and once more then).
func (c *Cache) persist() {
	defer c.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			c.writeSnapshots()
			return
		case <-t.C:
			if c.dirty.Swap(false) {
				c.writeSnapshots()
			}
		}
	}
}

func (c *Cache) writeSnapshots() {
	out := map[string]savedSnapshot{}
	c.mu.Lock()
	for key, w := range c.watches {
		if s := w.snap.Load(); s != nil && !s.Updated.IsZero() {
			out[key] = savedSnapshot{Service: s.Service, Instances: s.Instances, Updated: s.Updated}
		}
	}
	c.mu.Unlock()
	// Keep what this process has not watched (yet): another run may need it.
	for key, s := range c.saved {
		if _, ok := out[key]; !ok {
			out[key] = s
		}
	}
	b, err := json.Marshal(out)
	if err == nil {
		tmp := c.o.snapshotFile + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, c.o.snapshotFile)
		}
	}
	if err != nil {
		c.o.logger.Warn("discovery: writing the snapshot file", "path", filepath.Clean(c.o.snapshotFile), "err", err)
	}
}
