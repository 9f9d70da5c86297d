package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"go.uber.org/goleak"

	"github.com/beaconsd/beacon/consultest"
	"github.com/beaconsd/beacon/internal/testutil"
	"github.com/beaconsd/beacon/status"
)

// browserNames are the commands tried for a Chromium, in order: Debian's
// package, other distributions' name, Google's build.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome"}

// findBrowser returns a Chromium's path. Without one the test skips in
// one line, or fails when BEACON_REQUIRE_BROWSER=1 (CI, where .ci/run
// installs the package) so that a lost browser cannot pass as a skip.
func findBrowser(t *testing.T) string {
	t.Helper()
	for _, name := range browserNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BEACON_REQUIRE_BROWSER") == "1" {
		t.Fatalf("BEACON_REQUIRE_BROWSER=1 but none of %v is on PATH", browserNames)
	}
	t.Skipf("no Chromium on PATH (%s): browser test skipped; apt-get install chromium to run it", strings.Join(browserNames, ", "))
	return ""
}

// Browser window size, in CSS pixels: the screenshot's width.
const browserW, browserH = 1280, 900

// browser is a headless Chromium with one tab, and what the tab wrote to
// its console.
type browser struct {
	tab context.Context // a chromedp context: bound each action with a deadline of its own

	mu      sync.Mutex
	console []string // every console, log and exception entry, as text
}

// startBrowser starts Chromium on a user data directory of its own; at
// cleanup the browser is closed and the test fails if any process still
// uses that directory.
func startBrowser(t *testing.T, exe string) *browser {
	t.Helper()
	dir := t.TempDir() // removed after the cleanup below, once nothing uses it
	out := &testutil.Buffer{}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // we run as root in CI; Chromium refuses its sandbox there
		chromedp.WindowSize(browserW, browserH),
		chromedp.UserDataDir(dir),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.CombinedOutput(out),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	tab, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	b := &browser{tab: tab}
	t.Cleanup(func() {
		var proc *os.Process
		if c := chromedp.FromContext(tab); c != nil && c.Browser != nil {
			proc = c.Browser.Process()
		}
		cctx, ccancel := context.WithTimeout(tab, deadline)
		if err := chromedp.Cancel(cctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("closing the browser: %v", err)
		}
		ccancel()
		cancel()
		acancel() // waits for the browser process
		if proc != nil {
			if err := proc.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("browser process %d still there after cleanup: %v", proc.Pid, err)
			}
		}
		if left := processesUsing(dir); len(left) > 0 {
			t.Errorf("browser processes %v still use %s after cleanup", left, dir)
		}
		if t.Failed() {
			t.Logf("browser output:\n%s", out.String())
		}
	})
	// The first Run starts the browser, and must have no deadline: it
	// would bound the browser's whole life (chromedp.Run's doc).
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(tab) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v\n%s", exe, err, out.String())
		}
	case <-time.After(deadline):
		cancel()
		<-started
		t.Fatalf("%s did not start within %v\n%s", exe, deadline, out.String())
	}
	// The page has no script of its own; any console entry comes from
	// the browser about the page (a CSP violation, a failed load) or from
	// the violation recorder below.
	err := chromedp.Listen(tab, func(ev any) {
		var s string
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value))
			}
			s = fmt.Sprintf("console.%s: %s", e.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			s = fmt.Sprintf("exception: %s %s:%d", e.ExceptionDetails.Text, e.ExceptionDetails.URL, e.ExceptionDetails.LineNumber)
		case *cdplog.EventEntryAdded:
			s = fmt.Sprintf("log %s/%s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL)
		default:
			return
		}
		b.mu.Lock()
		b.console = append(b.console, s)
		b.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	// Count the page's CSP violations where the page sees them, whatever
	// the browser's console says. A DevTools script runs outside the
	// page's CSP.
	err = b.do(t, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: violationRecorder})
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const violationRecorder = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => {
	window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
	console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI);
});`

// do runs actions in the tab within deadline.
func (b *browser) do(t *testing.T, actions ...chromedp.Action[chromedp.Void]) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, deadline)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// processesUsing lists the processes whose command line names dir: the
// browser and every helper it started carry --user-data-dir.
func processesUsing(dir string) []string {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), dir) {
			out = append(out, filepath.Base(filepath.Dir(p)))
		}
	}
	return out
}

// shownPage is what a person sees on the status page, read from the DOM
// after layout: cell texts as rendered (innerText), and the size the
// pictures take on screen.
type shownPage struct {
	Watches    []watchRow `json:"watches"`
	Agents     [][]string `json:"agents"`
	Events     [][]string `json:"events"`
	BodyFont   string     `json:"bodyFont"`   // computed: the page's style applied
	BodyMargin string     `json:"bodyMargin"` // (blocked by CSP, defaults show)
	Violations []string   `json:"violations"`
}

type watchRow struct {
	Cells   []string `json:"cells"`
	SVGW    float64  `json:"svgW"` // the row's picture, 0 when none
	SVGH    float64  `json:"svgH"`
	SVGLine string   `json:"svgLine"` // its polyline's points
}

const readPageJS = `(() => {
	const cells = tr => [...tr.cells].map(td => td.innerText.trim());
	const rows = sel => [...document.querySelectorAll(sel)];
	const body = getComputedStyle(document.body);
	return {
		watches: rows('#watches tbody tr').map(tr => {
			const svg = tr.querySelector('svg');
			const r = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
			const line = svg && svg.querySelector('polyline');
			return {cells: cells(tr), svgW: r.width, svgH: r.height, svgLine: line ? line.getAttribute('points') : ''};
		}),
		agents: rows('#agents tbody tr').map(cells),
		events: rows('#events tbody tr').map(cells),
		bodyFont: body.fontSize,
		bodyMargin: body.marginTop,
		violations: window.__cspViolations || ['the violation recorder did not run'],
	};
})()`

// load navigates to url, checks the answer's CSP header, and reads what
// the page shows.
func (b *browser) load(t *testing.T, url string) shownPage {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, deadline)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("loading %s: status %d", url, resp.Status)
	}
	if csp := fmt.Sprint(resp.Headers["Content-Security-Policy"]); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("loading %s: Content-Security-Policy %q, want default-src 'none'", url, csp)
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[shownPage](readPageJS))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	return v
}

// TestStatusPageInBrowser loads sayhello's /debug/beacon in headless
// Chromium and checks what a person sees there: the SayHello watch with
// its passing / total count and its picture, the agent, the timeline's
// instance_added entry; and that the page rendered under its own CSP
// with nothing on the console. With BEACON_SCREENSHOT=file.png it writes
// a full-page screenshot there (make screenshot), after a second
// instance joins so that the picture has a step.
func TestStatusPageInBrowser(t *testing.T) {
	exe := findBrowser(t)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) }) // registered first, runs last
	shot := os.Getenv("BEACON_SCREENSHOT")

	srv := consultest.NewServer(t)
	p := startSayHello(t, srv.HTTPAddr)
	// sayhello watches SayHello on demand, from its first /discovery.
	waitDiscovered(t, p)
	want := 1
	// The picture needs a sample of the watch; the sampler takes one
	// every 10 s. For the screenshot, a picture with a step: two samples
	// of one instance, then two of two (about 30 s more).
	if shot == "" {
		waitSampled(t, p, want, 1)
	} else {
		waitSampled(t, p, want, 2)
		startSayHello(t, srv.HTTPAddr) // the page shown is still the first one's
		want = 2
		waitSampled(t, p, want, 2)
	}

	b := startBrowser(t, exe)
	v := b.load(t, p.url("/debug/beacon"))

	// The style element applied: it is allowed by its hash alone, so a
	// page whose CSS no longer matches the CSP shows browser defaults.
	if v.BodyFont != "14px" || v.BodyMargin != "0px" {
		t.Errorf("body font-size %q, margin %q; want 14px, 0px (the page's style, allowed by its CSP hash)", v.BodyFont, v.BodyMargin)
	}
	// The first cell is the service, then its query's tags.
	row := slices.IndexFunc(v.Watches, func(w watchRow) bool {
		return len(w.Cells) > 2 && strings.Fields(w.Cells[0] + " ")[0] == "SayHello"
	})
	if row < 0 {
		t.Fatalf("no watch row for SayHello; rows %+v", v.Watches)
	}
	w := v.Watches[row]
	if got, wantCount := w.Cells[2], fmt.Sprintf("%d / %d", want, want); got != wantCount {
		t.Errorf("SayHello row: passing / published %q, want %q (row %q)", got, wantCount, w.Cells)
	}
	if w.SVGW < 50 || w.SVGH < 10 || w.SVGLine == "" {
		t.Errorf("SayHello row: picture %gx%g px, points %q; want an SVG drawn at least 50x10 px with a line", w.SVGW, w.SVGH, w.SVGLine)
	}
	agent := false
	for _, a := range v.Agents {
		if len(a) > 1 && strings.Contains(a[0], srv.HTTPAddr) {
			agent = true
			if a[1] != "up" {
				t.Errorf("agent %s shown %q, want up (row %q)", srv.HTTPAddr, a[1], a)
			}
		}
	}
	if !agent {
		t.Errorf("agent %s not shown; agents %q", srv.HTTPAddr, v.Agents)
	}
	checkQuiet(t, b, v)

	// The timeline: the hooks in discovery record an instance as it is
	// added; wait for the JSON to have it, then look at the page.
	testutil.Eventually(t, deadline, "an instance_added event for SayHello in the JSON", func() error {
		rep, err := report(p)
		if err != nil {
			return err
		}
		for _, e := range rep.Events {
			if e.Kind == status.InstanceAdded && e.Service == "SayHello" {
				return nil
			}
		}
		return fmt.Errorf("events %+v", rep.Events)
	})
	v = b.load(t, p.url("/debug/beacon"))
	added := false
	for _, e := range v.Events {
		if len(e) > 2 && e[1] == string(status.InstanceAdded) && e[2] == "SayHello" {
			added = true
		}
	}
	if !added {
		t.Errorf("no %s row for SayHello in the timeline; rows %q", status.InstanceAdded, v.Events)
	}

	checkQuiet(t, b, v)

	if shot != "" {
		screenshot(t, b, shot)
	}
}

// checkQuiet fails the test for each CSP violation the page saw and each
// console entry since the last check.
func checkQuiet(t *testing.T, b *browser, v shownPage) {
	t.Helper()
	if len(v.Violations) > 0 {
		t.Errorf("CSP violations seen by the page: %q", v.Violations)
	}
	b.mu.Lock()
	c := b.console
	b.console = nil
	b.mu.Unlock()
	for _, e := range c {
		t.Errorf("console: %s", e)
	}
}

// waitSampled waits until p's status JSON shows SayHello with n passing
// of n, and its history (the picture) ends with k samples of n.
func waitSampled(t *testing.T, p *proc, n, k int) {
	t.Helper()
	testutil.Eventually(t, time.Duration(k)*deadline, fmt.Sprintf("SayHello %d / %d, sampled %d times", n, n, k), func() error {
		rep, err := report(p)
		if err != nil {
			return err
		}
		if len(rep.Watches) == 0 || rep.Watches[0].Service != "SayHello" || rep.Watches[0].Passing != n || rep.Watches[0].Instances != n {
			return fmt.Errorf("watches %+v", rep.Watches)
		}
		for _, h := range rep.Services {
			if h.Service == "SayHello" && len(h.Passing) >= k && slices.Equal(h.Passing[len(h.Passing)-k:], slices.Repeat([]int{n}, k)) {
				return nil
			}
		}
		return fmt.Errorf("histories %+v", rep.Services)
	})
}

func report(p *proc) (status.Report, error) {
	var rep status.Report
	code, _, body, err := tryGet(p.url("/debug/beacon?format=json"))
	if err != nil || code != http.StatusOK {
		return rep, fmt.Errorf("GET /debug/beacon: %d %v", code, err)
	}
	err = json.Unmarshal([]byte(body), &rep)
	return rep, err
}

// screenshot writes the tab's whole page as a PNG to path.
func screenshot(t *testing.T, b *browser, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.tab, deadline)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s, %d bytes", path, len(png))
}
