package registrytest

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
)

// nodesAnswer is GET /v1/coordinate/nodes with two nodes 5 ms apart.
const nodesAnswer = `[{"Node":"a","Segment":"","Coord":{"Vec":[0.005,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0}},` +
	`{"Node":"me","Segment":"","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0}}]`

// testNodeCoordinatesHostile holds beacon.NodeCoordinateLister to what
// lookups are held to against fake agents: malformed answers refused as
// such, with nothing half-filled, and a blocking read sent with its index,
// wait and consistency. A backend that does not implement it is skipped.
func (s suite) testNodeCoordinatesHostile(t *testing.T) {
	t.Parallel()
	lister := func(t *testing.T, f *FakeAgent) beacon.NodeCoordinateLister {
		t.Helper()
		r := s.fakeRegistry(t, f, consul.Config{Timeout: waitLimit})
		l, ok := r.(beacon.NodeCoordinateLister)
		if !ok {
			t.Skipf("%T does not implement beacon.NodeCoordinateLister", r)
		}
		return l
	}
	meta := MetaHeader("7")
	get := call{"NodeCoordinates", http.MethodGet, "/v1/coordinate/nodes", nil}

	t.Run("MalformedAnswer", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name   string
			answer http.HandlerFunc
		}{
			{"Truncated", Answer(http.StatusOK, meta, nodesAnswer[:len(nodesAnswer)/2])},
			{"Object", Answer(http.StatusOK, meta, "{}")},
			{"HTML", Answer(http.StatusOK, meta, "<html>502 Bad Gateway</html>")},
			{"NoIndex", Answer(http.StatusOK, without(meta, "X-Consul-Index"), nodesAnswer)},
			{"IndexNotANumber", Answer(http.StatusOK, MetaHeader("x"), nodesAnswer)},
			{"NullEntry", Answer(http.StatusOK, meta, "[null]")},
			{"NoNodeName", Answer(http.StatusOK, meta, strings.Replace(nodesAnswer, `"Node":"a"`, `"Node":""`, 1))},
			{"NoCoordinate", Answer(http.StatusOK, meta, `[{"Node":"a"}]`)},
			{"NumberBeyondFloat64", Answer(http.StatusOK, meta, strings.Replace(nodesAnswer, "0.005", "1e400", 1))},
			{"GarbageAfter", Answer(http.StatusOK, meta, nodesAnswer+"{}")},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				l := lister(t, NewFakeAgent(t, forCall(get, tc.answer)))
				coords, m, err := l.NodeCoordinates(testContext(t), beacon.CoordinatesQuery{})
				if !errors.Is(err, beacon.ErrMalformedResponse) {
					t.Fatalf("NodeCoordinates() = %+v, %v; want an error matching beacon.ErrMalformedResponse", coords, err)
				}
				if coords != nil || m != (beacon.QueryMeta{}) {
					t.Errorf("NodeCoordinates() = %+v, %+v with error %v, want nothing", coords, m, err)
				}
			})
		}
	})

	t.Run("WellFormedAnswer", func(t *testing.T) {
		t.Parallel()
		f := NewFakeAgent(t, forCall(get, Answer(http.StatusOK, meta, nodesAnswer)))
		l := lister(t, f)
		coords, m, err := l.NodeCoordinates(testContext(t), beacon.CoordinatesQuery{Datacenter: "dc1", Consistency: beacon.ConsistencyStale, WaitIndex: 3, WaitTime: time.Second})
		if err != nil || m.LastIndex != 7 || len(coords) != 2 {
			t.Fatalf("NodeCoordinates() = %+v, %+v, %v; want two nodes at index 7", coords, m, err)
		}
		if d, ok := beacon.NewNodeRTTs("me", m.LastIndex, coords).RTT("a"); !ok || d != 5*time.Millisecond {
			t.Errorf("RTT(a) = %v, %v; want 5ms", d, ok)
		}
		got := f.RequestsTo(http.MethodGet, "/v1/coordinate/nodes")
		if len(got) != 1 {
			t.Fatalf("NodeCoordinates() sent %q, want one GET", got)
		}
		for _, want := range []string{"dc=dc1", "stale", "index=3", "wait=1000ms"} {
			if !strings.Contains(got[0].RawQuery, want) {
				t.Errorf("NodeCoordinates(dc1, stale, index 3, wait 1s) sent %q, want %s in it", got[0].RawQuery, want)
			}
		}
	})

	t.Run("ValidationSendsNothing", func(t *testing.T) {
		t.Parallel()
		f := NewFakeAgent(t, PlausibleAgent)
		l := lister(t, f)
		for _, q := range []beacon.CoordinatesQuery{{Datacenter: "d/c"}, {WaitTime: -time.Second}, {WaitTime: time.Hour}, {Consistency: 9}} {
			if _, _, err := l.NodeCoordinates(testContext(t), q); !errors.Is(err, beacon.ErrInvalid) {
				t.Errorf("NodeCoordinates(%+v) = %v, want beacon.ErrInvalid", q, err)
			}
		}
		if got := f.Requests(); len(got) != 0 {
			t.Errorf("invalid queries sent %q, want nothing", got)
		}
	})
}
