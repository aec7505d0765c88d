package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/burrow-relay/burrow/storage"
)

// SQLite has one writer at a time, so the Store owns exactly one write
// connection, used by one goroutine. Callers queue writeOps; the writer takes
// every op already queued (up to MaxBatch), runs each inside its own
// SAVEPOINT within one transaction, commits once (one fsync for the whole
// batch), and only then answers each caller. An op that fails rolls back to
// its savepoint and leaves the others untouched.

// writeOp is one queued write. apply runs on the writer goroutine; whatever it
// records for its caller is read only after reply delivers its error.
type writeOp struct {
	ctx   context.Context
	apply func(tx *txn) error
	reply chan error // buffered: the writer never blocks on a caller
}

// write queues apply and waits until its batch has committed (or failed).
func (s *Store) write(ctx context.Context, apply func(tx *txn) error) error {
	op := &writeOp{ctx: ctx, apply: apply, reply: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return storage.ErrClosed
	}
	select {
	case s.ops <- op:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	select {
	case err := <-op.reply:
		return err
	case <-ctx.Done():
		// The op may still commit; the caller only stops waiting.
		return ctx.Err()
	}
}

// writer is the goroutine that owns the write connection. It exits when Close
// has closed ops and every queued op has been answered.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]*writeOp, 0, s.maxBatch)
	for op := range s.ops {
		batch = append(batch[:0], op)
		// Publishers answered by the previous commit are usually runnable
		// but not yet running; yielding once lets them queue their next
		// write into this batch, which shares one commit and fsync.
		runtime.Gosched()
	drain:
		for len(batch) < s.maxBatch {
			select {
			case next, ok := <-s.ops:
				if !ok {
					break drain
				}
				batch = append(batch, next)
			default:
				break drain
			}
		}
		s.batches.Add(1)
		s.batchedOps.Add(int64(len(batch)))
		s.commit(batch)
		clear(batch) // drop references for the garbage collector
	}
}

// commit runs batch in one transaction and answers every op.
func (s *Store) commit(batch []*writeOp) {
	// The transaction outlives any one caller's context: a caller that gives
	// up must not abort the others' writes.
	ctx := context.Background()
	errs := make([]error, len(batch))
	answer := func() {
		for i, op := range batch {
			op.reply <- errs[i]
		}
	}
	sqlTx, err := s.writeDB.BeginTx(ctx, nil)
	if err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("sqlite: begin: %w", err)
		}
		answer()
		return
	}
	tx := &txn{ctx: ctx, tx: sqlTx, st: s.stmts.in(ctx, sqlTx)}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = tx.run(op.apply)
	}
	if err := sqlTx.Commit(); err != nil {
		s.log.Error("sqlite commit failed", "ops", len(batch), "err", err)
		for i := range errs {
			if errs[i] == nil || !isRefusal(errs[i]) {
				errs[i] = fmt.Errorf("sqlite: commit: %w", err)
			}
		}
	}
	answer()
}

// isRefusal reports whether err is one of the contract's answers about the
// event (as opposed to a backend failure).
func isRefusal(err error) bool {
	for _, e := range []error{storage.ErrDuplicate, storage.ErrDeleted, storage.ErrReplaced, storage.ErrExpired, storage.ErrNotAuthor} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// txn is the writer's transaction as seen by one op.
type txn struct {
	ctx context.Context
	tx  *sql.Tx
	st  *statements // bound to tx
}

// run applies one op inside a savepoint, so its failure undoes only its own
// changes.
func (tx *txn) run(apply func(*txn) error) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `SAVEPOINT op`); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	err := apply(tx)
	if err != nil {
		if _, rbErr := tx.tx.ExecContext(tx.ctx, `ROLLBACK TO op`); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("sqlite: rollback to savepoint: %w", rbErr))
		}
	}
	if _, relErr := tx.tx.ExecContext(tx.ctx, `RELEASE op`); relErr != nil && err == nil {
		err = fmt.Errorf("sqlite: release savepoint: %w", relErr)
	}
	return err
}

// statements are the writer's prepared statements. Prepared once on the
// write connection and bound to each batch's transaction.
type statements struct {
	check       *sql.Stmt
	bySlot      *sql.Stmt
	byID        *sql.Stmt
	insertEvent *sql.Stmt
	insertTags  [tagRowsPerInsert]*sql.Stmt // insertTags[k-1] inserts k rows
	nextSeq     *sql.Stmt
	deleteTag   *sql.Stmt
	deleteEvent *sql.Stmt
	tombstone   *sql.Stmt
	expired     *sql.Stmt
}

// pointers lists the statement fields in the order of statementSQL.
func (st *statements) pointers() []**sql.Stmt {
	p := []**sql.Stmt{&st.check, &st.bySlot, &st.byID, &st.insertEvent, &st.nextSeq,
		&st.deleteTag, &st.deleteEvent, &st.tombstone, &st.expired}
	for k := range st.insertTags {
		p = append(p, &st.insertTags[k])
	}
	return p
}

// statementSQL is the text of each statement, in the order of pointers.
func statementSQL() []string {
	q := []string{
		// check: ?1 id, ?2 pubkey, ?3 the event's own address (NULL unless
		// replaceable/addressable), ?4 created_at, ?5 whether a kind 5 may
		// block this event (any kind but 5). Answers the stored seq (NULL if
		// not stored), tombstoned, blocked by a deletion request.
		`SELECT
	(SELECT seq FROM events WHERE id = ?1),
	EXISTS (SELECT 1 FROM tombstones WHERE id = ?1),
	?5 AND (
		EXISTS (SELECT 1 FROM tags t JOIN events k ON k.n = t.event
			WHERE t.name = 'e' AND t.value = ?1 AND k.kind = 5 AND k.pubkey = ?2)
		OR (?3 IS NOT NULL AND EXISTS (SELECT 1 FROM tags t JOIN events k ON k.n = t.event
			WHERE t.name = 'a' AND t.value = ?3 AND k.kind = 5 AND k.pubkey = ?2 AND k.created_at >= ?4))
	)`,
		`SELECT n, id, kind, pubkey, created_at, tags FROM events WHERE replace_key = ?`,
		`SELECT n, id, kind, pubkey, created_at, tags FROM events WHERE id = ?`,
		`INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, replace_key, expires_at, seq)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		`INSERT INTO group_seq (h, last_seq) VALUES (?, 1)
	ON CONFLICT (h) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq`,
		`DELETE FROM tags WHERE name = ? AND value = ? AND event = ?`,
		`DELETE FROM events WHERE n = ?`,
		`INSERT INTO tombstones (id, reason, deleted_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		`SELECT n, id, kind, pubkey, created_at, tags FROM events
	WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?`,
	}
	// One statement per row count, so an event's tags go in with one or two
	// executions instead of one per tag.
	for k := 1; k <= tagRowsPerInsert; k++ {
		q = append(q, `INSERT INTO tags (name, value, event) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", k), ", ")+` ON CONFLICT DO NOTHING`)
	}
	return q
}

func prepareStatements(ctx context.Context, db *sql.DB) (*statements, error) {
	st := &statements{}
	for i, q := range statementSQL() {
		p, err := db.PrepareContext(ctx, q)
		if err != nil {
			_ = st.close()
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		*st.pointers()[i] = p
	}
	return st, nil
}

// in returns the statements bound to tx; they close with it.
func (st *statements) in(ctx context.Context, tx *sql.Tx) *statements {
	bound := &statements{}
	src, dst := st.pointers(), bound.pointers()
	for i := range src {
		*dst[i] = tx.StmtContext(ctx, *src[i])
	}
	return bound
}

func (st *statements) close() error {
	var errs []error
	for _, p := range st.pointers() {
		if *p != nil {
			errs = append(errs, (*p).Close())
		}
	}
	return errors.Join(errs...)
}

// tagRowsPerInsert is the most tag rows one INSERT carries.
const tagRowsPerInsert = 8
