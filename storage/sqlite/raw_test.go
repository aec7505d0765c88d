package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"path/filepath"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/storetest"
)

// TestScanValue: the writer's own Scan converts the driver's values into
// every destination type the writer reads, as database/sql would, and
// refuses the rest.
func TestScanValue(t *testing.T) {
	var (
		s   string
		i64 int64
		i   int
		b   bool
		raw []byte
		ni  sql.NullInt64
		ns  sql.NullString
	)
	for _, tt := range []struct {
		v    driver.Value
		dest any
		want any
	}{
		{"text", &s, "text"},
		{[]byte("blob"), &s, "blob"},
		{int64(-7), &i64, int64(-7)},
		{int64(42), &i, 42},
		{int64(1), &b, true},
		{int64(0), &b, false},
		{[]byte{1, 2}, &raw, []byte{1, 2}},
		{"ab", &raw, []byte("ab")},
		{int64(5), &ni, sql.NullInt64{Int64: 5, Valid: true}},
		{nil, &ni, sql.NullInt64{}},
		{"x", &ns, sql.NullString{String: "x", Valid: true}},
		{nil, &ns, sql.NullString{}},
	} {
		if err := scanValue(tt.v, tt.dest); err != nil {
			t.Fatalf("scanValue(%#v, %T): %v", tt.v, tt.dest, err)
		}
		var got any
		switch d := tt.dest.(type) {
		case *string:
			got = *d
		case *int64:
			got = *d
		case *int:
			got = *d
		case *bool:
			got = *d
		case *[]byte:
			got = string(*d)
			tt.want = string(tt.want.([]byte))
		case *sql.NullInt64:
			got = *d
		case *sql.NullString:
			got = *d
		}
		if got != tt.want {
			t.Errorf("scanValue(%#v, %T) stored %#v, want %#v", tt.v, tt.dest, got, tt.want)
		}
	}
	// The blob is a copy: the driver may reuse its buffer.
	src := []byte{9}
	if err := scanValue(src, &raw); err != nil {
		t.Fatal(err)
	}
	src[0] = 0
	if raw[0] != 9 {
		t.Error("scanValue kept the driver's []byte instead of copying it")
	}
	for _, tt := range []struct {
		v    driver.Value
		dest any
	}{
		{nil, &s}, {"1", &i64}, {nil, &b}, {int64(1), &raw}, {"x", new(float32)},
	} {
		if err := scanValue(tt.v, tt.dest); err == nil {
			t.Errorf("scanValue(%#v, %T) succeeded, want an error", tt.v, tt.dest)
		}
	}
	if err := scanValues([]driver.Value{int64(1)}, []any{&i, &s}); err == nil {
		t.Error("scanValues with more destinations than columns succeeded")
	}
}

// TestNamedValues: arguments reach the driver as the types it binds, in
// order, numbered from 1.
func TestNamedValues(t *testing.T) {
	nv, err := namedValues([]any{
		"s", 3, int64(4), true, []byte("b"), nil,
		sql.NullString{}, sql.NullString{String: "v", Valid: true},
		sql.NullInt64{}, sql.NullInt64{Int64: 9, Valid: true},
		nostr.Timestamp(1700000000), storage.ReasonTwin,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []driver.Value{"s", int64(3), int64(4), true, "b", nil, nil, "v", nil, int64(9), int64(1700000000), string(storage.ReasonTwin)}
	for i, v := range nv {
		if v.Ordinal != i+1 {
			t.Errorf("argument %d has ordinal %d", i, v.Ordinal)
		}
		got := v.Value
		if b, ok := got.([]byte); ok {
			got = string(b)
		}
		if got != want[i] {
			t.Errorf("argument %d = %#v (%T), want %#v", i+1, v.Value, v.Value, want[i])
		}
	}
	if _, err := namedValues([]any{struct{}{}}); err == nil {
		t.Error("namedValues accepted a struct")
	}
}

// TestRawStatements: on the write connection, a query with no row answers
// sql.ErrNoRows, rows read to their end, and a statement can run again
// after its rows are closed.
func TestRawStatements(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	err := s.withWriter(func(c *rawConn) {
		ctx := context.Background()
		var n int64
		if err := c.QueryRowContext(ctx, `SELECT 1 FROM events WHERE id = ?`, "none").Scan(&n); !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("Scan of no row = %v, want sql.ErrNoRows", err)
		}
		st, err := c.stmt(ctx, `SELECT value FROM (SELECT 1 AS value UNION ALL SELECT 2 UNION ALL SELECT 3) WHERE value >= ?`)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			rows, err := st.QueryContext(ctx, 2)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for rows.Next() {
				if err := rows.Scan(&n); err != nil {
					t.Fatal(err)
				}
				got = append(got, n)
			}
			if err := errors.Join(rows.Err(), rows.Close()); err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0] != 2 || got[1] != 3 {
				t.Errorf("rows = %v, want [2 3]", got)
			}
		}
		if err := c.QueryRowContext(ctx, `SELECT nonsense FROM nowhere`).Scan(&n); err == nil {
			t.Error("a statement that does not prepare scanned without error")
		}
		if _, err := c.ExecContext(ctx, `ROLLBACK`); !isNoTransaction(err) {
			t.Errorf("ROLLBACK with no transaction open: %v, want what isNoTransaction recognizes", err)
		}
		if isNoTransaction(nil) || isNoTransaction(errors.New("cannot rollback - no transaction is active")) {
			t.Error("isNoTransaction took an error that is not SQLite's")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestWriterPreparesOnANewConnection: should database/sql ever hand the
// writer another connection than the one its statements were prepared
// on, they are prepared again there and writes go on.
func TestWriterPreparesOnANewConnection(t *testing.T) {
	s := openT(t, Config{Path: filepath.Join(t.TempDir(), "relay.db")})
	ctx := context.Background()
	a := storetest.NewAuthor(t)
	if _, err := s.Save(ctx, a.Event(t, 1, nostr.Now(), nil, "before")); err != nil {
		t.Fatal(err)
	}
	// Stand in for a connection database/sql has replaced. The writer is
	// idle: it answered the Save above, and reads s.raw again only after
	// receiving the next op.
	stale := s.raw
	s.raw = &rawConn{dc: new(int), bySQL: map[string]*rawStmt{}}
	ev := a.Event(t, 1, nostr.Now(), nil, "after")
	if _, err := s.Save(ctx, ev); err != nil {
		t.Fatalf("Save after the connection changed: %v", err)
	}
	if s.raw.dc != stale.dc || s.raw == stale {
		t.Error("the writer did not prepare its statements on the connection it was given")
	}
	// The stale statements live on the same connection here: finalize them.
	if err := s.withWriter(func(*rawConn) {
		if err := stale.close(); err != nil {
			t.Errorf("close the stale statements: %v", err)
		}
	}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Count(ctx, nostr.Filter{Authors: []string{a.PubKey}})
	if err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
}
