package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/status"
)

// waitDiscovered asks p's /discovery for SayHello until p's own instance
// is in the answer; sayhello watches a service from its first /discovery,
// so its status page lists the watch after this.
func waitDiscovered(t *testing.T, p *proc) {
	t.Helper()
	testutil.Eventually(t, deadline, "SayHello found through /discovery", func() error {
		code, _, body, err := tryGet(p.url("/discovery?serviceName=SayHello"))
		if err != nil || code != http.StatusOK || !strings.Contains(body, p.id) {
			return fmt.Errorf("GET /discovery: %d %v %.200s", code, err, body)
		}
		return nil
	})
}

// TestStatusPage: sayhello serves /debug/beacon; after a /discovery call
// its JSON shows the SayHello watch with this instance, and its keeper;
// the page refuses POST and carries its CSP.
func TestStatusPage(t *testing.T) {
	srv := consultest.NewServer(t)
	p := startSayHello(t, srv.HTTPAddr)
	waitDiscovered(t, p)
	var rep status.Report
	testutil.Eventually(t, deadline, "the status JSON shows the watch and the keeper", func() error {
		code, _, body, err := tryGet(p.url("/debug/beacon?format=json"))
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("GET /debug/beacon: %d %v", code, err)
		}
		rep = status.Report{}
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			return err
		}
		if len(rep.Watches) == 0 || rep.Watches[0].Service != "SayHello" || rep.Watches[0].Instances != 1 {
			return fmt.Errorf("watches %+v", rep.Watches)
		}
		if rep.Keeper == nil || rep.Keeper.InstanceID != p.id || rep.Keeper.Status != "registered" {
			return fmt.Errorf("keeper %+v", rep.Keeper)
		}
		return nil
	})
	if len(rep.Agents) != 1 || !strings.Contains(rep.Agents[0].Address, srv.HTTPAddr) {
		t.Errorf("agents %+v, want %s", rep.Agents, srv.HTTPAddr)
	}
	code, h, body := get(t, p.url("/debug/beacon"))
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || !strings.Contains(body, "<strong>SayHello</strong>") {
		t.Errorf("GET /debug/beacon: %d, %q, CSP %q", code, h.Get("Content-Type"), h.Get("Content-Security-Policy"))
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(p.url("/debug/beacon"), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /debug/beacon: %d, Allow %q; want 405, GET, HEAD", resp.StatusCode, resp.Header.Get("Allow"))
	}
}
