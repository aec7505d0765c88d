// Package conformance owns the relay conformance suite: a list of independent, time-bounded
// checks that exercise a running Nostr relay over its websocket and NIP-11 endpoints and report
// pass, fail or skip for each. It is the checklist of mikedilger/relay-tester re-expressed in Go
// (NIP-01, NIP-09, NIP-11, NIP-45), plus Marmot-oriented checks (kind 445 routing by `h`,
// per-connection ordering under pipelining, slow-consumer isolation). It runs against any relay
// URL and prints nothing: callers render the Report.
package conformance

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// DefaultTimeout bounds one check when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config says which relay to test and how long each check may take.
type Config struct {
	// URL is the relay's websocket address (ws:// or wss://). The NIP-11 document is fetched
	// from the same address over http:// or https://.
	URL string
	// Timeout bounds each check; checks that need longer (slow-consumer isolation) get the
	// larger of this and their own budget. Zero means DefaultTimeout.
	Timeout time.Duration
	// Checks restricts the run to these check ids, in suite order. Empty runs every check.
	Checks []string
}

// Status is the outcome of one check.
type Status string

// The three outcomes. A skip always carries a reason in Result.Detail.
const (
	StatusPass Status = "pass"
	StatusFail Status = "fail"
	StatusSkip Status = "skip"
)

// Result is the outcome of one check.
type Result struct {
	ID     string
	Name   string
	Status Status
	// Detail explains a failure or a skip; for a pass it may note which of several allowed
	// behaviours the relay showed.
	Detail string
}

// Report holds one Result per check run, in suite order.
type Report struct {
	Results []Result
	// EventsWritten and BytesWritten are what the run sent to the relay:
	// EVENT messages, and every message's bytes.
	EventsWritten, BytesWritten int64
}

// The whole suite writes about this much to the relay under test (a run
// against Burrow; TestRunCountsWrites keeps these within a quarter of the
// truth). The relay keeps most of it.
const (
	ApproxEventsWritten = 2300
	ApproxBytesWritten  = 16 << 20
)

// kindsRefusalID is the one result of a relay whose NIP-11 document says it
// accepts only some kinds: most checks publish kind 1 notes and other
// kinds, and would fail for that reason alone.
const kindsRefusalID = "accepted-kinds"

// Failed counts the failed checks.
func (r Report) Failed() int {
	return r.count(StatusFail)
}

func (r Report) count(s Status) int {
	n := 0
	for _, res := range r.Results {
		if res.Status == s {
			n++
		}
	}
	return n
}

// WriteTable writes one aligned row per result, then a summary line.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if _, err := fmt.Fprintln(tw, "ID\tSTATUS\tNAME\tDETAIL"); err != nil {
		return fmt.Errorf("write table header: %w", err)
	}
	for _, res := range r.Results {
		if _, err := fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n",
			oneLine(res.ID), res.Status, oneLine(res.Name), oneLine(res.Detail)); err != nil {
			return fmt.Errorf("write table row %s: %w", res.ID, err)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("flush table: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%d checks: %d passed, %d failed, %d skipped\n",
		len(r.Results), r.count(StatusPass), r.count(StatusFail), r.count(StatusSkip)); err != nil {
		return fmt.Errorf("write table summary: %w", err)
	}
	return nil
}

// oneLine keeps a table row on one line whatever a relay put in its messages.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// CheckInfo names one check of the suite.
type CheckInfo struct {
	ID   string
	Name string
}

// Checks lists every check in suite order.
func Checks() []CheckInfo {
	all := suite()
	out := make([]CheckInfo, len(all))
	for i, c := range all {
		out[i] = CheckInfo{ID: c.id, Name: c.name}
	}
	return out
}

// Run executes the selected checks one after another against cfg.URL and returns their
// results. It never prints. An unknown id in cfg.Checks yields a failed result with that id.
func Run(ctx context.Context, cfg Config) Report {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	all := suite()
	selected := all
	var rep Report
	if len(cfg.Checks) > 0 {
		byID := make(map[string]check, len(all))
		for _, c := range all {
			byID[c.id] = c
		}
		want := make(map[string]bool, len(cfg.Checks))
		for _, id := range cfg.Checks {
			if _, ok := byID[id]; !ok {
				rep.Results = append(rep.Results, Result{ID: id, Name: "unknown check", Status: StatusFail,
					Detail: "no check has this id"})
				continue
			}
			want[id] = true
		}
		selected = nil
		for _, c := range all {
			if want[c.id] {
				selected = append(selected, c)
			}
		}
	}

	if len(selected) == 0 {
		return rep
	}
	e := &env{cfg: cfg}
	infoCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	e.info, e.infoErr = fetchInfo(infoCtx, cfg.URL)
	cancel()
	if e.info != nil && e.info.AcceptedKinds != nil && !slices.Contains(e.info.AcceptedKinds, 1) {
		rep.Results = append(rep.Results, Result{ID: kindsRefusalID, Name: "relay accepts every kind", Status: StatusFail,
			Detail: fmt.Sprintf("the relay's NIP-11 accepted_kinds is %v: the suite publishes kind 1 notes and other kinds, so most checks would fail for that alone; run it against a relay that accepts every kind (Burrow: --kinds all)", e.info.AcceptedKinds)})
		return rep
	}

	for _, c := range selected {
		rep.Results = append(rep.Results, runOne(ctx, e, c))
	}
	rep.EventsWritten, rep.BytesWritten = e.written.events.Load(), e.written.bytes.Load()
	return rep
}

func runOne(ctx context.Context, e *env, c check) (res Result) {
	res = Result{ID: c.id, Name: c.name}
	if err := ctx.Err(); err != nil {
		res.Status, res.Detail = StatusSkip, "run cancelled before this check: "+err.Error()
		return res
	}
	budget := e.cfg.Timeout
	if c.budget > budget {
		budget = c.budget
	}
	cctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	defer func() {
		// A relay answer the check did not foresee must not take the whole run down.
		if p := recover(); p != nil {
			res.Status, res.Detail = StatusFail, fmt.Sprintf("check panicked: %v", p)
		}
	}()
	note, err := c.run(cctx, e)
	switch {
	case err == nil:
		res.Status, res.Detail = StatusPass, note
	case isSkip(err):
		res.Status, res.Detail = StatusSkip, err.Error()
	default:
		res.Status, res.Detail = StatusFail, err.Error()
	}
	return res
}
