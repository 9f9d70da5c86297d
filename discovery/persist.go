package discovery

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/beaconsd/beacon"
)

// WithSnapshotFile keeps the last good snapshots in path (written at most
// once a second after a change, atomically) and, when Consul cannot be
// reached for a watch's first answer, serves the snapshot saved there
// instead, marked with its error and its age. A service can then start,
// and find its dependencies, during a registry outage. New fails on a file
// that is not one Beacon wrote (bad JSON, an instance without an ID or
// health, over 64 MiB) with an error matching beacon.ErrMalformedResponse.
func WithSnapshotFile(path string) Option { return func(o *options) { o.snapshotFile = path } }

type savedSnapshot struct {
	Service   string
	Instances []beacon.Instance
	Updated   time.Time
}

// maxSnapshotFile caps how much of a snapshot file is read at start and
// written: a file replaced by something huge must not exhaust memory. At
// a few hundred bytes an instance it holds some 200,000 instances.
const maxSnapshotFile = 64 << 20

// loadSnapshots reads the file; a missing file is an empty one.
func loadSnapshots(path string) (map[string]savedSnapshot, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return map[string]savedSnapshot{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("discovery: snapshot file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSnapshotFile+1))
	if err != nil {
		return nil, fmt.Errorf("discovery: snapshot file: %w", err)
	}
	if len(b) > maxSnapshotFile {
		return nil, fmt.Errorf("discovery: snapshot file %s: %w: larger than %d bytes", path, beacon.ErrMalformedResponse, maxSnapshotFile)
	}
	saved, err := decodeSnapshots(b)
	if err != nil {
		return nil, fmt.Errorf("discovery: snapshot file %s: %w", path, err)
	}
	return saved, nil
}

// decodeSnapshots reads a snapshot file's contents. Its instances are
// served as Consul's answers were, so they must look like them: a valid
// service name, and instances with an ID, a port and a known health. A
// file that does not is refused whole, as bad JSON is, with an error
// matching beacon.ErrMalformedResponse.
func decodeSnapshots(b []byte) (map[string]savedSnapshot, error) {
	var saved map[string]savedSnapshot
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("%w: %w", beacon.ErrMalformedResponse, err)
	}
	for key, s := range saved {
		if err := beacon.ValidateServiceName(s.Service); err != nil {
			return nil, fmt.Errorf("%w: entry %.80q: %w", beacon.ErrMalformedResponse, key, err)
		}
		for i, in := range s.Instances {
			if in.ID == "" || in.Port < 0 || in.Port > 65535 || !in.Health.Valid() {
				return nil, fmt.Errorf("%w: entry %.80q: instance %d has no ID, a port outside 0–65535 or an unknown health", beacon.ErrMalformedResponse, key, i)
			}
		}
	}
	if saved == nil { // the file held null
		saved = map[string]savedSnapshot{}
	}
	return saved, nil
}

// persist writes the good snapshots of every watch once a second while
// something changed, until the cache closes (and once more then).
func (c *Cache) persist() {
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
		if s := w.snap.Load(); s != nil && s.Source != SourceNone {
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
	if err == nil && len(b) > maxSnapshotFile {
		// Written, it could not be read back: keep the last file instead.
		err = fmt.Errorf("%d bytes, more than the %d a snapshot file may hold", len(b), maxSnapshotFile)
	}
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
