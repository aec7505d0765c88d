package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/burrow-relay/burrow/bench"
)

// benchCommand measures ingest: the BIP-340 verification ceiling, then Burrow
// on embedded SQLite and on PostgreSQL (in process) and stock khatru in
// memory and on PostgreSQL (the baseline module, as a subprocess), one target
// at a time, printed as one table with ratios against the matching baseline.
func benchCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("relay bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pgAdmin := fs.String("database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL URL allowed to create scratch databases (one per target, dropped after); empty skips the PostgreSQL targets")
	baselineDir := fs.String("baseline-dir", "baseline", "directory of the stock khatru baseline module; empty skips the baseline")
	events := fs.Int("events", bench.DefaultEvents, "events per target")
	conns := fs.Int("conns", bench.DefaultConns, "publishing connections, each waiting for its OK")
	ceiling := fs.Duration("ceiling", 5*time.Second, "how long to measure the verification ceiling (0 skips it)")
	only445 := fs.Bool("only-445", false, "publish only kind 445 (default: kinds 445 and 1 alternate)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (client and in-process relay) to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: relay bench [flags]  (run from the repository root)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return errHelp
		}
		return usageError{err}
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Fprintf(stdout, "go %s, GOMAXPROCS %d, NumCPU %d, %s/%s\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "events %d per target, %d connections, %d B content, only 445: %t\n",
		*events, *conns, bench.DefaultContentBytes, *only445)
	if *ceiling > 0 {
		rate := bench.VerifyCeiling(ctx, *ceiling)
		fmt.Fprintf(stdout, "verification ceiling: %.0f signatures/s (go-nostr CheckSignature, %d goroutines, %s)\n",
			rate, runtime.GOMAXPROCS(0), *ceiling)
	}

	var targets []bench.Target
	if *baselineDir != "" {
		targets = append(targets, bench.BaselineTarget("khatru/memory", *baselineDir, ""))
	}
	targets = append(targets,
		burrowTarget("burrow/sqlite", "khatru/memory", "", nil),
		burrowTarget("burrow/sqlite-normal", "khatru/memory", "", func(c *config) { c.SQLiteSync = "normal" }))
	if *pgAdmin != "" {
		fsync, syncCommit, err := bench.PostgresDurability(ctx, *pgAdmin)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "postgresql: fsync=%s synchronous_commit=%s\n", fsync, syncCommit)
		if *baselineDir != "" {
			targets = append(targets, bench.BaselineTarget("khatru/postgresql", *baselineDir, *pgAdmin))
		}
		targets = append(targets, burrowTarget("burrow/postgresql", "khatru/postgresql", *pgAdmin, nil))
	}

	rows, err := bench.Compare(ctx, bench.Config{Events: *events, Conns: *conns, OnlyGroupEvents: *only445}, targets)
	if tableErr := bench.Table(stdout, rows); tableErr != nil {
		return tableErr
	}
	for _, r := range rows {
		for _, s := range r.Result.FailureSamples {
			fmt.Fprintf(stdout, "%s OK false: %s\n", r.Name, s)
		}
	}
	return err
}

// burrowTarget runs Burrow in process with its default configuration on a
// loopback port, on scratch storage: a temporary SQLite directory, or a
// scratch PostgreSQL database when pgAdmin is set. The per-address event rate
// limit is lifted, since every benchmark connection comes from 127.0.0.1 and
// the point is to measure ingest, not the limiter. adjust, if set, changes
// the configuration further.
func burrowTarget(name, baseline, pgAdmin string, adjust func(*config)) bench.Target {
	return bench.Target{
		Name:     name,
		Baseline: baseline,
		Start: func(ctx context.Context) (string, func(context.Context) error, error) {
			cfg, err := parseServeConfig([]string{"--listen", "127.0.0.1:0"}, func(string) (string, bool) { return "", false }, io.Discard)
			if err != nil {
				return "", nil, err
			}
			cfg.Limits.EventRate = 1e9
			cfg.Limits.EventBurst = 1e9
			if adjust != nil {
				adjust(&cfg)
			}
			drop := func(context.Context) error { return nil }
			if pgAdmin != "" {
				cfg.DatabaseURL, drop, err = bench.TempDatabase(ctx, pgAdmin)
				if err != nil {
					return "", nil, err
				}
			} else {
				dir, err := os.MkdirTemp("", "burrow-bench-")
				if err != nil {
					return "", nil, err
				}
				cfg.DataDir = dir
				drop = func(context.Context) error { return os.RemoveAll(dir) }
			}
			r, err := startRelay(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				return "", nil, err
			}
			return "ws://" + r.Addr, func(ctx context.Context) error {
				cerr := r.Close(ctx)
				if derr := drop(ctx); derr != nil {
					return derr
				}
				return cerr
			}, nil
		},
	}
}
