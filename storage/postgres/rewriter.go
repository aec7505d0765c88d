package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// lockClassScrub is the first key of the advisory lock that the instance
// rewriting KeyPackage content partitions holds, at session level, while it
// does (the other classes are in schema.go): one instance at a time, so
// rewrites never queue behind each other.
const lockClassScrub int32 = 0x42757203

// minRewriteGap is the least time between two partition rewrites.
const minRewriteGap = 20 * time.Millisecond

// rewriter takes deleted KeyPackages' content out of the database files.
// Content lives in keypackage_content, 256 partitions by author (migration
// 6); deleting a KeyPackage deletes its content row and records a debt for
// its partition (keypackage_scrub) in the same transaction, whichever
// instance or statement deletes it. Deleted rows stay in the files until
// the partition is rewritten (a plain VACUUM or reusing free space leaves
// them), so the rewriter pays debts with VACUUM FULL of the one partition
// (new heap, TOAST and index files): the work follows the partitions that
// saw deletions, and a rewrite locks only its partition, which a few
// hundred KeyPackages' operations touch, never the keypackages table that
// every save reads. See docs/keypackage-scrub.md.
//
// Timing: a partition's debts are paid about within/2 after its oldest
// one, so that deletions meanwhile share the rewrite, or sooner when many
// partitions are owed; partitions are rewritten one at a time, oldest debt
// first, with a pause as long as the rewrite between two (an operation
// that waited on one rewrite gets through before the next begins). A rewrite waits at most lockWait for its lock
// (operations queue behind a waiting rewrite) and retries later rather than
// wait longer. A rewrite keeps deleted rows that an older snapshot can still
// see; it then pays only the debts of deletions older than every such
// snapshot and retries the partition later.
type rewriter struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	within   time.Duration
	lockWait time.Duration
	kick     chan struct{} // buffered 1: this store deleted a KeyPackage
	stop     chan struct{}
	done     chan struct{}

	// Owned by run:
	backoff    map[int16]retry // partitions to leave alone until
	cycle      time.Duration   // moving average of a rewrite with its pause
	lateWarned time.Time       // last warning that debts are late

	mu    sync.Mutex
	stats rewriteStats
}

// retry is when a partition whose rewrite failed or left debts is tried
// again.
type retry struct {
	at    time.Time
	tries int
}

// rewriteStats counts a rewriter's work since it started.
type rewriteStats struct {
	rewrites  int           // partitions rewritten
	lockWaits int           // rewrites given up after waiting lockWait for their lock
	heldBack  int           // rewrites that left debts an older snapshot kept
	maxHold   time.Duration // the longest rewrite statement: the longest anyone waited on one
	totalHold time.Duration
}

func (s rewriteStats) since(before rewriteStats) rewriteStats {
	return rewriteStats{
		rewrites: s.rewrites - before.rewrites, lockWaits: s.lockWaits - before.lockWaits,
		heldBack: s.heldBack - before.heldBack, maxHold: s.maxHold, totalHold: s.totalHold - before.totalHold,
	}
}

func (s rewriteStats) String() string {
	mean := time.Duration(0)
	if s.rewrites > 0 {
		mean = s.totalHold / time.Duration(s.rewrites)
	}
	return fmt.Sprintf("%d partition rewrites (mean %v, max %v), %d given up waiting for the lock, %d kept rows an older snapshot could see",
		s.rewrites, mean.Round(100*time.Microsecond), s.maxHold.Round(100*time.Microsecond), s.lockWaits, s.heldBack)
}

func newRewriter(pool *pgxpool.Pool, log *slog.Logger, within, lockWait time.Duration) *rewriter {
	if within <= 0 {
		// DESIGN.md: within 10 s by default. Under a sustained high rate
		// of deletions the rewriter falls behind that bound (it rewrites
		// one partition at a time, at most half the time), and says so.
		within = 10 * time.Second
	}
	if lockWait <= 0 {
		lockWait = 25 * time.Millisecond
	}
	r := &rewriter{
		pool: pool, log: log, within: within, lockWait: lockWait,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		backoff: make(map[int16]retry), cycle: 100 * time.Millisecond,
	}
	go r.run()
	return r
}

// keyPackagesDeleted wakes the rewriter if dels holds a KeyPackage, so it
// plans the rewrite of its partition (the debt is in the database already).
func (s *Store) keyPackagesDeleted(dels []storage.Deletion) {
	for _, d := range dels {
		if d.Kind == 443 || d.Kind == 30443 {
			select {
			case s.rewrite.kick <- struct{}{}:
			default: // one is pending already
			}
			return
		}
	}
}

func (r *rewriter) snapshot() rewriteStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *rewriter) run() {
	defer close(r.done)
	// At once: debts left by an instance that stopped before paying them.
	wait := time.Duration(0)
	// Every KeyPackage deletion kicks, and a round reads the whole debt
	// table: at a thousand deletions a second, one round per kick cost the
	// server as much as the deletions did. Kicks are coalesced to one round
	// per kickGap; the debts they announce are due within/2 later at the
	// earliest, so noticing them kickGap late changes nothing.
	kickGap := r.within / 20
	var last time.Time
	for {
		t := time.NewTimer(wait)
		select {
		case <-r.kick:
			t.Stop()
			if d := time.Until(last.Add(kickGap)); d > 0 {
				select {
				case <-time.After(d):
				case <-r.stop:
					r.round(true)
					return
				}
			}
		case <-t.C:
		case <-r.stop:
			t.Stop()
			// Whatever is owed is paid now rather than when due: this may be
			// the last instance. What the round cannot pay stays owed to the
			// next instance that starts.
			r.round(true)
			return
		}
		last = time.Now()
		wait = r.round(false)
	}
}

// round rewrites the partitions whose debts are due (all owed ones if
// final), one at a time, and returns how long to wait before the next
// round.
func (r *rewriter) round(final bool) time.Duration {
	poll := r.within / 4 // debts of other instances are noticed this late at most
	// A round ends after within (the next begins at once if work is left),
	// each statement having 30 s more at most.
	end := time.Now().Add(r.within)
	ctx, cancel := context.WithDeadline(context.Background(), end.Add(30*time.Second))
	defer cancel()
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		r.log.Warn("keypackage scrub: no database connection", "err", err)
		return poll
	}
	defer conn.Release()
	var mine bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, 0)`, lockClassScrub).Scan(&mine); err != nil {
		r.log.Warn("keypackage scrub: taking the rewrite lock", "err", err)
		return poll
	}
	if !mine {
		return poll // another instance is rewriting; it pays every instance's debts
	}
	defer func() {
		if _, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1, 0)`, lockClassScrub); err != nil {
			// The lock goes with the session: make sure the session goes.
			_ = conn.Conn().Close(context.Background())
		}
	}()
	tried := make(map[int16]bool) // in a final round, one try each
	for time.Now().Before(end) {
		part, wait, xmax, err := r.next(ctx, conn, final, tried)
		if err != nil {
			r.log.Warn("keypackage scrub: reading debts", "err", err)
			return poll
		}
		if part < 0 {
			return min(wait, poll)
		}
		tried[part] = true
		took := r.rewrite(ctx, conn, part, xmax)
		gap := max(took, minRewriteGap)
		r.cycle += (took + gap - r.cycle) / 8
		if final {
			time.Sleep(gap)
			continue
		}
		select {
		case <-time.After(gap):
		case <-r.stop:
			return 0 // run starts the final round
		}
	}
	return 0
}

// next returns the partition to rewrite now (-1 if none), how long until
// one is due otherwise, and the current snapshot's xmax (every transaction
// that deleted before now is below it). A partition is due when its oldest
// debt is within/2 old, or sooner when the partitions owed before it would
// leave it too little time: each rewrite with its pause takes about
// r.cycle, and every partition must be rewritten within its oldest debt's
// within. The oldest debt goes first.
func (r *rewriter) next(ctx context.Context, conn *pgxpool.Conn, final bool, tried map[int16]bool) (int16, time.Duration, string, error) {
	rows, err := conn.Query(ctx, `SELECT part, extract(epoch FROM clock_timestamp() - min(deleted_at))::float8,
		pg_snapshot_xmax(pg_current_snapshot())::text
		FROM keypackage_scrub GROUP BY part ORDER BY min(deleted_at)`)
	if err != nil {
		return -1, 0, "", err
	}
	type owedPart struct {
		part int16
		owed time.Duration
	}
	var (
		owed []owedPart
		part int16
		age  float64
		xmax string
		now  = time.Now()
		wait = r.within
	)
	_, err = pgx.ForEachRow(rows, []any{&part, &age, &xmax}, func() error {
		if final && tried[part] {
			return nil
		}
		if b, ok := r.backoff[part]; ok && !final && now.Before(b.at) {
			wait = min(wait, b.at.Sub(now))
			return nil
		}
		owed = append(owed, owedPart{part, time.Duration(age * float64(time.Second))})
		return nil
	})
	if err != nil || len(owed) == 0 {
		return -1, wait, "", err
	}
	if final {
		return owed[0].part, 0, xmax, nil
	}
	for k, p := range owed {
		// Twice the average: rewrites slow down when the server is busy.
		slack := r.within - p.owed - time.Duration(k+1)*r.cycle*2
		due := min(r.within/2-p.owed, slack)
		if due > 0 {
			wait = min(wait, due)
			continue
		}
		if first := owed[0]; first.owed > r.within && now.Sub(r.lateWarned) > r.within {
			r.lateWarned = now
			r.log.Warn("keypackage scrub: behind; deleted KeyPackage content still in a partition past KeyPackageRewriteWithin",
				"partition", first.part, "deleted_ago", first.owed.Round(time.Second), "within", r.within, "partitions_owed", len(owed))
		}
		return owed[0].part, 0, xmax, nil
	}
	return -1, wait, "", nil
}

// rewrite rewrites one partition and pays the debts the rewrite settled.
// before is a snapshot xmax taken before it started. It returns how long
// the rewrite statement took.
func (r *rewriter) rewrite(ctx context.Context, conn *pgxpool.Conn, part int16, before string) time.Duration {
	leaf := fmt.Sprintf("keypackage_content_%d", part)
	// VACUUM may not run in a transaction block, so the short lock_timeout
	// is set on the session around it, then the session's own put back.
	var saved string
	if err := conn.QueryRow(ctx, `SELECT current_setting('lock_timeout'), set_config('lock_timeout', $1, false)`,
		fmt.Sprintf("%dms", r.lockWait.Milliseconds())).Scan(&saved, nil); err != nil {
		r.postpone(part, "setting lock_timeout", err)
		return 0
	}
	start := time.Now()
	_, err := conn.Exec(ctx, "VACUUM FULL "+pgx.Identifier{leaf}.Sanitize())
	took := time.Since(start)
	if _, rerr := conn.Exec(ctx, `SELECT set_config('lock_timeout', $1, false)`, saved); rerr != nil {
		_ = conn.Conn().Close(context.Background()) // never hand back a session with the short timeout
		err = errors.Join(err, rerr)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
			r.mu.Lock()
			r.stats.lockWaits++
			r.mu.Unlock()
			r.postpone(part, "", nil)
			return took
		}
		r.postpone(part, "rewriting", err)
		return took
	}
	r.mu.Lock()
	r.stats.rewrites++
	r.stats.totalHold += took
	r.stats.maxHold = max(r.stats.maxHold, took)
	r.mu.Unlock()

	// VACUUM FULL sets relfrozenxid to the horizon it kept rows for: rows
	// deleted by transactions older than it are gone from the new files,
	// and their debts are paid. A debt left from before the rewrite means
	// an older snapshot (a long transaction, a replica's
	// hot_standby_feedback, a replication slot) still saw the deletion.
	var paid, left int64
	var horizonAge int32
	err = conn.QueryRow(ctx, `
		WITH h AS (SELECT relfrozenxid AS horizon FROM pg_class WHERE oid = $1::regclass),
		     paid AS (DELETE FROM keypackage_scrub s USING h
		               WHERE s.part = $2 AND age(s.xid::xid) > age(h.horizon) RETURNING 1)
		SELECT (SELECT count(*) FROM paid),
		       (SELECT count(*) FROM keypackage_scrub s, h
		         WHERE s.part = $2 AND age(s.xid::xid) <= age(h.horizon) AND s.xid < $3::xid8),
		       (SELECT age(h.horizon) FROM h)`, leaf, part, before).Scan(&paid, &left, &horizonAge)
	if err != nil {
		r.postpone(part, "paying debts", err)
		return took
	}
	if left > 0 {
		r.mu.Lock()
		r.stats.heldBack++
		r.mu.Unlock()
		if r.backoff[part].tries == 0 {
			r.log.Warn("keypackage scrub: a snapshot older than a KeyPackage deletion kept its content in the rewritten partition; rewriting it again later",
				"partition", part, "horizon_age_xids", horizonAge)
		}
		r.postpone(part, "", nil)
		return took
	}
	delete(r.backoff, part)
	r.log.Debug("keypackage content partition rewritten", "partition", part, "took", took, "debts_paid", paid)
	return took
}

// postpone leaves a partition alone for a while, longer after each failed
// try, but never as long as the debts may wait.
func (r *rewriter) postpone(part int16, what string, err error) {
	b := r.backoff[part]
	b.tries++
	b.at = time.Now().Add(min(time.Duration(b.tries)*100*time.Millisecond, r.within/8))
	r.backoff[part] = b
	if err != nil {
		r.log.Warn("keypackage scrub: "+what+" failed; retrying later", "partition", part, "try", b.tries, "err", err)
	}
}

// close stops the rewriter after a last round that pays what is owed.
func (r *rewriter) close() {
	close(r.stop)
	<-r.done
}
