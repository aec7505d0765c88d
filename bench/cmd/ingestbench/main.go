// Command ingestbench measures relay ingest on this machine: the signature-verification ceiling,
// then the stock khatru baseline in memory and on a scratch PostgreSQL database, printed as one
// table. It is the stand-alone form of what `relay bench` runs with Burrow's targets added. Run it
// from the repository root: go run ./bench/cmd/ingestbench
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/burrow-relay/burrow/bench"
)

// config is what the command line sets.
type config struct {
	BaselineDir     string
	PostgresAdmin   string
	Events          int
	Conns           int
	Ceiling         time.Duration
	OnlyGroupEvents bool
}

func main() {
	var cfg config
	flag.StringVar(&cfg.BaselineDir, "baseline-dir", "baseline", "directory of the baseline module")
	flag.StringVar(&cfg.PostgresAdmin, "pg-admin-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL URL allowed to create scratch databases; empty skips the PostgreSQL target")
	flag.IntVar(&cfg.Events, "events", bench.DefaultEvents, "events per target")
	flag.IntVar(&cfg.Conns, "conns", bench.DefaultConns, "publishing connections")
	flag.DurationVar(&cfg.Ceiling, "ceiling", 5*time.Second, "how long to measure the verification ceiling (0 skips it)")
	flag.BoolVar(&cfg.OnlyGroupEvents, "only-445", false, "publish only kind 445 (default: kinds 445 and 1 alternate)")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		logger.Error("ingestbench failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	fmt.Fprintf(out, "go %s, GOMAXPROCS %d, NumCPU %d, %s/%s\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(out, "events %d per target, %d connections, %d B content, only 445: %t\n",
		cfg.Events, cfg.Conns, bench.DefaultContentBytes, cfg.OnlyGroupEvents)

	if cfg.Ceiling > 0 {
		rate := bench.VerifyCeiling(ctx, cfg.Ceiling)
		fmt.Fprintf(out, "verification ceiling: %.0f signatures/s (go-nostr CheckSignature, %d goroutines, %s)\n",
			rate, runtime.GOMAXPROCS(0), cfg.Ceiling)
	}

	targets := []bench.Target{bench.BaselineTarget("khatru/memory", cfg.BaselineDir, "")}
	if cfg.PostgresAdmin != "" {
		fsync, syncCommit, err := bench.PostgresDurability(ctx, cfg.PostgresAdmin)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "postgresql: fsync=%s synchronous_commit=%s\n", fsync, syncCommit)
		targets = append(targets, bench.BaselineTarget("khatru/postgresql", cfg.BaselineDir, cfg.PostgresAdmin))
	}

	runCfg := bench.Config{Events: cfg.Events, Conns: cfg.Conns, OnlyGroupEvents: cfg.OnlyGroupEvents}
	rows, err := bench.Compare(ctx, runCfg, targets)
	if tableErr := bench.Table(out, rows); tableErr != nil {
		return tableErr
	}
	for _, r := range rows {
		for _, s := range r.Result.FailureSamples {
			fmt.Fprintf(out, "%s OK false: %s\n", r.Name, s)
		}
	}
	return err
}
