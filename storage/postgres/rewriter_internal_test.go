package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/internal/testsvc"
	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// idleRewriter is a rewriter whose rounds the test runs itself.
func idleRewriter(pool *pgxpool.Pool) *rewriter {
	return &rewriter{pool: pool, log: discardLogger(), within: time.Hour, lockWait: 25 * time.Millisecond,
		backoff: make(map[int16]retry), cycle: 100 * time.Millisecond}
}

// kpFixture is a store (whose own rewriter waits an hour) and a pool on
// its database.
type kpFixture struct {
	pg   testsvc.PG
	s    *Store
	pool *pgxpool.Pool
}

func newKPFixture(t testing.TB) kpFixture {
	t.Helper()
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pg.URL, KeyPackageRewriteWithin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	pool, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return kpFixture{pg, s, pool}
}

// saveSecret saves a kind 443 whose content starts with marker and returns
// it with its partition.
func (f kpFixture) saveSecret(t *testing.T, marker string) (*nostr.Event, int16) {
	t.Helper()
	ctx := context.Background()
	pad := make([]byte, 3000) // past the TOAST threshold
	_, _ = rand.Read(pad)
	ev := storetest.NewAuthor(t).Event(t, 443, nostr.Now()-10, nil, marker+base64.StdEncoding.EncodeToString(pad))
	ref := make([]byte, 32)
	_, _ = rand.Read(ref)
	if _, err := f.s.SaveKeyPackage(ctx, ev, storage.KeyPackage{Ref: hex.EncodeToString(ref), NotAfter: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var part int16
	if err := f.pool.QueryRow(ctx, `SELECT part FROM keypackages WHERE id = decode($1, 'hex')`, ev.ID).Scan(&part); err != nil {
		t.Fatal(err)
	}
	return ev, part
}

func (f kpFixture) debts(t *testing.T, part int16) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM keypackage_scrub WHERE part = $1`, part).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f kpFixture) filenode(t *testing.T, part int16) uint32 {
	t.Helper()
	var node uint32
	if err := f.pool.QueryRow(context.Background(), `SELECT pg_relation_filenode($1::regclass)`,
		"keypackage_content_"+itoa(part)).Scan(&node); err != nil {
		t.Fatal(err)
	}
	return node
}

func itoa(part int16) string { return strconv.Itoa(int(part)) }

// inPartitionFiles reports whether marker is in the heap or TOAST files of
// the partition (after a CHECKPOINT), and false, false when the server's
// files cannot be read.
func (f kpFixture) inPartitionFiles(t *testing.T, part int16, marker string) (found, readable bool) {
	t.Helper()
	if f.pg.DataDir == "" {
		return false, false
	}
	ctx := context.Background()
	if _, err := f.pool.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	rows, _ := f.pool.Query(ctx, `SELECT pg_relation_filepath(c.oid) FROM pg_class c
		WHERE c.oid = $1::regclass OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = $1::regclass)`,
		"keypackage_content_"+itoa(part))
	paths, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(f.pg.DataDir, p))
		if err != nil {
			return false, false
		}
		if bytes.Contains(b, []byte(marker)) {
			return true, true
		}
	}
	return false, true
}

func xmaxNow(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var x string
	if err := pool.QueryRow(context.Background(), `SELECT pg_snapshot_xmax(pg_current_snapshot())::text`).Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

// rewriteNow runs one rewrite of part on a connection of the pool.
func rewriteNow(t *testing.T, r *rewriter, part int16) {
	t.Helper()
	ctx := context.Background()
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET lock_timeout = '7s'"); err != nil { // as a pool's runtime parameter would
		t.Fatal(err)
	}
	r.rewrite(ctx, conn, part, xmaxNow(t, r.pool))
	var lt string
	if err := conn.QueryRow(ctx, "SHOW lock_timeout").Scan(&lt); err != nil {
		t.Fatal(err)
	}
	if lt != "7s" {
		t.Errorf("after a rewrite the connection's lock_timeout is %s, want its 7s back", lt)
	}
}

// BenchmarkKeyPackagePartitionRewrite measures the rewrite of one content
// partition holding as many KeyPackages (about 2 kB of incompressible
// content each) as one of the 256 holds when 250,000 are
// stored: the longest an operation on that partition waits on a rewrite,
// besides the rewrite's own lock wait.
//
//	go test ./storage/postgres -run '^$' -bench KeyPackagePartitionRewrite -benchtime 20x
func BenchmarkKeyPackagePartitionRewrite(b *testing.B) {
	pg := testsvc.Postgres(b)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	const rows = 250_000 / 256
	// Authors of partition 7: random keys, kept when they hash there.
	if _, err := pool.Exec(ctx, `
		WITH r (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref) AS (
		SELECT sha256(pk), pk, 1700000000, 30443, '\x00'::bytea,
		       convert_to((SELECT string_agg(encode(sha512(pk || int4send(j)), 'base64'), '') FROM generate_series(1, 22) AS j), 'UTF8'),
		       sha512(pk), '\x00'::bytea, NULL::bigint, sha256(sha256(pk))
		  FROM (SELECT sha256(int8send(i) || uuid_send(gen_random_uuid())) AS pk FROM generate_series(1, 256 * $1 * 2) AS i) c
		 WHERE burrow_kp_part(pk) = 7 LIMIT $1),
		     c AS (INSERT INTO keypackage_content (part, id, content) SELECT burrow_kp_part(r.pubkey), r.id, r.content FROM r)
		INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref, part)
		SELECT id, pubkey, created_at, kind, tags, '\x'::bytea, sig, slot_d, expires_at, kp_ref, burrow_kp_part(pubkey) FROM r`, rows); err != nil {
		b.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM keypackage_content_7`).Scan(&n); err != nil || n != rows {
		b.Fatalf("partition 7 holds %d KeyPackages (%v), want %d", n, err, rows)
	}
	r := idleRewriter(pool)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	for b.Loop() {
		r.rewrite(ctx, conn, 7, "0")
	}
	if st := r.snapshot(); st.rewrites != b.N {
		b.Fatalf("%d rewrites of %d: %s", st.rewrites, b.N, st)
	}
	b.ReportMetric(float64(n), "keypackages")
}

// TestRewriterRunsPendingRewriteOnClose checks that a deletion just before
// Close still gets its rewrite: the partition gets new files and its debt
// is paid.
func TestRewriterRunsPendingRewriteOnClose(t *testing.T) {
	f := newKPFixture(t)
	ctx := context.Background()
	ev, part := f.saveSecret(t, "BURROW-KP-CLOSE-")
	before := f.filenode(t, part)
	if _, err := f.s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	if n := f.debts(t, part); n != 1 {
		t.Fatalf("partition %d owes %d rewrites after the deletion, want 1", part, n)
	}
	if err := f.s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := f.filenode(t, part); after == before {
		t.Errorf("partition %d still in file node %d after Close with a rewrite owed", part, before)
	}
	if n := f.debts(t, part); n != 0 {
		t.Errorf("partition %d still owes %d rewrites after Close", part, n)
	}
}

// TestRewriteKeepsDebtsAnOlderSnapshotSees deletes a KeyPackage while
// another session holds a snapshot that still sees it: VACUUM FULL then
// copies the deleted row into the new files, so the rewrite must leave the
// debt owed (and its bytes are indeed still there); once the snapshot is
// gone, the next rewrite removes them and pays the debt.
func TestRewriteKeepsDebtsAnOlderSnapshotSees(t *testing.T) {
	f := newKPFixture(t)
	ctx := context.Background()
	const marker = "BURROW-KP-OLD-SNAPSHOT-"
	ev, part := f.saveSecret(t, marker)

	old, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Rollback(ctx)
	if _, err := old.Exec(ctx, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(ctx, "SELECT 1"); err != nil { // takes the snapshot
		t.Fatal(err)
	}
	if _, err := f.s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}

	r := idleRewriter(f.pool)
	rewriteNow(t, r, part)
	if n := f.debts(t, part); n != 1 {
		t.Fatalf("with an older snapshot open, the rewrite left %d debts, want the deletion's 1", n)
	}
	if st := r.snapshot(); st.rewrites != 1 || st.heldBack != 1 {
		t.Errorf("stats after the held-back rewrite: %s; want 1 rewrite, 1 held back", st)
	}
	if found, ok := f.inPartitionFiles(t, part, marker); ok && !found {
		t.Errorf("the deleted content is not in the partition's files although a snapshot kept it: the check below proves nothing")
	}

	if err := old.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rewriteNow(t, r, part)
	if n := f.debts(t, part); n != 0 {
		t.Errorf("after the old snapshot ended, the rewrite left %d debts, want 0", n)
	}
	if found, _ := f.inPartitionFiles(t, part, marker); found {
		t.Errorf("the deleted content is still in partition %d's files after the debt was paid", part)
	}
}

// TestRewriteGivesUpWaitingForItsLock holds a lock on a partition: the
// rewrite gives up after lockWait instead of queueing the partition's
// operations behind it, leaves the debt owed and the connection's
// lock_timeout as it was; once the lock is gone it pays.
func TestRewriteGivesUpWaitingForItsLock(t *testing.T) {
	f := newKPFixture(t)
	ctx := context.Background()
	ev, part := f.saveSecret(t, "BURROW-KP-LOCKED-")
	if _, err := f.s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	reader, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Rollback(ctx)
	if _, err := reader.Exec(ctx, "SELECT count(*) FROM keypackage_content_"+itoa(part)); err != nil {
		t.Fatal(err)
	}

	r := idleRewriter(f.pool)
	before := f.filenode(t, part)
	rewriteNow(t, r, part)
	if st := r.snapshot(); st.lockWaits != 1 || st.rewrites != 0 {
		t.Errorf("stats while the partition is locked: %s; want 1 lock wait given up, no rewrite", st)
	}
	if n := f.debts(t, part); n != 1 || f.filenode(t, part) != before {
		t.Errorf("partition %d owes %d debts and was rewritten=%v while locked, want 1 and false", part, n, f.filenode(t, part) != before)
	}
	if b := r.backoff[part]; b.tries != 1 || !b.at.After(time.Now()) {
		t.Errorf("backoff after the lock wait: %+v; want one try, retry later", b)
	}

	if err := reader.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rewriteNow(t, r, part)
	if n := f.debts(t, part); n != 0 || f.filenode(t, part) == before {
		t.Errorf("after the lock went: %d debts, rewritten=%v; want 0 and true", n, f.filenode(t, part) != before)
	}
	if _, ok := r.backoff[part]; ok {
		t.Errorf("partition %d still backed off after a rewrite that paid", part)
	}
}

// TestRewriteRoundsTakeTurnsAcrossInstances checks that a round leaves the
// partitions alone while another instance holds the rewrite lock, and pays
// every owed debt otherwise, including one no store was told about (a
// deletion by an instance that stopped before paying).
func TestRewriteRoundsTakeTurnsAcrossInstances(t *testing.T) {
	f := newKPFixture(t)
	ctx := context.Background()
	ev, part := f.saveSecret(t, "BURROW-KP-OTHER-")
	// Deleted in SQL: no store is kicked.
	if _, err := f.pool.Exec(ctx, `DELETE FROM keypackages WHERE id = decode($1, 'hex')`, ev.ID); err != nil {
		t.Fatal(err)
	}
	if n := f.debts(t, part); n != 1 {
		t.Fatalf("deleting in SQL left %d debts, want 1: the trigger records them", n)
	}
	other, err := f.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Release()
	if _, err := other.Exec(ctx, `SELECT pg_advisory_lock($1, 0)`, lockClassScrub); err != nil {
		t.Fatal(err)
	}
	r := idleRewriter(f.pool)
	r.round(true)
	if st := r.snapshot(); st.rewrites != 0 || f.debts(t, part) != 1 {
		t.Errorf("a round while another instance holds the rewrite lock: %s, %d debts; want no rewrite, 1 debt", st, f.debts(t, part))
	}
	if _, err := other.Exec(ctx, `SELECT pg_advisory_unlock($1, 0)`, lockClassScrub); err != nil {
		t.Fatal(err)
	}
	r.round(true)
	if st := r.snapshot(); st.rewrites != 1 || f.debts(t, part) != 0 {
		t.Errorf("a round with the lock free: %s, %d debts; want 1 rewrite, 0 debts", st, f.debts(t, part))
	}
}

// TestRewriteWaitsForDueDebts checks a round's schedule: a debt is paid
// once it is within/2 old, not before; meanwhile the round says how long
// until it is due.
func TestRewriteWaitsForDueDebts(t *testing.T) {
	f := newKPFixture(t)
	ctx := context.Background()
	ev, part := f.saveSecret(t, "BURROW-KP-DUE-")
	if _, err := f.s.Delete(ctx, []string{ev.ID}, storage.ReasonAdmin); err != nil {
		t.Fatal(err)
	}
	r := idleRewriter(f.pool)
	r.within = time.Hour
	if wait := r.round(false); wait <= 0 || wait > r.within/4 || f.debts(t, part) != 1 {
		t.Errorf("round on a fresh debt: wait %v, %d debts; want a wait up to within/4 and the debt owed", wait, f.debts(t, part))
	}
	if _, err := f.pool.Exec(ctx, `UPDATE keypackage_scrub SET deleted_at = deleted_at - interval '31 minutes'`); err != nil {
		t.Fatal(err)
	}
	r.round(false)
	if n := f.debts(t, part); n != 0 {
		t.Errorf("a debt past within/2 is still owed after a round (%d)", n)
	}
}

// TestKeyPackageInsertWritesContentOnlyWithItsRow: burrow_kp_insert, the
// only way into the KeyPackage tables, writes a content row only when it
// wrote the keypackages row, so an insert that loses its id to another
// writer leaves no content behind (nothing a rewrite would have to find).
func TestKeyPackageInsertWritesContentOnlyWithItsRow(t *testing.T) {
	f := newKPFixture(t)
	ctx := context.Background()
	insert := `SELECT burrow_kp_insert('\x0102', '\x0a0b', 1, 443, '\x00', $1, '\x00', NULL, NULL, NULL, '{}', '{}')`
	for i, want := range []bool{true, false} {
		var stored bool
		if err := f.pool.QueryRow(ctx, insert, []byte(fmt.Sprint("content ", i))).Scan(&stored); err != nil || stored != want {
			t.Fatalf("insert %d: stored %v (%v), want %v", i, stored, err, want)
		}
	}
	var n int
	var content []byte
	if err := f.pool.QueryRow(ctx, `SELECT count(*), (array_agg(content))[1] FROM keypackage_content WHERE id = '\x0102'`).Scan(&n, &content); err != nil || n != 1 || string(content) != "content 0" {
		t.Errorf("content rows for the id: %d, %q (%v); want 1, the first insert's", n, content, err)
	}
}
