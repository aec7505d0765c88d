package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/bench"
	"github.com/burrow-relay/burrow/internal/shareddata"
	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/mlsverify"
)

// harnessMembers is the group size the issue asks CI to run every
// scenario with; harnessTimeout is the per-request wait, generous because
// CI runs these three tests side by side under -race on two cores.
const (
	harnessMembers = "20"
	harnessTimeout = "30s"
)

// runCommand runs the relay command line and returns its exit status and
// output.
func runCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, env(nil), &out, &errb)
	return code, out.String(), errb.String()
}

// TestSelftestCommand runs `relay selftest` with the official vectors: the
// known answers, every vector file the self-test runs, and the five-member
// group through an in-process Burrow, each a passing line.
func TestSelftestCommand(t *testing.T) {
	dir := shareddata.Dir(t, "mls-test-vectors")
	start := time.Now()
	code, out, stderr := runCommand(t, "selftest", "--vectors", dir)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	t.Logf("selftest took %v", time.Since(start))
	for _, want := range []string{
		"PASS    known answer: KeyPackageRef", "PASS    known answer: key schedule", "PASS    known answer: tree hash",
		"PASS    known answer: message protection round trip",
		"PASS    vectors: key-schedule.json", "PASS    vectors: passive-client-random.json", "PASS    vectors: welcome.json",
		"PASS    group: KeyPackages", "PASS    group: Welcomes", "PASS    group: chat", "PASS    group: update",
		"PASS    group: removal", "PASS    group: SelfRemove", "PASS    group: commit race", "\nPASS: ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nFAIL") {
		t.Errorf("a failing line:\n%s", out)
	}
}

// TestSelftestFailsAgainstADeadRelay: --relay naming nothing listening
// gives a failing line naming the problem and exit status 1.
func TestSelftestFailsAgainstADeadRelay(t *testing.T) {
	code, out, stderr := runCommand(t, "selftest", "--relay", "ws://"+freeAddr(t), "--timeout", "2s")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "FAIL    relay probe") || !strings.Contains(out, "refuses websocket connections") || !strings.Contains(out, "\nFAIL: ") {
		t.Errorf("output does not name the failure:\n%s", out)
	}
	if !strings.Contains(out, "PASS    known answer: KeyPackageRef") {
		t.Errorf("the known answers did not run:\n%s", out)
	}
}

// decodeReport reads a --json report.
func decodeReport(t *testing.T, out string) *mlsverify.Report {
	t.Helper()
	var rep mlsverify.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out)
	}
	if len(rep.Scenarios) != len(mlsverify.Scenarios()) {
		t.Fatalf("%d scenarios in the report, want %d", len(rep.Scenarios), len(mlsverify.Scenarios()))
	}
	return &rep
}

// expectChecks asserts the status of named checks.
func expectChecks(t *testing.T, rep *mlsverify.Report, want map[string]map[string]mlsverify.Status) {
	t.Helper()
	for scenario, checks := range want {
		res, ok := rep.Scenario(scenario)
		if !ok {
			t.Errorf("no scenario %s", scenario)
			continue
		}
		for name, st := range checks {
			c, ok := res.Find(name)
			switch {
			case !ok:
				t.Errorf("%s: no check %q", scenario, name)
			case c.Status != st:
				t.Errorf("%s: %q is %s (%s), want %s", scenario, name, c.Status, c.Detail, st)
			}
		}
	}
}

// burrowChecks are what Burrow must show in every configuration.
var burrowChecks = map[string]map[string]mlsverify.Status{
	mlsverify.ScenarioKeyPackages: {
		"used KeyPackage gone by id": mlsverify.StatusPass, "used KeyPackage gone by author": mlsverify.StatusPass,
		"443 twin of the used KeyPackage gone": mlsverify.StatusPass, "re-publication of the used KeyPackage refused": mlsverify.StatusPass,
		"re-publication of its 443 twin refused": mlsverify.StatusPass,
	},
	mlsverify.ScenarioInvite: {
		"every message reached every member": mlsverify.StatusPass, "gift wraps served only to their recipient": mlsverify.StatusPass,
		"every Welcome travelled by gift wrap": mlsverify.StatusPass,
	},
	mlsverify.ScenarioConcurrent: {
		"exactly one Commit granted": mlsverify.StatusPass, "the others told the holder at once": mlsverify.StatusPass,
		"no rewind": mlsverify.StatusPass, "the unprocessable holder released": mlsverify.StatusPass,
	},
	mlsverify.ScenarioRemove:  {"m1 cannot decrypt after leaving": mlsverify.StatusPass, "m2 cannot decrypt after leaving": mlsverify.StatusPass},
	mlsverify.ScenarioHistory: {"nothing missed": mlsverify.StatusPass, "read in seq order": mlsverify.StatusPass, "NIP-77 reconciliation": mlsverify.StatusPass},
	mlsverify.ScenarioFaults:  {"converged through disconnects": mlsverify.StatusPass, "converged through duplicate deliveries": mlsverify.StatusPass},
}

func expectAllPassed(t *testing.T, rep *mlsverify.Report) {
	t.Helper()
	if !rep.Passed {
		for _, s := range rep.Scenarios {
			if s.Status == mlsverify.StatusFail {
				t.Errorf("%s failed: %v %+v", s.Scenario, s.Failed(), s.Checks)
			}
		}
	}
	for _, s := range rep.Scenarios {
		if s.Status != mlsverify.StatusPass {
			t.Errorf("%s: %s", s.Scenario, s.Status)
		}
	}
}

// TestHarnessAgainstEmbeddedBurrow runs `relay harness` with 20 members
// and every scenario against the Burrow it starts itself (embedded SQLite),
// which it also restarts in relay-faults.
func TestHarnessAgainstEmbeddedBurrow(t *testing.T) {
	t.Parallel()
	code, out, stderr := runCommand(t, "harness", "--members", harnessMembers, "--seed", "1", "--timeout", harnessTimeout, "--json")
	rep := decodeReport(t, out)
	if code != 0 {
		t.Errorf("exit %d\n%s", code, lastLines(stderr, 20))
	}
	expectAllPassed(t, rep)
	expectChecks(t, rep, burrowChecks)
	expectChecks(t, rep, map[string]map[string]mlsverify.Status{
		mlsverify.ScenarioFaults: {"converged through a relay restart": mlsverify.StatusPass},
	})
	if !slices.Contains(rep.Relays[0].Extensions, "since_seq/1") || !slices.Contains(rep.Relays[0].Extensions, "commit_slots/1") {
		t.Errorf("extensions %v", rep.Relays[0].Extensions)
	}
	if !strings.Contains(stderr, "[invite-and-chat] members joined") {
		t.Errorf("no progress lines on stderr:\n%s", lastLines(stderr, 10))
	}
}

// TestHarnessAgainstBurrowCluster runs the harness with 20 members and
// every scenario against two Burrow instances sharing PostgreSQL and
// Redis, members spread over both; relay-faults restarts one instance.
func TestHarnessAgainstBurrowCluster(t *testing.T) {
	t.Parallel()
	db, rd := testsvc.Postgres(t).URL, testsvc.Redis(t)
	var mu sync.Mutex
	var relays [2]*runningRelay
	var cfgs [2]config
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	for i := range relays {
		c, err := parseServeConfig([]string{"--listen", "127.0.0.1:0", "--database-url", db, "--redis-url", rd}, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r, err := startRelay(ctx, c, logger)
		if err != nil {
			t.Fatal(err)
		}
		c.Listen = r.Addr
		relays[i], cfgs[i] = r, c
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range relays {
			if r != nil {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_ = r.Close(sctx)
				cancel()
			}
		}
	})
	restart := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := relays[0].Close(sctx)
		relays[0] = nil
		if err != nil {
			return err
		}
		relays[0], err = startRelay(ctx, cfgs[0], logger)
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := mlsverify.Run(rctx, mlsverify.Config{Relays: []string{"ws://" + cfgs[0].Listen, "ws://" + cfgs[1].Listen},
		Members: 20, Seed: 2, Timeout: 30 * time.Second, Restart: restart, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != len(mlsverify.Scenarios()) {
		t.Fatalf("%d scenarios", len(rep.Scenarios))
	}
	expectAllPassed(t, rep)
	expectChecks(t, rep, burrowChecks)
	expectChecks(t, rep, map[string]map[string]mlsverify.Status{
		mlsverify.ScenarioFaults: {"converged through a relay restart": mlsverify.StatusPass},
	})
	if len(rep.Relays) != 2 {
		t.Errorf("%d relays probed, want 2", len(rep.Relays))
	}
	if t.Failed() {
		t.Log(lastLines(progress.String(), 30))
	}
}

// TestHarnessAgainstKhatruBaseline runs the harness with 20 members and
// every scenario against stock khatru: it must fail, and exactly where a
// generic relay differs from Burrow: the used KeyPackage's twin is still
// served and a deleted KeyPackage can be published again, gift wraps are
// served to anyone, nothing is sequenced, and concurrent Commits fork the
// group (every one accepted) until the members' convergence rule repairs it.
func TestHarnessAgainstKhatruBaseline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := filepath.Abs(filepath.Join("..", "..", "baseline"))
	if err != nil {
		t.Fatal(err)
	}
	url, stop, err := bench.StartBaseline(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	code, out, stderr := runCommand(t, "harness", "--relay", url, "--members", harnessMembers, "--seed", "3", "--timeout", harnessTimeout, "--json")
	if code != 1 {
		t.Errorf("exit %d, want 1 (keypackage-lifecycle fails on stock khatru)\n%s", code, lastLines(stderr, 10))
	}
	rep := decodeReport(t, out)
	if ext := rep.Relays[0].Extensions; len(ext) != 0 {
		t.Errorf("khatru advertises %v", ext)
	}
	for _, s := range rep.Scenarios {
		want := mlsverify.StatusPass
		if s.Scenario == mlsverify.ScenarioKeyPackages {
			want = mlsverify.StatusFail
		}
		if s.Status != want {
			t.Errorf("%s: %s (%v), want %s", s.Scenario, s.Status, s.Failed(), want)
		}
	}
	kp, _ := rep.Scenario(mlsverify.ScenarioKeyPackages)
	wantFailed := []string{"443 twin of the used KeyPackage gone", "re-publication of the used KeyPackage refused",
		"re-publication of its 443 twin refused", "still gone after re-publication"}
	if got := kp.Failed(); !slices.Equal(got, wantFailed) {
		t.Errorf("keypackage-lifecycle failed %q, want %q", got, wantFailed)
	}
	expectChecks(t, rep, map[string]map[string]mlsverify.Status{
		mlsverify.ScenarioKeyPackages: {"used KeyPackage gone by id": mlsverify.StatusPass, "used KeyPackage gone by author": mlsverify.StatusPass},
		mlsverify.ScenarioInvite:      {"gift wraps served only to their recipient": mlsverify.StatusWarn, "every message reached every member": mlsverify.StatusPass},
		mlsverify.ScenarioConcurrent: {"one Commit per epoch": mlsverify.StatusWarn, "every member converged": mlsverify.StatusPass,
			"the unprocessable holder released": mlsverify.StatusSkip},
		mlsverify.ScenarioHistory: {"nothing missed": mlsverify.StatusPass, "read in seq order": mlsverify.StatusSkip, "NIP-77 reconciliation": mlsverify.StatusSkip},
		mlsverify.ScenarioFaults:  {"converged through a relay restart": mlsverify.StatusSkip, "converged through disconnects": mlsverify.StatusPass},
	})
	conc, _ := rep.Scenario(mlsverify.ScenarioConcurrent)
	if conc.Metrics["commits_accepted"] != conc.Metrics["racing_commits"] || conc.Metrics["racing_commits"] < 2 {
		t.Errorf("khatru accepted %v of %v racing Commits; a relay without slots accepts all", conc.Metrics["commits_accepted"], conc.Metrics["racing_commits"])
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestHarnessAndSelftestFlags: --help lists every flag with its own
// environment twin, bad values are usage errors (exit 2), and a variable
// stands in for a flag not given.
func TestHarnessAndSelftestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"harness", "--help"}, []string{"--relay  (env RELAY_HARNESS_RELAY)", "--members  (env RELAY_HARNESS_MEMBERS)", "--seed  (env RELAY_HARNESS_SEED)",
			"--scenario  (env RELAY_HARNESS_SCENARIO)", "--json  (env RELAY_HARNESS_JSON)", "--conns  (env RELAY_HARNESS_CONNS)", "--timeout  (env RELAY_HARNESS_TIMEOUT)", "keypackage-lifecycle"}},
		{[]string{"selftest", "--help"}, []string{"--relay  (env RELAY_SELFTEST_RELAY)", "--vectors  (env RELAY_SELFTEST_VECTORS)", "--timeout  (env RELAY_SELFTEST_TIMEOUT)"}},
	} {
		code, out, _ := runCommand(t, c.args...)
		if code != 0 {
			t.Errorf("%v: exit %d", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: no %q in\n%s", c.args, w, out)
			}
		}
	}
	for _, args := range [][]string{
		{"harness", "--members", "two"},
		{"harness", "--seed", "-1"},
		{"harness", "--members", "2", "--relay", "ws://127.0.0.1:1"},
		{"harness", "--scenario", "nonsense", "--relay", "ws://127.0.0.1:1"},
		{"harness", "--relay", "http://127.0.0.1:1"},
		{"selftest", "--timeout", "soon"},
	} {
		if code, _, stderr := runCommand(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"harness", "--relay", "ws://127.0.0.1:1"}, env(map[string]string{"RELAY_HARNESS_MEMBERS": "1"}), &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "at least 3 members, got 1") {
		t.Errorf("RELAY_HARNESS_MEMBERS=1: exit %d, %s", code, errb.String())
	}
}
