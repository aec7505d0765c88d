package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const operationsGuide = "../../docs/operations.md"

func readRepoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricName is what the relay's metric names look like.
var metricName = regexp.MustCompile(`^burrow_[a-z0-9_]*[a-z0-9]$`)

// registeredMetricNames finds every metric name in the module's Go code
// (tests, the baseline module and node_modules aside): each string
// literal shaped like a metric name, except map keys (the NIP-11
// document's burrow_limits and burrow_extensions).
func registeredMetricNames(t *testing.T) []string {
	t.Helper()
	root := "../.."
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "baseline":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		keys := map[ast.Expr]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.IndexExpr:
				keys[n.Index] = true
			case *ast.BasicLit:
				if n.Kind != token.STRING || keys[n] {
					return true
				}
				if v, err := strconv.Unquote(n.Value); err == nil && metricName.MatchString(v) {
					seen[v] = true
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// TestOperationsGuideListsEveryMetric: every metric the code registers is
// in docs/operations.md's reference, so the reference cannot drift, and
// so is every burrow_ family a running relay exports.
func TestOperationsGuideListsEveryMetric(t *testing.T) {
	guide := readRepoFile(t, operationsGuide)
	names := registeredMetricNames(t)
	for _, must := range []string{"burrow_connections_open", "burrow_bus_dropped_total", "burrow_group_gap_fills_total", "burrow_redis_up"} {
		if !slices.Contains(names, must) {
			t.Fatalf("the scan missed %s (found %v)", must, names)
		}
	}
	for _, n := range names {
		if !strings.Contains(guide, "| `"+n+"` |") {
			t.Errorf("metric %s is not in docs/operations.md's metrics reference", n)
		}
	}
	r := startConfigured(t)
	_, body := getStatus(t, "http://"+r.Addr+"/metrics")
	family := regexp.MustCompile(`(?m)^# TYPE (burrow_[a-z0-9_]+) `)
	for _, m := range family.FindAllStringSubmatch(body, -1) {
		if !strings.Contains(guide, "| `"+m[1]+"` |") {
			t.Errorf("exported family %s is not in docs/operations.md", m[1])
		}
	}
}

// TestAlertRulesNameOnlyRealMetrics: deploy/alerts.yml names only metrics
// the relay registers (histograms by their series), up, the process
// collector's and node_exporter's.
func TestAlertRulesNameOnlyRealMetrics(t *testing.T) {
	rules := readRepoFile(t, "../../deploy/alerts.yml")
	known := registeredMetricNames(t)
	used := regexp.MustCompile(`burrow_[a-z0-9_]*[a-z0-9]`).FindAllString(rules, -1)
	if len(used) < 10 {
		t.Fatalf("alerts.yml names only %d burrow metrics", len(used))
	}
	for _, n := range used {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && slices.Contains(known, b) {
				base = b
			}
		}
		if !slices.Contains(known, base) {
			t.Errorf("alerts.yml names %s, which the relay does not export", n)
		}
	}
	for _, must := range []string{"burrow_events_rejected_total", "burrow_outbound_queue_overflows_total", "burrow_bus_queued_bytes",
		"burrow_bus_dropped_total", "burrow_redis_up", "burrow_keypackage_scrub_oldest_seconds", "node_filesystem_avail_bytes"} {
		if !strings.Contains(rules, must) {
			t.Errorf("alerts.yml has no rule on %s", must)
		}
	}
}

// TestSystemdUnit: deploy/burrow.service exists with the directives the
// guide promises, and systemd-analyze verify (where installed) finds
// nothing wrong with it.
func TestSystemdUnit(t *testing.T) {
	unit := readRepoFile(t, "../../deploy/burrow.service")
	for _, d := range []string{"User=burrow", "StateDirectory=burrow", "LimitNOFILE=", "Restart=on-failure",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=\n", "Environment=RELAY_DATA_DIR=/var/lib/burrow",
		"ExecStart=/usr/local/bin/relay serve", "TimeoutStopSec=", "WantedBy=multi-user.target"} {
		if !strings.Contains(unit, d) {
			t.Errorf("deploy/burrow.service lacks %q", strings.TrimSpace(d))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: the unit is not verified")
		return
	}
	// verify wants the binary to exist; any executable will do.
	unit = strings.Replace(unit, "ExecStart=/usr/local/bin/relay serve", "ExecStart=/bin/true serve", 1)
	path := filepath.Join(t.TempDir(), "burrow.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestOperationsGuideBackupCommands: the PostgreSQL backup the guide
// documents is the one relay backup prints and the tests run.
func TestOperationsGuideBackupCommands(t *testing.T) {
	guide := readRepoFile(t, operationsGuide)
	for _, want := range []string{pgDumpCommand(), pgBuryLiveRefs, "relay backup --data-dir"} {
		if !strings.Contains(guide, want) {
			t.Errorf("docs/operations.md lacks %q", want)
		}
	}
	readme := readRepoFile(t, "../../README.md")
	if !strings.Contains(readme, "docs/operations.md") {
		t.Error("README.md does not link docs/operations.md")
	}
}

// TestStoreCommitMetrics: on both backends, a stored event shows on
// /metrics as a group commit that took some time, from the store's
// Config.OnCommit through the serve command's wiring. (The store tests
// check the sizes reported; here the start-up sweep of expired events may
// commit too, so only a rise is certain.)
func TestStoreCommitMetrics(t *testing.T) {
	for _, b := range liveBackends {
		t.Run(b, func(t *testing.T) {
			r := startLive(t, b)
			commits := func() (n, writes, seconds float64) {
				m := httpGet(t, r.http+"/metrics")
				return metricValue(t, m, "burrow_store_commit_writes_count"), metricValue(t, m, "burrow_store_commit_writes_sum"),
					metricValue(t, m, "burrow_store_commit_seconds_sum")
			}
			n0, w0, s0 := commits()
			r.mustPublish(t, newAuthor(t).sign(t, 1, "counted", nil, 0))
			n1, w1, s1 := commits()
			if n1 <= n0 || w1 <= w0 || s1 <= s0 {
				t.Errorf("after one event: %v commits of %v writes taking %vs more; want at least its own, taking some time",
					n1-n0, w1-w0, s1-s0)
			}
		})
	}
}

// metricValue is the value of the unlabelled series name in a /metrics
// body, failing t when it is absent.
func metricValue(t *testing.T, body, name string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s:\n%s", name, grepLines(body, "burrow_store"))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatalf("%s = %q: %v", name, m[1], err)
	}
	return v
}
