package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	"github.com/burrow-relay/burrow/bench"
)

// benchCommand measures ingest: the BIP-340 verification ceiling, then Burrow
// on embedded SQLite and on PostgreSQL (in process) and stock khatru in
// memory and on PostgreSQL (the baseline module, as a subprocess), one target
// at a time, printed as one table with ratios against the matching baseline.
// --sequencing and --slots replace that run with the issue 5 measurements
// (benchSequencing, benchSlots); --separate runs the same targets each as a
// process of its own and adds the relay's CPU time per event
// (benchSeparate, benchproc.go).
func benchCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) error {
	f := newEnvFlags("relay bench")
	var (
		pgAdmin, baselineDir, cpuProfile, relayBin string
		traceFile                                  string
		events, conns, rounds, repeat              int
		ceiling                                    time.Duration
		only445, sequencing, slots, separate       bool
		marmotLoad                                 bool
		marmotSubs                                 int
		marmotRate                                 float64
		marmotFor                                  time.Duration
	)
	f.String(&pgAdmin, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"PostgreSQL URL allowed to create scratch databases (one per target, dropped after); empty skips the PostgreSQL targets")
	f.String(&baselineDir, "baseline-dir", "baseline", "directory of the stock khatru baseline module; empty skips the baseline")
	f.Int(&events, "events", bench.DefaultEvents, "events per target")
	f.Int(&conns, "conns", bench.DefaultConns, "publishing connections, each waiting for its OK")
	f.Duration(&ceiling, "ceiling", 5*time.Second, "how long to measure the verification ceiling (0 skips it)")
	f.Bool(&only445, "only-445", false, "publish only kind 445 (otherwise kinds 445 and 1 alternate)")
	f.String(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (client and in-process relay) to this file")
	f.String(&traceFile, "trace", "", "write a Go execution trace of the whole run (client and in-process relay) to this file, for go tool trace (its scheduler, syscall and blocking profiles show where latency goes that a CPU profile does not)")
	f.Bool(&separate, "separate", false, "run each relay as a process of its own (Burrow as \"relay serve\" of --relay-binary, khatru built with this binary's verifier), apart from the publishing client (this process), and add each relay process's CPU time per accepted event (µs, from /proc/<pid>/stat; Linux), and the PostgreSQL server's when it runs on this machine")
	f.String(&relayBin, "relay-binary", "", "with --separate, the relay binary Burrow's targets run (default: this one, so it verifies as this one does)")
	f.Bool(&sequencing, "sequencing", false, "instead: kind 445 ingest with sequencing on vs off, 1 and 100 groups, on each store")
	f.Bool(&slots, "slots", false, "instead: commit-slot claims under contention vs bare kind 445 on an unsequenced store")
	f.Int(&rounds, "rounds", bench.DefaultSlotRounds, "slots raced for per target (--slots); --conns connections contend for each")
	f.Bool(&marmotLoad, "marmot-load", false, "instead: the busy-Marmot-relay load (--marmot-subscribers connections from 127.0.0.2 upwards, 50 per address, each subscribed to its group's kind 445s, its own gift wraps after AUTH and ten authors' KeyPackages; 100 groups; --conns publishers offering --marmot-rate kind 445/s plus 20 gift wraps/s and 10 KeyPackages/s) on stock khatru in memory, Burrow SQLite and Burrow PostgreSQL; reports OK and delivery p99 and checks every delivery arrives exactly once and in seq order; use with --separate, which adds each relay process's CPU time")
	f.Int(&marmotSubs, "marmot-subscribers", bench.DefaultMarmotSubscribers, "subscriber connections (--marmot-load)")
	f.Float64(&marmotRate, "marmot-rate", bench.DefaultMarmotGroupRate, "offered kind 445 events per second (--marmot-load)")
	f.Duration(&marmotFor, "marmot-duration", bench.DefaultMarmotDuration, "how long events are offered (--marmot-load)")
	f.Int(&repeat, "repeat", 2, "runs of each side of a comparison (--sequencing, --slots), alternated so noise hits both")
	f.renameTwins("RELAY_BENCH_")
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			f.usage(stdout, "Usage: relay bench [flags]  (run from the repository root)")
			return errHelp
		}
	}
	if err := f.parse(args, lookup); err != nil {
		return usageError{err}
	}
	if separate && (sequencing || slots) {
		return usageError{errors.New("--separate measures the ingest run; it does not combine with --sequencing or --slots")}
	}
	if marmotLoad && (sequencing || slots) {
		return usageError{errors.New("--marmot-load does not combine with --sequencing or --slots")}
	}

	for _, p := range []struct {
		file  string
		start func(io.Writer) error
		stop  func()
	}{{cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {traceFile, trace.Start, trace.Stop}} {
		if p.file == "" {
			continue
		}
		f, err := os.Create(p.file)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := p.start(f); err != nil {
			return err
		}
		defer p.stop()
	}
	fmt.Fprintf(stdout, "go %s, GOMAXPROCS %d, NumCPU %d, %s/%s\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "verifier: %s\n", signatureVerifier)
	if sequencing || slots {
		if repeat < 1 {
			return usageError{fmt.Errorf("--repeat must be at least 1, got %d", repeat)}
		}
		stores := benchStores(ctx, pgAdmin, stdout)
		var errs []error
		if sequencing {
			errs = append(errs, benchSequencing(ctx, stdout, stores, events, conns, repeat))
		}
		if slots {
			errs = append(errs, benchSlots(ctx, stdout, stores, rounds, conns, repeat))
		}
		return errors.Join(errs...)
	}
	if marmotLoad {
		cfg := bench.MarmotConfig{Subscribers: marmotSubs, GroupRate: marmotRate, Duration: marmotFor, Publishers: conns}
		return benchMarmot(ctx, stdout, cfg, separate, relayBin, baselineDir, benchStores(ctx, pgAdmin, stdout))
	}
	fmt.Fprintf(stdout, "events %d per target, %d connections, %d B content, only 445: %t\n",
		events, conns, bench.DefaultContentBytes, only445)
	if ceiling > 0 {
		rate := bench.VerifyCeiling(ctx, ceiling)
		fmt.Fprintf(stdout, "verification ceiling: %.0f signatures/s (go-nostr CheckSignature, %d goroutines, %s)\n",
			rate, runtime.GOMAXPROCS(0), ceiling)
	}
	cfg := bench.Config{Events: events, Conns: conns, OnlyGroupEvents: only445}
	if separate {
		if pgAdmin != "" {
			fsync, syncCommit, err := bench.PostgresDurability(ctx, pgAdmin)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "postgresql: fsync=%s synchronous_commit=%s\n", fsync, syncCommit)
		}
		return benchSeparate(ctx, stdout, relayBin, baselineDir, pgAdmin, cfg)
	}

	var targets []bench.Target
	if baselineDir != "" {
		targets = append(targets, bench.BaselineTarget("khatru/memory", baselineDir, ""))
	}
	targets = append(targets,
		burrowTarget("burrow/sqlite", "khatru/memory", "", nil),
		burrowTarget("burrow/sqlite-normal", "khatru/memory", "", func(c *config) { c.SQLiteSync = "normal" }))
	if pgAdmin != "" {
		fsync, syncCommit, err := bench.PostgresDurability(ctx, pgAdmin)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "postgresql: fsync=%s synchronous_commit=%s\n", fsync, syncCommit)
		if baselineDir != "" {
			targets = append(targets, bench.BaselineTarget("khatru/postgresql", baselineDir, pgAdmin))
		}
		targets = append(targets, burrowTarget("burrow/postgresql", "khatru/postgresql", pgAdmin, nil))
	}

	rows, err := bench.Compare(ctx, cfg, targets)
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
// scratch PostgreSQL database when pgAdmin is set. The per-address,
// per-connection and per-group event rate limits (and the per-group
// commit-slot claim bucket) are lifted, since every benchmark connection
// comes from 127.0.0.1, one-group runs put every event in one bucket, and the
// point is to measure ingest, not the limiter. The per-address connection
// limit stays. adjust, if set, changes
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
			cfg.Limits.ConnEventRate = 1e9
			cfg.Limits.ConnEventBurst = 1e9
			cfg.Limits.GroupRate = 1e9
			cfg.Limits.GroupBurst = 1e9
			cfg.GroupClaimRate = 1e9
			cfg.GroupClaimBurst = 1e9
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

// benchStore is one storage backend the issue 5 modes run on: pgAdmin is
// empty for embedded SQLite.
type benchStore struct {
	name    string
	pgAdmin string
}

// benchStores is SQLite, plus PostgreSQL when pgAdmin is set and reachable
// (an unreachable server is reported and skipped, not fatal).
func benchStores(ctx context.Context, pgAdmin string, stdout io.Writer) []benchStore {
	stores := []benchStore{{name: "sqlite"}}
	if pgAdmin == "" {
		return stores
	}
	fsync, syncCommit, err := bench.PostgresDurability(ctx, pgAdmin)
	if err != nil {
		fmt.Fprintf(stdout, "postgresql: skipped (%v)\n", err)
		return stores
	}
	fmt.Fprintf(stdout, "postgresql: fsync=%s synchronous_commit=%s\n", fsync, syncCommit)
	return append(stores, benchStore{name: "postgresql", pgAdmin: pgAdmin})
}

// target is Burrow on this store, sequenced or not.
func (s benchStore) target(name, baseline string, sequenced bool) bench.Target {
	return burrowTarget(name, baseline, s.pgAdmin, func(c *config) { c.disableSequencing = !sequenced })
}

// benchSequencing measures kind 445 ingest on each store with sequencing
// on and off, for 1 and 100 groups. Each side runs repeat times, alternated
// A B B A ... so drift on a shared machine hits both; each row's ratio is
// against the other side of its own pair, and the verdict compares the best
// run of each side (bench.Overhead).
func benchSequencing(ctx context.Context, stdout io.Writer, stores []benchStore, events, conns, repeat int) error {
	fmt.Fprintf(stdout, "\nsequencing: kind 445 only, %d events per run, %d connections, %d B content, each side %d times (A B B A ...)\n",
		events, conns, bench.DefaultContentBytes, repeat)
	// The bounds on what sequencing may cost in kind 445 ingest
	// throughput, by number of groups.
	goals := []struct {
		groups  int
		maxCost float64
	}{{100, 0.10}, {1, 0.30}}
	var verdicts []string
	for _, st := range stores {
		for _, goal := range goals {
			var targets []bench.Target
			for k := 1; k <= repeat; k++ {
				on := fmt.Sprintf("%s/%dg/seq#%d", st.name, goal.groups, k)
				off := fmt.Sprintf("%s/%dg/off#%d", st.name, goal.groups, k)
				pair := []bench.Target{st.target(on, off, true), st.target(off, "", false)}
				if k%2 == 0 {
					pair[0], pair[1] = pair[1], pair[0]
				}
				targets = append(targets, pair...)
			}
			cfg := bench.Config{Events: events, Conns: conns, OnlyGroupEvents: true, Groups: goal.groups}
			rows, err := bench.Compare(ctx, cfg, targets)
			fmt.Fprintln(stdout)
			if tableErr := bench.Table(stdout, rows); tableErr != nil {
				return tableErr
			}
			var seq, off []bench.Result
			for _, r := range rows {
				for _, f := range r.Result.FailureSamples {
					fmt.Fprintf(stdout, "%s OK false: %s\n", r.Name, f)
				}
				if r.Result.Failures > 0 {
					err = errors.Join(err, fmt.Errorf("%s: %d events refused", r.Name, r.Result.Failures))
				}
				if r.Baseline != "" {
					seq = append(seq, r.Result)
				} else {
					off = append(off, r.Result)
				}
			}
			if err != nil {
				return err
			}
			for _, r := range rows {
				fmt.Fprintf(stdout, "%s: process CPU %.0f µs per event (client and relay)\n", r.Name, float64(r.Result.CPUPerEvent())/float64(time.Microsecond))
			}
			cost := bench.Overhead(seq, off)
			cpuCost := bench.CPUOverhead(seq, off)
			verdicts = append(verdicts, fmt.Sprintf("%s, %d group(s): sequencing costs %.1f%% of ingest (best of %d each side); goal <= %.0f%%: %s; CPU per event %+.1f%% (least of each side, client included)",
				st.name, goal.groups, 100*cost, repeat, 100*goal.maxCost, bench.MetOrNot(cost <= goal.maxCost), 100*cpuCost))
		}
	}
	fmt.Fprintln(stdout)
	for _, v := range verdicts {
		fmt.Fprintln(stdout, v)
	}
	return nil
}

// slotGoalP99 is the bound on claim OK latency on one instance.
const slotGoalP99 = 10 * time.Millisecond

// benchSlots races conns contenders for rounds fresh commit slots on each
// store (claims on a sequenced store) and runs the same load as bare kind
// 445 on an unsequenced store (what sequencing switched off means here) and
// on a sequenced one, repeat times in alternating order. Any round that
// breaks the slot rules fails the command.
func benchSlots(ctx context.Context, stdout io.Writer, stores []benchStore, rounds, conns, repeat int) error {
	fmt.Fprintf(stdout, "\nslots: %d rounds per run, %d contenders per round (one connection each), 1 group, %d B commits, each kind %d times\n",
		rounds, conns, bench.DefaultContentBytes, repeat)
	var (
		verdicts []string
		failed   error
	)
	for _, st := range stores {
		type run struct {
			name, baseline  string
			sequenced, bare bool
		}
		var runs []run
		for k := 1; k <= repeat; k++ {
			off := fmt.Sprintf("%s/bare-off#%d", st.name, k)
			trio := []run{
				{fmt.Sprintf("%s/claim#%d", st.name, k), off, true, false},
				{fmt.Sprintf("%s/bare-seq#%d", st.name, k), off, true, true},
				{off, "", false, true},
			}
			if k%2 == 0 {
				trio[0], trio[2] = trio[2], trio[0]
			}
			runs = append(runs, trio...)
		}
		var rows []bench.SlotRow
		var worst time.Duration
		for _, r := range runs {
			var (
				res bench.SlotResult
				err error
			)
			pprof.Do(ctx, pprof.Labels("target", r.name), func(ctx context.Context) {
				res, err = runSlotTarget(ctx, st.target(r.name, r.baseline, r.sequenced),
					bench.SlotConfig{Rounds: rounds, Contenders: conns, Bare: r.bare})
			})
			if err != nil {
				_ = bench.SlotTable(stdout, rows)
				return fmt.Errorf("%s: %w", r.name, err)
			}
			rows = append(rows, bench.SlotRow{Name: r.name, Result: res, Baseline: r.baseline})
			if !r.bare {
				worst = max(worst, res.P99)
			}
			if res.Violations > 0 {
				failed = errors.Join(failed, fmt.Errorf("%s: %d slot rule violations", r.name, res.Violations))
			}
		}
		fmt.Fprintln(stdout)
		if err := bench.SlotTable(stdout, rows); err != nil {
			return err
		}
		for _, r := range rows {
			for _, v := range r.Result.ViolationSamples {
				fmt.Fprintf(stdout, "%s violation: %s\n", r.Name, v)
			}
		}
		verdicts = append(verdicts, fmt.Sprintf("%s: claim p99 %.2f ms (worst of %d runs); goal <= %s: %s",
			st.name, float64(worst)/float64(time.Millisecond), repeat, slotGoalP99, bench.MetOrNot(worst <= slotGoalP99)))
	}
	fmt.Fprintln(stdout)
	for _, v := range verdicts {
		fmt.Fprintln(stdout, v)
	}
	return failed
}

// runSlotTarget starts t, runs one slot contention run against it and stops
// it.
func runSlotTarget(ctx context.Context, t bench.Target, cfg bench.SlotConfig) (res bench.SlotResult, err error) {
	err = t.With(ctx, func(url string) error {
		cfg.URL = url
		res, err = bench.RunSlots(ctx, cfg)
		return err
	})
	return res, err
}

// benchMarmot runs the busy-Marmot-relay load (issue 17 item 4) on stock
// khatru in memory (when baselineDir is set) and Burrow on each store, one
// target at a time, in process or, with separate, each relay a process of
// its own. Burrow's targets lift only the event rate limits, as every bench
// target does (the publishers are 8 connections on 127.0.0.1); the
// per-address connection limit stays at its default, which the load stays
// under by spreading subscribers over source addresses. A target that
// refuses, loses, repeats or misorders anything fails the command.
func benchMarmot(ctx context.Context, stdout io.Writer, cfg bench.MarmotConfig, separate bool, relayBin, baselineDir string, stores []benchStore) error {
	if limit, known := openFileLimit(); known {
		// Each subscriber holds a socket here and, in process, another in the relay.
		fmt.Fprintf(stdout, "open-file limit %d\n", limit)
	}
	fmt.Fprintf(stdout, "\nmarmot load: %d subscribers, %d publishers, %.0f kind 445/s + %d gift wraps/s + %d KeyPackages/s for %s; in process: %t\n",
		cfg.Subscribers, cfg.Publishers, cfg.GroupRate, bench.DefaultMarmotWrapRate, bench.DefaultMarmotKPRate, cfg.Duration, !separate)
	var (
		targets []bench.Target
		cpus    = map[string]func() (relay, pg time.Duration){}
	)
	addProc := func(t procTarget) {
		bt, cpu := t.asTarget()
		targets = append(targets, bt)
		cpus[t.name] = cpu
	}
	if separate {
		relayBin, err := relayBinary(relayBin)
		if err != nil {
			return err
		}
		if baselineDir != "" {
			bin, remove, err := baselineBinary(ctx, baselineDir)
			if err != nil {
				return err
			}
			defer remove()
			addProc(baselineProcTarget("khatru/memory", bin, ""))
		}
		for _, st := range stores {
			addProc(burrowProcTarget("burrow/"+st.name, "", relayBin, st.pgAdmin))
		}
	} else {
		if baselineDir != "" {
			targets = append(targets, bench.BaselineTarget("khatru/memory", baselineDir, ""))
		}
		for _, st := range stores {
			targets = append(targets, burrowTarget("burrow/"+st.name, "", st.pgAdmin, nil))
		}
	}
	var (
		rows   []bench.MarmotRow
		runErr error
	)
	for _, t := range targets {
		var (
			res bench.MarmotResult
			err error
		)
		pprof.Do(ctx, pprof.Labels("target", t.Name), func(ctx context.Context) { res, err = runMarmotTarget(ctx, t, cfg, cpus[t.Name]) })
		if err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("bench: target %s: %w", t.Name, err))
			continue
		}
		rows = append(rows, bench.MarmotRow{Name: t.Name, Result: res})
		if !res.Passed() && !strings.HasPrefix(t.Name, "khatru") {
			runErr = errors.Join(runErr, fmt.Errorf("%s: %s", t.Name, res.Problems()))
		}
	}
	fmt.Fprintln(stdout)
	if err := bench.MarmotTable(stdout, rows); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Result.RelayCPU > 0 {
			fmt.Fprintf(stdout, "%s: relay process CPU %.2f s over the %.1f s run (%.2f cores)", r.Name,
				r.Result.RelayCPU.Seconds(), r.Result.Window.Seconds(), r.Result.RelayCPU.Seconds()/r.Result.Window.Seconds())
			if r.Result.ServerCPU > 0 {
				fmt.Fprintf(stdout, ", PostgreSQL server %.2f s (%.2f cores, every database on it)", r.Result.ServerCPU.Seconds(),
					r.Result.ServerCPU.Seconds()/r.Result.Window.Seconds())
			}
			fmt.Fprintln(stdout)
		}
	}
	return runErr
}

// runMarmotTarget starts t, runs the load against it and stops it; cpu,
// when set, reads the relay's (and PostgreSQL's) CPU time around the run.
func runMarmotTarget(ctx context.Context, t bench.Target, cfg bench.MarmotConfig, cpu func() (relay, pg time.Duration)) (res bench.MarmotResult, err error) {
	if cpu != nil {
		cfg.AroundRun = func() func() (time.Duration, time.Duration) {
			r0, g0 := cpu()
			return func() (time.Duration, time.Duration) {
				r1, g1 := cpu()
				return r1 - r0, g1 - g0
			}
		}
	}
	err = t.With(ctx, func(url string) error {
		cfg.URL = url
		res, err = bench.RunMarmot(ctx, cfg)
		return err
	})
	return res, err
}
