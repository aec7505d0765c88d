package sqlite

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/storage/storetest"
)

// explain returns SQLite's plan for q, one line per step.
func explain(t *testing.T, s *Store, q string, args ...any) []string {
	t.Helper()
	rows, err := s.readDB.Query(`EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN %s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan
}

// fullScans returns the steps of plan that read a table or index in full:
// SCAN steps, except of a constant row.
func fullScans(plan []string) []string {
	var out []string
	for _, step := range plan {
		if strings.HasPrefix(step, "SCAN ") && !strings.HasPrefix(step, "SCAN CONSTANT ROW") {
			out = append(out, step)
		}
	}
	return out
}

// TestEveryFilterRunsOnAnIndex: for every filter shape the relay accepts,
// Query's and Count's statements read events through an index, never by
// scanning the table. The one exception is counting a filter with no
// condition at all: the answer is the number of rows, which takes reading
// them (a COUNT is bounded in time by the relay); a query of that shape
// walks the created_at index newest first and stops at its limit.
func TestEveryFilterRunsOnAnIndex(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	now := time.Now()
	for name, f := range storetest.FilterShapes() {
		t.Run(name, func(t *testing.T) {
			for _, mode := range []readMode{readEvents, readCount, readKeys} {
				g := f
				if mode != readCount {
					g = storetest.Clamped(f)
				}
				q, args, ok := selectSQL(g, now, mode)
				if !ok {
					t.Fatalf("selectSQL(%v) matches nothing", f)
				}
				plan := explain(t, s, q, args...)
				scans := fullScans(plan)
				unconditioned := storetest.Unconditioned(f)
				switch {
				case unconditioned && mode != readCount:
					// Along the created_at index (newest or oldest first), up
					// to the limit.
					if !slices.Equal(scans, []string{"SCAN e USING INDEX events_created_at"}) {
						t.Errorf("mode %d %v: plan %q, want the created_at index walked in order", mode, f, plan)
					}
				case unconditioned:
					if !slices.Equal(scans, []string{"SCAN e"}) {
						t.Errorf("count %v: plan %q", f, plan)
					}
				case len(scans) > 0:
					t.Errorf("mode %d %v: plan %q scans %q", mode, f, plan, scans)
				}
			}
		})
	}
}

// params counts the parameters of q: the highest ?N, or the number of
// bare ? marks. (None of the package's statements has a ? in a string.)
func params(q string) int {
	n, bare := 0, 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			continue
		}
		j := i + 1
		for j < len(q) && '0' <= q[j] && q[j] <= '9' {
			j++
		}
		if j == i+1 {
			bare++
			continue
		}
		k, _ := strconv.Atoi(q[i+1 : j])
		n = max(n, k)
	}
	return max(n, bare)
}

// fragments are SQL string literals of this package that are only parts of
// a statement, completed at run time (the statements they make are checked
// by TestEveryFilterRunsOnAnIndex and TestInternalStatementsUseIndexes via
// statementSQL).
var fragments = []string{
	"SELECT COUNT(*) FROM events e WHERE ",
	"SELECT e.id, e.pubkey, e.created_at, e.kind, e.tags, e.content, e.sig FROM events e WHERE ",
	"SELECT e.created_at, e.id FROM events e WHERE ",
	"INSERT OR IGNORE INTO tags (name, value, event) VALUES ",
}

// wholeReads are the statements that read a whole table on purpose: their
// answer is the whole table.
var wholeReads = map[string]bool{
	"SELECT pubkey FROM bans ORDER BY pubkey": true, // BannedPubKeys lists every ban

	// AdminState lists every record it keeps.
	"SELECT id, reason, banned_at FROM admin_event_bans ORDER BY id":          true,
	"SELECT pubkey, reason, banned_at FROM admin_pubkey_bans ORDER BY pubkey": true,
	"SELECT addr, reason, blocked_at FROM admin_blocked_ips":                  true,
	"SELECT name, value FROM admin_settings":                                  true,

	// Backup strips and counts its own scratch copy, once per backup.
	"DELETE FROM tags WHERE event IN (SELECT n FROM events WHERE kind IN (443, 30443))": true,
	"SELECT COUNT(*) FROM events": true,
}

// TestExercise runs the workload the PostgreSQL backend's plan test
// watches, so that it stays valid on both backends.
func TestExercise(t *testing.T) {
	storetest.Exercise(t, openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")}))
}

// TestInternalStatementsUseIndexes: every statement the package runs
// (migrations aside, which run once) besides filter queries (the writer's prepared statements, group log and
// slot reads, KeyPackage and hand-out claim queries, retention) reads
// through an index. It finds the statements by reading the package's
// source, so a statement added later is checked too.
func TestInternalStatementsUseIndexes(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var stmts []string
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			v = strings.TrimSpace(v)
			for _, verb := range []string{"SELECT ", "SELECT\n", "INSERT ", "UPDATE ", "DELETE ", "WITH "} {
				if strings.HasPrefix(v, verb) && !slices.ContainsFunc(fragments, func(f string) bool { return strings.TrimSpace(f) == v }) {
					stmts = append(stmts, v)
				}
			}
			return true
		})
	}
	t.Logf("checked %d statements", len(stmts))
	if len(stmts) < 40 {
		t.Fatalf("found %d statements in the package source; the search is broken", len(stmts))
	}
	for _, q := range stmts {
		scans := fullScans(explain(t, s, q, make([]any, params(q))...))
		if len(scans) > 0 && !wholeReads[q] {
			t.Errorf("statement scans %q:\n%s", scans, q)
		}
	}
	for q := range wholeReads {
		if !slices.Contains(stmts, q) {
			t.Errorf("wholeReads names a statement the package no longer runs: %s", q)
		}
	}
}
