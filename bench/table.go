package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Row is one target's line in a comparison table.
type Row struct {
	// Name identifies the target, e.g. "burrow/sqlite" or "khatru+eventstore/postgresql".
	Name   string
	Result Result
	// Baseline names the row this one is compared with; empty prints no ratios. A row named
	// here but absent from the table prints "?" for its ratios.
	Baseline string
}

// Table writes rows as an aligned text table. For a row with a Baseline it adds the ratio of its
// events/s to the baseline's (above 1 is faster) and of its p99 latency to the baseline's (below
// 1 is better).
func Table(w io.Writer, rows []Row) error {
	byName := make(map[string]Result, len(rows))
	nameWidth := len("target")
	for _, r := range rows {
		byName[r.Name] = r.Result
		nameWidth = max(nameWidth, len(r.Name))
	}
	// Numbers align right; names are padded to one width so they read left-aligned.
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tevents\tconns\tOK false\tseconds\tevents/s\tp50 ms\tp99 ms\tev/s ratio\tp99 ratio\t%-*s\t\n", nameWidth, "target", nameWidth, "vs")
	for _, r := range rows {
		res := r.Result
		evRatio, p99Ratio := "", ""
		if r.Baseline != "" {
			base, found := byName[r.Baseline]
			evRatio, p99Ratio = "?", "?"
			if found {
				evRatio = ratio(res.EventsPerSec, base.EventsPerSec)
				p99Ratio = ratio(float64(res.P99), float64(base.P99))
			}
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n",
			nameWidth, r.Name, res.Events, res.Conns, res.Failures, res.Duration.Seconds(), res.EventsPerSec,
			millis(res.P50), millis(res.P99), evRatio, p99Ratio, fmt.Sprintf("%-*s", nameWidth, r.Baseline))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}
	return nil
}

func ratio(a, b float64) string {
	if b == 0 {
		return "?"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func millis(d time.Duration) string {
	return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond))
}
