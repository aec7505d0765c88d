package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/burrow-relay/burrow/bench"
	"github.com/jackc/pgx/v5"
)

// relay bench --separate (issue 17 item 2): every relay runs as a process
// of its own (Burrow as `relay serve` of this binary or --relay-binary, stock
// khatru as the baseline module's binary), apart from the publishing
// client, which is this process. So the relay's CPU time is its own: it is
// read from /proc/<pid>/stat (utime + stime of all its threads) before the
// client starts and after the last OK once the relay has gone idle, and
// divided by the events accepted. For PostgreSQL targets the database
// server's CPU is read the same way (the postmaster and all its children),
// when the server runs on this machine.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on Linux
// whatever the kernel's own tick rate.
const clockTicks = 100

// procCPU is the CPU time (user + system) pid has used, children it has
// reaped included when withChildren is set.
func procCPU(pid int, withChildren bool) (time.Duration, error) {
	f, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	ticks := f.utime + f.stime
	if withChildren {
		ticks += f.cutime + f.cstime
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

// readStat reads the fields of /proc/<pid>/stat this file needs. The
// command name (field 2) is in parentheses and may hold spaces, so the
// fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(s[i+1:]) // fields[0] is field 3, state
	if len(fields) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	var st procStat
	var nums [5]int64
	for k, idx := range []int{1, 11, 12, 13, 14} { // ppid, utime, stime, cutime, cstime
		n, err := strconv.ParseInt(fields[idx], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat: field %d: %w", pid, idx+3, err)
		}
		nums[k] = n
	}
	st.ppid = int(nums[0])
	st.utime, st.stime, st.cutime, st.cstime = nums[1], nums[2], nums[3], nums[4]
	return st, nil
}

// settledCPU waits until pid has used no CPU for 100 ms (at most 3 s), so
// work the run left behind (a checkpoint, a garbage collection) is counted,
// and returns its CPU time then.
func settledCPU(read func() (time.Duration, error)) (time.Duration, error) {
	last, err := read()
	if err != nil {
		return 0, err
	}
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		now, err := read()
		if err != nil {
			return 0, err
		}
		if now == last {
			break
		}
		last = now
	}
	return last, nil
}

// pgServer finds the PostgreSQL server behind adminURL on this machine:
// the postmaster is the parent of the backend serving a connection. ok is
// false when the server is elsewhere or its processes cannot be read.
func pgServer(ctx context.Context, adminURL string) (postmaster int, ok bool) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return 0, false
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return 0, false
	}
	st, err := readStat(backend)
	if err != nil {
		return 0, false
	}
	if _, err := readStat(st.ppid); err != nil {
		return 0, false
	}
	return st.ppid, true
}

// pgServerCPU is the CPU time of the whole PostgreSQL server: the
// postmaster with the children it has reaped, plus the live children
// (backends, WAL writer, checkpointer, autovacuum). Every database on the
// server counts, so other users of it show up here.
func pgServerCPU(postmaster int) (time.Duration, error) {
	total, err := procCPU(postmaster, true)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.ppid != postmaster {
			continue // gone, or not the server's
		}
		total += time.Duration(st.utime+st.stime+st.cutime+st.cstime) * time.Second / clockTicks
	}
	return total, nil
}

// relayProcess is a relay running as a child process.
type relayProcess struct {
	cmd    *exec.Cmd
	url    string
	exited chan struct{}
	log    *tailBuffer
}

// startRelayProcess starts bin with args and waits for the websocket URL,
// which urlFrom finds in a line of its standard output or error, and for
// its NIP-11 document to be served.
func startRelayProcess(ctx context.Context, bin string, args, env []string, urlFrom func(line string) (string, bool)) (*relayProcess, error) {
	cmd := exec.Command(bin, args...) // not CommandContext: it outlives the start-up
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &relayProcess{cmd: cmd, exited: make(chan struct{}), log: &tailBuffer{max: 2000}}
	urls := make(chan string, 1)
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				p.log.add(sc.Text())
				if u, ok := urlFrom(sc.Text()); ok {
					select {
					case urls <- u:
					default:
					}
				}
			}
			_, _ = io.Copy(io.Discard, r)
		}()
	}
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		_ = cmd.Wait()
		close(p.exited)
	}()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	fail := func(err error) (*relayProcess, error) {
		p.stop()
		return nil, fmt.Errorf("%w; its output ends: %s", err, p.log.String())
	}
	select {
	case p.url = <-urls:
	case <-p.exited:
		return fail(errors.New("exited before listening"))
	case <-startCtx.Done():
		return fail(fmt.Errorf("no listening line: %w", startCtx.Err()))
	}
	if err := bench.WaitNIP11(startCtx, p.url, p.exited); err != nil {
		return fail(err)
	}
	return p, nil
}

// stop asks the process to shut down (SIGTERM) and kills it after 30 s.
func (p *relayProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tailBuffer keeps the last max bytes of a process's output, for errors.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(append(t.b, line...), '\n')
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) == 0 {
		return "(nothing)"
	}
	return strings.TrimSpace(string(t.b))
}

// childEnv is this process's environment without the relay's settings
// (RELAY_*), so a child relay runs on the flags it is given and its
// defaults, as the in-process targets do.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RELAY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// procTarget is one relay the --separate mode runs: start brings it up on
// fresh storage and returns the process and a function removing the
// storage once the process has stopped.
type procTarget struct {
	name, baseline string
	pgAdmin        string // set for PostgreSQL targets
	start          func(ctx context.Context) (*relayProcess, func(context.Context) error, error)
}

// asTarget is t as a bench.Target: stopping it stops the process, then
// removes its storage. While it runs, cpu reads the relay process's CPU
// time and, for a PostgreSQL target on this machine, the server's (0 when
// not measured).
func (t procTarget) asTarget() (target bench.Target, cpu func() (relay, pg time.Duration)) {
	var (
		mu   sync.Mutex
		pid  int
		pm   int
		pgOK bool
	)
	cpu = func() (time.Duration, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		var r, g time.Duration
		if pid != 0 {
			r, _ = procCPU(pid, true)
		}
		if pgOK {
			g, _ = pgServerCPU(pm)
		}
		return r, g
	}
	target = bench.Target{Name: t.name, Baseline: t.baseline, Start: func(ctx context.Context) (string, func(context.Context) error, error) {
		p, drop, err := t.start(ctx)
		if err != nil {
			return "", nil, err
		}
		mu.Lock()
		pid = p.cmd.Process.Pid
		if t.pgAdmin != "" {
			pm, pgOK = pgServer(ctx, t.pgAdmin)
		}
		mu.Unlock()
		return p.url, func(ctx context.Context) error {
			mu.Lock()
			pid, pgOK = 0, false
			mu.Unlock()
			p.stop()
			return drop(ctx)
		}, nil
	}}
	return target, cpu
}

// burrowProcTarget runs bin as `relay serve` on a loopback port with the
// event rate limits lifted (as burrowTarget does in process), on a scratch
// SQLite directory or, with pgAdmin, a scratch PostgreSQL database.
func burrowProcTarget(name, baseline, bin, pgAdmin string, extra ...string) procTarget {
	return procTarget{name: name, baseline: baseline, pgAdmin: pgAdmin, start: func(ctx context.Context) (*relayProcess, func(context.Context) error, error) {
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--log-format", "json",
			"--event-rate", "1e9", "--event-burst", "1000000000",
			"--conn-event-rate", "1e9", "--conn-event-burst", "1000000000",
			"--group-rate", "1e9", "--group-burst", "1000000000",
			"--group-claim-rate", "1e9", "--group-claim-burst", "1000000000"}, extra...)
		var drop func(context.Context) error
		if pgAdmin != "" {
			dbURL, d, err := bench.TempDatabase(ctx, pgAdmin)
			if err != nil {
				return nil, nil, err
			}
			args, drop = append(args, "--database-url", dbURL), d
		} else {
			dir, err := os.MkdirTemp("", "burrow-bench-")
			if err != nil {
				return nil, nil, err
			}
			args = append(args, "--data-dir", dir)
			drop = func(context.Context) error { return os.RemoveAll(dir) }
		}
		p, err := startRelayProcess(ctx, bin, args, childEnv(), func(line string) (string, bool) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "relay listening" && rec.Addr != "" {
				return rec.Addr, true
			}
			return "", false
		})
		if err != nil {
			return nil, nil, errors.Join(err, drop(context.WithoutCancel(ctx)))
		}
		return p, drop, nil
	}}
}

// baselineBinary builds the stock khatru baseline module in dir once, into
// a temporary directory that remove deletes, with the libsecp256k1 tag when
// this binary has it, so both sides verify signatures with the same code.
func baselineBinary(ctx context.Context, dir string) (bin string, remove func(), err error) {
	outDir, err := os.MkdirTemp("", "burrow-baseline-")
	if err != nil {
		return "", nil, err
	}
	remove = func() { os.RemoveAll(outDir) }
	bin = filepath.Join(outDir, "baseline")
	args := []string{"build", "-o", bin}
	env := append(os.Environ(), "GOWORK=off")
	if libsecp256k1Build {
		args = append(args, "-tags", "libsecp256k1")
		env = append(env, "CGO_ENABLED=1")
	}
	build := exec.CommandContext(ctx, "go", append(args, ".")...)
	build.Dir, build.Env = dir, env
	if out, err := build.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("%w: go %s in %s: %w: %s", bench.ErrBaseline, strings.Join(args, " "), dir, err, strings.TrimSpace(string(out)))
	}
	return bin, remove, nil
}

// relayBinary is the binary --separate runs Burrow's targets with: bin, or
// by default this one, so it verifies as this one does.
func relayBinary(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	return os.Executable()
}

// baselineProcTarget runs the built baseline binary, in memory or on a
// scratch PostgreSQL database.
func baselineProcTarget(name, bin, pgAdmin string) procTarget {
	return procTarget{name: name, pgAdmin: pgAdmin, start: func(ctx context.Context) (*relayProcess, func(context.Context) error, error) {
		args := []string{"--listen", "127.0.0.1:0"}
		drop := func(context.Context) error { return nil }
		if pgAdmin != "" {
			dbURL, d, err := bench.TempDatabase(ctx, pgAdmin)
			if err != nil {
				return nil, nil, err
			}
			args, drop = append(args, "--database-url", dbURL), d
		}
		p, err := startRelayProcess(ctx, bin, args, childEnv(), func(line string) (string, bool) {
			return strings.CutPrefix(line, "listening on ")
		})
		if err != nil {
			return nil, nil, errors.Join(err, drop(context.WithoutCancel(ctx)))
		}
		return p, drop, nil
	}}
}

// procRow is one target's result with the CPU the relay (and PostgreSQL)
// used during the run.
type procRow struct {
	name, baseline string
	res            bench.Result
	relayCPU       time.Duration
	pgCPU          time.Duration // 0 when not measured
	commits        storeCommits  // zero when not measured
}

func (r procRow) perEvent(d time.Duration) float64 {
	if r.res.Accepted == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(r.res.Accepted)
}

// runProcTarget starts t, publishes cfg against it while reading the
// CPU clocks around the run, and stops it.
func runProcTarget(ctx context.Context, cfg bench.Config, t procTarget) (row procRow, err error) {
	row = procRow{name: t.name, baseline: t.baseline}
	p, drop, err := t.start(ctx)
	if err != nil {
		return row, fmt.Errorf("start: %w", err)
	}
	defer func() {
		p.stop()
		if dropErr := drop(context.WithoutCancel(ctx)); dropErr != nil {
			err = errors.Join(err, fmt.Errorf("drop storage: %w", dropErr))
		}
	}()
	pid := p.cmd.Process.Pid
	relayCPU := func() (time.Duration, error) { return procCPU(pid, true) }
	pgCPU := func() (time.Duration, error) { return 0, nil }
	if t.pgAdmin != "" {
		if pm, ok := pgServer(ctx, t.pgAdmin); ok {
			pgCPU = func() (time.Duration, error) { return pgServerCPU(pm) }
		}
	}
	relay0, err := settledCPU(relayCPU)
	if err != nil {
		return row, fmt.Errorf("relay CPU: %w", err)
	}
	pg0, err := pgCPU()
	if err != nil {
		return row, fmt.Errorf("PostgreSQL CPU: %w", err)
	}
	// Burrow's commit series; a relay without them (the khatru baseline,
	// a --relay-binary of an older build) leaves the columns empty.
	metricsURL := "http" + strings.TrimPrefix(p.url, "ws") + "/metrics"
	commits0, commitsOK := scrapeCommits(ctx, metricsURL)
	cfg.URL = p.url
	row.res, err = bench.Run(ctx, cfg)
	if err != nil {
		return row, fmt.Errorf("%w; the relay's output ends: %s", err, p.log.String())
	}
	if commitsOK {
		if commits1, ok := scrapeCommits(ctx, metricsURL); ok {
			row.commits = commits1.minus(commits0)
		}
	}
	relay1, err := settledCPU(relayCPU)
	if err != nil {
		return row, fmt.Errorf("relay CPU: %w", err)
	}
	pg1, err := pgCPU()
	if err != nil {
		return row, fmt.Errorf("PostgreSQL CPU: %w", err)
	}
	row.relayCPU, row.pgCPU = relay1-relay0, pg1-pg0
	return row, nil
}

// storeCommits are the totals of a relay's group commits, from its
// burrow_store_commit_writes and burrow_store_commit_seconds histograms.
type storeCommits struct{ count, writes, seconds float64 }

func (c storeCommits) minus(o storeCommits) storeCommits {
	return storeCommits{c.count - o.count, c.writes - o.writes, c.seconds - o.seconds}
}

// scrapeCommits reads a relay's commit totals from its /metrics; ok is
// false when the page or a series is missing.
func scrapeCommits(ctx context.Context, url string) (c storeCommits, ok bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return c, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, false
	}
	defer resp.Body.Close()
	series := map[string]string{} // unlabelled series by name
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, value, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			series[name] = value
		}
	}
	if sc.Err() != nil || resp.StatusCode != http.StatusOK {
		return c, false
	}
	for _, v := range []struct {
		dst   *float64
		value string
	}{
		{&c.count, series["burrow_store_commit_writes_count"]},
		{&c.writes, series["burrow_store_commit_writes_sum"]},
		{&c.seconds, series["burrow_store_commit_seconds_sum"]},
	} {
		if *v.dst, err = strconv.ParseFloat(v.value, 64); err != nil {
			return c, false
		}
	}
	return c, true
}

// procTable prints the --separate results: the ingest columns of
// bench.Table, the relay's CPU per accepted event (and PostgreSQL's), and
// ratios against the row's baseline.
func procTable(w io.Writer, rows []procRow) error {
	by := map[string]procRow{}
	width := len("target")
	for _, r := range rows {
		by[r.name] = r
		width = max(width, len(r.name))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-*s\tevents\tOK false\tseconds\tevents/s\tp50 ms\tp99 ms\trelay CPU s\trelay µs/ev\tpg µs/ev\tclient µs/ev\twrites/commit\tcommit ms\tev/s ratio\tµs/ev ratio\t%-*s\t\n", width, "target", width, "vs")
	for _, r := range rows {
		pg := "-"
		if r.pgCPU > 0 {
			pg = fmt.Sprintf("%.0f", r.perEvent(r.pgCPU))
		}
		evRatio, cpuRatio := "", ""
		if r.baseline != "" {
			evRatio, cpuRatio = "?", "?"
			if b, ok := by[r.baseline]; ok && b.res.EventsPerSec > 0 && b.perEvent(b.relayCPU) > 0 {
				evRatio = fmt.Sprintf("%.2fx", r.res.EventsPerSec/b.res.EventsPerSec)
				cpuRatio = fmt.Sprintf("%.2fx", r.perEvent(r.relayCPU)/b.perEvent(b.relayCPU))
			}
		}
		perCommit, commitMs := "-", "-"
		if c := r.commits; c.count > 0 {
			perCommit, commitMs = fmt.Sprintf("%.1f", c.writes/c.count), fmt.Sprintf("%.2f", 1000*c.seconds/c.count)
		}
		fmt.Fprintf(tw, "%-*s\t%d\t%d\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.0f\t%s\t%.0f\t%s\t%s\t%s\t%s\t%-*s\t\n",
			width, r.name, r.res.Events, r.res.Failures, r.res.Duration.Seconds(), r.res.EventsPerSec,
			float64(r.res.P50)/float64(time.Millisecond), float64(r.res.P99)/float64(time.Millisecond),
			r.relayCPU.Seconds(), r.perEvent(r.relayCPU), pg, r.perEvent(r.res.ProcessCPU), perCommit, commitMs,
			evRatio, cpuRatio, width, r.baseline)
	}
	return tw.Flush()
}

// benchSeparate is the --separate run: the targets of the default run,
// each a process of its own, one at a time.
func benchSeparate(ctx context.Context, stdout io.Writer, relayBin, baselineDir, pgAdmin string, cfg bench.Config) error {
	if _, err := readStat(os.Getpid()); err != nil {
		return fmt.Errorf("--separate reads relay CPU time from /proc/<pid>/stat (Linux): %w", err)
	}
	relayBin, err := relayBinary(relayBin)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "separate processes: the client is this process (pid %d); burrow runs as %s serve; relay CPU is utime+stime from /proc/<pid>/stat\n",
		os.Getpid(), relayBin)
	var baseline string // the baseline binary, "" to skip it
	if baselineDir != "" {
		bin, remove, err := baselineBinary(ctx, baselineDir)
		if err != nil {
			return err
		}
		defer remove()
		baseline = bin
		tags := "no build tags (pure-Go verifier)"
		if libsecp256k1Build {
			tags = "-tags libsecp256k1"
		}
		fmt.Fprintf(stdout, "stock khatru baseline built from %s with %s\n", baselineDir, tags)
	}
	var targets []procTarget
	if baseline != "" {
		targets = append(targets, baselineProcTarget("khatru/memory", baseline, ""))
	}
	targets = append(targets,
		burrowProcTarget("burrow/sqlite", "khatru/memory", relayBin, ""),
		burrowProcTarget("burrow/sqlite-normal", "khatru/memory", relayBin, "", "--sqlite-synchronous", "normal"))
	if pgAdmin != "" {
		if baseline != "" {
			targets = append(targets, baselineProcTarget("khatru/postgresql", baseline, pgAdmin))
		}
		targets = append(targets, burrowProcTarget("burrow/postgresql", "khatru/postgresql", relayBin, pgAdmin))
	}
	if pgAdmin != "" {
		if _, ok := pgServer(ctx, pgAdmin); ok {
			fmt.Fprintln(stdout, "postgresql: server on this machine; pg µs/ev is the whole server's CPU (postmaster and children) per accepted event")
		} else {
			fmt.Fprintln(stdout, "postgresql: server processes not readable here; pg µs/ev not measured")
		}
	}
	var rows []procRow
	var runErr error
	for _, t := range targets {
		row, err := runProcTarget(ctx, cfg, t)
		if err != nil {
			runErr = fmt.Errorf("bench: target %s: %w", t.name, err)
			break
		}
		rows = append(rows, row)
	}
	if err := procTable(stdout, rows); err != nil {
		return err
	}
	for _, r := range rows {
		for _, s := range r.res.FailureSamples {
			fmt.Fprintf(stdout, "%s OK false: %s\n", r.name, s)
		}
	}
	return runErr
}
