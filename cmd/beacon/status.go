package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/beaconsd/beacon/status"
)

// maxStatusBytes bounds what `beacon status` reads: the status handler
// keeps a page for 10,000 watches under a few MB, so more is not a status
// report.
const maxStatusBytes = 16 << 20

// The kinds of statusError, matched with errors.Is.
var (
	errStatusUnreachable = errors.New("unreachable")
	errStatusHTTP        = errors.New("answered with an HTTP error")
	errStatusNotJSON     = errors.New("the answer is not a status report (JSON)")
	errStatusTooLarge    = errors.New("the answer is too large")
)

// statusError is a failed fetch of a status page: which URL, what kind of
// failure (one of the errStatus* values, for errors.Is), and the detail.
type statusError struct {
	URL    string
	Kind   error
	Code   int    // the HTTP status when one was received
	Detail string // the cause, printable
}

func (e *statusError) Error() string {
	s := "status " + e.URL + ": " + e.Kind.Error()
	if e.Code != 0 {
		s += " " + strconv.Itoa(e.Code)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *statusError) Unwrap() error { return e.Kind }

func (c *command) status(args []string) error {
	fs := c.flagSet("status", "URL [-events N] [-timeout D] [-json]")
	asJSON := fs.Bool("json", false, "print the JSON as the process answered it, indented")
	events := fs.Int("events", 20, "show the newest `N` events of the timeline (0: none)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on the process after this `duration`")
	pos, err := c.parseArgs(fs, args, 1, "one URL (http://host:port/debug/beacon, or host:port)")
	if err != nil {
		return err
	}
	if *events < 0 {
		return usagef("status: -events %d: want 0 or more", *events)
	}
	if *timeout <= 0 {
		return usagef("status: -timeout %v: want a positive duration", *timeout)
	}
	u, err := statusURL(pos[0])
	if err != nil {
		return usageError{err: err}
	}
	body, err := fetchStatus(c.ctx, u, *timeout)
	if err != nil {
		return err
	}
	rep, err := decodeReport(body)
	if err != nil {
		return &statusError{URL: redact(u), Kind: errStatusNotJSON, Detail: printable(err.Error(), 200)}
	}
	if *asJSON {
		var out bytes.Buffer
		if err := json.Indent(&out, body, "", "  "); err != nil {
			return &statusError{URL: redact(u), Kind: errStatusNotJSON, Detail: printable(err.Error(), 200)}
		}
		out.WriteByte('\n')
		_, err := c.stdout.Write(out.Bytes())
		return err
	}
	return writeStatus(c.stdout, rep, *events)
}

// statusURL is the URL to fetch for arg: a URL with a path is used as
// given; a host:port, or a URL without a path, gets /debug/beacon (where
// sayhello and `beacon register -status` serve it). Either way the query
// asks for JSON (?format=json).
func statusURL(arg string) (string, error) {
	s := arg
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("status: %q is not an http(s) URL or host:port", printable(arg, 200))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/debug/beacon"
	}
	q := u.Query()
	q.Set("format", "json")
	u.RawQuery = q.Encode()
	u.Fragment = ""
	return u.String(), nil
}

// fetchStatus GETs u asking for JSON and returns the body, read up to
// maxStatusBytes, of a 200 answer.
func fetchStatus(ctx context.Context, u string, timeout time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	shown := redact(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &statusError{URL: shown, Kind: errStatusUnreachable, Detail: printable(err.Error(), 200)}
	}
	req.Header.Set("Accept", "application/json")
	// One request: no connection is kept, so nothing outlives the command.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		detail := err.Error()
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			detail = ue.Err.Error() // without the URL, named once already
		}
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			detail = "no answer within " + timeout.String()
		}
		return nil, &statusError{URL: shown, Kind: errStatusUnreachable, Detail: printable(detail, 300)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, &statusError{URL: shown, Kind: errStatusHTTP, Code: resp.StatusCode, Detail: printable(strings.TrimSpace(string(snippet)), 200)}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			// An HTML page: most likely a URL that is not a status handler,
			// or one older than its JSON form.
			return nil, &statusError{URL: shown, Kind: errStatusNotJSON, Detail: "Content-Type " + printable(ct, 100)}
		}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes+1))
	if err != nil {
		return nil, &statusError{URL: shown, Kind: errStatusUnreachable, Detail: "reading the answer: " + printable(err.Error(), 200)}
	}
	if len(body) > maxStatusBytes {
		return nil, &statusError{URL: shown, Kind: errStatusTooLarge, Detail: fmt.Sprintf("over %d MiB", maxStatusBytes>>20)}
	}
	return body, nil
}

// redact drops a URL's user info, which may hold a password.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	return u.String()
}

// decodeReport decodes a status handler's JSON. A JSON value that is not
// an object (null, a list) is refused: it is not a report.
func decodeReport(body []byte) (status.Report, error) {
	var rep status.Report
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return rep, errors.New("not a JSON object")
	}
	err := json.Unmarshal(body, &rep)
	return rep, err
}

// writeStatus prints rep as tables: watches, agents, keeper and the newest
// events events. Every string from the answer is made printable first, so
// a hostile process cannot move the terminal's cursor or break a table.
func writeStatus(w io.Writer, rep status.Report, events int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "generated %s, up %s\n", when(rep.Generated), since(rep.Started, rep.Generated))

	fmt.Fprintln(tw)
	switch {
	case len(rep.Watches) == 0:
		fmt.Fprintln(tw, "no watches")
	default:
		fmt.Fprintln(tw, "SERVICE\tDATACENTER\tINSTANCES\tAGE\tAGENT\tREAD\tBACKEND\tFLAGS\tERROR")
		for _, wt := range rep.Watches {
			svc := printable(wt.Service, 100)
			if wt.PreparedQuery != "" {
				svc += " (query " + printable(wt.PreparedQuery, 100) + ")"
			}
			dc := printable(wt.Datacenter, 100)
			if dc == "" {
				dc = "(local)"
			}
			// Passing of published, as the page shows it: in panic, or
			// for a watch of any health, fewer pass than are published.
			inst, age := "-", "-"
			if wt.Answered {
				inst, age = strconv.Itoa(wt.Passing)+"/"+strconv.Itoa(wt.Instances), seconds(wt.AgeSeconds)
			}
			read := orDash(printable(wt.ReadPath, 40))
			if wt.ReadPinned {
				read += "(pinned)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", svc, dc, inst, age, orDash(printable(wt.Agent, 200)), read,
				orDash(printable(wt.Backend, 40)), orDash(watchFlags(wt)), orDash(printable(wt.Error, 200)))
		}
		// Policies under the table: a column would be as wide as the
		// longest one.
		for _, wt := range rep.Watches {
			if wt.FailoverPolicy != nil {
				fmt.Fprintf(tw, "(failover policy of %s: %s)\n", printable(wt.Service, 100), printable(wt.FailoverPolicy.String(), 300))
			}
		}
	}
	if rep.Truncated || rep.WatchCount > len(rep.Watches) {
		fmt.Fprintf(tw, "(%d of %d watches shown: the handler's limit)\n", len(rep.Watches), rep.WatchCount)
	}

	fmt.Fprintln(tw)
	if len(rep.Agents) == 0 {
		fmt.Fprintln(tw, "no agents configured")
	} else {
		fmt.Fprintln(tw, "AGENT\tSTATE\tSINCE")
		for _, a := range rep.Agents {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", orDash(printable(a.Address, 200)), orDash(printable(a.State, 40)), whenPtr(a.Since))
		}
	}

	fmt.Fprintln(tw)
	if k := rep.Keeper; k == nil {
		fmt.Fprintln(tw, "no keeper")
	} else {
		fmt.Fprintln(tw, "KEEPER\tAGENT\tSTATUS\tLAST HEARTBEAT\tHEARTBEAT\tFAILOVERS\tMAINT\tLAST ERROR")
		lastErr := "-"
		if k.LastError != "" {
			lastErr = printable(k.LastError, 200) + " (" + whenPtr(k.LastErrorAt) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%t\t%s\n", orDash(printable(k.InstanceID, 200)), orDash(printable(k.Agent, 200)),
			orDash(printable(k.Status, 40)), whenPtr(k.LastHeartbeat), heartbeat(k), k.Failovers, k.Maintenance, lastErr)
		if len(k.PreviousAgents) > 0 {
			prev := make([]string, 0, len(k.PreviousAgents))
			for _, a := range k.PreviousAgents[:min(len(k.PreviousAgents), 20)] {
				prev = append(prev, printable(a, 200))
			}
			fmt.Fprintf(tw, "(old copies may remain on: %s)\n", strings.Join(prev, ", "))
		}
	}

	if events > 0 {
		fmt.Fprintln(tw)
		if len(rep.Events) == 0 {
			fmt.Fprintln(tw, "no events")
		} else {
			fmt.Fprintln(tw, "TIME\tEVENT\tSERVICE\tINSTANCE\tAGENT\tDETAIL")
			for _, e := range rep.Events[:min(events, len(rep.Events))] {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", when(e.Time), orDash(printable(string(e.Kind), 40)),
					orDash(printable(e.Service, 100)), orDash(printable(e.Instance, 100)), orDash(printable(e.Agent, 100)), orDash(printable(e.Detail, 200)))
			}
			if len(rep.Events) > events {
				fmt.Fprintf(tw, "(newest %d of %d events; -events N for more)\n", events, len(rep.Events))
			}
		}
	}
	return tw.Flush()
}

// heartbeat is the last heartbeat's result (last_heartbeat_ok):
// "accepted", "failed" when an error came after the last accepted one,
// or "-" (none sent yet, or the keeper stopped).
func heartbeat(k *status.Keeper) string {
	switch {
	case k.LastHeartbeatOK:
		return "accepted"
	case k.LastErrorAt != nil && (k.LastHeartbeat == nil || k.LastErrorAt.After(*k.LastHeartbeat)):
		return "failed"
	}
	return "-"
}

// watchFlags lists what is unusual about a watch, comma-separated.
func watchFlags(wt status.Watch) string {
	var f []string
	if wt.ACLHidden {
		f = append(f, "acl-hidden")
	}
	if wt.StaleViews > 0 {
		f = append(f, "stale-views="+strconv.FormatInt(wt.StaleViews, 10))
	}
	if wt.OffStream {
		f = append(f, "off-stream")
	}
	if wt.Failover {
		s := "failover"
		if wt.Failovers > 0 {
			s += "=" + strconv.FormatInt(wt.Failovers, 10)
		}
		f = append(f, s)
	}
	if wt.Panic {
		f = append(f, "panic")
	}
	if wt.Hot {
		f = append(f, "hot")
	}
	if wt.AgentCache != "" {
		f = append(f, "cache="+printable(wt.AgentCache, 20))
	}
	return strings.Join(f, ",")
}

// printable is s cut at max bytes (on a rune boundary, marked with "…"),
// with control characters, invalid UTF-8 and spaces that would break a
// table column replaced: the answer comes from the network.
func printable(s string, max int) string {
	var b strings.Builder
	for i, r := range s {
		if b.Len() >= max {
			b.WriteString("…")
			break
		}
		switch {
		case r == utf8.RuneError && invalidAt(s, i):
			b.WriteByte('?')
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029':
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// invalidAt: s holds an invalid UTF-8 byte at i (not a real U+FFFD).
func invalidAt(s string, i int) bool {
	_, n := utf8.DecodeRuneInString(s[i:])
	return n == 1
}

// seconds formats a duration given in seconds, bounded for any float.
func seconds(s float64) string {
	switch {
	case math.IsNaN(s) || s < 0:
		return "?"
	case s >= 100*365*24*3600:
		return ">100y"
	case s < 1:
		return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
	default:
		return time.Duration(s * float64(time.Second)).Round(time.Second).String()
	}
}

// when is a time in UTC to the second, "-" for the zero time.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return when(*t)
}

// since is how long before now start was, "?" when either is unknown.
func since(start, now time.Time) string {
	if start.IsZero() || now.IsZero() || now.Before(start) {
		return "?"
	}
	return seconds(now.Sub(start).Seconds())
}
