package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// planNode is one node of an EXPLAIN (FORMAT JSON) plan.
type planNode struct {
	NodeType  string     `json:"Node Type"`
	Relation  string     `json:"Relation Name"`
	Index     string     `json:"Index Name"`
	IndexCond string     `json:"Index Cond"`
	Plans     []planNode `json:"Plans"`
}

// explained is one statement's plan as auto_explain reports it.
type explained struct {
	Query string   `json:"Query Text"`
	Plan  planNode `json:"Plan"`
}

// planWatcher collects the plan of every statement the store runs, nested
// statements of its SQL functions included, through auto_explain at
// NOTICE level, with sequential scans disabled: a plan that still reads a
// table in full (a Seq Scan, or an index scan without an index condition)
// has no index that can serve it.
type planWatcher struct {
	mu    sync.Mutex
	plans []explained
	bad   []string // notices that did not parse
}

func (w *planWatcher) hook(cfg *pgxpool.Config) {
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		_, body, ok := strings.Cut(n.Message, "plan:\n")
		if !ok {
			return
		}
		var e explained
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			w.bad = append(w.bad, n.Message)
			return
		}
		w.plans = append(w.plans, e)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_format = json;
SET auto_explain.log_level = notice;
SET enable_seqscan = off`)
		return err
	}
}

func (w *planWatcher) take() []explained {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.plans
	w.plans = nil
	return out
}

// fullReads lists the nodes of n that read a relation in full. A walk of
// a created_at index without a condition under a Limit is not one: it
// stops at the limit (the planner picks it when most rows match, as for
// a filter with no condition, or KeyPackage kinds on the KeyPackage
// table).
func fullReads(n planNode, limited bool) []string {
	var out []string
	switch n.NodeType {
	case "Seq Scan":
		out = append(out, "Seq Scan on "+n.Relation)
	case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
		ordered := n.NodeType == "Index Scan" && (n.Index == "events_created" || n.Index == "keypackages_created")
		if n.IndexCond == "" && !(ordered && limited) {
			out = append(out, n.NodeType+" using "+n.Index+" without a condition")
		}
	case "Limit":
		limited = true
	case "Append", "Merge Append", "Subquery Scan", "Result":
		// Pass rows through as they come: a limit above still bounds them.
	default:
		limited = false
	}
	for _, c := range n.Plans {
		out = append(out, fullReads(c, limited)...)
	}
	return out
}

// wholeReads are statements that read a whole relation on purpose, by the
// start of their text: their answer is all of it.
var wholeReads = []string{
	"SELECT pubkey FROM banned_pubkeys ORDER BY pubkey", // BannedPubKeys lists every ban
	// The rewriter reads its debts by partition: the table holds only
	// KeyPackage deletions not yet scrubbed (docs/keypackage-scrub.md).
	"SELECT part, extract(epoch FROM clock_timestamp() - min(deleted_at))",
}

// TestEveryStatementRunsOnAnIndex runs every store operation along every
// path (storetest.Exercise: each filter shape of Query and Count, saves,
// deletions, KeyPackage rules, sequencing, commit slots, sweeps, bans,
// hand-out claims) and checks the plan of each statement PostgreSQL ran for
// them, inside burrow_save and the other functions too: none reads the
// events, event_tags, keypackages, keypackage_tags or any other table in
// full, except where reading every row is the answer (a count with no
// condition counts every row, BannedPubKeys lists every ban). A walk of a
// created_at index up to a query's limit is bounded by the limit (see
// fullReads). The tables are filled first (populateSQL).
func TestEveryStatementRunsOnAnIndex(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	requireAutoExplain(t, pg.URL)
	w := &planWatcher{}
	s, err := Open(ctx, Config{URL: pg.URL, poolHook: w.hook})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, populateSQL); err != nil {
		t.Fatal(err)
	}
	w.take() // the migrations' and the filling's statements

	storetest.Exercise(t, s)
	// Close runs the rewrite the Exercise's KeyPackage deletions asked
	// for, so the rewriter's statements are watched too.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	plans := w.take()
	if len(plans) < 100 {
		t.Fatalf("only %d plans reported; auto_explain is not watching", len(plans))
	}
	for _, p := range plans {
		reads := fullReads(p.Plan, false)
		q := strings.TrimSpace(p.Query)
		switch {
		case len(reads) == 0:
		case slices.ContainsFunc(wholeReads, func(w string) bool { return strings.HasPrefix(q, w) }):
		case unconditioned(q) && strings.HasPrefix(q, "SELECT count(*) FROM "):
			// Counting a filter with no condition counts every row.
		default:
			t.Errorf("%q in\n%s", reads, q)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.bad) > 0 {
		t.Errorf("%d plans did not parse, first: %s", len(w.bad), w.bad[0])
	}
}

// populateSQL fills every table with rows in the proportions of a busy
// relay and gathers statistics, so the planner weighs an index against
// reading a table as it would in production (on empty tables with
// sequential scans disabled it picks odd plans no real table would get).
const populateSQL = `
INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, h, seq)
SELECT sha256(('ev' || i)::bytea), sha256(('pk' || (i % 1000))::bytea), 1700000000 + i,
       CASE i % 10 WHEN 0 THEN 445 WHEN 1 THEN 30023 WHEN 2 THEN 0 ELSE 1 END,
       '\x00'::bytea, 'content'::bytea, sha256(('s' || i)::bytea) || sha256(('S' || i)::bytea),
       CASE i % 10 WHEN 1 THEN ('d' || i)::bytea WHEN 2 THEN ('' || i)::bytea END,
       CASE WHEN i % 7 = 0 THEN 1900000000 + i END,
       CASE WHEN i % 10 = 0 THEN sha256(('h' || (i % 20))::bytea) END,
       CASE WHEN i % 10 = 0 THEN i END
  FROM generate_series(1, 20000) i;
INSERT INTO event_tags (event_id, name, value, kind, created_at)
SELECT e.id, t.name, t.value, e.kind, e.created_at FROM events e,
       LATERAL (VALUES ('p', encode(sha256(e.sig), 'hex')::bytea), ('t', ('t' || (e.created_at % 100))::bytea),
                       ('e', encode(sha256(e.id), 'hex')::bytea)) t(name, value);
WITH r (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref) AS (
SELECT sha256(('kp' || i)::bytea), sha256(('kpk' || (i % 1000))::bytea), 1700000000 + i,
       CASE WHEN i % 2 = 0 THEN 30443 ELSE 443 END,
       '\x0202'::bytea || '\x0169'::bytea || '\x40'::bytea || encode(sha256(('ref' || i)::bytea), 'hex')::bytea
         || '\x0201'::bytea || 'd'::bytea || '\x08'::bytea || lpad(i::text, 8, '0')::bytea,
       'kp content'::bytea, sha256(('ks' || i)::bytea) || sha256(('kS' || i)::bytea),
       CASE WHEN i % 2 = 0 THEN lpad(i::text, 8, '0')::bytea END, 1900000000 + i, sha256(('ref' || i)::bytea)
  FROM generate_series(1, 5000) i),
     c AS (INSERT INTO keypackage_content (part, id, content) SELECT burrow_kp_part(r.pubkey), r.id, r.content FROM r)
INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
SELECT id, pubkey, created_at, kind, tags, '\x'::bytea, sig, slot_d, expires_at, kp_ref, burrow_kp_part(pubkey) FROM r;
INSERT INTO keypackage_tags (id, name, value, created_at)
SELECT DISTINCT k.id, t.name, t.value, k.created_at FROM keypackages k, burrow_index_tags(k.tags) t;
INSERT INTO keypackage_refs (ref) SELECT kp_ref FROM keypackages;
INSERT INTO tombstones (id, reason) SELECT sha256(('tomb' || i)::bytea), 'admin' FROM generate_series(1, 20000) i;
INSERT INTO group_seqs (h, last_seq) SELECT sha256(('h' || i)::bytea), 1000 FROM generate_series(0, 19) i;
INSERT INTO commit_slots (h, slot, holder, holder_seq, taken_at)
SELECT sha256(('h' || (i % 20))::bytea), sha256(('slot' || i)::bytea), sha256(('hold' || i)::bytea), i, 1700000000 + i
  FROM generate_series(1, 500) i;
INSERT INTO commit_slot_losers (id, h, slot, recorded_at)
SELECT sha256(('lose' || i)::bytea), sha256(('h' || (i % 20))::bytea), sha256(('slot' || i)::bytea), 1700000000 + i
  FROM generate_series(1, 500) i;
INSERT INTO released_commits (id, h, slot, released_at, seq, released_by)
SELECT sha256(('hold' || i)::bytea), sha256(('h' || (i % 20))::bytea), sha256(('slot' || i)::bytea), 1700000000 + i, i, sha256(('by' || i)::bytea)
  FROM generate_series(1, 100) i;
INSERT INTO banned_pubkeys (pubkey) SELECT sha256(('ban' || i)::bytea) FROM generate_series(1, 200) i;
INSERT INTO vanished (pubkey, until) SELECT sha256(('gone' || i)::bytea), 1700000000 FROM generate_series(1, 200) i;
INSERT INTO keypackage_claims (ref, event_id, requester, until)
SELECT sha256(('ref' || i)::bytea), sha256(('kp' || i)::bytea), sha256(('req' || i)::bytea), 4000000000000 FROM generate_series(1, 500) i;
ANALYZE;
`

// unconditioned reports whether q is Count's statement for a filter with
// no condition (storetest.Unconditioned): its only WHERE clause is the
// expiry check.
func unconditioned(q string) bool {
	return strings.Contains(q, " WHERE (expires_at IS NULL OR expires_at > $") && !strings.Contains(q, " AND ")
}

// requireAutoExplain checks that the server can load auto_explain, which
// planWatcher needs (a superuser and the contrib module); a server without
// it fails the test when services are required, and skips it otherwise.
func requireAutoExplain(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	probe, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	_, err = probe.Exec(ctx, `LOAD 'auto_explain'`)
	probe.Close(ctx)
	if err != nil {
		msg := fmt.Sprintf("cannot load auto_explain (needs a superuser and the contrib module): %v", err)
		if os.Getenv(testsvc.EnvRequireServices) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}
