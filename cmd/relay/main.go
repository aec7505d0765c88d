// Command relay is Burrow: a Nostr relay for MLS group messaging (Marmot).
// This package only parses configuration and wires the packages that hold
// the behaviour: server (websocket engine and HTTP), policy (admission),
// storage/sqlite and storage/postgres (backends), conformance and bench.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

// version is the software version advertised in NIP-11; release builds set it
// with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

// commit is the revision a build without version control information (the
// Docker image's) was made from, set with -ldflags "-X main.commit=…";
// otherwise relay version reads the go command's stamp.
var commit = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches on the first word and returns the exit status: 0 success,
// 1 a failure while running, 2 bad usage or configuration.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	if cmd == "serve" && slices.ContainsFunc(args, func(a string) bool { return a == "--version" || a == "-version" }) {
		cmd = "version"
		args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--version" || a == "-version" })
	}
	var err error
	switch cmd {
	case "serve":
		err = serveCommand(ctx, args, lookup, stderr)
		if errors.Is(err, errHelp) {
			printServeUsage(stdout)
			return 0
		}
	case "conformance":
		err = conformanceCommand(ctx, args, lookup, stdout, stderr)
	case "bench":
		err = benchCommand(ctx, args, lookup, stdout, stderr)
	case "selftest":
		err = selftestCommand(ctx, args, lookup, stdout, stderr)
	case "harness":
		err = harnessCommand(ctx, args, lookup, stdout, stderr)
	case "version":
		err = versionCommand(ctx, args, lookup, stdout, stderr)
	case "healthcheck":
		err = healthcheckCommand(ctx, args, lookup, stdout, stderr)
	case "backup":
		err = backupCommand(ctx, args, lookup, stdout, stderr)
	case "sync":
		err = syncCommand(ctx, args, lookup, stdout, stderr)
	case "help":
		printServeUsage(stdout)
		return 0
	default:
		err = usageError{fmt.Errorf("unknown command %q (want serve, version, healthcheck, backup, sync, conformance, bench, selftest, harness or help)", cmd)}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "relay: %v\n", err)
		return 1
	}
}

// usageError marks bad flags or configuration (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }
