package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/burrow-relay/burrow/storage"
	"github.com/burrow-relay/burrow/storage/groupcommit"
)

// SQLite has one writer at a time, so the Store owns exactly one write
// connection, used by one goroutine. Callers queue writeOps; the writer takes
// every op already queued (up to MaxBatch), waiting up to maxLinger for more
// when recent batches were larger, runs them in one transaction, commits once
// (one fsync for the whole batch), and only then answers each caller. Much
// of a commit's cost does not grow with its size (the fsync, locking,
// page-cache upkeep, index pages that several writes share), so fuller
// batches make every write cheaper.
//
// An op that fails must leave the others untouched. Savepoints give that,
// but one per op costs a statement each way plus a copy of every page the op
// first touches, about a tenth of the writer's time. So the first attempt at
// a batch runs without them: an op that fails with a refusal before it has
// written anything (every refusal the contract defines is decided by reads)
// needs no undo. Only if an op fails after writing, or with a backend error,
// is the transaction rolled back and the whole batch run again, each op
// inside its own SAVEPOINT. Ops therefore reset whatever they record for
// their caller each time they run.

// writeOp is one queued write. apply runs on the writer goroutine; whatever it
// records for its caller is read only after reply delivers its error.
type writeOp struct {
	ctx   context.Context
	apply func(tx *txn) error
	reply chan error // buffered: the writer never blocks on a caller
}

// write queues apply and waits until its batch has committed (or failed).
// A ctx that ends while the op waits in the queue makes the writer skip it
// (it then fails with ctx's error and changed nothing); once queued, the
// caller always waits for the writer's answer, so the outcome it reports
// is the one that happened. The writer never waits on anything but the
// database file, so that wait is bounded.
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
	return <-op.reply
}

// writer is the goroutine that owns the write connection. It exits when Close
// has closed ops and every queued op has been answered.
func (s *Store) writer() {
	defer close(s.done)
	g := groupcommit.New(s.ops, s.maxBatch, maxLinger)
	batch := make([]*writeOp, 0, s.maxBatch)
	for {
		var ok bool
		if batch, ok = g.Next(batch); !ok {
			return
		}
		s.commit(batch)
		clear(batch) // drop references for the garbage collector
	}
}

// maxLinger bounds how long the writer waits for a batch to fill
// (groupcommit.Gatherer). Much of a commit's CPU is paid per commit (the
// fsync's writeback, page-cache upkeep, the pages several writes share):
// with the relay benchmark's 8 publishers on 2 busy cores, 500 µs gathered
// about 5 writes a commit and 4 ms about 7.5, for 9-14 µs less relay CPU per
// event and no worse median latency (docs/benchmarks.md, "SQLite writer,
// session 7"). The wait happens only while a batch is smaller than recent
// ones.
const maxLinger = 4 * time.Millisecond

// commit runs batch in one transaction and answers every op.
func (s *Store) commit(batch []*writeOp) {
	errs := make([]error, len(batch))
	var (
		scrub bool
		pages int
	)
	err := s.withWriter(func(c *rawConn) {
		var done bool
		done, scrub = s.commitOnce(c, batch, errs, false)
		if !done {
			_, scrub = s.commitOnce(c, batch, errs, true)
		}
		pages = c.walPages()
	})
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
	}
	s.noteWAL(pages)
	// Before the replies, so a caller told its deletion committed can
	// count on the checkpoint being scheduled.
	if scrub {
		s.scheduleScrub()
	}
	for i, op := range batch {
		op.reply <- diskFull(errs[i])
	}
}

// withWriter runs f on the write connection, with the writer's statements
// prepared on it. database/sql keeps the one connection for the Store's
// life (no lifetime or idle limit); should it ever replace it, the
// statements are prepared again on the new one.
func (s *Store) withWriter(f func(c *rawConn)) error {
	ctx := context.Background()
	conn, err := s.writeDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlite: write connection: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		if s.raw == nil || s.raw.dc != dc {
			c, err := newRawConn(dc)
			if err != nil {
				return err
			}
			st, err := prepareStatements(ctx, c)
			if err != nil {
				_ = c.close()
				return err
			}
			// The statements of a replaced connection went with it.
			s.raw, s.stmts = c, st
		}
		f(s.raw)
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: write connection: %w", err)
	}
	return nil
}

// diskFull marks an error SQLite reported as a full disk (SQLITE_FULL)
// with storage.ErrFull. The op's transaction, or savepoint, was rolled
// back, so nothing of it was written.
func diskFull(err error) error {
	var e *sqlite.Error
	if errors.As(err, &e) && e.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %w", storage.ErrFull, err)
	}
	return err
}

// commitOnce runs batch in one transaction, filling errs. Without savepoints
// it gives up (rolls back and returns false) as soon as an op fails in a way
// that may have left some of its writes behind; the caller then runs the
// batch again with savepoints. scrub reports that the committed transaction
// deleted an event whose bytes must leave the files (see scrubsOnDelete).
func (s *Store) commitOnce(c *rawConn, batch []*writeOp, errs []error, savepoints bool) (done, scrub bool) {
	// The transaction outlives any one caller's context: a caller that gives
	// up must not abort the others' writes.
	ctx := context.Background()
	clear(errs)
	// IMMEDIATE: the writer takes the write lock before its first read, so
	// what it checks cannot change before it commits.
	if _, err := c.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		for i := range errs {
			errs[i] = fmt.Errorf("sqlite: begin: %w", err)
		}
		return true, false
	}
	tx := &txn{ctx: ctx, tx: c, st: s.stmts, started: time.Now()}
	for i, op := range batch {
		if err := op.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		tx.killed = nil
		if savepoints {
			errs[i] = tx.runInSavepoint(op.apply)
			if errors.Is(errs[i], errTxLost) {
				// A backend failure (a full disk, an I/O error) made
				// SQLite roll the whole transaction back by itself; the
				// statements after it would run, and commit, one by one
				// outside any transaction. Nothing of the batch is kept.
				s.abort(c, batch, errs, i)
				return true, false
			}
			continue
		}
		tx.dirty = false
		errs[i] = op.apply(tx)
		if errs[i] != nil && (tx.dirty || !isRefusal(errs[i])) {
			s.rollback(c, "sqlite rollback before retrying a batch with savepoints failed")
			return false, false
		}
	}
	work := time.Since(tx.started)
	if _, err := c.ExecContext(ctx, `COMMIT`); err != nil {
		s.log.Error("sqlite commit failed", "ops", len(batch), "err", err)
		// SQLite rolls back by itself after most failed commits, but not
		// all (SQLITE_BUSY leaves the transaction open): make sure the
		// next batch starts afresh.
		s.rollback(c, "sqlite rollback after a failed commit")
		for i := range errs {
			if errs[i] == nil || !isRefusal(errs[i]) {
				errs[i] = fmt.Errorf("sqlite: commit: %w", err)
			}
		}
		return true, false
	}
	hold := time.Since(tx.started)
	if s.batchHook != nil {
		s.batchHook(work, hold)
	}
	if s.onCommit != nil {
		s.onCommit(len(batch), hold)
	}
	return true, tx.scrub
}

// rollback ends the open transaction, if SQLite has not already.
func (s *Store) rollback(c *rawConn, msg string) {
	if _, err := c.ExecContext(context.Background(), `ROLLBACK`); err != nil && !isNoTransaction(err) {
		s.log.Warn(msg, "err", err)
	}
}

// abort rolls back the batch's transaction after op failed with a backend
// error: every op of the batch fails (those before it were not committed
// either), the failing one with its own error.
func (s *Store) abort(c *rawConn, batch []*writeOp, errs []error, failed int) {
	s.rollback(c, "sqlite rollback of a failed batch")
	cause := errs[failed]
	for i := range batch {
		if i != failed {
			errs[i] = fmt.Errorf("sqlite: the batch failed: %w", cause)
		}
	}
}

// isRefusal reports whether err is one of the contract's answers about the
// event (as opposed to a backend failure).
func isRefusal(err error) bool {
	for _, e := range []error{storage.ErrDuplicate, storage.ErrDeleted, storage.ErrReplaced, storage.ErrExpired,
		storage.ErrNotAuthor, storage.ErrBanned, storage.ErrSlotCap, storage.ErrSlotTaken,
		storage.ErrCommitLost, storage.ErrCommitHolds} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// txn is the writer's transaction as seen by one op.
type txn struct {
	ctx context.Context
	tx  *rawConn    // the write connection, inside the batch's transaction
	st  *statements // prepared on tx
	// dirty is set before any statement that may change the database runs,
	// so the writer knows whether a failed op left changes behind.
	dirty bool
	// scrub is set when the transaction deletes an event whose bytes must
	// leave the files once it commits.
	scrub bool
	// killed lists the KeyPackages the current op removed events of, for
	// its buryTwins; reset before each op.
	killed []killedRef
	// started is when the transaction began: ops that remove an unbounded
	// number of events stop once the batch has worked chunkWork
	// (removeChunk).
	started time.Time
}

// exec runs a statement that changes the database.
func (tx *txn) exec(stmt *rawStmt, args ...any) (sql.Result, error) {
	tx.dirty = true
	return stmt.ExecContext(tx.ctx, args...)
}

// queryRowWrite runs a statement that changes the database and returns a
// row (INSERT ... RETURNING).
func (tx *txn) queryRowWrite(stmt *rawStmt, args ...any) *rawRow {
	tx.dirty = true
	return stmt.QueryRowContext(tx.ctx, args...)
}

// errTxLost marks an op's failure after which its savepoint no longer
// exists: SQLite rolled the whole transaction back (it may, on SQLITE_FULL,
// SQLITE_IOERR or SQLITE_NOMEM), so the rest of the batch cannot go on in it.
var errTxLost = errors.New("sqlite: the transaction was rolled back")

// runInSavepoint applies one op inside a savepoint, so its failure undoes
// only its own changes.
func (tx *txn) runInSavepoint(apply func(*txn) error) error {
	if _, err := tx.tx.ExecContext(tx.ctx, `SAVEPOINT op`); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", err)
	}
	scrub := tx.scrub
	err := apply(tx)
	if err != nil {
		tx.scrub = scrub // its deletions are undone too
		if _, rbErr := tx.tx.ExecContext(tx.ctx, `ROLLBACK TO op`); rbErr != nil {
			err = errors.Join(err, fmt.Errorf("%w: rollback to savepoint: %w", errTxLost, rbErr))
		}
	}
	if _, relErr := tx.tx.ExecContext(tx.ctx, `RELEASE op`); relErr != nil && err == nil {
		err = fmt.Errorf("sqlite: release savepoint: %w", relErr)
	}
	return err
}

// statements are the writer's prepared statements, prepared once on the
// write connection.
type statements struct {
	check       *rawStmt
	bySlot      *rawStmt
	byID        *rawStmt
	insertEvent *rawStmt
	insertTags  [tagRowsPerInsert]*rawStmt // insertTags[k-1] inserts k rows
	nextSeq     *rawStmt
	deleteTag   *rawStmt
	deleteEvent *rawStmt
	tombstone   *rawStmt
	expired     *rawStmt
	authorKPs   *rawStmt
	twins       *rawStmt
	refDeleted  *rawStmt
	twinsExpire *rawStmt
	buryRef     *rawStmt
	vanishOwn   *rawStmt
	vanishWraps *rawStmt
	byAuthor    *rawStmt
	ban         *rawStmt
	loserHolder *rawStmt
	oldGroup    *rawStmt
}

// pointers lists the statement fields in the order of statementSQL.
func (st *statements) pointers() []**rawStmt {
	p := []**rawStmt{&st.check, &st.bySlot, &st.byID, &st.insertEvent, &st.nextSeq,
		&st.deleteTag, &st.deleteEvent, &st.tombstone, &st.expired,
		&st.authorKPs, &st.twins, &st.refDeleted, &st.twinsExpire, &st.buryRef, &st.vanishOwn, &st.vanishWraps, &st.byAuthor, &st.ban, &st.loserHolder, &st.oldGroup}
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
		// not stored), tombstoned, blocked by a deletion request, author
		// banned, author vanished at or after created_at (NIP-62).
		`SELECT
	(SELECT seq FROM events WHERE id = ?1),
	EXISTS (SELECT 1 FROM tombstones WHERE id = ?1),
	?5 AND (
		EXISTS (SELECT 1 FROM tags t JOIN events k ON k.n = t.event
			WHERE t.name = 'e' AND t.value = ?1 AND k.kind = 5 AND k.pubkey = ?2)
		OR (?3 IS NOT NULL AND EXISTS (SELECT 1 FROM tags t JOIN events k ON k.n = t.event
			WHERE t.name = 'a' AND t.value = ?3 AND k.kind = 5 AND k.pubkey = ?2 AND k.created_at >= ?4))
	),
	EXISTS (SELECT 1 FROM bans WHERE pubkey = ?2),
	EXISTS (SELECT 1 FROM events v WHERE v.kind = 62 AND v.pubkey = ?2 AND v.created_at >= ?4)`,
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events WHERE replace_key = ?`,
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events WHERE id = ?`,
		`INSERT INTO events (id, pubkey, created_at, kind, tags, content, sig, replace_key, expires_at, seq, kp_ref)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		`INSERT INTO group_seq (h, last_seq) VALUES (?, 1)
	ON CONFLICT (h) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq`,
		`DELETE FROM tags WHERE name = ? AND value = ? AND event = ?`,
		`DELETE FROM events WHERE n = ?`,
		`INSERT INTO tombstones (id, reason, deleted_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events
	WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?`,
		// authorKPs: ?1 pubkey, ?2 now. The author's live KeyPackage events
		// of both kinds, for the slot cap.
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events INDEXED BY events_kp_author
	WHERE kind IN (443, 30443) AND pubkey = ?1 AND (expires_at IS NULL OR expires_at > ?2)`,
		// twins: ?1 pubkey, ?2 KeyPackageRef.
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events
	WHERE pubkey = ?1 AND kp_ref = ?2 AND kind IN (443, 30443)`,
		// refDeleted: ?1 KeyPackageRef, ?2 pubkey. Whether a KeyPackage with
		// it died, and the earliest expiry among its stored events.
		`SELECT EXISTS (SELECT 1 FROM keypackage_refs_deleted WHERE ref = ?1),
	(SELECT MIN(expires_at) FROM events WHERE pubkey = ?2 AND kp_ref = ?1)`,
		// twinsExpire: ?1 expiry, ?2 pubkey, ?3 KeyPackageRef.
		`UPDATE events SET expires_at = ?1 WHERE pubkey = ?2 AND kp_ref = ?3 AND (expires_at IS NULL OR expires_at > ?1)`,
		// buryRef: ?1 KeyPackageRef, ?2 now.
		`INSERT INTO keypackage_refs_deleted (ref, deleted_at) VALUES (?1, ?2) ON CONFLICT (ref) DO NOTHING`,
		// vanishOwn: ?1 pubkey, ?2 the request's created_at, ?3 the most
		// rows (-1: all).
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events WHERE pubkey = ?1 AND created_at <= ?2 LIMIT ?3`,
		// vanishWraps: ?1 pubkey, ?2 the request's created_at, ?3 the most
		// rows (-1: all). Gift wraps whose p tag names the author.
		`SELECT e.n, e.id, e.kind, e.pubkey, e.created_at, e.tags, e.kp_ref FROM tags t JOIN events e ON e.n = t.event
	WHERE t.name = 'p' AND t.value = ?1 AND e.kind = 1059 AND e.created_at <= ?2 LIMIT ?3`,
		// byAuthor: ?1 pubkey, ?2 the most rows.
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events WHERE pubkey = ?1 LIMIT ?2`,
		`INSERT INTO bans (pubkey, banned_at) VALUES (?, ?) ON CONFLICT (pubkey) DO NOTHING`,
		// loserHolder: ?1 the id of a Commit that lost a slot. The slot's
		// current holder.
		`SELECT s.holder FROM commit_slot_losers l JOIN commit_slots s ON s.h = l.h AND s.slot = l.slot WHERE l.id = ?1`,
		// oldGroup: ?1 the retention cutoff, ?2 the chunk size.
		`SELECT n, id, kind, pubkey, created_at, tags, kp_ref FROM events WHERE kind = 445 AND created_at < ?1 LIMIT ?2`,
	}
	// One statement per row count, so an event's tags go in with one or two
	// executions instead of one per tag. OR IGNORE (the arguments are never
	// NULL, so it only skips repeated tags) rather than the default ABORT:
	// a multi-row INSERT that may abort makes SQLite copy every page it
	// touches into a statement journal first.
	for k := 1; k <= tagRowsPerInsert; k++ {
		q = append(q, `INSERT OR IGNORE INTO tags (name, value, event) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?, ?, ?), ", k), ", "))
	}
	return q
}

func prepareStatements(ctx context.Context, c *rawConn) (*statements, error) {
	st := &statements{}
	for i, q := range statementSQL() {
		p, err := c.stmt(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		*st.pointers()[i] = p
	}
	return st, nil
}

// tagRowsPerInsert is the most tag rows one INSERT carries.
const tagRowsPerInsert = 8
