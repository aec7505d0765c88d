package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/burrow-relay/burrow/storage"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rewriter rewrites the KeyPackage table (VACUUM FULL: a new file, with
// new indexes and TOAST) after KeyPackage deletions, so that deleted
// KeyPackages' bytes leave the heap, TOAST and index files: a plain VACUUM
// or reusing free space leaves them there. Deletions are debounced: the
// first one starts a wait of half the bound, the ones during it share the
// rewrite. The table is small, so the exclusive lock is held briefly; the
// rewrite waits at most lockWait for it and retries later rather than
// keep saves queued behind it.
type rewriter struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	within   time.Duration
	lockWait time.Duration
	kick     chan struct{} // buffered 1: a deletion happened
	stop     chan struct{}
	done     chan struct{}
}

func newRewriter(pool *pgxpool.Pool, log *slog.Logger, within, lockWait time.Duration) *rewriter {
	if within <= 0 {
		within = 10 * time.Second
	}
	if lockWait <= 0 {
		lockWait = 200 * time.Millisecond
	}
	r := &rewriter{
		pool: pool, log: log, within: within, lockWait: lockWait,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go r.run()
	return r
}

// keyPackagesDeleted schedules a rewrite if dels holds a KeyPackage.
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

func (r *rewriter) run() {
	defer close(r.done)
	for {
		select {
		case <-r.kick:
		case <-r.stop:
			select {
			case <-r.kick: // pending at Close: rewrite before the pool goes
				r.rewriteUntil(time.Now().Add(r.within))
			default:
			}
			return
		}
		deadline := time.Now().Add(r.within)
		select {
		case <-time.After(r.within / 2):
		case <-r.stop:
		}
		// Deletions from now on get a rewrite of their own.
		select {
		case <-r.kick:
		default:
		}
		r.rewriteUntil(deadline)
	}
}

// rewriteUntil rewrites the table, retrying lock timeouts and transient
// failures until a little past deadline.
func (r *rewriter) rewriteUntil(deadline time.Time) {
	for try := 1; ; try++ {
		start := time.Now()
		err := r.rewriteOnce()
		if err == nil {
			r.log.Debug("keypackage table rewritten", "took", time.Since(start), "tries", try)
			return
		}
		if time.Now().After(deadline.Add(r.within)) {
			r.log.Error("keypackage table rewrite failed; deleted KeyPackage bytes may remain in its files until the next one", "tries", try, "err", err)
			return
		}
		r.log.Warn("keypackage table rewrite postponed", "try", try, "err", err)
		time.Sleep(min(time.Duration(try)*r.lockWait, time.Second))
	}
}

func (r *rewriter) rewriteOnce() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.within+30*time.Second)
	defer cancel()
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	// Each statement alone in a simple query: VACUUM may not run in a
	// transaction block.
	if err := pc.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", r.lockWait.Milliseconds())).Close(); err != nil {
		return err
	}
	defer func() { _ = pc.Exec(context.Background(), "RESET lock_timeout").Close() }()
	if err := pc.Exec(ctx, "VACUUM FULL keypackages").Close(); err != nil {
		return fmt.Errorf("vacuum full keypackages: %w", err)
	}
	return nil
}

// close stops the rewriter after a pending rewrite.
func (r *rewriter) close() {
	close(r.stop)
	<-r.done
}
