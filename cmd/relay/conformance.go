package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/burrow-relay/burrow/conformance"
)

// conformanceCommand runs the relay conformance suite against any relay URL,
// prints the pass/fail table and fails when any check fails.
func conformanceCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	f := newEnvFlags("relay conformance")
	var (
		relayURL, checksList string
		timeout              time.Duration
		listOnly             bool
	)
	f.String(&relayURL, "relay", "ws://127.0.0.1:3334", "websocket URL of the relay under test (it must accept every kind; the suite writes about 2,300 events there)")
	f.Duration(&timeout, "timeout", conformance.DefaultTimeout, "time limit for each check")
	f.String(&checksList, "check", "", "comma-separated check ids to run (empty: all)")
	f.Bool(&listOnly, "list", false, "list the checks and exit")
	f.renameTwins("RELAY_CONFORMANCE_")
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			f.usage(stdout, "Usage: relay conformance [--relay ws://host:port] [--timeout 10s] [--check id,id] [--list]")
			return errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return usageError{err}
	}
	if listOnly {
		for _, c := range conformance.Checks() {
			fmt.Fprintf(stdout, "%s\t%s\n", c.ID, c.Name)
		}
		return nil
	}
	start := time.Now()
	if checksList == "" {
		fmt.Fprintf(stdout, "relay conformance writes about %d events (%d MiB) to %s; most of it stays stored there\n",
			conformance.ApproxEventsWritten, conformance.ApproxBytesWritten>>20, relayURL)
	}
	report := conformance.Run(ctx, conformance.Config{URL: relayURL, Timeout: timeout, Checks: splitList(checksList)})
	if err := report.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d checks against %s in %s; wrote %d events, %.1f MiB\n", len(report.Results), relayURL,
		time.Since(start).Round(time.Millisecond), report.EventsWritten, float64(report.BytesWritten)/(1<<20))
	if n := report.Failed(); n > 0 {
		return fmt.Errorf("%d conformance checks failed against %s", n, relayURL)
	}
	return nil
}
