package postgres

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/burrow-relay/burrow/internal/testsvc"
)

// BenchmarkKeyPackageRewrite measures one rewrite (VACUUM FULL) of a
// KeyPackage table of 5,000 rows of about 2 kB of incompressible content, the time saves that reach
// the table wait at most.
func BenchmarkKeyPackageRewrite(b *testing.B) {
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
	if _, err := pool.Exec(ctx, `
		INSERT INTO keypackages (id, pubkey, created_at, kind, tags, content, sig, slot_d, expires_at, kp_ref)
		SELECT sha256(int8send(i)), sha256(int8send(i % 500)), 1700000000 + i, 30443, '\x00'::bytea,
		       convert_to((SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 60) AS j), 'UTF8'), sha512(int8send(i)), int8send(i), NULL, sha256(int8send(-i))
		  FROM generate_series(1, 5000) AS i`); err != nil {
		b.Fatal(err)
	}
	r := &rewriter{pool: pool, log: slog.New(slog.NewTextHandler(io.Discard, nil)), within: 10 * time.Second, lockWait: 200 * time.Millisecond}
	for b.Loop() {
		if err := r.rewriteOnce(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRewriterRunsPendingRewriteOnClose checks that a deletion just before
// Close still gets its rewrite (the table gets a new file).
func TestRewriterRunsPendingRewriteOnClose(t *testing.T) {
	pg := testsvc.Postgres(t)
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: pg.URL, KeyPackageRewriteWithin: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var before uint32
	if err := s.pool.QueryRow(ctx, "SELECT pg_relation_filenode('keypackages')").Scan(&before); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s.rewrite.kick <- struct{}{}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var after uint32
	if err := pool.QueryRow(ctx, "SELECT pg_relation_filenode('keypackages')").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Errorf("keypackages still in file node %d after Close with a rewrite pending", before)
	}
}
