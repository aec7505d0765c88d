package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The writer runs its statements on the driver's connection itself
// (sql.Conn.Raw), not through database/sql: it is the connection's only
// user, one goroutine at a time, so database/sql's per-statement work
// (locking the connection, converting arguments by reflection, binding
// each prepared statement to every batch's transaction, wrapping rows)
// bought nothing and cost about a tenth of the writer's time. The types
// here keep the shape of database/sql's (ExecContext, QueryRowContext,
// Scan, sql.ErrNoRows), so the writer's code reads as before.

// rawConn is the write connection as the driver gives it, with the
// statements prepared on it. Only the writer goroutine uses it (and Open
// and Close, before it starts and after it ends).
type rawConn struct {
	dc   any // the driver connection, to notice database/sql replacing it
	conn driver.Conn
	// bySQL holds the statements run by their text (tx.tx.ExecContext),
	// prepared on first use and kept: the writer runs a small fixed set.
	bySQL map[string]*rawStmt
}

func newRawConn(dc any) (*rawConn, error) {
	conn, ok := dc.(driver.Conn)
	if !ok {
		return nil, fmt.Errorf("sqlite: the driver connection is a %T", dc)
	}
	return &rawConn{dc: dc, conn: conn, bySQL: map[string]*rawStmt{}}, nil
}

// prepare prepares q on the connection.
func (c *rawConn) prepare(ctx context.Context, q string) (*rawStmt, error) {
	var (
		ds  driver.Stmt
		err error
	)
	if p, ok := c.conn.(driver.ConnPrepareContext); ok {
		ds, err = p.PrepareContext(ctx, q)
	} else {
		ds, err = c.conn.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	return &rawStmt{ds: ds}, nil
}

// stmt returns the statement for q, preparing it on first use.
func (c *rawConn) stmt(ctx context.Context, q string) (*rawStmt, error) {
	if st, ok := c.bySQL[q]; ok {
		return st, nil
	}
	st, err := c.prepare(ctx, q)
	if err != nil {
		return nil, err
	}
	c.bySQL[q] = st
	return st, nil
}

// ExecContext runs q, which changes the database.
func (c *rawConn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryRowContext runs q and keeps its first row.
func (c *rawConn) QueryRowContext(ctx context.Context, q string, args ...any) *rawRow {
	st, err := c.stmt(ctx, q)
	if err != nil {
		return &rawRow{err: err}
	}
	return st.QueryRowContext(ctx, args...)
}

// walPages reads and resets the count of pages this connection has written
// to the WAL (SQLITE_DBSTATUS_CACHE_WRITE).
func (c *rawConn) walPages() int {
	st, ok := c.dc.(sqlite.DBStatus)
	if !ok {
		return 0
	}
	pages, _, err := st.Status(sqlite.DBStatusCacheWrite, true)
	if err != nil {
		return 0
	}
	return pages
}

func (c *rawConn) close() error {
	var errs []error
	for _, st := range c.bySQL {
		errs = append(errs, st.close())
	}
	c.bySQL = nil
	return errors.Join(errs...)
}

// rawStmt is a statement prepared on the write connection.
type rawStmt struct {
	ds driver.Stmt
}

// ExecContext runs the statement, which changes the database.
func (st *rawStmt) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	nv, err := namedValues(args)
	if err != nil {
		return nil, err
	}
	if e, ok := st.ds.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, nv)
	}
	return nil, errors.New("sqlite: the driver's statement has no ExecContext")
}

// QueryContext runs the statement; the caller must Close the rows before
// running the statement again.
func (st *rawStmt) QueryContext(ctx context.Context, args ...any) (*rawRows, error) {
	nv, err := namedValues(args)
	if err != nil {
		return nil, err
	}
	q, ok := st.ds.(driver.StmtQueryContext)
	if !ok {
		return nil, errors.New("sqlite: the driver's statement has no QueryContext")
	}
	rows, err := q.QueryContext(ctx, nv)
	if err != nil {
		return nil, err
	}
	return &rawRows{rows: rows, vals: make([]driver.Value, len(rows.Columns()))}, nil
}

// QueryRowContext runs the statement and keeps its first row; Scan
// reports sql.ErrNoRows when there is none.
func (st *rawStmt) QueryRowContext(ctx context.Context, args ...any) *rawRow {
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return &rawRow{err: err}
	}
	r := &rawRow{}
	if rows.Next() {
		r.vals = rows.vals
	} else if r.err = rows.Err(); r.err == nil {
		r.err = sql.ErrNoRows
	}
	if err := rows.Close(); err != nil && r.err == nil {
		r.err = err
	}
	return r
}

func (st *rawStmt) close() error {
	if st == nil || st.ds == nil {
		return nil
	}
	err := st.ds.Close()
	st.ds = nil
	return err
}

// rawRows reads a query's rows, as sql.Rows does.
type rawRows struct {
	rows driver.Rows
	vals []driver.Value
	err  error
	done bool
}

func (r *rawRows) Next() bool {
	if r.done {
		return false
	}
	if err := r.rows.Next(r.vals); err != nil {
		r.done = true
		if !errors.Is(err, io.EOF) {
			r.err = err
		}
		return false
	}
	return true
}

func (r *rawRows) Scan(dest ...any) error { return scanValues(r.vals, dest) }

func (r *rawRows) Err() error { return r.err }

func (r *rawRows) Close() error {
	r.done = true
	return r.rows.Close()
}

// rawRow is a query's first row, as sql.Row is.
type rawRow struct {
	vals []driver.Value
	err  error
}

func (r *rawRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	return scanValues(r.vals, dest)
}

// namedValues converts arguments as database/sql does for this driver:
// the types the writer passes directly, anything else through
// driver.DefaultParameterConverter (driver.Valuer, integer kinds).
func namedValues(args []any) ([]driver.NamedValue, error) {
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		var v driver.Value
		switch x := a.(type) {
		case nil, string, int64, bool, []byte, float64:
			v = x
		case int:
			v = int64(x)
		case sql.NullString:
			if x.Valid {
				v = x.String
			}
		case sql.NullInt64:
			if x.Valid {
				v = x.Int64
			}
		default:
			var err error
			if v, err = driver.DefaultParameterConverter.ConvertValue(a); err != nil {
				return nil, fmt.Errorf("sqlite: argument %d: %w", i+1, err)
			}
		}
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv, nil
}

// scanValues stores a row's values in dest, converting as database/sql's
// Scan does for the types the writer reads.
func scanValues(vals []driver.Value, dest []any) error {
	if len(dest) != len(vals) {
		return fmt.Errorf("sqlite: scan: %d destinations for %d columns", len(dest), len(vals))
	}
	for i, d := range dest {
		if err := scanValue(vals[i], d); err != nil {
			return fmt.Errorf("sqlite: scan column %d: %w", i+1, err)
		}
	}
	return nil
}

func scanValue(v driver.Value, dest any) error {
	switch d := dest.(type) {
	case *string:
		switch x := v.(type) {
		case string:
			*d = x
			return nil
		case []byte:
			*d = string(x)
			return nil
		}
	case *int64:
		if x, ok := v.(int64); ok {
			*d = x
			return nil
		}
	case *int:
		if x, ok := v.(int64); ok {
			*d = int(x)
			return nil
		}
	case *bool:
		if x, ok := v.(int64); ok {
			*d = x != 0
			return nil
		}
	case *[]byte:
		switch x := v.(type) {
		case nil:
			*d = nil
			return nil
		case []byte:
			*d = append([]byte(nil), x...)
			return nil
		case string:
			*d = []byte(x)
			return nil
		}
	case sql.Scanner:
		return d.Scan(v)
	}
	return fmt.Errorf("cannot store %T in %T", v, dest)
}

// isNoTransaction reports whether err is SQLite's answer to a ROLLBACK
// when no transaction is open (SQLite had already rolled it back): the
// generic SQLITE_ERROR, where a failed write (I/O, busy, full) has a code
// of its own.
func isNoTransaction(err error) bool {
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code() == sqlite3.SQLITE_ERROR
}
