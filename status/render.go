package status

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// RenderHTML writes rep as the status page. The page has no script and no
// external asset; every value goes through html/template's escaping. A
// service's picture (its History) is drawn in the row of its first watch,
// for the first MaxPictures services: beyond them the page would grow by
// about half a kilobyte a service for pictures nobody scans; the JSON
// carries every history.
func RenderHTML(w io.Writer, rep Report) error {
	v := view{Report: rep, Rows: make([]row, len(rep.Watches))}
	hist := make(map[string][]int, len(rep.Services))
	for _, h := range rep.Services {
		hist[h.Service] = h.Passing
	}
	drawn := map[string]bool{}
	for i, w := range rep.Watches {
		v.Rows[i].Watch = w
		p, ok := hist[w.Service]
		if !ok || drawn[w.Service] {
			continue
		}
		drawn[w.Service] = true
		if len(drawn) > MaxPictures {
			v.Undrawn++
			continue
		}
		s := sparkOf(p, rep.SampleSeconds)
		v.Rows[i].Spark = &s
	}
	v.Drawn = min(len(drawn), MaxPictures)
	return page.Execute(w, v)
}

// MaxPictures bounds the pictures an HTML page draws.
const MaxPictures = 1000

// view is what the template reads: the report, and its watches with
// their pictures.
type view struct {
	Report
	Drawn   int
	Rows    []row
	Undrawn int // services with a history beyond MaxPictures
}

type row struct {
	Watch
	Spark *spark // nil: not the service's first row, or no history
}

// Sparkline geometry, in CSS pixels: 2 px a sample at the default 60.
const (
	sparkW = 124
	sparkH = 24
)

// spark is a sparkline ready for the template.
type spark struct {
	W, H      int
	Points    string // the polyline's points, integers
	Last, Max int
	Span      float64 // the seconds it covers
}

// sparkOf draws v, scaled to its maximum, with integer coordinates; a run
// of equal samples is one segment, so a steady service costs a few bytes.
func sparkOf(v []int, every float64) spark {
	s := spark{W: sparkW, H: sparkH, Span: float64(max(len(v)-1, 0)) * every}
	if len(v) == 0 {
		return s
	}
	s.Last = v[len(v)-1]
	for _, x := range v {
		s.Max = max(s.Max, x)
	}
	if len(v) == 1 {
		v = []int{v[0], v[0]} // one sample: a flat line across
	}
	y := func(x int) int {
		if s.Max == 0 {
			return sparkH - 2
		}
		return sparkH - 2 - int(math.Round(float64(x)/float64(s.Max)*float64(sparkH-4)))
	}
	var b strings.Builder
	b.Grow(64)
	last := len(v) - 1
	for i, x := range v {
		// Drop a point between two equal neighbours: it is on their line.
		if i > 0 && i < last && v[i-1] == x && v[i+1] == x {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(2 + i*(sparkW-4)/last))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(y(x)))
	}
	s.Points = b.String()
	return s
}

// human shows seconds the way a person reads an age.
func human(sec float64) string {
	switch {
	case sec <= 0 || math.IsNaN(sec):
		return "–"
	case sec < 1:
		return strconv.FormatFloat(sec*1000, 'f', 0, 64) + " ms"
	case sec < 60:
		return strconv.FormatFloat(sec, 'f', 1, 64) + " s"
	}
	s := int64(sec)
	switch {
	case s < 3600:
		return fmt.Sprintf("%dm %02ds", s/60, s%60)
	case s < 48*3600:
		return fmt.Sprintf("%dh %02dm", s/3600, s/60%60)
	}
	return fmt.Sprintf("%dd %02dh", s/86400, s/3600%24)
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05") }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

var funcs = template.FuncMap{
	"human": human,
	"clock": clock,
	"stamp": stamp,
	"ago":   func(now, t time.Time) string { return human(now.Sub(t).Seconds()) },
	"spark": sparkOf,
	"dc": func(dc string) string {
		if dc == "" {
			return "local"
		}
		return dc
	},
}

// css keeps to neutral greys with one accent per state, and follows the
// reader's light or dark preference.
const css = `
:root{--bg:#fafafa;--fg:#1d1f21;--mute:#6b7076;--line:#e3e5e8;--head:#f0f1f3;--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--spark:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#16181b;--fg:#e6e7e9;--mute:#9197a0;--line:#2c3036;--head:#1f2226;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--spark:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;padding:1.5rem 2rem;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
header{display:flex;align-items:baseline;gap:1rem;flex-wrap:wrap;margin-bottom:1rem}
h1{font-size:1.35rem;margin:0}
h2{font-size:1rem;margin:1.8rem 0 .5rem;text-transform:uppercase;letter-spacing:.06em;color:var(--mute)}
.meta{color:var(--mute)}
table{border-collapse:separate;border-spacing:0;width:100%;background:var(--bg);border:1px solid var(--line);border-radius:6px;overflow:hidden}
th,td{text-align:left;padding:.4rem .7rem;border-bottom:1px solid var(--line);vertical-align:baseline}
tbody tr:last-child>*{border-bottom:0}
#keeper table{width:auto;min-width:32rem}
#keeper th{width:9rem}
th{background:var(--head);font-weight:600;font-size:.8rem;color:var(--mute);white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr:hover td{background:var(--head)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85em}
.ok{color:var(--ok)}.warn{color:var(--warn)}.bad{color:var(--bad)}
.pill{display:inline-block;padding:0 .45rem;border-radius:999px;border:1px solid currentColor;font-size:.75rem;line-height:1.4;white-space:nowrap}
.err{color:var(--bad);max-width:40rem;overflow-wrap:anywhere}
.empty{color:var(--mute);font-style:italic}
svg.spark polyline{fill:none;stroke:var(--spark);stroke-width:1.5}
svg.spark{display:inline-block;vertical-align:middle;background:var(--head);border-radius:3px}
`

// page is the status page. Columns follow Report's fields; a section with
// nothing to show says so in one line.
var page = template.Must(template.New("page").Funcs(funcs).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Beacon status</title>
<style>` + css + `</style></head>
<body>
<header><h1>Beacon status</h1><span class="meta">generated <time datetime="{{stamp .Generated}}">{{stamp .Generated}}</time> · up {{ago .Generated .Started}}</span></header>
{{$now := .Generated}}
<section id="watches"><h2>Watches ({{.WatchCount}})</h2>
{{if .Watches}}<table><thead><tr><th>Service</th><th>Datacenter</th><th>Passing / published</th><th{{if .SampleSeconds}} title="passing instances, sampled every {{human .SampleSeconds}}"{{end}}>History</th><th>Age</th><th>Agent</th><th>Read path</th><th>Backend</th><th>State</th><th title="stale streaming views found and repaired">Repairs</th><th>Last error</th></tr></thead><tbody>
{{range .Rows}}<tr><td><strong>{{.Service}}</strong>{{if .PreparedQuery}} <span class="meta">query</span>{{end}}{{range .Tags}} <span class="meta">#{{.}}</span>{{end}}</td>
<td>{{dc .Datacenter}}{{if .Failover}} <span class="pill{{if .Failovers}} warn{{end}}" title="{{.FailoverReason}}">failover{{if .Failovers}} ×{{.Failovers}}{{end}}</span>{{with .FailoverPolicy}}<br><span class="meta">{{.}}</span>{{end}}{{end}}</td>
<td class="n{{if not .Passing}} bad{{end}}">{{.Passing}} / {{.Instances}}</td>
<td>{{with .Spark}}<svg class="spark" width="{{.W}}" height="{{.H}}" role="img" aria-label="passing over {{human .Span}}: now {{.Last}}, at most {{.Max}}"><polyline points="{{.Points}}"/></svg>{{end}}</td>
<td class="n">{{if .Answered}}{{human .AgeSeconds}} <span class="meta" title="Consul index">@{{.Index}}</span>{{else}}<span class="warn">no answer yet</span>{{end}}</td>
<td><code>{{.Agent}}</code></td>
<td>{{.ReadPath}}{{if .ReadPinned}} <span class="meta">pinned</span>{{end}}{{if .AgentCache}} <span class="meta">{{.AgentCache}}</span>{{end}}</td>
<td><code>{{.Backend}}</code></td>
<td>{{if .ACLHidden}}<span class="pill bad">ACL-hidden</span> {{end}}{{if .Panic}}<span class="pill bad">panic</span> {{end}}{{if .OffStream}}<span class="pill warn">off stream</span> {{end}}{{if .Hot}}<span class="pill warn">hot</span> {{end}}{{if and (not .Error) (not .Panic) .Answered}}<span class="pill ok">fresh</span>{{else if .Error}}<span class="pill warn">stale</span>{{end}}</td>
<td class="n">{{.StaleViews}}</td>
<td class="err">{{.Error}}{{with .ErrorSince}} <span class="meta">since {{clock .}}</span>{{end}}</td></tr>
{{end}}</tbody></table>{{if .Truncated}}<p class="meta">Showing the first {{len .Watches}} of {{.WatchCount}} watches.</p>{{end}}{{if .Undrawn}}<p class="meta">Pictures for the first {{.Drawn}} services only; <code>?format=json</code> has every history.</p>{{end}}
{{else}}<p class="empty">No watches.</p>{{end}}</section>

<section id="agents"><h2>Agents</h2>
{{if .Agents}}<table><thead><tr><th>Address</th><th>State</th><th>Since</th><th>Last answer</th><th>Last verdict</th></tr></thead><tbody>
{{range .Agents}}<tr><td><code>{{.Address}}</code>{{if .Current}} <span class="meta">asked now</span>{{end}}</td><td><span class="pill {{if eq .State "up"}}ok{{else if eq .State "down"}}bad{{end}}">{{.State}}</span></td><td>{{with .Since}}{{clock .}} ({{ago $now .}} ago){{end}}</td><td>{{with .LastAnswer}}{{ago $now .}} ago{{end}}</td><td class="err">{{.LastError}}</td></tr>
{{end}}</tbody></table>
{{else}}<p class="empty">No agents configured for this page.</p>{{end}}</section>

<section id="keeper"><h2>Registration</h2>
{{with .Keeper}}<table><tbody>
<tr><th>Instance</th><td><code>{{.InstanceID}}</code></td></tr>
<tr><th>Status</th><td><span class="pill {{if eq .Status "registered"}}ok{{else if eq .Status "failing"}}warn{{else}}bad{{end}}">{{.Status}}</span>{{if .Maintenance}} <span class="pill warn">maintenance</span>{{end}}</td></tr>
<tr><th>Agent</th><td><code>{{.Agent}}</code>{{if .Failovers}} <span class="meta">after {{.Failovers}} failover(s)</span>{{end}}</td></tr>
<tr><th>Last heartbeat</th><td>{{if .LastHeartbeatOK}}<span class="pill ok">accepted</span> {{else if and .LastHeartbeat .LastError}}<span class="pill bad">failed</span> {{end}}{{with .LastHeartbeat}}{{clock .}} ({{ago $now .}} ago){{else}}–{{end}}</td></tr>
<tr><th>Copies left on</th><td>{{range $i, $a := .PreviousAgents}}{{if $i}}, {{end}}<code>{{$a}}</code>{{else}}–{{end}}</td></tr>
<tr><th>Last error</th><td{{if .LastError}} class="err"{{end}}>{{with .LastErrorAt}}{{clock .}}: {{end}}{{or .LastError "–"}}</td></tr>
</tbody></table>
{{else}}<p class="empty">This process registers nothing.</p>{{end}}</section>

<section id="events"><h2>Timeline</h2>
{{if .Events}}<table><thead><tr><th>Time</th><th>Event</th><th>Service</th><th>Instance / agent</th><th>Detail</th></tr></thead><tbody>
{{range .Events}}<tr><td class="mono"><time datetime="{{stamp .Time}}">{{clock .Time}}</time></td><td>{{.Kind}}</td><td>{{.Service}}</td><td><code>{{.Instance}}{{if and .Instance .Agent}} @ {{end}}{{.Agent}}</code></td><td>{{.Detail}}</td></tr>
{{end}}</tbody></table>
{{else}}<p class="empty">No events yet.</p>{{end}}</section>
<footer class="meta"><p>Times are UTC. JSON: <code>?format=json</code>.</p></footer>
</body></html>
`))
