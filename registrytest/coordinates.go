package registrytest

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
)

// testNodeCoordinates checks beacon.NodeCoordinateLister on one agent:
// LocalNode names it; NodeCoordinates lists the coordinates set through
// PUT /v1/coordinate/update, for the agent's node and an external one; a
// blocking read wakes when one moves; NewNodeRTTs of the answer measures
// them as Consul does; an agent with coordinates disabled answers 401. A
// backend that does not implement it is skipped.
func (s suite) testNodeCoordinates(t *testing.T) {
	t.Parallel()
	srv := consultest.NewServer(t)
	r := s.registry(t, srv.Config())
	l, ok := r.(beacon.NodeCoordinateLister)
	if !ok {
		t.Skipf("%T does not implement beacon.NodeCoordinateLister", r)
	}
	ctx := testContext(t)
	me, err := l.LocalNode(ctx)
	if err != nil || me != srv.Name {
		t.Fatalf("LocalNode() = %q, %v; want %q", me, err, srv.Name)
	}
	srv.RegisterExternal(t, "far-node", "127.0.0.1")
	srv.SetCoordinate(t, me, 0, 0, 0, 0, 0, 0, 0, 0)
	srv.SetCoordinate(t, "far-node", 0.003, 0.004, 0, 0, 0, 0, 0, 0)
	var meta beacon.QueryMeta
	testutil.Eventually(t, waitLimit, "both coordinates listed", func() error {
		var coords []beacon.NodeCoordinate
		var err error
		coords, meta, err = l.NodeCoordinates(ctx, beacon.CoordinatesQuery{})
		if err != nil {
			return err
		}
		rtt, ok := beacon.NewNodeRTTs(me, meta.LastIndex, coords).RTT("far-node")
		return testutil.Want(ok && (rtt-5020*time.Microsecond).Abs() < time.Microsecond, "RTT(far-node) = %v, %v from %+v; want 5.02 ms", rtt, ok, coords)
	})

	// A blocking read wakes when a coordinate moves.
	woke := make(chan error, 1)
	go func() {
		coords, m, err := l.NodeCoordinates(ctx, beacon.CoordinatesQuery{WaitIndex: meta.LastIndex, WaitTime: waitLimit / 2})
		if err == nil {
			rtt, _ := beacon.NewNodeRTTs(me, m.LastIndex, coords).RTT("far-node")
			err = testutil.Want(m.LastIndex > meta.LastIndex && rtt > 40*time.Millisecond, "woke at index %d (from %d) with RTT %v; want a later index, 50 ms", m.LastIndex, meta.LastIndex, rtt)
		}
		woke <- err
	}()
	time.Sleep(200 * time.Millisecond) // let it block: the test passes either way, it only tests less
	srv.SetCoordinate(t, "far-node", 0.03, 0.04, 0, 0, 0, 0, 0, 0)
	select {
	case err := <-woke:
		if err != nil {
			t.Errorf("blocking NodeCoordinates: %v", err)
		}
	case <-time.After(waitLimit):
		t.Errorf("blocking NodeCoordinates did not wake within %v of a coordinate update", waitLimit)
	}

	if _, _, err := l.NodeCoordinates(ctx, beacon.CoordinatesQuery{WaitTime: -time.Second}); !errors.Is(err, beacon.ErrInvalid) {
		t.Errorf("NodeCoordinates(WaitTime -1s) = %v, want beacon.ErrInvalid", err)
	}

	t.Run("Disabled", func(t *testing.T) {
		srv := consultest.NewServer(t, consultest.WithConfigJSON(`{"disable_coordinates": true}`))
		l := s.registry(t, srv.Config()).(beacon.NodeCoordinateLister)
		_, _, err := l.NodeCoordinates(testContext(t), beacon.CoordinatesQuery{})
		var se *beacon.StatusError
		if !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
			t.Errorf("NodeCoordinates() with coordinates disabled = %v, want a *beacon.StatusError 401", err)
		}
	})
}
