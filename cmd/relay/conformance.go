package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/burrow-relay/burrow/conformance"
)

// conformanceCommand runs the relay conformance suite against any relay URL,
// prints the pass/fail table and fails when any check fails.
func conformanceCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay conformance", flag.ContinueOnError)
	fs.SetOutput(stderr)
	relayURL := fs.String("relay", "ws://127.0.0.1:3334", "websocket URL of the relay under test")
	timeout := fs.Duration("timeout", conformance.DefaultTimeout, "time limit for each check")
	checks := fs.String("check", "", "comma-separated check ids to run (default: all)")
	list := fs.Bool("list", false, "list the checks and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: relay conformance [--relay ws://host:port] [--timeout 10s] [--check id,id] [--list]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return usageError{err}
	}
	if *list {
		for _, c := range conformance.Checks() {
			fmt.Fprintf(stdout, "%s\t%s\n", c.ID, c.Name)
		}
		return nil
	}
	start := time.Now()
	report := conformance.Run(ctx, conformance.Config{URL: *relayURL, Timeout: *timeout, Checks: splitList(*checks)})
	if err := report.WriteTable(stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d checks against %s in %s\n", len(report.Results), *relayURL, time.Since(start).Round(time.Millisecond))
	if n := report.Failed(); n > 0 {
		return fmt.Errorf("%d conformance checks failed against %s", n, *relayURL)
	}
	return nil
}
