package mlsverify

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Status is the outcome of one check.
type Status string

// Check outcomes. Only StatusFail fails a scenario; StatusWarn marks a
// property the relay lacks that the protocol does not require (the report
// says what it costs), StatusSkip a check that does not apply here (an
// extension not advertised, a relay the harness cannot restart).
const (
	StatusPass Status = "pass"
	StatusFail Status = "fail"
	StatusWarn Status = "warn"
	StatusSkip Status = "skip"
)

// Check is one named assertion of a scenario.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Result is one scenario's outcome.
type Result struct {
	Scenario string        `json:"scenario"`
	Status   Status        `json:"status"`
	Duration time.Duration `json:"-"`
	Millis   int64         `json:"duration_ms"`
	Checks   []Check       `json:"checks"`
	// Metrics are named figures (sizes in bytes, times in milliseconds,
	// counts); the names are stable for machines reading --json.
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Notes say how to read the figures (what was outside the protocol,
	// what the relay's answers made necessary).
	Notes []string `json:"notes,omitempty"`
}

// check records an assertion.
func (r *Result) check(name string, st Status, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, Status: st, Detail: fmt.Sprintf(format, args...)})
}

// expect records a pass when ok, otherwise the given status.
func (r *Result) expect(name string, ok bool, otherwise Status, format string, args ...any) {
	st := StatusPass
	if !ok {
		st = otherwise
	}
	r.check(name, st, format, args...)
}

func (r *Result) metric(name string, v float64) {
	if r.Metrics == nil {
		r.Metrics = map[string]float64{}
	}
	r.Metrics[name] = v
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// finish sets the status from the checks: fail if any failed, pass if
// there was at least one check and none failed.
func (r *Result) finish(d time.Duration) {
	r.Duration, r.Millis = d, d.Milliseconds()
	r.Status = StatusPass
	if len(r.Checks) == 0 {
		r.Status = StatusFail
		r.Checks = append(r.Checks, Check{Name: "scenario ran", Status: StatusFail, Detail: "no check was made"})
	}
	for _, c := range r.Checks {
		if c.Status == StatusFail {
			r.Status = StatusFail
		}
	}
}

// Failed lists the names of the failed checks.
func (r *Result) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == StatusFail {
			out = append(out, c.Name)
		}
	}
	return out
}

// Find returns the named check.
func (r *Result) Find(name string) (Check, bool) {
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.Name == name })
	if i < 0 {
		return Check{}, false
	}
	return r.Checks[i], true
}

// RelayReport is what the harness learnt about one relay before the
// scenarios: its NIP-11 document's relevant part.
type RelayReport struct {
	URL           string   `json:"url"`
	SupportedNIPs []int    `json:"supported_nips"`
	Extensions    []string `json:"extensions"`
}

// Report is a harness run.
type Report struct {
	Relays    []RelayReport `json:"relays"`
	Seed      uint64        `json:"seed"`
	Members   int           `json:"members"`
	Started   time.Time     `json:"started"`
	Millis    int64         `json:"duration_ms"`
	Probe     *Check        `json:"probe,omitempty"`
	Scenarios []Result      `json:"scenarios"`
	Passed    bool          `json:"passed"`
}

// Scenario returns the named scenario's result.
func (r *Report) Scenario(name string) (Result, bool) {
	i := slices.IndexFunc(r.Scenarios, func(s Result) bool { return s.Scenario == name })
	if i < 0 {
		return Result{}, false
	}
	return r.Scenarios[i], true
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// summaryFigures are the metrics the summary table shows, in this order.
var summaryFigures = []struct{ key, label, unit string }{
	{"commits", "commits", ""},
	{"commits_per_s", "commits/s", ""},
	{"delivery_p50_ms", "p50", "ms"},
	{"delivery_p99_ms", "p99", "ms"},
}

// WriteTable writes the summary table and every check.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	for _, rl := range r.Relays {
		fmt.Fprintf(&b, "relay %s: NIPs %v, extensions %v\n", rl.URL, rl.SupportedNIPs, orNone(rl.Extensions))
	}
	fmt.Fprintf(&b, "seed %d, %d members\n", r.Seed, r.Members)
	if r.Probe != nil && r.Probe.Status == StatusFail {
		fmt.Fprintf(&b, "FAIL relay probe: %s\n", r.Probe.Detail)
	}
	fmt.Fprintln(&b)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "SCENARIO\tRESULT\tTIME")
	for _, f := range summaryFigures {
		fmt.Fprint(tw, "\t"+strings.ToUpper(f.label))
	}
	fmt.Fprintln(tw, "\tCHECKS")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%s\t%.1fs", s.Scenario, strings.ToUpper(string(s.Status)), s.Duration.Seconds())
		for _, f := range summaryFigures {
			v, ok := s.Metrics[f.key]
			switch {
			case !ok:
				fmt.Fprint(tw, "\t-")
			case v == float64(int64(v)):
				fmt.Fprintf(tw, "\t%d%s", int64(v), f.unit)
			default:
				fmt.Fprintf(tw, "\t%.1f%s", v, f.unit)
			}
		}
		fmt.Fprintf(tw, "\t%s\n", countChecks(s.Checks))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		fmt.Fprintf(&b, "\n%s (%s)\n", s.Scenario, s.Status)
		for _, c := range s.Checks {
			fmt.Fprintf(&b, "  %-4s  %s", c.Status, c.Name)
			if c.Detail != "" {
				fmt.Fprintf(&b, ": %s", c.Detail)
			}
			fmt.Fprintln(&b)
		}
		for _, k := range sortedKeys(s.Metrics) {
			fmt.Fprintf(&b, "  %-4s  %s = %s\n", "", k, formatFigure(s.Metrics[k]))
		}
		for _, n := range s.Notes {
			fmt.Fprintf(&b, "  note  %s\n", n)
		}
	}
	verdict := "PASS"
	if !r.Passed {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\n%s: %d scenarios in %.1fs\n", verdict, len(r.Scenarios), float64(r.Millis)/1000)
	_, err := io.WriteString(w, b.String())
	return err
}

func countChecks(cs []Check) string {
	n := map[Status]int{}
	for _, c := range cs {
		n[c.Status]++
	}
	var parts []string
	for _, st := range []Status{StatusPass, StatusFail, StatusWarn, StatusSkip} {
		if n[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[st], st))
		}
	}
	return strings.Join(parts, ", ")
}

func orNone(s []string) any {
	if len(s) == 0 {
		return "none"
	}
	return s
}

func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func formatFigure(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}
