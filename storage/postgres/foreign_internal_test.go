package postgres

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/burrow-relay/burrow/internal/testsvc"
)

// TestForeignTables: burrowTables is exactly what the migrations create,
// so a fresh store has no foreign table; a table someone else made is
// named in a warning when the store opens.
func TestForeignTables(t *testing.T) {
	ctx := context.Background()
	url := testsvc.Postgres(t).URL
	var logged bytes.Buffer
	s, err := Open(ctx, Config{URL: url, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if strings.Contains(logged.String(), "not Burrow's") {
		t.Errorf("a fresh store warned of foreign tables:\n%s", logged.String())
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	var made []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		made = append(made, n)
	}
	if want := slices.Sorted(slices.Values(burrowTables)); !slices.Equal(made, want) {
		t.Fatalf("the migrations create %v; burrowTables lists %v", made, want)
	}

	if _, err := pool.Exec(ctx, `CREATE TABLE shop_orders (id int)`); err != nil {
		t.Fatal(err)
	}
	logged.Reset()
	s, err = Open(ctx, Config{URL: url, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if log := logged.String(); !strings.Contains(log, "not Burrow's") || !strings.Contains(log, "tables=shop_orders") {
		t.Errorf("no warning naming shop_orders:\n%s", log)
	}
}
