package consulhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon"
)

// Answers of a Consul 1.14.8 test federation's dc2 server (two servers in
// dc2, one in dc1).
const (
	realDatacentersAnswer = `["dc2","dc1"]`
	realCoordinatesAnswer = `[{"Datacenter":"dc2","AreaID":"wan","Coordinates":[` +
		`{"Node":"dc2-server-2","Segment":"","Coord":{"Vec":[0.00004961540944576537,-0.000011161950979207257,0.000013273278286370262,-0.00005930239234923847,-0.000024379768643896997,-0.00002826652217550963,0.00003931537905535384,0.000012230774367115403],"Error":0.1573580511643393,"Adjustment":0.00006549504760265643,"Height":0.000024531953854797634}},` +
		`{"Node":"dc2-server-1","Segment":"","Coord":{"Vec":[-0.00020875651196410419,0.000046963836017128786,-0.000055847231905248974,0.0002495144294130258,0.00010257771771802152,0.00011893120787737494,-0.00016541920120832087,-0.00005146090345762346],"Error":0.1920699218290531,"Adjustment":0.00007100079093704407,"Height":0.000054293132746822}}]},` +
		`{"Datacenter":"dc1","AreaID":"wan","Coordinates":[` +
		`{"Node":"dc1-server-1","Segment":"","Coord":{"Vec":[-0.00007959004009084928,0.000017905326910549604,-0.000021292190526090133,0.00009512931239070943,0.00003910855086048273,0.00004534344588321657,-0.00006306735407722437,-0.000019619868768490622],"Error":0.16685414244524938,"Adjustment":0.00015056258962769064,"Height":0.00025384789850351836}}]}]`
)

// TestDecodeDatacenterAnswers decodes real answers and ranks them as the
// dc2 server that gave them would.
func TestDecodeDatacenterAnswers(t *testing.T) {
	names, err := decodeDatacenters(strings.NewReader(realDatacentersAnswer))
	if err != nil || fmt.Sprint(names) != "[dc2 dc1]" {
		t.Fatalf("decodeDatacenters(real) = %q, %v; want [dc2 dc1]", names, err)
	}
	coords, err := decodeDatacenterCoordinates(strings.NewReader(realCoordinatesAnswer))
	if err != nil || len(coords) != 2 || coords[0].Datacenter != "dc2" || coords[0].AreaID != "wan" || len(coords[0].Coordinates) != 2 ||
		coords[0].Coordinates[1].Node != "dc2-server-1" || len(coords[1].Coordinates[0].Coord.Vec) != 8 || coords[1].Coordinates[0].Coord.Height != 0.00025384789850351836 {
		t.Fatalf("decodeDatacenterCoordinates(real) = %+v, %v; want dc2's two servers and dc1's one, 8 dimensions", coords, err)
	}
	// dc2's servers are 746.486 µs and 781.677 µs from dc1's (serf's
	// DistanceTo on these coordinates): the upper median of two is the
	// larger one.
	got := beacon.SortDatacentersByRTT("dc2", names, coords)
	if s := fmt.Sprint(got); s != "[dc2 (local) dc1 (781.677µs)]" {
		t.Errorf("SortDatacentersByRTT(real answers) = %s, want [dc2 (local) dc1 (781.677µs)]", s)
	}
	for _, body := range []string{`[""]`, `["dc1","dc1"]`, `["dc 1"]`, `[1]`, `{}`} {
		if _, err := decodeDatacenters(strings.NewReader(body)); err == nil {
			t.Errorf("decodeDatacenters(%s) = nil error, want malformed", body)
		}
	}
	for _, body := range []string{`[null]`, `[{"Datacenter":""}]`, `[{"Datacenter":"dc1","Coordinates":[null]}]`,
		`[{"Datacenter":"dc1","Coordinates":[{"Node":"n"}]}]`, `[{"Datacenter":"dc1","Coordinates":[{"Node":"","Coord":{}}]}]`,
		`[{"Datacenter":"dc1","Coordinates":[{"Node":"n","Coord":{"Vec":[1e400]}}]}]`} {
		if _, err := decodeDatacenterCoordinates(strings.NewReader(body)); err == nil {
			t.Errorf("decodeDatacenterCoordinates(%s) = nil error, want malformed", body)
		}
	}
}

// FuzzDecodeDatacenters feeds both datacenter decoders whatever the
// network could send: they must never panic, must fail only as malformed,
// must hand out only names ?dc= accepts, and what they hand out must rank
// (SortDatacentersByRTT) with every RTT non-negative.
func FuzzDecodeDatacenters(f *testing.F) {
	for _, seed := range []string{
		realDatacentersAnswer, realCoordinatesAnswer, realCoordinatesAnswer[:200], `["dc1"]`, `[]`, `null`, `[null]`,
		`[{"Datacenter":"dc1","AreaID":"wan","Coordinates":[]}]`, `[{"Datacenter":"dc1","Coordinates":null}]`,
		`[{"Datacenter":"dc1","AreaID":"wan","Coordinates":[{"Node":"a","Coord":{"Vec":[1],"Height":-5,"Adjustment":1e308}}]},` +
			`{"Datacenter":"dc2","AreaID":"wan","Coordinates":[{"Node":"b","Coord":{"Vec":[-1e308,2]}}]}]`,
		`["dc1"] ["dc2"]`, `["d\u0000c"]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		names, err := decodeDatacenters(strings.NewReader(string(body)))
		wantMalformed(t, "decodeDatacenters", body, err)
		if err == nil {
			if !json.Valid(body) || names == nil {
				t.Fatalf("decodeDatacenters(%q) = %q, nil; want an error for invalid JSON and a non-nil list otherwise", body, names)
			}
			for _, n := range names {
				if n == "" || beacon.ValidateDatacenter(n) != nil {
					t.Fatalf("decodeDatacenters(%q) handed out %q", body, n)
				}
			}
		} else if names != nil {
			t.Fatalf("decodeDatacenters(%q) = %q with error %v, want nothing", body, names, err)
		}

		coords, err := decodeDatacenterCoordinates(strings.NewReader(string(body)))
		wantMalformed(t, "decodeDatacenterCoordinates", body, err)
		if err != nil {
			if coords != nil {
				t.Fatalf("decodeDatacenterCoordinates(%q) = %+v with error %v, want nothing", body, coords, err)
			}
			return
		}
		local := ""
		for _, d := range coords {
			if beacon.ValidateDatacenter(d.Datacenter) != nil || d.Datacenter == "" {
				t.Fatalf("decodeDatacenterCoordinates(%q) handed out datacenter %q", body, d.Datacenter)
			}
			for _, n := range d.Coordinates {
				if n.Node == "" {
					t.Fatalf("decodeDatacenterCoordinates(%q) handed out a node without a name", body)
				}
			}
			local = d.Datacenter
		}
		for i, d := range beacon.SortDatacentersByRTT(local, names, coords) {
			if d.RTT < 0 || d.Local != (i == 0 && local != "") {
				t.Fatalf("SortDatacentersByRTT of %q: [%d] = %+v", body, i, d)
			}
		}
	})
}

// realNodeCoordinatesAnswer is GET /v1/coordinate/nodes from a Consul
// 1.14.8 dev agent ("me") with one external node given a coordinate
// through PUT /v1/coordinate/update.
const realNodeCoordinatesAnswer = `[{"Node":"ext-a","Segment":"","Coord":{"Vec":[0.005,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0.00001}},` +
	`{"Node":"me","Segment":"","Coord":{"Vec":[0,0,0,0,0,0,0,0],"Error":1.5,"Adjustment":0,"Height":0.00001}}]`

func TestDecodeNodeCoordinates(t *testing.T) {
	h := http.Header{}
	h.Set("X-Consul-Index", "20")
	coords, meta, err := decodeNodeCoordinates(h, strings.NewReader(realNodeCoordinatesAnswer))
	if err != nil || meta.LastIndex != 20 || len(coords) != 2 || coords[0].Node != "ext-a" || coords[0].Coord.Vec[0] != 0.005 || len(coords[1].Coord.Vec) != 8 {
		t.Fatalf("decodeNodeCoordinates(real) = %+v, %+v, %v; want ext-a and me at index 20", coords, meta, err)
	}
	rtts := beacon.NewNodeRTTs("me", meta.LastIndex, coords)
	if d, ok := rtts.RTT("ext-a"); !ok || (d-5020*time.Microsecond).Abs() > time.Microsecond {
		t.Errorf("RTT(ext-a) = %v, %v; want 5.02ms (5 ms apart, two heights of 10 µs)", d, ok)
	}
	for _, body := range []string{`[null]`, `[{"Node":"n"}]`, `[{"Node":"","Coord":{}}]`, `[{"Node":"n","Coord":{"Vec":[1e400]}}]`, `{}`, `[] []`} {
		if got, _, err := decodeNodeCoordinates(h, strings.NewReader(body)); !errors.Is(err, beacon.ErrMalformedResponse) || got != nil {
			t.Errorf("decodeNodeCoordinates(%s) = %v, %v; want nothing and an error matching ErrMalformedResponse", body, got, err)
		}
	}
	if _, _, err := decodeNodeCoordinates(http.Header{}, strings.NewReader(`[]`)); !errors.Is(err, beacon.ErrMalformedResponse) {
		t.Errorf("decodeNodeCoordinates without X-Consul-Index = %v, want ErrMalformedResponse", err)
	}
}

// FuzzDecodeNodeCoordinates feeds decodeNodeCoordinates whatever the
// network could send: it must never panic, must fail only as malformed
// with nothing half-filled, must hand out only named nodes, and what it
// hands out must build an RTT table whose every time is non-negative.
func FuzzDecodeNodeCoordinates(f *testing.F) {
	for _, seed := range []struct{ body, index string }{
		{realNodeCoordinatesAnswer, "20"}, {realNodeCoordinatesAnswer[:150], "20"}, {`[]`, "1"}, {`null`, "1"}, {`[null]`, "1"},
		{`[{"Node":"me","Coord":{"Vec":[1],"Height":-5,"Adjustment":1e308}},{"Node":"b","Coord":{"Vec":[-1e308]}}]`, "3"},
		{`[{"Node":"me","Segment":"x","Coord":{"Vec":[]}},{"Node":"me","Coord":{"Vec":[0,1]}},{"Node":"c","Segment":"x","Coord":{}}]`, "3"},
		{`[]`, ""}, {`[]`, "-1"},
	} {
		f.Add([]byte(seed.body), seed.index)
	}
	f.Fuzz(func(t *testing.T, body []byte, index string) {
		h := http.Header{}
		h.Set("X-Consul-Index", index)
		coords, meta, err := decodeNodeCoordinates(h, strings.NewReader(string(body)))
		wantMalformed(t, "decodeNodeCoordinates", body, err)
		if err != nil {
			if coords != nil || meta != (beacon.QueryMeta{}) {
				t.Fatalf("decodeNodeCoordinates(%q) = %+v, %+v with error %v, want nothing", body, coords, meta, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("decodeNodeCoordinates(%q) accepted invalid JSON", body)
		}
		for _, c := range coords {
			if c.Node == "" {
				t.Fatalf("decodeNodeCoordinates(%q) handed out a node without a name", body)
			}
		}
		for _, from := range []string{"me", "b", "c"} {
			rtts := beacon.NewNodeRTTs(from, meta.LastIndex, coords)
			for _, c := range coords {
				if d, ok := rtts.RTT(c.Node); ok && d < 0 {
					t.Fatalf("NewNodeRTTs(%q, %q).RTT(%q) = %v, want it non-negative", from, body, c.Node, d)
				}
			}
		}
	})
}
