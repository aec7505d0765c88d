package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/burrow-relay/burrow/mlsverify"
)

const selftestSynopsis = `Usage: relay selftest [--relay ws://...] [--vectors DIR]

Checks the MLS engine against known answers from RFC 9420's official test
vectors (and every official vector file in DIR with --vectors), then takes a
five-member Marmot group through a relay: KeyPackages, Welcomes, chat, an
update, a removal, a SelfRemove and a commit race. Without --relay the relay is
an embedded Burrow started in process on a loopback port and a temporary
directory. Prints one line per check; the exit status is 1 when one fails.

Flags:`

func selftestFlagSet(relay, vectors *string, timeout *time.Duration) *envFlags {
	f := newEnvFlags("relay selftest")
	f.String(relay, "relay", "", "websocket URL of a relay to run the group part against (default: an embedded Burrow)")
	f.String(vectors, "vectors", "", "directory holding RFC 9420's official test vector files, to run them all")
	f.Duration(timeout, "timeout", 10*time.Second, "how long each request waits for the relay")
	f.renameTwins("RELAY_SELFTEST_")
	return f
}

// selftestCommand runs `relay selftest`.
func selftestCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	var relay, vectors string
	var timeout time.Duration
	f := selftestFlagSet(&relay, &vectors, &timeout)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			f.usage(stdout, selftestSynopsis)
			return errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return usageError{err}
	}
	rep, err := mlsverify.Selftest(ctx, mlsverify.SelftestConfig{Relay: relay, VectorsDir: vectors, Timeout: timeout,
		Start: func(ctx context.Context) (string, func(), error) {
			er, err := startEmbedded(ctx)
			if err != nil {
				return "", nil, err
			}
			return er.url(), er.close, nil
		}})
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if !rep.Passed {
		return fmt.Errorf("selftest failed")
	}
	return nil
}
