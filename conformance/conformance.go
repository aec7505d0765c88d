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
}

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

	for _, c := range selected {
		rep.Results = append(rep.Results, runOne(ctx, e, c))
	}
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
